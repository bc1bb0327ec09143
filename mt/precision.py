"""Numeric precision that fits the machine.

``--trainer.precision null`` means "choose for this machine" (the small CPU configs set it;
``configs/base.yaml`` and ``mt`` without a config default to ``32-true``):

* a CUDA GPU with bf16 (Ampere and later): ``bf16-mixed``;
* a CPU that multiplies bf16 natively (x86 with AVX512-BF16 or AMX, Arm with the BF16
  extension): ``bf16-mixed``, i.e. bf16 autocast. Measured on this project's 2-vCPU AMD EPYC
  (AVX512-BF16), one thread: an LSTM layer (64 x 30 x 256) plus an 8000-way output layer, forward
  and backward, about 2x faster than float32;
* anything else: ``32-true``.

Any other value is used as given. Under ``bf16-mixed`` Lightning keeps the weights and the
optimizer in float32 and autocasts matrix products and recurrent layers to bf16; the
loss is computed in float32 from the bf16 logits (``mt.models.loss``), and bf16 needs no
loss scaling (it has float32's exponent range).
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["CpuInfo", "cpu_supports_bf16", "read_cpuinfo", "resolve_precision"]

BF16 = "bf16-mixed"
FP32 = "32-true"
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo says about this machine's CPU (the first processor's entries)."""

    model: str | None  # "model name" (x86); None where it is not listed
    flags: frozenset[str]  # "flags" (x86) or "Features" (Arm)


def read_cpuinfo(path: Path | None = None) -> CpuInfo:
    """The model name and feature flags in ``path`` (default :data:`CPUINFO`); empty where the
    file cannot be read (not Linux). Each file is read once per process."""
    return _parse_cpuinfo(path or CPUINFO)


@functools.lru_cache(maxsize=4)
def _parse_cpuinfo(path: Path) -> CpuInfo:
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return CpuInfo(None, frozenset())
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key in ("flags", "Features"):
            flags.update(value.split())
    return CpuInfo(model, frozenset(flags))


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 arithmetic (not oneDNN's float32 emulation)."""
    machine = platform.machine().lower()
    if machine in {"x86_64", "amd64", "i686", "x86"}:
        # torch's own CPUID probes (private but stable since torch 2.1); no /proc parsing needed.
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)
    if machine in {"aarch64", "arm64"}:  # Linux lists the Arm BF16 extension as "bf16"
        return "bf16" in read_cpuinfo().flags
    return False


def _uses_cuda(accelerator: object) -> bool:
    name = str(accelerator or "auto").lower()
    if name in {"gpu", "cuda"}:
        return True
    return name == "auto" and torch.cuda.is_available()


def resolve_precision(precision: object, accelerator: object = "auto") -> tuple[object, str | None]:
    """The precision to train with, and a one-line note for the log (None: nothing to say).

    Args:
        precision: ``trainer.precision`` as configured; None means "choose for this machine".
        accelerator: ``trainer.accelerator`` (``auto``, ``cpu``, ``gpu``, ``cuda``, ...).
    """
    cuda = _uses_cuda(accelerator)
    native = torch.cuda.is_bf16_supported(including_emulation=False) if cuda else cpu_supports_bf16()
    device = "GPU" if cuda else "CPU"
    if precision is None:
        chosen = BF16 if native else FP32
        if native:
            return chosen, f"[mt] precision: {chosen} (this {device} has native bf16); force float32 with --trainer.precision 32-true"
        return chosen, f"[mt] precision: {chosen} (this {device} has no native bf16)"
    if str(precision).startswith("bf16") and not native:
        return precision, (
            f"[mt] warning: precision {precision} on a {device} without native bf16: it will run, "
            "emulated and slower than float32"
        )
    return precision, None
