"""FLOP formulas against torch's FlopCounterMode, the device peak table, ThroughputMonitor.

What ``FlopCounterMode`` counts on a CPU in this torch (2.13): ``mm``, ``addmm``, ``bmm`` and
``baddbmm``, and the CUDA attention kernels, but **not** the kernels the models use on a CPU by
default: ``aten._scaled_dot_product_flash_attention_for_cpu`` (SDPA) and
``aten.mkldnn_rnn_layer`` (``nn.LSTM``) are uncounted. So each model is measured twice:

* with the default kernels, the counted FLOPs must equal the formula *without* its attention
  (Transformer) or LSTM-cell (LSTM) terms;
* with SDPA's math backend and oneDNN off, attention and the LSTM run as plain matrix products
  that are counted, and the whole formula must agree within 5%. (Measured: the Transformer
  agrees exactly; the LSTM is ~0.6% above the count because the encoder LSTMs start from a zero
  state that needs no gradient, which the formula does not special-case.)
"""

from __future__ import annotations

import contextlib
import csv
import itertools
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

import mt.eval.throughput as throughput
from mt.data.batching import Batch, collate
from mt.eval.throughput import (
    ThroughputMonitor,
    flop_terms,
    flops_breakdown,
    forward_flops,
    normalize_precision,
    peak_flops,
    peak_flops_for_name,
    train_flops,
)
from mt.models.rnn import RNNSeq2Seq
from mt.models.transformer import TransformerSeq2Seq

# torch.backends.mkldnn.flags() warns about Intel-GPU TF32 on every use.
pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")

VOCAB = 40
UNCOUNTED_ON_CPU = {
    "encoder_self_attention",
    "decoder_self_attention",
    "cross_attention",
    "encoder_rnn",
    "decoder_rnn",
}

TRANSFORMERS: dict[str, dict[str, Any]] = {
    "pre_shared_tied": dict(
        d_model=32, n_heads=4, encoder_layers=2, decoder_layers=1, ffn_dim=64, dropout=0.0
    ),
    "post_untied_gelu": dict(
        d_model=24,
        n_heads=2,
        encoder_layers=1,
        decoder_layers=2,
        ffn_dim=40,
        dropout=0.0,
        activation="gelu",
        norm="post",
        share_embeddings=False,
        tie_output=False,
    ),
}
LSTMS: dict[str, dict[str, Any]] = {
    f"{attention}-feed{int(feeding)}": dict(
        embed_dim=16,
        hidden_size=24,
        encoder_layers=2,
        decoder_layers=3,
        attention=attention,
        input_feeding=feeding,
        dropout=0.0,
    )
    for attention, feeding in itertools.product(
        ["bahdanau", "luong_dot", "luong_general"], [False, True]
    )
}
LSTMS["tied-1layer"] = dict(
    embed_dim=24, hidden_size=24, encoder_layers=1, decoder_layers=1, tie_output=True, dropout=0.0
)
for cell in ("gru", "rnn"):
    LSTMS[f"{cell}-bahdanau-feed1"] = {**LSTMS["bahdanau-feed1"], "cell": cell}


def make_model(kind: str, name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "transformer":
        return TransformerSeq2Seq(VOCAB, **TRANSFORMERS[name])
    return RNNSeq2Seq(VOCAB, **LSTMS[name])


ALL_MODELS = [("transformer", n) for n in TRANSFORMERS] + [("lstm", n) for n in LSTMS]


def items(lengths: list[tuple[int, int]], seed: int = 0) -> list[tuple[int, Any, Any, str]]:
    """Collate items with these (source, target) lengths (ids without BOS/EOS)."""
    rng = np.random.default_rng(seed)
    return [
        (i, rng.integers(4, VOCAB, s), rng.integers(4, VOCAB, t), "")
        for i, (s, t) in enumerate(lengths)
    ]


def measured_train_flops(model: torch.nn.Module, batch: Batch, count_all: bool) -> int:
    """FlopCounterMode's count of forward + backward of the module's loss on ``batch``.

    ``count_all`` routes SDPA through its math backend and nn.LSTM through ATen's native
    implementation (oneDNN off), whose matrix products FlopCounterMode counts.
    """
    counter = FlopCounterMode(display=False)
    with contextlib.ExitStack() as stack:
        if count_all:
            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
            stack.enter_context(torch.backends.mkldnn.flags(enabled=False))
        stack.enter_context(counter)
        loss, _, _ = model._loss(batch, 0.0)
        loss.backward()
    return counter.get_total_flops()


@pytest.fixture(scope="module")
def unpadded() -> Batch:
    # Every sentence has the same lengths: no padding, so real and padded work coincide.
    return collate(items([(9, 11)] * 3))


# -- FLOP formulas -------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "name"), ALL_MODELS)
def test_formula_matches_flop_counter(kind: str, name: str, unpadded: Batch) -> None:
    model = make_model(kind, name)
    formula = train_flops(model, unpadded)
    measured = measured_train_flops(model, unpadded, count_all=True)
    assert measured == pytest.approx(formula, rel=0.05)
    if kind == "transformer":
        assert measured == formula  # the math kernels do exactly the counted products
    else:
        assert measured == formula - encoder_first_step_saving(model, unpadded)


def encoder_first_step_saving(model: torch.nn.Module, batch: Batch) -> int:
    """The encoder RNNs start from zeros, so their first step has no hidden-state gradient:
    2 x GH x H FLOPs per sentence, layer and direction fewer than 3 x forward."""
    enc = model.encoder
    return sum(
        2 * rnn.weight_hh_l0.numel() * len(batch)
        for rnn in [*enc.forward_layers, *enc.backward_layers]
    )


@pytest.mark.parametrize(("kind", "name"), ALL_MODELS)
def test_default_cpu_kernels_count_everything_but_attention_and_onednn_lstm(
    kind: str, name: str, unpadded: Batch
) -> None:
    model = make_model(kind, name)
    uncounted = set(UNCOUNTED_ON_CPU)
    if getattr(model, "cell", "lstm") != "lstm":  # oneDNN runs nn.LSTM only; GRU/RNN are ATen's
        uncounted -= {"encoder_rnn", "decoder_rnn"}
    counted = 3 * sum(v for k, v in flops_breakdown(model, unpadded).items() if k not in uncounted)
    if "encoder_rnn" not in uncounted:
        counted -= encoder_first_step_saving(model, unpadded)
    assert measured_train_flops(model, unpadded, count_all=False) == counted


@pytest.mark.parametrize(("kind", "name"), [ALL_MODELS[0], ("lstm", "luong_general-feed1")])
def test_padding_does_not_change_the_count(kind: str, name: str) -> None:
    model = make_model(kind, name)
    sentences = items([(3, 7), (8, 2), (5, 5)])
    tight = collate(sentences)
    padded = collate(sentences, pad_to_multiple=16)
    assert padded.src.numel() > tight.src.numel()
    assert train_flops(model, padded) == train_flops(model, tight)
    # ... and a batch costs the sum of its sentences, each counted without padding.
    singles = [collate([item]) for item in sentences]
    assert train_flops(model, tight) == pytest.approx(sum(train_flops(model, b) for b in singles))
    measured = sum(measured_train_flops(model, b, count_all=True) for b in singles)
    assert measured == pytest.approx(train_flops(model, tight), rel=0.05)


def test_transformer_formula_in_closed_form() -> None:
    d, f, v, n_enc, n_dec = 32, 64, VOCAB, 2, 1
    model = make_model("transformer", "pre_shared_tied")
    src, tgt = [4, 6], [5, 3]  # real lengths
    batch = collate(items([(s - 1, t - 1) for s, t in zip(src, tgt, strict=True)]))
    linear = (
        n_enc * (4 * d * d + 2 * d * f) * sum(src)
        + n_dec * 2 * d * d * sum(src)
        + (n_dec * (6 * d * d + 2 * d * f) + d * v) * sum(tgt)
    )
    attention = (
        2
        * d
        * (
            n_enc * sum(s * s for s in src)
            + n_dec * sum(t * t for t in tgt)
            + n_dec * sum(s * t for s, t in zip(src, tgt, strict=True))
        )
    )
    assert forward_flops(model, batch) == 2 * (linear + attention)
    assert train_flops(model, batch) == 3 * forward_flops(model, batch)


@pytest.mark.parametrize("split", [True, False], ids=["split", "projected"])
def test_lstm_formula_in_closed_form(split: bool) -> None:
    e, h, v = 16, 24, VOCAB
    torch.manual_seed(0)  # 2 encoder layers, 3 decoder layers:
    model = RNNSeq2Seq(VOCAB, **LSTMS["bahdanau-feed1"], split_directions=split)
    src, tgt = [4, 6], [5, 3]
    batch = collate(items([(s - 1, t - 1) for s, t in zip(src, tgt, strict=True)]))
    w = h // 2 if split else h  # units per encoder direction
    projection = 0 if split else 2 * h * h  # W_m
    per_src = 2 * (4 * w * (e + w) + 4 * w * (2 * w + w)) + projection + h * h  # LSTMs, W_m, W_k
    decoder = 4 * h * ((e + h) + h) + 2 * 4 * h * (h + h)  # input feeding on layer 0
    per_tgt = decoder + h * h + 2 * h * h + h * v  # W_q, W_c, W_s
    per_pair = 2 * h  # score (v_a) + context
    macs = (
        per_src * sum(src)
        + per_tgt * sum(tgt)
        + per_pair * sum(s * t for s, t in zip(src, tgt, strict=True))
        + 3 * (2 * w) * (2 * h) * len(src)  # bridge
    )
    assert forward_flops(model, batch) == 2 * macs


def test_flop_terms_reject_other_models() -> None:
    with pytest.raises(TypeError):
        flop_terms(torch.nn.Linear(2, 2))


# -- device peaks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "precision", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16-mixed", 989.4e12),
        ("NVIDIA H100 80GB HBM3", "bf16", 989.4e12),
        ("NVIDIA H100 PCIe", "bf16", 756.5e12),
        ("NVIDIA H100 NVL", "16-mixed", 835.5e12),
        ("NVIDIA H200", "bf16", 989.5e12),
        ("NVIDIA GH200 480GB", "bf16", 989.5e12),
        ("NVIDIA A100-SXM4-80GB", "bf16-mixed", 312e12),
        ("NVIDIA A100 80GB PCIe", "tf32", 156e12),
        ("NVIDIA A10G", "bf16", 125e12),
        ("NVIDIA A10", "bf16", 125e12),
        ("NVIDIA L40S", "bf16", 362.05e12),
        ("NVIDIA L40", "bf16", 181e12),
        ("NVIDIA L4", "bf16", 121e12),
        ("NVIDIA GeForce RTX 4090", "bf16", 165.2e12),
        ("Tesla V100-SXM2-16GB", "16-mixed", 125e12),
        ("Tesla V100-PCIE-32GB", "bf16", 112e12),  # no bf16 on Volta: the fp16 tensor peak
        ("Tesla T4", "fp16", 65e12),
        ("NVIDIA Some Future GPU", "bf16", None),
    ],
)
def test_peak_table(name: str, precision: str, peak: float | None) -> None:
    assert peak_flops_for_name(name, precision) == peak


def test_fp32_peaks_follow_the_matmul_precision() -> None:
    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert normalize_precision("32-true") == "fp32"
        assert peak_flops_for_name("NVIDIA A100-SXM4-40GB", "32-true") == 19.5e12
        torch.set_float32_matmul_precision("high")
        assert normalize_precision("32-true") == "tf32"
        assert peak_flops_for_name("NVIDIA H100 80GB HBM3", "32-true") == 494.7e12
    finally:
        torch.set_float32_matmul_precision(previous)
    with pytest.raises(ValueError):
        normalize_precision("64-true")


def test_peak_flops_of_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    assert peak_flops(torch.device("cpu"), "bf16") is None
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert peak_flops(torch.device("cuda", 0), "bf16-mixed") == 989.4e12


# -- ThroughputMonitor ---------------------------------------------------------------------------

# Eight batches of two sentences with different, known (source, target) lengths (ids only).
BATCHES = [[(2 + i, 5), (6, 1 + 2 * i)] for i in range(8)]


def loader() -> DataLoader:
    flat = [pair for batch in BATCHES for pair in batch]
    return DataLoader(items(flat), batch_size=2, shuffle=False, collate_fn=collate)


def fit(monitor: ThroughputMonitor, steps: int, tmp_path: Path) -> tuple[L.Trainer, Any]:
    model = make_model("transformer", "pre_shared_tied")
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        logger=CSVLogger(tmp_path, name="", version=""),
        log_every_n_steps=1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[monitor],
    )
    trainer.fit(model, train_dataloaders=loader())
    return trainer, model


def expected(batch_indices: range) -> dict[str, float]:
    """Non-padding tokens and padding ratio of BATCHES[i] for i in batch_indices, by hand."""
    src = tgt = elements = 0
    for i in batch_indices:
        s = [a + 1 for a, _ in BATCHES[i]]  # + EOS
        t = [b + 1 for _, b in BATCHES[i]]  # + EOS (tgt_out)
        src, tgt = src + sum(s), tgt + sum(t)
        elements += len(s) * max(s) + len(t) * max(t)
    return {"src": src, "tgt": tgt, "padding_ratio": 1 - (src + tgt) / elements}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[L.Trainer, Any, Path]:
    tmp_path = tmp_path_factory.mktemp("fit")
    monitor = ThroughputMonitor(warmup_steps=2, log_every_n_steps=3)
    trainer, model = fit(monitor, steps=7, tmp_path=tmp_path)  # counted: batches 2..6 (0-based)
    return trainer, monitor, tmp_path


def test_monitor_counts_real_tokens_after_warmup(fitted: tuple[L.Trainer, Any, Path]) -> None:
    trainer, monitor, _ = fitted
    summary = monitor.summary()
    want = expected(range(2, 7))
    assert summary["steps"] == 5 and summary["warmup_steps"] == 2
    assert summary["src_tokens"] == want["src"]
    assert summary["tgt_tokens"] == want["tgt"]
    assert summary["tokens"] == want["src"] + want["tgt"]
    assert summary["padding_ratio"] == pytest.approx(want["padding_ratio"])
    assert 0 < summary["padding_ratio"] < 1
    assert summary["time_s"] > 0
    assert summary["tokens_per_sec"] == pytest.approx(summary["tokens"] / summary["time_s"])
    assert summary["step_time"] == pytest.approx(summary["time_s"] / 5)
    assert summary["peak_mem_gb"] > 0
    model = trainer.lightning_module
    batches = [collate(items(BATCHES[i])) for i in range(2, 7)]
    assert summary["train_flops"] == pytest.approx(sum(train_flops(model, b) for b in batches))


def test_monitor_logs_windows_without_mfu_on_cpu(fitted: tuple[L.Trainer, Any, Path]) -> None:
    trainer, monitor, tmp_path = fitted
    logged = trainer.logged_metrics
    for name in ["src_tokens_per_sec", "tgt_tokens_per_sec", "tokens_per_sec", "step_time"]:
        assert float(logged[f"train/{name}"]) > 0
    assert "train/mfu" not in logged and "train/mfu" not in trainer.callback_metrics
    assert monitor.summary()["mfu"] is None and monitor.summary()["peak_flops"] is None
    # One full window (batches 2..4) is logged at batch 4; the partial one (5, 6) goes only to
    # the summary. Lightning re-sends the last logged value at later logger flushes.
    with open(tmp_path / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/padding_ratio")]
    assert rows[0]["step"] == "4"
    for row in rows:
        assert float(row["train/padding_ratio"]) == pytest.approx(
            expected(range(2, 5))["padding_ratio"]
        )
    assert "train/mfu" not in rows[0]


def test_monitor_mfu_with_a_known_peak(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Pretend the CPU has a 1 TFLOP/s peak to exercise the MFU arithmetic.
    monkeypatch.setattr(throughput, "peak_flops", lambda device, precision: 1e12)
    monitor = ThroughputMonitor(warmup_steps=1, log_every_n_steps=2)
    trainer, _ = fit(monitor, steps=5, tmp_path=tmp_path)
    summary = monitor.summary()
    assert summary["mfu"] == pytest.approx(summary["train_flops"] / summary["time_s"] / 1e12)
    assert 0 < float(trainer.logged_metrics["train/mfu"]) < 1


class _FakeStrategy:
    """Two ranks that saw identical batches: a sum doubles, a max is the identity."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.root_device = torch.device("cpu")

    def reduce(self, tensor: torch.Tensor, reduce_op: str) -> torch.Tensor:
        self.calls.append(reduce_op)
        return tensor * 2 if reduce_op == "sum" else tensor


def test_monitor_sums_tokens_over_ranks_at_log_time_only() -> None:
    strategy = _FakeStrategy()
    trainer = SimpleNamespace(strategy=strategy, world_size=2, precision="bf16-mixed")
    logged: dict[str, float] = {}
    module = SimpleNamespace(log=lambda name, value, **kw: logged.__setitem__(name, value))
    monitor = ThroughputMonitor(warmup_steps=1, log_every_n_steps=2)
    monitor.setup(trainer, module, "fit")  # type: ignore[arg-type]
    batches = [collate(items(b)) for b in BATCHES[:5]]
    for i, batch in enumerate(batches):
        monitor.on_train_batch_start(trainer, module, batch, i)  # type: ignore[arg-type]
        monitor.on_train_batch_end(trainer, module, None, batch, i)  # type: ignore[arg-type]
        if i < 2:
            assert strategy.calls == []  # warm-up, then the first window is not full yet
    assert strategy.calls == ["sum", "max", "sum", "max"]  # two windows of two batches
    summary = monitor.summary()
    want = expected(range(1, 5))
    assert summary["steps"] == 4 and summary["world_size"] == 2
    assert summary["src_tokens"] == 2 * want["src"] and summary["tgt_tokens"] == 2 * want["tgt"]
    assert summary["padding_ratio"] == pytest.approx(want["padding_ratio"])
    assert logged["train/padding_ratio"] == pytest.approx(expected(range(3, 5))["padding_ratio"])
    assert "train/mfu" not in logged


def test_monitor_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        ThroughputMonitor(warmup_steps=-1)
    with pytest.raises(ValueError):
        ThroughputMonitor(log_every_n_steps=0)
    with pytest.raises(ValueError):
        ThroughputMonitor(mfu_precision="int3")
