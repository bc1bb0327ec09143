"""Evaluation reports for the loggers: a Lightning callback plus attention heatmaps.

:class:`EvalReport` runs at the end of every validation and test (not the sanity check) and
reports what the scalar ``val/bleu`` hides:

* to **every** logger (W&B, CSV, ...): ``{split}/bleu_len_{bucket}`` (BLEU per source-length
  bucket, e.g. ``val/bleu_len_1-10``, ``val/bleu_len_51+``) and, during ``fit``,
  ``train/wall_s`` (wall-clock seconds since the fit started, carried over a resume) and
  ``train/tgt_tokens_seen`` (non-padding training target tokens so far, all ranks), so that
  validation BLEU can be plotted against time and data (``scripts/compare.py`` does), and
  ``val/attention_entropy`` / ``val/attention_same_argmax`` (:func:`attention_health`);
* to every :class:`~lightning.pytorch.loggers.WandbLogger` only: a table of scores per bucket
  with sentence counts and bootstrap 95% intervals (``{split}/bleu_by_length``), a table of
  sample translations for fixed lines (``{split}/samples``), cross-attention heatmaps of a few
  fixed validation sentences (``val/attention/line{index}``), the sacreBLEU signatures (once, in the run
  config and summary) and the resolved LightningCLI config (``config.yaml`` in
  ``trainer.log_dir``, once, under the ``cli`` key of the run config).

``train/wall_s`` and ``train/tgt_tokens_seen`` are logged with ``pl_module.log`` in
``on_validation_epoch_end``, so they land in the same logger row (step) as ``val/bleu``.
Lightning calls a callback's ``on_validation_epoch_end`` *before* the module's, which is where
:class:`mt.models.module.Seq2SeqModule` sets ``last_eval``; so the report itself runs in
``on_validation_end`` and ``on_test_end``, where ``self.log`` is not allowed: the bucket scalars
go to the loggers with ``logger.log_metrics`` at the step Lightning used for the epoch's metrics
(they are not in ``trainer.callback_metrics``, so ``ModelCheckpoint`` cannot monitor them).

Attention heatmaps (:func:`attention_map`) decode a sentence greedily and record, per output
token, the weights over the source subwords: for :class:`mt.models.lstm.LSTMSeq2Seq` the weights its
``decode_step`` returns in ``state.attention``; for :class:`mt.models.transformer.TransformerSeq2Seq`,
whose attention runs inside ``F.scaled_dot_product_attention`` and returns no weights, a forward
hook on the last decoder layer's cross-attention recomputes ``softmax(q k^T / sqrt(d_head))``
from the layer's own inputs (the same formula and mask as SDPA) and averages the heads. Models
with neither give no heatmap. Only rank zero reports; the heatmaps run the unwrapped module on
its device (fine for DDP; a sharded strategy such as FSDP would need a gathered copy).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn

from mt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer
from mt.eval.evaluation import DEFAULT_EDGES, DEFAULT_SEED, BucketScore, length_buckets

__all__ = [
    "AttentionHealth",
    "AttentionMap",
    "EvalReport",
    "attention_figure",
    "attention_health",
    "attention_map",
    "pick_lines",
]


# --------------------------------------------------------------------------------------------
# Attention maps
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttentionMap:
    """Cross-attention of one greedily decoded sentence.

    Attributes:
        source_tokens: the source subwords as text, then ``</s>`` (S entries).
        output_tokens: the generated subwords as text, ``</s>`` last if generated (T entries).
        weights: (T, S) float array; row t is output token t's attention over the source (sums
            to 1).
        kind: where the weights come from, e.g. ``"LSTM attention"``.
    """

    source_tokens: list[str]
    output_tokens: list[str]
    weights: np.ndarray
    kind: str


def _label(text: str) -> str:
    """A tick label: ``▁`` for a bare word boundary, ``<0x04>`` for a control character (a
    byte-fallback piece), the text otherwise."""
    if not text:
        return "▁"
    return "".join(c if c.isprintable() else f"<0x{ord(c):02X}>" for c in text)


def _piece_texts(tokenizer: Tokenizer, ids: Sequence[int]) -> list[str]:
    """Each id as its own detokenized text (``</s>`` for EOS; see :func:`_label`)."""
    texts = tokenizer.decode([[i] for i in ids]) if ids else []
    return ["</s>" if i == EOS_ID else _label(t) for i, t in zip(ids, texts, strict=True)]


def _cross_attention_hook(model: nn.Module) -> tuple[nn.Module | None, list[Tensor]]:
    """The last Transformer cross-attention module of ``model`` (None if it has none) and the
    list its hook writes head-averaged weights (B, T, S) into."""
    from mt.models.transformer import CrossAttention

    modules = [m for m in model.modules() if isinstance(m, CrossAttention)]
    return (modules[-1] if modules else None), []


def _transformer_weights(module: nn.Module, args: tuple[Any, ...]) -> Tensor:
    """Recompute SDPA's weights from the inputs of ``CrossAttention.forward(x, memory_kv,
    memory_mask[, group])``: softmax(q k^T / sqrt(Dh)) with the boolean mask (True = attend),
    the ``group`` rows of a memory row attended together as there, head mean -> (B, T, S)."""
    x, memory_kv, memory_mask = args[:3]
    group = args[3] if len(args) > 3 else 1
    batch, length, _ = x.shape
    q = module.queries(x, group)  # (M, H, group * T, Dh)
    keys = memory_kv[0]  # (M, H, S, Dh)
    scores = q @ keys.transpose(-2, -1) / math.sqrt(q.size(-1))  # (M, H, group * T, S)
    scores = scores.float().masked_fill(~memory_mask, float("-inf"))
    weights = scores.softmax(dim=-1).mean(dim=1)  # (M, group * T, S)
    return weights.view(batch, length, -1)  # (B, T, S)


@torch.no_grad()
def attention_map(
    model: nn.Module, tokenizer: Tokenizer, line: str, max_len: int | None = None
) -> AttentionMap | None:
    """Greedy-decode ``line`` and record the cross-attention of every output token.

    Returns None when ``model`` exposes no attention weights (see the module docstring) or the
    line is empty. ``max_len`` caps the output (default: the model's ``max_len_a * S +
    max_len_b``). The model is put in eval mode for the call and restored afterwards.
    """
    ids = tokenizer.encode([line.strip()])[0] if line.strip() else []
    if not ids:
        return None
    src_ids = [*ids, EOS_ID]
    device = next(model.parameters()).device
    src = torch.tensor([src_ids], dtype=torch.long, device=device)  # (1, S)
    src_pad_mask = torch.zeros_like(src, dtype=torch.bool)  # (1, S)
    if max_len is None:
        a, b = float(getattr(model, "max_len_a", 1.2)), float(getattr(model, "max_len_b", 10))
        max_len = max(1, int(a * len(src_ids) + b))

    cross, captured = _cross_attention_hook(model)
    handle = None
    if cross is not None:
        handle = cross.register_forward_hook(
            lambda module, args, output: captured.append(_transformer_weights(module, args))
        )
    was_training = model.training
    model.eval()
    try:
        state = model.encode(src, src_pad_mask)
        prev = torch.tensor([BOS_ID], dtype=torch.long, device=device)
        rows: list[Tensor] = []
        out: list[int] = []
        kind = ""
        for _ in range(max_len):
            captured.clear()
            log_probs, state = model.decode_step(prev, state)  # (1, V)
            lstm_weights = getattr(state, "attention", None)
            if lstm_weights is not None:
                rows.append(lstm_weights[0].float())  # (S,)
                kind = "decoder attention weights"
            elif captured:
                rows.append(captured[-1][0, -1])  # (S,)
                kind = "last decoder layer's cross-attention, mean over heads"
            else:
                return None
            log_probs = log_probs.float().clone()
            log_probs[:, PAD_ID] = float("-inf")
            log_probs[:, BOS_ID] = float("-inf")
            token = int(log_probs.argmax(dim=-1))
            out.append(token)
            if token == EOS_ID:
                break
            prev = torch.tensor([token], dtype=torch.long, device=device)
    finally:
        if handle is not None:
            handle.remove()
        model.train(was_training)
    weights = torch.stack(rows).cpu().numpy()  # (T, S)
    return AttentionMap(
        _piece_texts(tokenizer, src_ids), _piece_texts(tokenizer, out), weights, kind
    )


@dataclass(frozen=True)
class AttentionHealth:
    """Whether cross-attention looks along the source or has collapsed onto one position.

    Attributes:
        entropy: mean over output tokens of H(a_t) / log S: 1 is uniform over the source, 0 all
            weight on one position. A collapsed model sits near 0 *and* has ``same_argmax`` near 1.
        same_argmax: share of output tokens (after the first) whose most-attended source
            position is the previous token's: near 1 when attention stays on one position for the
            whole output, lower when it moves along the source as the translation proceeds.
        sentences: sentences measured (sources of one subword are skipped).
        steps: output tokens measured.
    """

    entropy: float
    same_argmax: float
    sentences: int
    steps: int


def attention_health(
    model: nn.Module, tokenizer: Tokenizer, lines: Sequence[str]
) -> AttentionHealth | None:
    """:class:`AttentionHealth` of greedy translations of ``lines`` (see :func:`attention_map`:
    the LSTM's weights, or the Transformer's last-layer cross-attention averaged over heads).

    Sources of one subword (two positions with EOS) are skipped: they can only look at the word
    or at EOS. None when the model exposes no attention weights or no source is longer.
    """
    entropy_sum, same, moves, sentences, steps = 0.0, 0, 0, 0, 0
    for line in lines:
        amap = attention_map(model, tokenizer, line)
        if amap is None or amap.weights.shape[1] < 3:
            continue
        w = amap.weights.astype(np.float64)  # (T, S)
        ent = -(w * np.log(np.clip(w, 1e-12, None))).sum(axis=1) / math.log(w.shape[1])
        argmax = w.argmax(axis=1)
        entropy_sum += float(ent.sum())
        same += int((argmax[1:] == argmax[:-1]).sum())
        moves += len(argmax) - 1
        sentences += 1
        steps += len(argmax)
    if not sentences:
        return None
    return AttentionHealth(
        entropy=entropy_sum / steps,
        same_argmax=same / moves if moves else float("nan"),
        sentences=sentences,
        steps=steps,
    )


def attention_figure(amap: AttentionMap, title: str) -> Any:
    """A matplotlib ``Figure`` (Agg canvas, no pyplot state) of the heatmap, with labels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_out, n_src = amap.weights.shape
    fig = Figure(figsize=(min(18.0, 2.5 + 0.28 * n_src), min(18.0, 2.0 + 0.28 * n_out)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(amap.weights, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n_src), amap.source_tokens, rotation=90, fontsize=8)
    ax.set_yticks(range(n_out), amap.output_tokens, fontsize=8)
    ax.set_xlabel("source subwords")
    ax.set_ylabel("output subwords (greedy)")
    ax.set_title(f"{title}\n{amap.kind}", fontsize=10)
    fig.colorbar(image, ax=ax, label="attention weight", fraction=0.04)
    fig.tight_layout()
    return fig


def _figure_rgb(fig: Any) -> np.ndarray:
    """Render a figure to an (H, W, 3) uint8 array."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


# --------------------------------------------------------------------------------------------
# Fixed lines
# --------------------------------------------------------------------------------------------


def pick_lines(lengths: Sequence[int], n: int) -> list[int]:
    """``n`` line indices spread evenly over the range of ``lengths`` (shortest to longest).

    Lines are ordered by (length, index) and the ones at evenly spaced ranks are taken; the
    result is sorted and depends only on ``lengths``, so the same lines come back every epoch.
    """
    if n <= 0 or not lengths:
        return []
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    if n >= len(order):
        return sorted(order)
    if n == 1:
        return [order[len(order) // 2]]
    ranks = {round(j * (len(order) - 1) / (n - 1)) for j in range(n)}
    return sorted(order[r] for r in ranks)


def _none_if_nan(x: float) -> float | None:
    return None if isinstance(x, float) and math.isnan(x) else x


# --------------------------------------------------------------------------------------------
# The callback
# --------------------------------------------------------------------------------------------


class EvalReport(pl.Callback):
    """Per-length-bucket BLEU, sample translations, attention heatmaps and the config, to W&B.

    See the module docstring for what is logged where. With no W&B logger only the scalars are
    logged (to the other loggers); with no logger at all the callback does nothing visible.

    Args:
        n_samples: lines of the sample-translation table (fixed, spread over source lengths).
        n_attention: sentences with an attention heatmap (fixed; 0 disables heatmaps).
        bucket_edges: inclusive upper bounds of the source-length buckets, in words.
        n_bootstrap: bootstrap resamples for the buckets' 95% intervals (0: no intervals).
        seed: bootstrap seed.
        attention_max_words: heatmap sentences are chosen among sources of at most this many
            words, so that the labels stay readable.
        log_config: send the resolved LightningCLI config (``config.yaml``) to W&B.
        n_health: validation lines (fixed, spread over source lengths) whose greedy translation
            gives ``val/attention_entropy`` and ``val/attention_same_argmax``
            (:func:`attention_health`), logged to every logger; 0 disables them.
    """

    def __init__(
        self,
        n_samples: int = 8,
        n_attention: int = 3,
        bucket_edges: Sequence[int] = DEFAULT_EDGES,
        n_bootstrap: int = 200,
        seed: int = DEFAULT_SEED,
        attention_max_words: int = 30,
        log_config: bool = True,
        n_health: int = 32,
    ) -> None:
        super().__init__()
        if min(n_samples, n_attention, n_bootstrap, n_health) < 0:
            raise ValueError("n_samples, n_attention, n_bootstrap and n_health must be >= 0")
        if attention_max_words < 1:
            raise ValueError(f"attention_max_words must be >= 1, got {attention_max_words}")
        self.n_samples, self.n_attention, self.n_health = n_samples, n_attention, n_health
        self.bucket_edges = [int(e) for e in bucket_edges]
        length_buckets([], [], [], self.bucket_edges, n_bootstrap=0)  # validates the edges
        self.n_bootstrap, self.seed = n_bootstrap, seed
        self.attention_max_words, self.log_config = attention_max_words, log_config
        self._t0: float | None = None
        self._elapsed_before = 0.0  # seconds of earlier (resumed-from) fits
        self._tokens_before = 0  # target tokens counted up to the last validation, all ranks
        self._tokens: Tensor | None = None  # this rank's count since then, on the device
        self._config_logged = False
        self._signature_logged = False
        self._warned: set[str] = set()

    # -- state carried over a resume ----------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Wall-clock seconds and target tokens so far (tokens as of the last validation)."""
        return {"wall_s": self._elapsed(), "tgt_tokens_seen": self._tokens_before}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._elapsed_before = float(state_dict.get("wall_s", 0.0))
        self._tokens_before = int(state_dict.get("tgt_tokens_seen", 0))

    def _elapsed(self) -> float:
        running = 0.0 if self._t0 is None else time.perf_counter() - self._t0
        return self._elapsed_before + running

    # -- hooks ----------------------------------------------------------------------------------

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.perf_counter()
        self._tokens = None
        self._log_config_once(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._elapsed_before, self._t0 = self._elapsed(), None

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_config_once(trainer)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_config_once(trainer)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        mask = getattr(batch, "tgt_pad_mask", None)
        if mask is None:
            return
        count = (~mask).sum(dtype=torch.int64)  # on the device: no synchronisation
        self._tokens = count if self._tokens is None else self._tokens + count

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        for name, value in self._training_progress(trainer, pl_module).items():
            # identical on every rank (tokens are summed; rank zero's clock is the one logged)
            pl_module.log(
                name, value, on_step=False, on_epoch=True, batch_size=1, rank_zero_only=True
            )

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report(trainer, pl_module, "val")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report(trainer, pl_module, "test")

    # -- reporting ------------------------------------------------------------------------------

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            rank_zero_warn(f"EvalReport: {message}")

    def _training_progress(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> dict[str, float]:
        """``train/wall_s`` and ``train/tgt_tokens_seen`` (one sum over ranks; all ranks call)."""
        local = self._tokens if self._tokens is not None else torch.zeros((), dtype=torch.int64)
        local = local.to(pl_module.device)
        total = trainer.strategy.reduce(local.clone(), reduce_op="sum")
        self._tokens_before += int(total)
        self._tokens = None
        return {"train/wall_s": self._elapsed(), "train/tgt_tokens_seen": self._tokens_before}

    @staticmethod
    def _logging_step(trainer: pl.Trainer) -> int:
        """The step Lightning logs epoch-end metrics at (``_LoggerConnector.log_metrics``: the
        fit loop's optimizer-step count, which may differ from ``global_step`` by one at a
        validation inside an epoch), so the bucket scalars share ``val/bleu``'s row."""
        loop = getattr(trainer.fit_loop, "epoch_loop", None)
        step = getattr(loop, "_batches_that_stepped", None)
        return int(step) if isinstance(step, int) else trainer.global_step

    def _report(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> None:
        if trainer.sanity_checking:
            return
        if not trainer.is_global_zero:
            return
        metrics: dict[str, float] = {}
        step = self._logging_step(trainer)
        last = getattr(pl_module, "last_eval", None)
        if not isinstance(last, dict) or last.get("split") != split:
            self._warn_once("no-eval", f"the model has no `last_eval` for {split!r}: no report")
            self._log_metrics(trainer, metrics, step)
            return
        hyps, refs, scores = list(last["hyps"]), list(last["refs"]), last["scores"]
        sources = self._sources(trainer, split, last.get("indices"), len(hyps))
        buckets: list[BucketScore] = []
        if sources is not None:
            buckets = length_buckets(
                sources,
                hyps,
                refs,
                self.bucket_edges,
                n_bootstrap=self.n_bootstrap,
                seed=self.seed,
            )
            metrics.update({f"{split}/bleu_len_{b.label}": b.bleu for b in buckets if b.n})
            tokenizer = getattr(pl_module, "tokenizer", None)
            if split == "val" and self.n_health and tokenizer is not None:
                lines = pick_lines([len(line.split()) for line in sources], self.n_health)
                health = attention_health(pl_module, tokenizer, [sources[i] for i in lines])
                if health is not None:
                    metrics[f"{split}/attention_entropy"] = health.entropy
                    if not math.isnan(health.same_argmax):  # NaN: every output one token long
                        metrics[f"{split}/attention_same_argmax"] = health.same_argmax
        self._log_metrics(trainer, metrics, step)

        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not wandb_loggers:
            return
        tables: dict[str, tuple[list[str], list[list[Any]]]] = {}
        if buckets:
            tables[f"{split}/bleu_by_length"] = (
                [
                    "bucket",
                    "n",
                    "bleu",
                    "bleu_ci_low",
                    "bleu_ci_high",
                    "chrf",
                    "chrf_ci_low",
                    "chrf_ci_high",
                ],
                [
                    [
                        b.label,
                        b.n,
                        _none_if_nan(b.bleu),
                        _none_if_nan(b.bleu_ci[0]),
                        _none_if_nan(b.bleu_ci[1]),
                        _none_if_nan(b.chrf),
                        _none_if_nan(b.chrf_ci[0]),
                        _none_if_nan(b.chrf_ci[1]),
                    ]
                    for b in buckets
                ],
            )
        if sources is not None and self.n_samples:
            lines = pick_lines([len(s.split()) for s in sources], self.n_samples)
            tables[f"{split}/samples"] = (
                ["index", "source", "hypothesis", "reference"],
                [[i, sources[i], hyps[i], refs[i]] for i in lines],
            )
        heatmaps = self._attention_images(pl_module, sources, split)
        for logger in wandb_loggers:
            for key, (columns, data) in tables.items():
                logger.log_table(key=key, columns=columns, data=data, step=step)
            for index, image, caption in heatmaps:  # one key per line: a slider over steps
                logger.log_image(
                    key=f"{split}/attention/line{index}", images=[image], step=step,
                    caption=[caption],
                )  # fmt: skip
            if not self._signature_logged:
                signatures = {
                    "sacrebleu/bleu_signature": f"BLEU|{scores.bleu_signature}",
                    "sacrebleu/chrf_signature": f"{scores.chrf_name}|{scores.chrf_signature}",
                }
                logger.experiment.config.update(signatures, allow_val_change=True)
                logger.experiment.summary.update(signatures)
        self._signature_logged = True

    @staticmethod
    def _log_metrics(trainer: pl.Trainer, metrics: dict[str, float], step: int) -> None:
        if metrics:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)

    def _sources(
        self, trainer: pl.Trainer, split: str, indices: list[int] | None, n: int
    ) -> list[str] | None:
        """The source lines of the evaluated rows (``indices`` are their line numbers), or None
        (with a warning) if they cannot be matched."""
        datamodule = getattr(trainer, "datamodule", None)
        get = getattr(datamodule, "source_lines", None)
        if get is None:
            self._warn_once("no-src", "the data module has no source_lines(): no length buckets")
            return None
        sources = list(get(split))
        if indices is not None and len(indices) == n:
            return [sources[i] for i in indices]
        if len(sources) != n:
            self._warn_once(
                f"count-{split}",
                f"{split}: {n} hypotheses but {len(sources)} source lines and no line indices:"
                " cannot align them, no length buckets, samples or heatmaps",
            )
            return None
        return sources

    def _attention_images(
        self, pl_module: pl.LightningModule, sources: list[str] | None, split: str
    ) -> list[tuple[int, np.ndarray, str]]:
        """``(line index, heatmap image, caption)`` of the fixed lines (validation only)."""
        if split != "val" or sources is None or not self.n_attention:
            return []
        tokenizer = getattr(pl_module, "tokenizer", None)
        if tokenizer is None or not hasattr(pl_module, "decode_step"):
            return []
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            self._warn_once("mpl", "matplotlib is not installed: no attention heatmaps")
            return []
        lengths = [len(s.split()) for s in sources]
        candidates = [i for i, n in enumerate(lengths) if 0 < n <= self.attention_max_words]
        picked = pick_lines([lengths[i] for i in candidates], self.n_attention)
        heatmaps = []
        for rank in picked:
            index = candidates[rank]
            amap = attention_map(pl_module, tokenizer, sources[index])
            if amap is None:
                if "no-attention" not in self._warned:
                    self._warned.add("no-attention")
                    rank_zero_info(
                        f"EvalReport: {type(pl_module).__name__} exposes no attention weights: "
                        "no heatmaps"
                    )
                return []
            title = f"{type(pl_module).__name__}, {split} line {index}"
            image = _figure_rgb(attention_figure(amap, title))
            heatmaps.append((index, image, f"line {index}: {sources[index]}"))
        return heatmaps

    def _log_config_once(self, trainer: pl.Trainer) -> None:
        """Send ``{trainer.log_dir}/config.yaml`` (saved by LightningCLI) to the W&B run config."""
        if self._config_logged or not self.log_config:
            return
        self._config_logged = True
        if not any(isinstance(lg, WandbLogger) for lg in trainer.loggers):
            return
        log_dir = trainer.log_dir  # broadcasts: every rank must get here
        if not trainer.is_global_zero or log_dir is None:
            return
        path = Path(log_dir) / "config.yaml"
        if not path.is_file():
            return  # not run through LightningCLI
        import yaml

        try:
            config = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as err:
            self._warn_once("config", f"cannot read {path}: {err}")
            return
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.config.update({"cli": config}, allow_val_change=True)
