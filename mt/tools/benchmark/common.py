"""What the benchmark jobs share: memory and timing helpers, autocast, the optional packages
(Hugging Face ``transformers``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
from collections.abc import Sequence
from pathlib import Path

import torch

from mt.precision import BF16, FP32


def proc_status_kb(fields: Sequence[str] = ("VmHWM", "VmRSS", "RssAnon", "RssFile")) -> dict:
    """Memory fields of /proc/self/status in KiB (empty where there is no /proc)."""
    out: dict[str, int] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in fields:
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) through /proc/self/clear_refs (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(
    device: torch.device, precision: str | None = None
) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``bf16-mixed``, nothing for ``32-true``; by default (None) bf16 on a
    GPU and float32 on a CPU (the decode benchmark's choice)."""
    if precision is None:
        precision = BF16 if device.type == "cuda" else FP32
    if precision == BF16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def hf_available() -> bool:
    """Whether ``transformers`` (and its Marian model) can be imported."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    except ImportError:
        pass


HF_MISSING = (
    "transformers is not installed: the Hugging Face MarianMTModel rows are skipped "
    "(pip install 'transformers>=4.40')"
)


def hugging_face_rows(args: argparse.Namespace, notes: list[str]) -> bool:
    """Whether a job adds the Hugging Face Marian rows: not with ``--no_hf``, nor without
    ``transformers``; ``notes`` gets a note saying which (the missing package is also printed)."""
    _quiet_transformers()
    if args.no_hf:
        notes.append("Hugging Face rows skipped (--no-hf)")
        return False
    if not hf_available():
        notes.append(HF_MISSING)
        print(f"[{args.subcommand}] note: {HF_MISSING}", flush=True)
        return False
    return True
