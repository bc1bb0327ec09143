"""What a run needs to survive a cluster: atomic checkpoints, exact resume, clear errors.

Three pieces, all installed by ``mt.cli`` on every run (see docs/cluster.md):

* :class:`AtomicCheckpointIO` writes every checkpoint (``ModelCheckpoint``, ``last.ckpt``, the
  ``hpc_ckpt_N.ckpt`` of a SLURM requeue) to a temporary file *in the same directory*, fsyncs it and
  renames it into place, so a job killed while saving leaves the previous file intact. Lightning's
  own save (``fsspec`` transaction) writes to the system temporary directory and *moves* the file,
  which is a copy, not an atomic rename, when ``/tmp`` is on another filesystem than the run
  directory (the usual case on a cluster: node-local ``/tmp``, shared run directory). Loading reports
  an unreadable file as a :class:`~mt.models.module.CheckpointError` naming it.
* :class:`StepSeededRNG` makes the random numbers of every training batch (dropout) a function of
  ``(seed, rank, epoch, batch index)``: torch (CPU and CUDA), numpy and ``random`` are re-seeded at
  the start of every batch. A resumed run therefore draws exactly the random numbers the
  uninterrupted run would have drawn, on every rank, whatever happened in between (validation,
  data-loader start-up, a checkpoint written from a signal handler) and without gathering per-rank
  generator states into the checkpoint (which rank 0 alone writes). Only the base seed is saved.
* :func:`check_checkpoint_file` / :func:`latest_checkpoint`: the CLI validates ``--ckpt_path``
  before anything starts, and resolves ``last`` to the newest of the ``last*.ckpt`` files and
  SLURM's ``hpc_ckpt_N.ckpt`` files.

The position inside the epoch is the data module's business (``TranslationDataModule.state_dict``).
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException
from typing_extensions import override

from mt.atomic import atomic_write
from mt.models.module import CheckpointError, unreadable_checkpoint

# --------------------------------------------------------------------------------------------
# Checkpoint files
# --------------------------------------------------------------------------------------------


def _is_local(path: str | os.PathLike) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


def _local(path: str | os.PathLike) -> Path:
    text = str(path)
    return Path(text[len("file://") :] if text.startswith("file://") else text)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` through :func:`mt.atomic.atomic_write` (a temporary file in the
    same directory, fsynced, then renamed): readers see either the old file or the complete new
    one, never a partial file. The file gets the umask's permissions, like any other output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


def check_checkpoint_file(path: str | os.PathLike, verify_crc: bool = True) -> None:
    """Check that ``path`` is a complete checkpoint archive, without deserializing it.

    ``torch.save`` writes a zip archive whose directory is at the end of the file, so a truncated
    file has none; with ``verify_crc`` the CRC of every member is checked as well (reads the file).

    Raises:
        CheckpointError: one line naming the file and what is wrong with it.
    """
    p = _local(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file")
    size = p.stat().st_size
    try:
        with zipfile.ZipFile(p) as archive:
            bad = archive.testzip() if verify_crc else None
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise CheckpointError(
            f"{p}: not a readable checkpoint ({size} bytes; truncated or corrupt: {err})"
        ) from None
    if bad is not None:
        raise CheckpointError(f"{p}: corrupt checkpoint (member {bad} fails its CRC check)")


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with atomic local writes and clear errors for unreadable files.

    Remote paths (``s3://``, ...) keep Lightning's fsspec path, where object stores make a write
    visible only once complete.
    """

    @override
    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_torch_save(checkpoint, _local(path))

    @override
    def load_checkpoint(
        self,
        path: str | os.PathLike,
        map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        if _is_local(path):
            check_checkpoint_file(path, verify_crc=False)
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        except FileNotFoundError:
            raise CheckpointError(f"{path}: no such checkpoint file") from None
        except CheckpointError:
            raise
        except Exception as err:
            if not get_filesystem(path).exists(path):
                raise
            raise unreadable_checkpoint(path, err) from err


def install_atomic_checkpoint_io(trainer: pl.Trainer) -> bool:
    """Use :class:`AtomicCheckpointIO` where the strategy uses the plain ``TorchCheckpointIO``.

    Strategies with their own format (FSDP, DeepSpeed) or a user-configured plugin are left alone.
    Returns whether it was installed.
    """
    strategy = trainer.strategy
    if type(strategy.checkpoint_io) is not TorchCheckpointIO:
        return False
    strategy.checkpoint_io = AtomicCheckpointIO()
    return True


def latest_checkpoint(trainer: pl.Trainer) -> str | None:
    """What ``--ckpt_path last`` should resume from: the newest complete candidate, or None.

    Candidates are Lightning's (every ``ModelCheckpoint``'s ``last*.ckpt`` and the
    ``OnExceptionCheckpoint`` file) plus the ``hpc_ckpt_N.ckpt`` files that Lightning's SLURM
    auto-requeue writes into ``default_root_dir`` when the job is about to be stopped; Lightning
    itself only looks at the latter when no ``ckpt_path`` is given. Among equally new files the
    path decides, so every rank picks the same one.
    """
    candidates: set[str] = set()
    for cb in trainer.callbacks:
        if isinstance(cb, ModelCheckpoint):
            candidates |= {str(p) for p in cb._find_last_checkpoints(trainer)}
        elif isinstance(cb, OnExceptionCheckpoint):
            candidates.add(str(cb.ckpt_path))
    root = trainer.default_root_dir
    if _is_local(root) and _local(root).is_dir():
        candidates |= {str(p) for p in _local(root).glob("hpc_ckpt_*.ckpt")}
    existing = [(Path(p).stat().st_mtime, p) for p in candidates if _is_local(p) and Path(p).is_file()]
    return max(existing)[1] if existing else None


class CheckpointOnSigterm(pl.Callback):
    """Save a checkpoint when a fit is stopped by SIGTERM (``kill``, a scheduler's time limit).

    Lightning turns SIGTERM into a ``SIGTERMException`` at the next safe point of its loops; that
    exception is a ``SystemExit`` with status 0, so without this callback the run ends as if it
    had succeeded, with nothing saved since the last checkpoint. This callback saves one where
    ``--ckpt_path last`` finds it (``last.ckpt`` in the first ``ModelCheckpoint``'s folder, else
    ``hpc_ckpt_N.ckpt`` in ``default_root_dir``) and says so in one line; ``mt`` then exits with
    status 143 (128 + SIGTERM). Under SLURM auto-requeue, SIGUSR1 saves and requeues as before.
    """

    def __init__(self) -> None:
        self.saved: str | None = None

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != TrainerFn.FITTING:
            return
        path = sigterm_checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        self.saved = path
        if trainer.is_global_zero:
            print(
                f"[mt] stopped by SIGTERM at step {trainer.global_step}: checkpoint saved to {path} "
                "(resume with --ckpt_path last)",
                file=sys.stderr,
                flush=True,
            )


def sigterm_checkpoint_path(trainer: pl.Trainer) -> str:
    """Where :class:`CheckpointOnSigterm` saves: a path that :func:`latest_checkpoint` finds."""
    for cb in trainer.callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.dirpath is not None:
            return os.path.join(cb.dirpath, cb.CHECKPOINT_NAME_LAST + cb.FILE_EXTENSION)
    return str(trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir))


# --------------------------------------------------------------------------------------------
# Random numbers
# --------------------------------------------------------------------------------------------


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from a tuple of integers (a hash: nearby tuples give unrelated seeds)."""
    digest = hashlib.blake2b(repr(tuple(int(p) for p in parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def seed_all(seed: int) -> None:
    """Seed torch (CPU and every CUDA device), numpy's global generator and ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class StepSeededRNG(pl.Callback):
    """Seed every training batch from ``(seed, global rank, epoch, batch index)``.

    The base seed is ``seed_everything``'s (``PL_GLOBAL_SEED``) or 0, and it is stored in the
    checkpoint, so a resumed run uses the interrupted run's seed even where that was drawn at
    random. Re-seeding costs a few microseconds per batch. Ranks get different streams (their
    dropout masks are independent); a run with more or fewer ranks draws different numbers.

    Args:
        seed: base seed; ``None`` takes ``seed_everything``'s.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.seed is None:
            self.seed = int(os.environ.get("PL_GLOBAL_SEED", 0))

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        assert self.seed is not None
        seed_all(derive_seed(self.seed, trainer.global_rank, trainer.current_epoch, batch_idx))

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        seed = state_dict.get("seed")
        if seed is not None and self.seed is not None and seed != self.seed:
            rank_zero_info(f"[mt] resuming with the checkpoint's seed {seed} (not {self.seed})")
        if seed is not None:
            self.seed = int(seed)
