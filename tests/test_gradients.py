"""mt.eval.gradients: the gradient-flow instrument recovers a known power law, measures every
architecture (padding-exact, rows independent), and `mt gradients` writes its JSON and plot."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from mt.data.batching import Batch, collate
from mt.data.tokenizer import train_tokenizer
from mt.eval.gradients import GradientFlow, decay_per_position, gradient_norms, measure
from mt.models.module import Seq2SeqModule
from mt.models.rnn import RNNSeq2Seq
from mt.models.transformer import TransformerSeq2Seq

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
MT = Path(sys.executable).parent / "mt"
VOCAB = 40
ARCHS = ["transformer", "lstm", "gru", "rnn"]


def linear_recurrence(x: Tensor, w: float) -> Tensor:
    """h_t = w h_{t-1} + x_t from h_{-1} = 0; the loss of step t is the sum of h_t's features,
    so d loss_t / d x_j = w^(t - j) (1, ..., 1) for j <= t and 0 for j > t."""
    h = torch.zeros_like(x[:, 0])
    losses = []
    for t in range(x.size(1)):
        h = w * h + x[:, t]
        losses.append(h.sum(dim=1))
    return torch.stack(losses, dim=1)  # (B, T)


@pytest.mark.parametrize("w", [0.6, 1.3])
def test_a_linear_recurrence_gives_its_power_law(w: float) -> None:
    lengths, dim = [12, 7], 3
    x = torch.randn(2, 12, dim, requires_grad=True)
    real = torch.arange(12).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)  # (B, 12)
    flow = GradientFlow()
    flow.add(gradient_norms(linear_recurrence(x, w), x, real), real, real)

    for row in flow.by_offset():
        d = row["offset"]
        expected = math.sqrt(dim) * w**d if d >= 0 else 0.0  # causal: no gradient from the future
        assert row["mean_norm"] == pytest.approx(expected, rel=1e-5, abs=1e-7), d
        assert row["count"] == sum(max(0, n - abs(d)) for n in lengths)
    # Pooled over both signs, half the pairs at each distance >= 1 are causal ones: the ratio
    # between consecutive distances is w.
    means = {r["distance"]: r["mean_norm"] for r in flow.by_distance()}
    for d in range(1, 10):
        assert means[d + 1] / means[d] == pytest.approx(w, rel=1e-5)
    assert decay_per_position(flow.by_distance(), min_count=1) == pytest.approx(w, rel=1e-5)


def tiny_model(arch: str) -> Seq2SeqModule:
    torch.manual_seed(0)
    if arch == "transformer":
        return TransformerSeq2Seq(vocab_size=VOCAB, d_model=16, n_heads=2, encoder_layers=1,
                                  decoder_layers=1, ffn_dim=32)  # fmt: skip
    return RNNSeq2Seq(vocab_size=VOCAB, embed_dim=16, hidden_size=16, encoder_layers=2,
                      decoder_layers=1, cell=arch, input_feeding=arch == "gru")  # fmt: skip


def tiny_batch(shapes: list[tuple[int, int]], seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    return collate([(k, rng.integers(4, VOCAB, s), rng.integers(4, VOCAB, t), "")
                    for k, (s, t) in enumerate(shapes)])  # fmt: skip


def alone(batch: Batch, k: int) -> Batch:
    """Pair ``k`` of ``batch`` as a batch of its own, without padding."""
    src = batch.src[k][~batch.src_pad_mask[k]][:-1]  # without EOS: collate adds it
    tgt = batch.tgt_out[k][~batch.tgt_pad_mask[k]][:-1]
    return collate([(0, src.numpy(), tgt.numpy(), "")])


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_is_measured_row_by_row_and_padding_exact(arch: str) -> None:
    model = tiny_model(arch)
    shapes = [(9, 4), (3, 7), (5, 5)]  # source and target lengths differ: S != T
    batch = tiny_batch(shapes)
    together = measure(model, [batch]).by_offset()
    one_by_one = measure(model, [alone(batch, k) for k in range(len(shapes))]).by_offset()
    assert [r["offset"] for r in together] == [r["offset"] for r in one_by_one]
    assert [r["count"] for r in together] == [r["count"] for r in one_by_one]
    for a, b in zip(together, one_by_one, strict=True):
        assert a["mean_norm"] == pytest.approx(b["mean_norm"], rel=1e-4), a["offset"]
    # Every (i, j) pair of real tokens counted once: (S + 1) x (T + 1) per pair, EOS included.
    assert sum(r["count"] for r in together) == sum((s + 1) * (t + 1) for s, t in shapes)
    assert all(math.isfinite(r["mean_norm"]) and r["mean_norm"] > 0 for r in together)


def tiny_checkpoint(tiny_corpus: Path, path: Path) -> Path:
    """A tiny LSTM checkpoint with a sentencepiece model trained on the tiny corpus."""
    tokenizer = train_tokenizer([tiny_corpus / "train.de", tiny_corpus / "train.en"], vocab_size=300)
    torch.manual_seed(0)
    model = RNNSeq2Seq(vocab_size=300, embed_dim=16, hidden_size=16, encoder_layers=1, decoder_layers=1)
    model.tokenizer = tokenizer
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


def test_the_mt_command_writes_json_and_plot_and_refuses_bad_input(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    ckpt = tiny_checkpoint(tiny_corpus, tmp_path / "tiny.ckpt")
    config = tmp_path / "tiny-gru.yaml"
    config.write_text(
        "model:\n  class_path: mt.models.rnn.RNNSeq2Seq\n  init_args:\n    cell: gru\n    embed_dim: 16\n"
        "    hidden_size: 16\n    encoder_layers: 1\n    decoder_layers: 1\n"
        f"data:\n  data_dir: {tiny_corpus}\n  vocab_size: 300\n"
    )
    src, ref = tiny_corpus / "test_2016_flickr.de", tiny_corpus / "test_2016_flickr.en"
    out = tmp_path / "out"
    args = ["--input", str(src), "--reference", str(ref), "--out", str(out), "--sentences", "8"]
    proc = subprocess.run([str(MT), "gradients", "--checkpoint", str(ckpt), "--at_init",
                           "--config", str(config), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "gradients.json").read_text())
    assert [(m["name"], m["weights"]) for m in result["models"]] == [
        ("tiny", "trained"), ("tiny (init)", "init"), ("tiny-gru (init)", "init")
    ]
    assert result["models"][2]["cell"] == "gru" and result["sentences"] == 8
    for key in ("device", "versions", "git_commit", "command", "definition"):
        assert key in result
    for model in result["models"]:
        assert model["by_distance"][0]["distance"] == 0 and model["by_distance"][0]["mean_norm"] > 0
        assert model["decay_per_position"] is None or model["decay_per_position"] > 0
    assert (out / "gradients.png").stat().st_size > 0

    missing = tmp_path / "none.ckpt"
    proc = subprocess.run([str(MT), "gradients", "--checkpoint", str(missing), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and str(missing) in proc.stderr, proc.stderr
