"""Training progress at each validation: wall-clock seconds and target tokens seen.

:class:`TrainingProgress` logs, at every validation during ``fit`` (not the sanity check),
``train/wall_s`` (wall-clock seconds since the fit started, carried over a resume) and
``train/tgt_tokens_seen`` (non-padding training target tokens so far, summed over all ranks), so
that validation BLEU can be plotted against time and data (``mt compare`` does). Both are logged
with ``pl_module.log`` in ``on_validation_epoch_end`` and so land in the same logger row (step)
as ``val/bleu``. The counts are kept in the callback's state, so a resumed run continues them.

:class:`mt.eval.reporting.EvalReport` is this callback plus the evaluation reports; a config
that wants only the counters can name this class.
"""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

__all__ = ["TrainingProgress"]


class TrainingProgress(pl.Callback):
    """Logs ``train/wall_s`` and ``train/tgt_tokens_seen`` at each validation of a fit."""

    def __init__(self) -> None:
        super().__init__()
        self._t0: float | None = None
        self._elapsed_before = 0.0  # seconds of earlier (resumed-from) fits
        self._tokens_before = 0  # target tokens counted up to the last validation, all ranks
        self._tokens: Tensor | None = None  # this rank's count since then, on the device

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

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._elapsed_before, self._t0 = self._elapsed(), None

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
