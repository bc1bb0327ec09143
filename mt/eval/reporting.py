"""Evaluation reports for the loggers: the :class:`EvalReport` Lightning callback.

:class:`EvalReport` runs at the end of every validation and test (not the sanity check) and
reports what the scalar ``val/bleu`` hides:

* to **every** logger (W&B, CSV, ...): ``{split}/bleu_len_{bucket}`` (BLEU per source-length
  bucket, e.g. ``val/bleu_len_1-10``, ``val/bleu_len_51+``), ``val/attention_entropy`` /
  ``val/attention_same_argmax`` (:func:`mt.eval.attention.attention_health`) and, during
  ``fit``, ``train/wall_s`` and ``train/tgt_tokens_seen`` (from its base class
  :class:`mt.eval.progress.TrainingProgress`);
* to every :class:`~lightning.pytorch.loggers.WandbLogger` only: a table of scores per bucket
  with sentence counts and bootstrap 95% intervals (``{split}/bleu_by_length``), a table of
  sample translations for fixed lines (``{split}/samples``), cross-attention heatmaps of a few
  fixed validation sentences (``val/attention/line{index}``, :mod:`mt.eval.attention`), the
  sacreBLEU signatures (once, in the run config and summary) and the resolved LightningCLI
  config (``config.yaml`` in ``trainer.log_dir``, once, under the ``cli`` key of the run config).

Why one callback and not one per report: the configs (base.yaml, the synthetic and study
configs) name ``mt.eval.reporting.EvalReport`` with its options, and checkpoints carry the
progress counters under its state key, so a resumed run keeps its wall-clock. The pieces with a
job of their own live in their own modules (the counters in :mod:`mt.eval.progress`, the
attention maps in :mod:`mt.eval.attention`); what stays here is the report of one evaluation,
whose parts share the source lines, the logging step and the W&B loggers.

Lightning calls a callback's ``on_validation_epoch_end`` *before* the module's, which is where
:class:`mt.models.module.Seq2SeqModule` sets ``last_eval``; so the report itself runs in
``on_validation_end`` and ``on_test_end``, where ``self.log`` is not allowed: the bucket scalars
go to the loggers with ``logger.log_metrics`` at the step Lightning used for the epoch's metrics
(they are not in ``trainer.callback_metrics``, so ``ModelCheckpoint`` cannot monitor them).
Only rank zero reports; the heatmaps run the unwrapped module on its device (fine for DDP; a
sharded strategy such as FSDP would need a gathered copy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from mt.eval.attention import (
    AttentionHealth,
    AttentionMap,
    _figure_rgb,
    attention_figure,
    attention_health,
    attention_map,
    pick_lines,
)
from mt.eval.evaluation import DEFAULT_EDGES, DEFAULT_SEED, BucketScore, length_buckets
from mt.eval.progress import TrainingProgress

__all__ = [
    "AttentionHealth",
    "AttentionMap",
    "EvalReport",
    "TrainingProgress",
    "attention_figure",
    "attention_health",
    "attention_map",
    "pick_lines",
]


def _none_if_nan(x: float) -> float | None:
    return None if isinstance(x, float) and math.isnan(x) else x


# --------------------------------------------------------------------------------------------
# The callback
# --------------------------------------------------------------------------------------------


class EvalReport(TrainingProgress):
    """Per-length-bucket BLEU, sample translations, attention heatmaps and the config, to W&B;
    and, as its base :class:`~mt.eval.progress.TrainingProgress`, the training progress counters.

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
        self._config_logged = False
        self._signature_logged = False
        self._warned: set[str] = set()

    # -- hooks (the progress counters' are TrainingProgress's) ------------------------------

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        self._log_config_once(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_config_once(trainer)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_config_once(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report(trainer, pl_module, "val")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report(trainer, pl_module, "test")

    # -- reporting ------------------------------------------------------------------------------

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            rank_zero_warn(f"EvalReport: {message}")

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
