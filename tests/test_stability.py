"""Training stability signals of Seq2SeqModule: ``train/grad_norm`` and ``train/clipped`` against a
manual ``clip_grad_norm_``, and a non-finite loss that stops the run naming the step."""

from __future__ import annotations

import copy
import math
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from mt.data.batching import Batch, collate
from mt.models.module import NonFiniteLossError, Seq2SeqModule
from mt.models.rnn import RNNSeq2Seq
from mt.models.transformer import TransformerSeq2Seq

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
MT = Path(sys.executable).parent / "mt"
VOCAB = 40


def tiny_model(arch: str) -> Seq2SeqModule:
    torch.manual_seed(0)
    sgd = lambda params: torch.optim.SGD(params, lr=1.0)  # noqa: E731  (update = -clipped grad)
    if arch == "transformer":
        return TransformerSeq2Seq(vocab_size=VOCAB, d_model=16, n_heads=2, encoder_layers=1,
                                  decoder_layers=1, ffn_dim=32, dropout=0.0, optimizer=sgd)  # fmt: skip
    return RNNSeq2Seq(vocab_size=VOCAB, embed_dim=16, hidden_size=16, encoder_layers=1,
                      decoder_layers=1, dropout=0.0, cell=arch, optimizer=sgd)  # fmt: skip


def tiny_batch(seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    items = []
    for i, (s, t) in enumerate([(5, 4), (3, 6), (7, 2)]):
        items.append((i, rng.integers(4, VOCAB, s), rng.integers(4, VOCAB, t), "ref"))
    return collate(items)


def fit_one_step(model: Seq2SeqModule, batch: Batch, clip: float | None) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=1, gradient_clip_val=clip, accelerator="cpu", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, DataLoader([batch], batch_size=None))
    return trainer


def manual_step(model: Seq2SeqModule, batch: Batch, clip: float | None) -> tuple[float, dict]:
    """The norm before clipping and the weights after one SGD(lr=1) step, computed by hand."""
    model = copy.deepcopy(model).train()
    loss, _, n_tokens = model._loss(batch, model.label_smoothing)
    (loss / n_tokens).backward()
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, clip if clip else math.inf)
    with torch.no_grad():
        for p in params:
            p -= p.grad
    return float(norm), {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("arch", ["transformer", "lstm", "gru", "rnn"])
@pytest.mark.parametrize("clip", [0.05, None], ids=["clipped", "no-clipping"])
def test_grad_norm_and_clipped_match_a_manual_clip_grad_norm(arch: str, clip: float | None) -> None:
    model, batch = tiny_model(arch), tiny_batch()
    expected_norm, expected_weights = manual_step(model, batch, clip)
    assert expected_norm > 0.05  # the clipped case really clips
    trainer = fit_one_step(model, batch, clip)
    logged = trainer.callback_metrics
    assert float(logged["train/grad_norm"]) == pytest.approx(expected_norm, rel=1e-5)
    assert float(logged["train/clipped"]) == (1.0 if clip else 0.0)
    # Clipped once, with the trainer's threshold: the update is the manually clipped gradient.
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, expected_weights[name], rtol=1e-5, atol=1e-6, msg=name)


def test_value_clipping_is_lightnings_and_never_counts_as_norm_clipping() -> None:
    model, batch = tiny_model("gru"), tiny_batch()
    before = copy.deepcopy(model)
    trainer = L.Trainer(
        max_steps=1, gradient_clip_val=1e-3, gradient_clip_algorithm="value", accelerator="cpu",
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, DataLoader([batch], batch_size=None))
    assert float(trainer.callback_metrics["train/clipped"]) == 0.0
    with torch.no_grad():
        step = max(
            float((a - b).abs().max())
            for a, b in zip(model.parameters(), before.parameters(), strict=True)
        )
    assert step == pytest.approx(1e-3, rel=1e-4)  # SGD lr 1: no element moved more than 1e-3


def test_non_finite_loss_stops_the_run_naming_the_step(monkeypatch: pytest.MonkeyPatch) -> None:
    model, batch = tiny_model("lstm"), tiny_batch()
    real_loss = model._loss
    calls = []

    def nan_from_the_third_step(batch: Batch, label_smoothing: float):
        loss, nll, n = real_loss(batch, label_smoothing)
        calls.append(1)
        return (loss * float("nan") if len(calls) >= 3 else loss), nll, n

    monkeypatch.setattr(model, "_loss", nan_from_the_third_step)
    trainer = L.Trainer(
        max_steps=5, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    with pytest.raises(NonFiniteLossError, match=r"at global step 2 \(") as err:
        trainer.fit(model, DataLoader([batch] * 5, batch_size=None))
    assert "\n" not in str(err.value)
    assert trainer.global_step == 2  # the NaN step's gradients never reached the weights



def test_mt_fit_that_diverges_exits_1_with_one_line_naming_the_step(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    """A learning rate of 1e12 without clipping: the loss is NaN within a few steps."""
    overlay = tmp_path / "diverge.yaml"
    overlay.write_text(yaml.safe_dump({
        "trainer": {"max_steps": 30, "limit_val_batches": 0, "enable_progress_bar": False,
                    "gradient_clip_val": None, "logger": False, "callbacks": [],
                    "enable_checkpointing": False},
        "model": {"init_args": {"embed_dim": 16, "hidden_size": 16, "encoder_layers": 1,
                                "decoder_layers": 1,
                                "optimizer": {"class_path": "torch.optim.SGD",
                                              "init_args": {"lr": 1.0e12}}}},
        "data": {"data_dir": str(tiny_corpus), "vocab_size": 300, "max_tokens": 512,
                 "num_workers": 0},
    }))  # fmt: skip
    proc = subprocess.run(
        [str(MT), "fit", "--config", "configs/rnn-small.yaml", "--config", str(overlay),
         "--run_dir", str(tmp_path / "run")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"mt: error: non-finite training loss \((nan|inf|-inf)\) at global step \d+ .*", last), last
    assert "Traceback" not in proc.stderr



def test_clipped_fraction_is_the_share_of_every_step_of_the_epoch() -> None:
    """Four steps at learning rate 0 (the weights stay put, so each step's norm is its batch's
    manual norm) and a threshold between the second and third smallest norms: two of four steps
    clip, whatever steps log_every_n_steps samples."""
    model = tiny_model("rnn")
    model.optimizer_factory = lambda params: torch.optim.SGD(params, lr=0.0)
    batches = [tiny_batch(seed) for seed in range(4)]
    norms = sorted(manual_step(model, b, None)[0] for b in batches)
    trainer = L.Trainer(
        max_epochs=1, gradient_clip_val=(norms[1] + norms[2]) / 2, accelerator="cpu", logger=False,
        log_every_n_steps=50, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, DataLoader(batches, batch_size=None))
    assert float(trainer.callback_metrics["train/clipped_fraction"]) == pytest.approx(0.5)
