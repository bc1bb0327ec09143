"""Test-only callbacks that `mt` subprocesses load by class path (``helpers_ddp.X``).

The tests put this folder on ``PYTHONPATH``; each DDP rank writes its own files, so no two
processes write the same file.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl


class BatchRecorder(pl.Callback):
    """Append one JSON line per training batch to ``{out_dir}/batches-rank{R}.jsonl``.

    A line holds the epoch, the global step after the batch, the batch index in the epoch, the
    corpus line indices of the batch, its loss and the wall time. With ``kill_at_step`` the process SIGKILLs
    itself at the start of the batch that would make that global step (nothing is saved).

    Args:
        out_dir: folder for the records.
        kill_at_step: global step at whose start to die, or None.
    """

    def __init__(self, out_dir: str, kill_at_step: int | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.kill_at_step = kill_at_step

    def _file(self, trainer: pl.Trainer, name: str) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return self.out_dir / f"{name}-rank{trainer.global_rank}.jsonl"

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.kill_at_step is not None and trainer.global_step + 1 == self.kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        record = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "batch_idx": batch_idx,
            "indices": batch.indices.tolist(),
            "loss": float(outputs["loss"]),
            "time": time.time(),
        }
        with open(self._file(trainer, "batches"), "a") as f:
            f.write(json.dumps(record) + "\n")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        last = getattr(pl_module, "last_eval", {})
        record = {
            "step": trainer.global_step,
            "world_size": trainer.world_size,
            "metrics": {
                k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")
            },
            "hyps": last.get("hyps"),
            "refs": last.get("refs"),
        }
        with open(self._file(trainer, "val"), "a") as f:
            f.write(json.dumps(record) + "\n")


def read_records(out_dir: Path, name: str, rank: int) -> list[dict[str, Any]]:
    """The records a BatchRecorder wrote for one rank, in order."""
    path = out_dir / f"{name}-rank{rank}.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
