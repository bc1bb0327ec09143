"""Training throughput that means the same for the LSTM and the Transformer.

Three parts:

1. **FLOP formulas** (each model's ``flop_terms()`` method, read through :func:`flop_terms`; :func:`forward_flops`, :func:`train_flops`): the model
   FLOPs of a batch, derived below from the layers the models actually have.
2. **Device peaks** (:func:`peak_flops`): dense tensor-core peaks from NVIDIA's datasheets.
3. **A callback** (:class:`ThroughputMonitor`): non-padding tokens/s, padding ratio, step time,
   peak memory and MFU, logged to the loggers and kept in :meth:`ThroughputMonitor.summary`.

Why not Lightning's ``lightning.pytorch.callbacks.ThroughputMonitor`` (read in lightning 2.6.6): it
runs on rank 0 only and multiplies that rank's items and FLOPs by the world size, whereas
token-budget batches hold a different number of real tokens on each rank, so it would not report
the summed count this callback reduces over ranks. It times the whole loop since the start of
training, data loading and logging included, where this callback times forward, backward and step,
reports rates only once its rolling window (100 batches by default) is full, takes FLOPs from one
``flops_per_batch`` attribute rather than from each batch's real lengths, and has no padding ratio,
source/target split, warm-up exclusion or peak memory.

Counting conventions
--------------------
* One multiply-add = 2 FLOPs. Only matrix products are counted (linear layers, recurrent
  matrices, attention scores and contexts); embedding lookups, biases, norms, activations,
  softmax and the loss are element-wise work and cost nothing here, as in ``FlopCounterMode``
  and in the usual MFU definitions (Kaplan et al. 2020; Chowdhery et al. 2022, app. B).
* Training = forward + backward = 3 x forward: the backward pass of a product ``Y = X W`` computes
  ``dX = dY W^T`` and ``dW = X^T dY``, two products of the forward's size.
* **Only non-padding positions are counted.** A batch's FLOPs are the sum over its sentences with
  their real lengths ``s_b`` (source tokens, EOS included) and ``t_b`` (target tokens, BOS/EOS
  included: ``tgt_in`` and ``tgt_out`` have the same length), whatever the padded shape. The kernels
  do run over padding, but that work is waste: counting it would let a badly bucketed run show a
  *higher* MFU. Padding is reported separately as ``train/padding_ratio``.
* **Causal self-attention is counted in full** (``t_b^2`` score pairs, not ``t_b (t_b + 1) / 2``),
  the convention of PaLM's MFU (Chowdhery et al. 2022, app. B) and of nanoGPT/Megatron, and what
  the math and cuDNN kernels compute. For translation lengths (~30 tokens, D = 512) the decoder
  self-attention is ~2% of the model's FLOPs, so the choice moves MFU by ~1% of its value.

Because every term is a per-unit cost times one of six *length statistics* of the batch
(:data:`STATISTICS`: sentences, sum s_b, sum t_b, sum s_b^2, sum t_b^2, sum s_b t_b), the FLOPs of a
batch are a dot product of a per-model coefficient vector with those statistics; the callback
accumulates the statistics on the device and never synchronises to count.

Transformer (``mt.models.transformer.TransformerSeq2Seq``; D model width, F feed-forward width, V vocab)
-------------------------------------------------------------------------------------------------
Per encoder layer and source token: fused QKV (D x 3D) + output (D x D) + FFN (D x F + F x D)
    = 4D^2 + 2DF multiply-adds.
Per decoder layer and target token: self QKV 3D^2 + self output D^2 + cross query D^2 + cross
    output D^2 + FFN 2DF = 6D^2 + 2DF; per decoder layer and *source* token the cross-attention
    key/value projection of the memory (D x 2D) = 2D^2 (computed once per sentence in ``encode``).
Output projection (tied or not): D x V per target token.
Attention per layer and sentence, QK^T and AV each (rows x keys x D) over all heads together:
    encoder 2 s_b^2 D, decoder self-attention 2 t_b^2 D (causal, counted in full), cross 2 t_b s_b D
    multiply-adds.
So forward FLOPs = 2 [L_enc (4D^2 + 2DF) + 2 L_dec D^2] sum s + 2 [L_dec (6D^2 + 2DF) + DV] sum t
    + 4D [L_enc sum s^2 + L_dec (sum t^2 + sum s t)].
The per-token sizes are read from the layers' weight shapes (the sum of ``nn.Linear`` weights in a
layer), so a change of FFN or projection shapes is followed automatically.

Recurrent (``mt.models.rnn.RNNSeq2Seq``; E embedding, H hidden size of the decoder and the memory, V vocab)
---------------------------------------------------------------------------------------------------
A recurrent layer with input size I and width W computes G gates from input and previous hidden
(G = 4 for an ``nn.LSTM``, 3 for an ``nn.GRU``, 1 for an ``nn.RNN``):
    G W (I + W) multiply-adds per token and direction (``weight_ih`` GW x I, ``weight_hh`` GW x W).
Encoder: per source token, for each layer l and each of the two directions G W (I_l + W) with
    W = H/2 (``split_directions``, the default) or H, I_0 = E, I_l = 2W; without the split, the
    memory projection W_m (2H x H).
Bridge: per sentence, per decoder layer, one (2W x NH) map of the final states (N = 2 for an
    LSTM's h and c, 1 otherwise).
Decoder: per target token and layer G H (I_l + H) with I_0 = E (+ H with input feeding), I_l = H.
Attention per target token: scores over the source (H per source token: the dot product, or
    v_a . tanh(...) for ``bahdanau``) and the context sum (H per source token): 2 H t_b s_b
    multiply-adds per sentence; ``luong_general`` and ``bahdanau`` add W_a / W_k (H x H) per source
    token, ``bahdanau`` W_q (H x H) per target token.
Attentional vector W_c (2H x H) and output projection W_s (H x V) per target token.
As for the Transformer, the sizes are read from the weight shapes of the actual modules.

References: NVIDIA datasheets for the peaks (see :data:`_PEAKS`); Chowdhery et al. 2022 (PaLM),
appendix B, for the MFU definition.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

__all__ = [
    "STATISTICS",
    "FlopTerm",
    "ThroughputMonitor",
    "flop_terms",
    "flops_breakdown",
    "forward_flops",
    "length_statistics",
    "linear_macs",
    "normalize_precision",
    "peak_flops",
    "peak_flops_for_name",
    "rnn_macs",
    "train_flops",
]

#: The length statistics of a batch that FLOPs are linear in: the number of sentences, the sums
#: of source and target lengths, of their squares and of their products (real lengths only).
STATISTICS: tuple[str, ...] = ("sentences", "src", "tgt", "src_sq", "tgt_sq", "src_tgt")

#: Forward + backward = 3 forward passes (see the module docstring).
TRAIN_FACTOR = 3.0


# --------------------------------------------------------------------------------------------
# FLOP formulas
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlopTerm:
    """One term of a model's forward FLOPs: ``flops`` per unit of the length ``statistic``.

    Attributes:
        name: what is computed, e.g. ``decoder_self_attention``.
        statistic: one of :data:`STATISTICS` (``src``: per source token, ``src_tgt``: per
            (target token, source token) pair of a sentence, ...).
        flops: forward FLOPs (2 per multiply-add) per unit of the statistic.
    """

    name: str
    statistic: str
    flops: float


def linear_macs(modules: Iterable[nn.Module]) -> int:
    """Multiply-adds per row of all ``nn.Linear`` layers among ``modules`` (in x out each)."""
    return sum(m.weight.numel() for m in modules if isinstance(m, nn.Linear))


def rnn_macs(module: nn.Module) -> int:
    """Multiply-adds per time step of every ``nn.LSTM``/``nn.GRU``/``nn.RNN`` in ``module``.

    Every weight matrix (``weight_ih`` GH x I, ``weight_hh`` GH x H with G = 4 gates for an LSTM,
    3 for a GRU, 1 for an RNN; ``weight_hr`` when projected)
    multiplies one vector per token, so the sum of their sizes is the per-token cost.
    """
    return sum(
        p.numel()
        for rnn in module.modules()
        if isinstance(rnn, nn.RNNBase)
        for name, p in rnn.named_parameters()
        if name.startswith("weight_")
    )


def flop_terms(model: nn.Module) -> list[FlopTerm]:
    """The forward FLOP terms of an mt model: its ``flop_terms()`` method (the formulas above,
    written next to the layers they count: ``TransformerSeq2Seq.flop_terms``,
    ``RNNSeq2Seq.flop_terms``).

    Raises:
        TypeError: ``model`` has no FLOP formula (it is not an mt model).
    """
    method = getattr(model, "flop_terms", None)
    if method is None:
        raise TypeError(f"no FLOP formula for {type(model).__name__}")
    return method()


def length_statistics(
    src_lengths: Sequence[int] | Tensor, tgt_lengths: Sequence[int] | Tensor
) -> dict[str, int]:
    """The :data:`STATISTICS` of sentences with these real source and target lengths."""
    src = torch.as_tensor(src_lengths, dtype=torch.int64).cpu()
    tgt = torch.as_tensor(tgt_lengths, dtype=torch.int64).cpu()
    if src.shape != tgt.shape or src.dim() != 1:
        raise ValueError(
            f"need two (B,) length vectors, got {tuple(src.shape)} and {tuple(tgt.shape)}"
        )
    values = _statistics_tensor(src, tgt).tolist()
    return dict(zip(STATISTICS, values, strict=True))


def _statistics_tensor(src: Tensor, tgt: Tensor) -> Tensor:
    """(B,) int64 real lengths -> (6,) int64 :data:`STATISTICS`."""
    sentences = torch.tensor([src.numel()], dtype=torch.int64, device=src.device)
    return torch.cat([sentences, _length_sums(src, tgt)])


def _length_sums(src: Tensor, tgt: Tensor) -> Tensor:
    """(B,) int64 real lengths -> (5,) int64 sums of :data:`STATISTICS` but ``sentences``,
    computed on their device without synchronising."""
    return torch.stack(
        [src.sum(), tgt.sum(), (src * src).sum(), (tgt * tgt).sum(), (src * tgt).sum()]
    )


def _batch_lengths(batch: Any) -> tuple[Tensor, Tensor]:
    """(B,) int64 real source and target lengths of an ``mt.data.batching.Batch`` (masks True at pad)."""
    src = (~batch.src_pad_mask).sum(dim=1, dtype=torch.int64)
    tgt = (~batch.tgt_pad_mask).sum(dim=1, dtype=torch.int64)
    return src, tgt


def flops_breakdown(model: nn.Module, batch: Any) -> dict[str, float]:
    """Forward FLOPs of ``batch`` (an ``mt.data.batching.Batch``) per term of :func:`flop_terms`."""
    stats = length_statistics(*_batch_lengths(batch))
    return {term.name: term.flops * stats[term.statistic] for term in flop_terms(model)}


def forward_flops(model: nn.Module, batch: Any) -> float:
    """Teacher-forced forward FLOPs of ``batch`` on its non-padding tokens."""
    return float(sum(flops_breakdown(model, batch).values()))


def train_flops(model: nn.Module, batch: Any) -> float:
    """Forward + backward FLOPs of one training step on ``batch`` (3 x forward)."""
    return TRAIN_FACTOR * forward_flops(model, batch)


def _coefficients(terms: Sequence[FlopTerm]) -> list[float]:
    """Forward FLOPs per unit of each of :data:`STATISTICS`, summed over ``terms``."""
    return [sum(t.flops for t in terms if t.statistic == s) for s in STATISTICS]


# --------------------------------------------------------------------------------------------
# Device peaks
# --------------------------------------------------------------------------------------------

# Dense (no 2:4 sparsity) peak FLOP/s per GPU, by precision. "bf16"/"fp16" and "tf32" are
# tensor-core peaks, "fp32" the non-tensor FP32 peak. The datasheets list tensor-core numbers
# "with sparsity"; the dense peak is half of those. Matched in order against the lower-cased
# ``torch.cuda.get_device_name`` (e.g. "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB").
_PEAKS: list[tuple[str, dict[str, float]]] = [
    # NVIDIA H200 datasheet (nvidia.com/en-us/data-center/h200): SXM BF16 1,979 TFLOPS sparse,
    # TF32 989 sparse, FP32 67; NVL BF16 1,671 sparse, TF32 835 sparse, FP32 60.
    (r"h200 nvl", {"bf16": 835.5e12, "fp16": 835.5e12, "tf32": 417.5e12, "fp32": 60e12}),
    (r"h200|gh200", {"bf16": 989.5e12, "fp16": 989.5e12, "tf32": 494.5e12, "fp32": 67e12}),
    # NVIDIA H100 datasheet (nvidia.com/en-us/data-center/h100): SXM BF16 1,979 sparse, TF32 989
    # sparse, FP32 67; PCIe BF16 1,513 sparse, TF32 756 sparse, FP32 51; NVL BF16 1,671 sparse,
    # TF32 835 sparse, FP32 60. The SXM part reports as e.g. "NVIDIA H100 80GB HBM3".
    (r"h100 nvl", {"bf16": 835.5e12, "fp16": 835.5e12, "tf32": 417.5e12, "fp32": 60e12}),
    (r"h100 pcie", {"bf16": 756.5e12, "fp16": 756.5e12, "tf32": 378e12, "fp32": 51e12}),
    (r"h100", {"bf16": 989.4e12, "fp16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12}),
    # NVIDIA A100 datasheet (nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf): BF16/FP16 312
    # dense, TF32 156 dense, FP32 19.5; the same for SXM and PCIe, 40 GB and 80 GB.
    (r"a100", {"bf16": 312e12, "fp16": 312e12, "tf32": 156e12, "fp32": 19.5e12}),
    # NVIDIA L40S datasheet: BF16 362.05 dense (733 sparse), TF32 183 dense, FP32 91.6.
    (r"l40s", {"bf16": 362.05e12, "fp16": 362.05e12, "tf32": 183e12, "fp32": 91.6e12}),
    # NVIDIA L40 datasheet: BF16 181 dense (362 sparse), TF32 90.5 dense, FP32 90.5.
    (r"l40\b", {"bf16": 181e12, "fp16": 181e12, "tf32": 90.5e12, "fp32": 90.5e12}),
    # NVIDIA L4 datasheet: BF16 121 dense (242 sparse), TF32 60 dense, FP32 30.3.
    (r"\bl4\b", {"bf16": 121e12, "fp16": 121e12, "tf32": 60e12, "fp32": 30.3e12}),
    # NVIDIA A10 datasheet (a10-datasheet.pdf): BF16 125 dense (250 sparse), TF32 62.5 dense,
    # FP32 31.2. AWS publishes no separate A10G sheet; the A10 figures are used for it.
    (r"a10g?\b", {"bf16": 125e12, "fp16": 125e12, "tf32": 62.5e12, "fp32": 31.2e12}),
    # NVIDIA Ada GPU architecture whitepaper v2.1, GeForce RTX 4090: BF16/FP16 tensor with FP32
    # accumulate 165.2 dense (330.4 sparse), TF32 82.6 dense, FP32 82.6.
    (r"rtx 4090", {"bf16": 165.2e12, "fp16": 165.2e12, "tf32": 82.6e12, "fp32": 82.6e12}),
    # NVIDIA Ampere GA102 whitepaper, GeForce RTX 3090: BF16/FP16 tensor with FP32 accumulate 71
    # dense (142 sparse), TF32 35.6 dense, FP32 35.6.
    (r"rtx 3090", {"bf16": 71e12, "fp16": 71e12, "tf32": 35.6e12, "fp32": 35.6e12}),
    # NVIDIA V100 datasheet: tensor (FP16) 125 SXM2 / 112 PCIe / 130 V100S, FP32 15.7 / 14 /
    # 16.4. No BF16 or TF32 on Volta (a "bf16" request falls back to the FP16 tensor peak).
    (r"v100s", {"fp16": 130e12, "fp32": 16.4e12}),
    (r"v100.*pcie", {"fp16": 112e12, "fp32": 14e12}),
    (r"v100", {"fp16": 125e12, "fp32": 15.7e12}),
    # NVIDIA T4 datasheet: FP16 tensor 65, FP32 8.1.
    (r"\bt4\b", {"fp16": 65e12, "fp32": 8.1e12}),
]


def normalize_precision(precision: str) -> str:
    """``bf16``, ``fp16``, ``tf32`` or ``fp32`` from a precision name or a Lightning precision.

    ``"bf16-mixed"``/``"bf16-true"`` -> bf16, ``"16-mixed"``/``"fp16"`` -> fp16, ``"tf32"`` -> tf32,
    ``"32-true"``/``"32"``/``"fp32"`` -> fp32 (or tf32 when ``torch.get_float32_matmul_precision()``
    lets FP32 matrix products run on TF32 tensor cores).

    Raises:
        ValueError: an unknown precision (e.g. ``"64-true"``).
    """
    p = str(precision).lower()
    if "bf16" in p:
        return "bf16"
    if p == "tf32":
        return "tf32"
    if p in ("16", "16-mixed", "16-true", "fp16", "half", "float16"):
        return "fp16"
    if p in ("32", "32-true", "fp32", "float32", "float"):
        return "fp32" if torch.get_float32_matmul_precision() == "highest" else "tf32"
    raise ValueError(f"unknown precision {precision!r}: use bf16, fp16, tf32 or fp32")


def peak_flops_for_name(device_name: str, precision: str) -> float | None:
    """Dense peak FLOP/s of the GPU called ``device_name`` at ``precision``; None if unknown."""
    name = device_name.lower()
    kind = normalize_precision(precision)
    for pattern, peaks in _PEAKS:
        if re.search(pattern, name):
            if kind == "bf16" and "bf16" not in peaks:
                kind = "fp16"  # Volta/Turing: the half-precision tensor-core peak
            if kind == "tf32" and "tf32" not in peaks:
                kind = "fp32"
            return peaks.get(kind)
    return None


def peak_flops(device: torch.device, precision: str) -> float | None:
    """Dense peak FLOP/s of one ``device`` at ``precision`` (see :func:`normalize_precision`).

    None on a CPU (no MFU is reported there: CPU peaks depend on cores, clocks and vector units
    and are not a meaningful common yardstick) and on GPUs missing from the table.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return peak_flops_for_name(torch.cuda.get_device_name(device), precision)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this process: allocated CUDA memory on a GPU, peak RSS on a CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


# --------------------------------------------------------------------------------------------
# The callback
# --------------------------------------------------------------------------------------------

# Counters accumulated per rank and summed over ranks at log time: length sums on the device
# (reading them would synchronise), the rest on the host (known from the batch's shapes).
_DEVICE_COUNTERS = STATISTICS[1:]
_HOST_COUNTERS = ("sentences", "src_elements", "tgt_elements", "steps")
_COUNTERS = (*_DEVICE_COUNTERS, *_HOST_COUNTERS)


class ThroughputMonitor(pl.Callback):
    """Training throughput on non-padding tokens, padding ratio, step time, peak memory, MFU.

    Every ``log_every_n_steps`` counted batches it logs (via ``pl_module.log``, so to W&B; the
    loggers receive them at the trainer's own ``log_every_n_steps`` flushes, which repeat the last
    window's values until the next window replaces them):

    * ``train/src_tokens_per_sec``, ``train/tgt_tokens_per_sec``, ``train/tokens_per_sec``:
      non-padding tokens (``batch.n_src_tokens``, ``batch.n_tgt_tokens``) summed over all ranks,
      divided by the summed step time (the slowest rank's);
    * ``train/padding_ratio``: padding elements / all elements of ``src`` and ``tgt_out``;
    * ``train/step_time``: mean seconds per batch (``on_train_batch_start`` to
      ``on_train_batch_end``: forward, backward and, on the last batch of an accumulation, the
      optimizer step; data loading and validation are outside it);
    * ``train/peak_mem_gb``: peak memory in GiB (2^30 bytes), the largest over ranks:
      ``torch.cuda.max_memory_allocated`` on a GPU, the process's peak RSS on a CPU;
    * ``train/mfu`` (GPU with a known peak only): model FLOP/s from :func:`train_flops`, summed
      over ranks, divided by the peak FLOP/s of one device x the world size.

    The first ``warmup_steps`` batches (compilation, cuDNN autotuning, allocator growth) are not
    counted. Values are per window of ``log_every_n_steps`` batches; :meth:`summary` has the
    totals and means over all counted batches of the fit. With gradient accumulation each batch
    is one step here. Ranks exchange their counters with one sum and one max reduction per log
    window (all ranks run the same number of batches, so they reach them together); nothing is
    synchronised per batch except, on a GPU, the device itself for the timing.

    Args:
        warmup_steps: training batches at the start of the fit that are not counted.
        log_every_n_steps: counted batches per logged window.
        mfu_precision: the precision whose dense peak MFU is relative to: ``bf16`` (the
            project's convention: comparable across runs) or ``auto`` (the trainer's precision).
    """

    def __init__(
        self, warmup_steps: int = 10, log_every_n_steps: int = 10, mfu_precision: str = "bf16"
    ) -> None:
        super().__init__()
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if log_every_n_steps < 1:
            raise ValueError(f"log_every_n_steps must be >= 1, got {log_every_n_steps}")
        if mfu_precision != "auto":
            normalize_precision(mfu_precision)
        self.warmup_steps, self.log_every_n_steps = warmup_steps, log_every_n_steps
        self.mfu_precision = mfu_precision
        self._reset()

    def _reset(self) -> None:
        self._batches_seen = 0
        self._t0: float | None = None
        self._window: Tensor | None = None  # (len(_DEVICE_COUNTERS),) int64 on the device
        self._window_host = [0] * len(_HOST_COUNTERS)
        self._window_time = 0.0
        self._window_batches = 0  # the same on every rank: decides when all ranks reduce
        self._totals = torch.zeros(len(_COUNTERS), dtype=torch.float64)  # all ranks
        self._total_time = 0.0
        self._peak_mem = 0.0
        self._coefficients: list[float] | None = None
        self._peak: float | None = None
        self._device = torch.device("cpu")
        self._world_size = 1

    # -- hooks --------------------------------------------------------------------------------

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._reset()
        self._device = trainer.strategy.root_device  # the module may not be moved there yet
        self._world_size = trainer.world_size
        try:
            self._coefficients = _coefficients(flop_terms(pl_module))
        except TypeError:
            self._coefficients = None  # not an mt model: throughput without MFU
        precision = trainer.precision if self.mfu_precision == "auto" else self.mfu_precision
        try:
            self._peak = peak_flops(self._device, precision)  # None on a CPU: no MFU there
        except ValueError:
            self._peak = None  # e.g. "64-true": no tensor-core peak to compare with
        if self._peak is None and self._device.type == "cuda":
            rank_zero_warn(
                f"ThroughputMonitor: no peak FLOP/s known for "
                f"{torch.cuda.get_device_name(self._device)!r} at {precision}: train/mfu is "
                "not logged"
            )

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._batches_seen += 1
        if self._batches_seen <= self.warmup_steps:
            self._t0 = None
            return
        self._synchronize()
        self._t0 = time.perf_counter()

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self._t0 is None:
            return
        self._synchronize()
        self._window_time += time.perf_counter() - self._t0
        self._t0 = None
        self._count(batch)
        self._window_batches += 1
        if self._window_batches >= self.log_every_n_steps:
            metrics = self._flush(trainer)
            for name, value in metrics.items():
                pl_module.log(name, value, on_step=True, on_epoch=False, batch_size=1)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Fold a partial last window into the totals (every rank gets here: same collectives).
        if self._window is not None:
            self._flush(trainer)

    # -- counting -----------------------------------------------------------------------------

    def _synchronize(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    def _count(self, batch: Any) -> None:
        """Add one batch to the window's counters."""
        src, tgt = _batch_lengths(batch)
        sums = _length_sums(src, tgt)
        self._window = sums if self._window is None else self._window + sums
        host = (len(src), batch.src_pad_mask.numel(), batch.tgt_pad_mask.numel(), 1)
        self._window_host = [a + b for a, b in zip(self._window_host, host, strict=True)]

    def _flush(self, trainer: pl.Trainer) -> dict[str, float]:
        """Reduce the window over ranks, add it to the totals and return its metrics."""
        assert self._window is not None
        device = self._window.device
        host = torch.tensor(self._window_host, dtype=torch.int64, device=device)
        summed = trainer.strategy.reduce(torch.cat([self._window, host]), reduce_op="sum")
        mem = peak_memory_bytes(self._device) / 2**30
        maxed = torch.tensor([self._window_time, mem], dtype=torch.float64, device=device)
        maxed = trainer.strategy.reduce(maxed, reduce_op="max")
        counters = summed.double().cpu()
        seconds, mem = (float(v) for v in maxed.cpu())
        self._totals += counters
        self._total_time += seconds
        self._peak_mem = max(self._peak_mem, mem)
        self._window, self._window_time, self._window_batches = None, 0.0, 0
        self._window_host = [0] * len(_HOST_COUNTERS)
        return self._metrics(counters, seconds, mem)

    def _metrics(self, counters: Tensor, seconds: float, mem: float) -> dict[str, float]:
        """Logged metrics of counters summed over ranks and the slowest rank's time."""
        c = dict(zip(_COUNTERS, counters.tolist(), strict=True))
        seconds = max(seconds, 1e-12)
        elements = c["src_elements"] + c["tgt_elements"]
        steps_per_rank = c["steps"] / self._world_size
        metrics = {
            "train/src_tokens_per_sec": c["src"] / seconds,
            "train/tgt_tokens_per_sec": c["tgt"] / seconds,
            "train/tokens_per_sec": (c["src"] + c["tgt"]) / seconds,
            "train/padding_ratio": 1.0 - (c["src"] + c["tgt"]) / elements if elements else 0.0,
            "train/step_time": seconds / steps_per_rank if steps_per_rank else math.nan,
            "train/peak_mem_gb": mem,
        }
        flops = self._train_flops(c)
        if flops is not None and self._peak is not None:
            metrics["train/mfu"] = flops / seconds / (self._peak * self._world_size)
        return metrics

    def _train_flops(self, counters: dict[str, float]) -> float | None:
        """Training FLOPs of summed counters; None for a model without a formula."""
        if self._coefficients is None:
            return None
        stats = (counters[s] for s in STATISTICS)
        return TRAIN_FACTOR * sum(k * v for k, v in zip(self._coefficients, stats, strict=True))

    # -- results ------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Totals and means over all counted batches of the last fit (all ranks).

        Keys: ``steps`` (counted batches per rank), ``warmup_steps``, ``world_size``,
        ``src_tokens``, ``tgt_tokens``, ``tokens``, ``time_s`` (summed step time, slowest rank),
        ``src_tokens_per_sec``, ``tgt_tokens_per_sec``, ``tokens_per_sec``, ``padding_ratio``,
        ``step_time``, ``peak_mem_gb``, ``train_flops`` (None for a model without a formula),
        ``flops_per_sec``, ``peak_flops`` (one device; None on a CPU or an unknown GPU) and
        ``mfu`` (None where ``peak_flops`` is).
        """
        metrics = self._metrics(self._totals, self._total_time, self._peak_mem)
        c = dict(zip(_COUNTERS, self._totals.tolist(), strict=True))
        flops = self._train_flops(c)
        return {
            "steps": int(c["steps"]) // self._world_size,
            "warmup_steps": self.warmup_steps,
            "world_size": self._world_size,
            "src_tokens": int(c["src"]),
            "tgt_tokens": int(c["tgt"]),
            "tokens": int(c["src"] + c["tgt"]),
            "time_s": self._total_time,
            **{k.removeprefix("train/"): v for k, v in metrics.items() if k != "train/mfu"},
            "train_flops": flops,
            "flops_per_sec": None if flops is None else flops / max(self._total_time, 1e-12),
            "peak_flops": self._peak,
            "mfu": metrics.get("train/mfu"),
        }
