"""Run folders: every output of a run under one folder that no other run writes into.

Layout of a run folder (``mt fit`` picks it, see :mod:`mt.cli`)::

    runs/{config name}/version_{N}/     a new run: N is one more than the largest existing N
        config.yaml                     the resolved config of the fit
        checkpoints/best.ckpt, last.ckpt
        fit/version_0/metrics.csv       CSVLogger of the fit (a resumed fit adds version_1, ...)
        test/version_0/metrics.csv      CSVLogger of an `mt test` of one of its checkpoints
        wandb/, wandb_run_id            W&B files (offline runs) and the run id a resume continues

The run folder of a checkpoint file is the folder above the nearest ``checkpoints`` folder in its
path (``RUN/checkpoints/best.ckpt``, ``RUN/checkpoints/steps/{step}.ckpt``), else the file's own
folder; resuming or testing a checkpoint writes into that folder.
"""

from __future__ import annotations

import re
from pathlib import Path

VERSION_PATTERN = re.compile(r"version_(\d+)")


class RunDirError(ValueError):
    """A run folder that cannot be used as asked (it holds another run's checkpoints)."""


def run_dir_of(checkpoint: str | Path) -> Path:
    """The run folder of a checkpoint file (see the module docstring)."""
    path = Path(checkpoint)
    for parent in path.parents:
        if parent.name == "checkpoints":
            return parent.parent
    return path.parent


def run_name(run_dir: Path) -> str:
    """A short name for a run: ``transformer-small`` for ``runs/transformer-small/version_3``
    (the folder above a ``version_N`` folder), else the folder's own name."""
    if VERSION_PATTERN.fullmatch(run_dir.name) and run_dir.parent.name:
        return run_dir.parent.name
    return run_dir.name


def checkpoints_in(run_dir: Path) -> list[Path]:
    """The checkpoint files (``*.ckpt``) anywhere under ``run_dir``, sorted."""
    return sorted(run_dir.rglob("*.ckpt")) if run_dir.is_dir() else []


def _versions(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    found = (
        (int(m.group(1)), p)
        for p in root.iterdir()
        if p.is_dir() and (m := VERSION_PATTERN.fullmatch(p.name))
    )
    return sorted(found)


def new_version_dir(root: Path) -> Path:
    """Create and return ``root/version_{N}``, N one more than the largest existing version.

    The folder is created here (``mkdir`` without ``exist_ok``), so two runs started at the same
    moment on one machine cannot claim the same version.
    """
    root.mkdir(parents=True, exist_ok=True)
    number = max((n for n, _ in _versions(root)), default=-1) + 1
    while True:
        candidate = root / f"version_{number}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            number += 1


def latest_version_dir(root: Path) -> Path | None:
    """The ``root/version_{N}`` with the largest N that holds a checkpoint, or None."""
    for _, path in reversed(_versions(root)):
        if checkpoints_in(path):
            return path
    return None
