"""Where and with what a benchmark ran, and its result file: device, CPU model and flags,
package versions, the git commit of the current folder's repository, JSON writing.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mt.precision import cpu_supports_bf16, read_cpuinfo

PACKAGES = ("torch", "lightning", "sentencepiece", "sacrebleu", "numpy", "transformers")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    return read_cpuinfo().model or platform.processor() or "unknown CPU"


#: The /proc/cpuinfo flags that matter for bf16 and wide vector arithmetic.
SIMD_FLAGS = (
    "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "bf16"
)  # fmt: skip


def cpu_flags() -> list[str]:
    """Which of :data:`SIMD_FLAGS` this CPU lists in /proc/cpuinfo (empty elsewhere)."""
    listed = read_cpuinfo().flags
    return [flag for flag in SIMD_FLAGS if flag in listed]


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def device_tag(device: torch.device) -> str:
    """Short file-name tag of the device: ``cpu`` or the slugged GPU name (``nvidia-h100-...``)."""
    if device.type != "cuda":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def package_versions() -> dict[str, str | None]:
    """Python and the versions of the packages the numbers depend on (None: not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["cuda"] = torch.version.cuda
    return versions


def git_commit(repo: Path | None = None) -> str | None:
    """``git rev-parse HEAD`` of the repository that holds ``repo`` (default: the current folder)
    plus ``-dirty`` when tracked files differ from it; None outside a repository.

    The current folder, not this file's: an installed ``mt`` run from a checkout records that
    checkout's commit. Changes under ``benchmarks/results/`` (earlier results not yet committed)
    do not count: they are outputs, not the code that ran. Read-only: ``GIT_OPTIONAL_LOCKS=0``
    keeps ``git status`` from refreshing the index.
    """
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(
            git("status", "--porcelain", "--untracked-files=no", "--", ":/",
                ":(top,exclude)benchmarks/results")  # the whole repository, from any subfolder
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def _meminfo_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def environment(device: torch.device) -> dict[str, Any]:
    """Where and with what the numbers were measured."""
    env: dict[str, Any] = {
        "device": device_name(device),
        "device_type": device.type,
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_native_bf16": cpu_supports_bf16(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "memory_gb": _meminfo_gb(),
        "platform": platform.platform(),
        "versions": package_versions(),
        "git_commit": git_commit(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["gpu"] = {
            "name": props.name,
            "count": torch.cuda.device_count(),
            "memory_gb": props.total_memory / 2**30,
            "capability": f"{props.major}.{props.minor}",
        }
    return env


def default_output(subcommand: str, device: torch.device, smoke: bool) -> Path:
    """``benchmarks/results/{subcommand}-{device tag}[-smoke].json`` under the current folder."""
    suffix = "-smoke" if smoke else ""
    return Path("benchmarks") / "results" / f"{subcommand}-{device_tag(device)}{suffix}.json"


def write_result(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON (overwriting), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n", "utf-8")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")

