"""Benchmarks of the data pipeline, decoding speed, training throughput and throughput against
sentence length, with their context.

``scripts/benchmark.py {data,decode,train,length}`` is a thin wrapper over :func:`main`. Every subcommand
writes one JSON file, ``benchmarks/results/{subcommand}-{device tag}.json`` (``--out`` to change;
``--smoke`` runs write ``...-smoke.json``), holding the device (CPU model or GPU name), core and
thread counts, package versions, the git commit (``-dirty`` when tracked files are modified), the
exact command line, a UTC timestamp, the load average before and after, every setting, notes on
the method, and the measured numbers. What each number means is in ``benchmarks/README.md``.

* ``data``: (a) the share of non-padding tokens in the data module's token-budget batches vs
  random fixed-size batches on a real corpus; (b) ``encode_corpus`` throughput and the memory of
  one data-loader worker iterating a full epoch, on a large vs a small synthetic corpus.
* ``decode``: sentences/s and generated tokens/s of greedy and beam search for both architectures,
  side by side with Hugging Face ``MarianMTModel.generate`` on a Transformer of the same size and
  vocabulary, and the speed-up of KV-cache decoding over recomputing the prefix every step.
* ``train``: forward + backward + AdamW step throughput on non-padding tokens, step time, peak
  memory, model FLOP/s (and MFU on a GPU with a known peak) for both architectures and Marian,
  eager and optionally ``torch.compile``-d.
* ``length``: training tokens/s and peak memory on batches of one fixed sentence length L at an
  equal token budget, and decoding time per sentence against the output length (EOS banned),
  for every architecture and cell, recurrent ones with input feeding off and on; JSON + plot.

Models have random weights: the numbers measure speed, never quality. ``transformers`` is optional;
without it the Hugging Face rows are skipped with a printed note.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import itertools
import json
import multiprocessing
import multiprocessing.context
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from mt.commands import UsageError
from mt.data.batching import (
    Batch,
    ParallelDataset,
    TokenBudgetBatchSampler,
    collate,
    decoding_batches,
    pad_sources,
)
from mt.data.cache import EncodedCorpus, encode_corpus
from mt.data.datamodule import TranslationDataModule
from mt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer, train_tokenizer
from mt.models.module import Seq2SeqModule
from mt.models.search import DEFAULT_SEARCH, beam_search, greedy_search
from mt.precision import BF16, FP32, cpu_supports_bf16, read_cpuinfo, resolve_precision
from mt.tools.translate import TranslateError, resolve_device

__all__ = ["ModelSpec", "environment", "main", "non_padding_share", "write_result"]

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("torch", "lightning", "sentencepiece", "sacrebleu", "numpy", "transformers")
#: A Transformer, or the recurrent model with its cell named (RNNSeq2Seq's ``cell``).
Arch = Literal["transformer", "lstm", "gru", "rnn"]
#: The shipped small configs, one per architecture and cell (``mt benchmark length``'s default).
SMALL_CONFIGS = (
    "configs/transformer-small.yaml",
    "configs/lstm-small.yaml",
    "configs/gru-small.yaml",
    "configs/rnn-small.yaml",
)

# --------------------------------------------------------------------------------------------
# Environment and result files
# --------------------------------------------------------------------------------------------


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


def git_commit(repo: Path = REPO_ROOT) -> str | None:
    """``git rev-parse HEAD`` of ``repo`` plus ``-dirty`` when tracked files differ from it.

    Changes under ``benchmarks/results/`` (earlier results not yet committed) do not count: they
    are outputs, not the code that ran. Read-only: ``GIT_OPTIONAL_LOCKS=0`` keeps ``git status``
    from refreshing the index.
    """
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(
            git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results")
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


# --------------------------------------------------------------------------------------------
# Small helpers: memory, timing, devices
# --------------------------------------------------------------------------------------------


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


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(
    device: torch.device, precision: str | None = None
) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``bf16-mixed``, nothing for ``32-true``; by default (None) bf16 on a
    GPU and float32 on a CPU (the decode benchmark's choice)."""
    if precision is None:
        precision = BF16 if device.type == "cuda" else FP32
    if precision == BF16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_precisions(device: torch.device) -> tuple[str, ...]:
    """What ``mt benchmark train`` compares by default: float32, and bf16 autocast where the
    device multiplies bf16 natively (as ``--trainer.precision null`` would choose)."""
    native = resolve_precision(None, "gpu" if device.type == "cuda" else "cpu")[0] == BF16
    return (FP32, BF16) if native else (FP32,)


def _free(device: torch.device) -> None:
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


def ctranslate2_available() -> bool:
    """Whether ``ctranslate2`` (the ``export`` extra, which ``make install`` installs) imports."""
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        return False
    return True


CT2_MISSING = (
    "ctranslate2 is not installed: the CTranslate2 rows are skipped (pip install -e '.[export]')"
)
#: The CTranslate2 rows of ``decode``: system name -> the export's weight type.
CT2_SYSTEMS = {"ct2-float32": "none", "ct2-int8": "int8"}

HF_MISSING = (
    "transformers is not installed: the Hugging Face MarianMTModel rows are skipped "
    "(pip install 'transformers>=4.40')"
)

# --------------------------------------------------------------------------------------------
# Model sizes
# --------------------------------------------------------------------------------------------

_FACTORIES = ("optimizer", "lr_scheduler")


@dataclass
class ModelSpec:
    """One model size: a name, the architecture and its constructor arguments (no vocabulary).

    Attributes:
        name: e.g. ``transformer-small`` (the config's file name) or ``transformer-base``.
        arch: ``transformer``, or the recurrent model's cell: ``lstm``, ``gru`` or ``rnn``
            (``build`` passes it as ``cell``, whatever ``init_args`` say).
        init_args: ``TransformerSeq2Seq``/``RNNSeq2Seq`` arguments, as in a config's
            ``model.init_args`` without the optimizer and scheduler.
        max_tokens: the training token budget of the config (``data.max_tokens``).
    """

    name: str
    arch: Arch
    init_args: dict[str, Any]
    max_tokens: int = 4096
    source: str = ""

    def build(self, vocab_size: int) -> Seq2SeqModule:
        """A freshly initialised model (random weights)."""
        if self.arch == "transformer":
            from mt.models.transformer import TransformerSeq2Seq

            return TransformerSeq2Seq(vocab_size=vocab_size, **self.init_args)
        from mt.models.rnn import RNNSeq2Seq

        return RNNSeq2Seq(vocab_size=vocab_size, **{**self.init_args, "cell": self.arch})

    @property
    def recurrent(self) -> bool:
        return self.arch != "transformer"

    def with_input_feeding(self, on: bool) -> ModelSpec:
        """This recurrent model with input feeding on or off, named ``{name} feed|nofeed``."""
        args = {**self.init_args, "input_feeding": on}
        return replace(self, name=f"{self.name} {'feed' if on else 'nofeed'}", init_args=args)


def spec_from_config(path: str | os.PathLike) -> ModelSpec:
    """The model size of a ``mt fit`` config file."""
    import yaml

    path = Path(path)
    if not path.is_file() and (REPO_ROOT / path).is_file():
        path = REPO_ROOT / path
    config = yaml.safe_load(path.read_text("utf-8"))
    model = config["model"]
    args = {k: v for k, v in model.get("init_args", {}).items() if k not in _FACTORIES}
    # RNNSeq2Seq's default cell is lstm (LSTMSeq2Seq is that class under its old name).
    arch: Arch = "transformer" if "Transformer" in model["class_path"] else args.get("cell", "lstm")
    max_tokens = int(config.get("data", {}).get("max_tokens", 4096))
    return ModelSpec(path.stem, arch, args, max_tokens, source=str(path))


SMOKE_SPECS = [
    ModelSpec(
        "transformer-tiny",
        "transformer",
        dict(d_model=64, n_heads=4, encoder_layers=2, decoder_layers=2, ffn_dim=128, dropout=0.1),
        max_tokens=512,
        source="--smoke",
    ),
    ModelSpec(
        "lstm-tiny",
        "lstm",
        dict(embed_dim=64, hidden_size=64, encoder_layers=1, decoder_layers=1, dropout=0.1,
             tie_output=True),
        max_tokens=512,
        source="--smoke",
    ),
]

LARGE_SPECS = [
    # Vaswani et al. 2017's base model.
    ModelSpec(
        "transformer-base",
        "transformer",
        dict(d_model=512, n_heads=8, encoder_layers=6, decoder_layers=6, ffn_dim=2048, dropout=0.1),
        max_tokens=8192,
        source="--large",
    ),
    # GNMT-like (Wu et al. 2016) at 4 + 4 layers: 1024 wide, additive attention, the previous
    # attentional vector fed to the next step (a per-step dependency, as GNMT's attention has).
    ModelSpec(
        "lstm-gnmt",
        "lstm",
        dict(embed_dim=1024, hidden_size=1024, encoder_layers=4, decoder_layers=4,
             attention="bahdanau", input_feeding=True, dropout=0.2, tie_output=True),
        max_tokens=8192,
        source="--large",
    ),
]


def model_specs(args: argparse.Namespace, device: torch.device) -> list[ModelSpec]:
    """The sizes to run: --configs; else tiny ones with --smoke (length: one per cell); else the
    job's default configs (length: the four small ones; decode/train: a Transformer and an
    LSTM, small ones on a CPU; + --large); then every recurrent model with input feeding off
    and on where ``args.input_feeding`` is ``both``."""
    if args.configs:
        specs = [spec_from_config(config) for config in args.configs]
    elif args.smoke:
        specs = list(SMOKE_SPECS)
        if args.subcommand == "length":  # every cell
            specs += [replace(SMOKE_SPECS[1], name=f"{cell}-tiny", arch=cell) for cell in ("gru", "rnn")]
    elif args.subcommand == "length":
        specs = [spec_from_config(config) for config in SMALL_CONFIGS]
    else:
        gpu = device.type == "cuda"
        transformer = args.transformer_config or (
            "configs/transformer.yaml" if gpu else "configs/transformer-small.yaml"
        )
        lstm = args.lstm_config or ("configs/lstm.yaml" if gpu else "configs/lstm-small.yaml")
        specs = [spec_from_config(transformer), spec_from_config(lstm)]
        if getattr(args, "large", False):
            specs += LARGE_SPECS
    if args.input_feeding != "both":
        return specs
    return [
        variant
        for spec in specs
        for variant in ([spec.with_input_feeding(False), spec.with_input_feeding(True)]
                        if spec.recurrent else [spec])
    ]  # fmt: skip


def marian_for(spec: ModelSpec, vocab_size: int) -> nn.Module:
    """A randomly initialised ``MarianMTModel`` of the size and vocabulary of a Transformer spec.

    Same width, depth, heads, feed-forward width and activation, one shared embedding matrix
    tied to the output, sinusoidal positions, sqrt(D)-scaled embeddings and our special ids
    (PAD 0 is also Marian's decoder start in its own models; here BOS starts decoding, as ours).
    Marian is post-norm (ours is pre-norm by default: two extra final LayerNorms, negligible).
    """
    from transformers import MarianConfig, MarianMTModel

    a = spec.init_args
    dropout = float(a.get("dropout", 0.1))
    config = MarianConfig(
        vocab_size=vocab_size,
        decoder_vocab_size=vocab_size,
        d_model=a.get("d_model", 512),
        encoder_layers=a.get("encoder_layers", 6),
        decoder_layers=a.get("decoder_layers", 6),
        encoder_attention_heads=a.get("n_heads", 8),
        decoder_attention_heads=a.get("n_heads", 8),
        encoder_ffn_dim=a.get("ffn_dim", 2048),
        decoder_ffn_dim=a.get("ffn_dim", 2048),
        activation_function=a.get("activation", "relu"),
        dropout=dropout,
        attention_dropout=float(a.get("attention_dropout", 0.0)),
        activation_dropout=0.0,
        max_position_embeddings=1024,
        scale_embedding=True,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        bos_token_id=BOS_ID,
        decoder_start_token_id=BOS_ID,
        forced_eos_token_id=None,
    )
    return MarianMTModel(config)


def num_parameters(model: nn.Module) -> int:
    """Trainable parameters, shared ones counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    except ImportError:
        pass


# --------------------------------------------------------------------------------------------
# data: padding and the memory-mapped corpus
# --------------------------------------------------------------------------------------------


def non_padding_share(batches: Iterator[Batch] | Sequence[Batch]) -> dict[str, float | int]:
    """Share of real tokens among all elements of ``src`` and ``tgt_out`` over ``batches``."""
    real_src = real_tgt = padded_src = padded_tgt = n_batches = sentences = 0
    for batch in batches:
        real_src += batch.n_src_tokens
        real_tgt += batch.n_tgt_tokens
        padded_src += batch.src.numel()
        padded_tgt += batch.tgt_out.numel()
        n_batches += 1
        sentences += len(batch)
    return {
        "batches": n_batches,
        "sentences": sentences,
        "mean_sentences_per_batch": sentences / max(n_batches, 1),
        "non_padding_share": (real_src + real_tgt) / max(padded_src + padded_tgt, 1),
        "src_non_padding_share": real_src / max(padded_src, 1),
        "tgt_non_padding_share": real_tgt / max(padded_tgt, 1),
        "real_tokens": real_src + real_tgt,
        "padded_elements": padded_src + padded_tgt,
    }


def padding_benchmark(
    data_dir: str, vocab_size: int, max_tokens: int, random_batch: int, seed: int
) -> dict[str, Any]:
    """Non-padding share of the data module's training batches vs random fixed-size batches."""
    dm = TranslationDataModule(
        data_dir=data_dir, vocab_size=vocab_size, max_tokens=max_tokens, num_workers=0, seed=seed
    )
    dm.setup("fit")
    assert dm.train_indices is not None
    budget = non_padding_share(dm.train_dataloader())
    ds = dm.datasets["train"]
    order = np.random.default_rng(seed).permutation(dm.train_indices)

    def random_batches() -> Iterator[Batch]:
        for start in range(0, len(order), random_batch):
            yield collate([ds[int(i)] for i in order[start : start + random_batch]])

    return {
        "data_dir": data_dir,
        "train_pairs": len(ds),
        "pairs_after_filtering": len(dm.train_indices),
        "token_budget": {"max_tokens": max_tokens, **budget},
        "random_batches": {"sentences_per_batch": random_batch, **non_padding_share(random_batches())},
    }


_CONSONANTS = list("bcdfghklmnprstvwz")
_VOWELS = list("aeiou")


def _synthetic_words(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct pseudo-words of 1-4 consonant-vowel syllables (subwords have structure)."""
    syllables = [c + v for c in _CONSONANTS for v in _VOWELS]
    syllables += [s + c for s in syllables[:40] for c in "nrs"]
    words: set[str] = set()
    while len(words) < n:
        k = int(rng.integers(1, 5))
        words.add("".join(syllables[j] for j in rng.integers(0, len(syllables), size=k)))
    return sorted(words)


def write_synthetic_corpus(
    directory: Path, n_pairs: int, seed: int = 0, n_words: int = 30_000, chunk: int = 100_000
) -> Path:
    """Write ``train.de``/``train.en`` with ``n_pairs`` synthetic sentence pairs.

    Source words follow a Zipf law over ``n_words`` pseudo-words, lengths ~ Poisson(12) words
    (Multi30k's mean); the target maps every word through a fixed dictionary and reverses the
    order. Generated in chunks, so memory stays small for millions of pairs.
    """
    rng = np.random.default_rng(seed)
    src_words = np.array(_synthetic_words(rng, n_words), dtype=object)
    tgt_words = np.array([w[::-1] + "e" for w in src_words], dtype=object)
    zipf = 1.0 / np.arange(1, n_words + 1)
    zipf /= zipf.sum()
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "train.de", "w", encoding="utf-8") as src_f, open(
        directory / "train.en", "w", encoding="utf-8"
    ) as tgt_f:
        for start in range(0, n_pairs, chunk):
            n = min(chunk, n_pairs - start)
            lengths = np.clip(rng.poisson(12, size=n), 1, 60)
            ids = rng.choice(n_words, size=int(lengths.sum()), p=zipf)
            src_tokens, tgt_tokens = src_words[ids].tolist(), tgt_words[ids].tolist()
            ends = np.cumsum(lengths).tolist()
            starts = [0, *ends[:-1]]
            spans = list(zip(starts, ends, strict=True))
            src_f.write("".join(" ".join(src_tokens[a:b]) + "\n" for a, b in spans))
            tgt_f.write("".join(" ".join(reversed(tgt_tokens[a:b])) + "\n" for a, b in spans))
    return directory


class MeasuringCollate:
    """``mt.data.batching.collate`` that also returns the worker's memory (/proc/self/status, KiB)."""

    def __call__(self, items: Sequence[tuple[int, np.ndarray, np.ndarray, str]]) -> tuple:
        return collate(items), proc_status_kb(), os.getpid()


def _worker_context() -> multiprocessing.context.BaseContext:
    """A fork-server context whose server has imported this module (workers fork from it)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def worker_memory(src: Path, tgt: Path, max_tokens: int, seed: int) -> dict[str, Any]:
    """Run one epoch through a DataLoader with ONE spawned worker and report its memory.

    The worker is started by a fork server (not forked from this process), so it holds only what
    a worker needs: the interpreter, torch and mt (preloaded once by the server, shared by the
    workers of both corpora), the dataset object (which pickles to two folder names) and the
    memory-mapped files; nothing of this process's heap (the sampler, the other corpus).
    Every batch carries the worker's VmHWM (peak RSS), RssAnon (private heap) and RssFile
    (file-backed pages, i.e. the mapped corpus pages it touched: shared page cache).
    """
    ds = ParallelDataset(EncodedCorpus(src), EncodedCorpus(tgt))
    sampler = TokenBudgetBatchSampler(ds.src.lengths, ds.tgt.lengths, max_tokens, seed=seed)
    loader = DataLoader(
        ds,
        batch_sampler=sampler,
        collate_fn=MeasuringCollate(),
        num_workers=1,
        multiprocessing_context=_worker_context(),
    )
    peak_anon = peak_file = hwm = 0
    pids: set[int] = set()
    pairs = batches = first_pairs = 0
    start = time.perf_counter()
    first = start
    for batch, mem, pid in loader:
        if batches == 0:  # the worker's start-up (and the fork server's) is not iteration
            first = time.perf_counter()
            first_pairs = len(batch)
        pairs += len(batch)
        batches += 1
        pids.add(pid)
        peak_anon = max(peak_anon, mem.get("RssAnon", 0))
        peak_file = max(peak_file, mem.get("RssFile", 0))
        hwm = max(hwm, mem.get("VmHWM", 0))
    end = time.perf_counter()
    return {
        "pairs": pairs,
        "batches": batches,
        "worker_processes": len(pids),
        "first_batch_seconds": first - start,
        "epoch_seconds": end - start,
        # After the first batch: the steady rate of one worker (plus this process's unpickling).
        "loader_pairs_per_s": (pairs - first_pairs) / max(end - first, 1e-9),
        "worker_peak_rss_mb": hwm / 1024,
        "worker_peak_anon_rss_mb": peak_anon / 1024,
        "worker_peak_file_rss_mb": peak_file / 1024,
    }


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.iterdir()) / 2**20


def corpus_memory_benchmark(
    pairs: Sequence[int],
    vocab_size: int,
    max_tokens: int,
    seed: int,
    work_dir: Path,
    sample_lines: int = 20_000,
) -> dict[str, Any]:
    """Encoding throughput and worker memory on synthetic corpora of ``pairs`` sizes; the
    tokenizer is trained on the first ``sample_lines`` lines of each side."""
    largest = max(pairs)
    t0 = time.perf_counter()
    big = write_synthetic_corpus(work_dir / f"synthetic-{largest}", largest, seed)
    generate_s = time.perf_counter() - t0
    # The tokenizer is trained on a sample (the first lines; the generator is i.i.d.).
    sample_dir = work_dir / "sample"
    sample_dir.mkdir(parents=True, exist_ok=True)
    sample_lines = min(largest, sample_lines)
    for lang in ("de", "en"):
        with open(big / f"train.{lang}", encoding="utf-8") as f:
            lines = list(itertools.islice(f, sample_lines))
        (sample_dir / f"sample.{lang}").write_text("".join(lines), "utf-8")
    t0 = time.perf_counter()
    tokenizer = train_tokenizer([sample_dir / "sample.de", sample_dir / "sample.en"], vocab_size)
    tokenizer_s = time.perf_counter() - t0

    corpora = []
    for n in sorted(set(pairs), reverse=True):
        directory = big
        if n != largest:  # the first n lines of the largest corpus
            directory = work_dir / f"synthetic-{n}"
            directory.mkdir(parents=True, exist_ok=True)
            for lang in ("de", "en"):
                with open(big / f"train.{lang}", encoding="utf-8") as f, open(
                    directory / f"train.{lang}", "w", encoding="utf-8"
                ) as out:
                    out.writelines(itertools.islice(f, n))
        encoded = {}
        t0 = time.perf_counter()
        for lang in ("de", "en"):
            encoded[lang] = directory / f"encoded.{lang}"
            encode_corpus(directory / f"train.{lang}", tokenizer, encoded[lang])
        encode_s = time.perf_counter() - t0
        tokens = sum(int(EncodedCorpus(encoded[lang]).lengths.sum()) for lang in ("de", "en"))
        row = {
            "pairs": n,
            "text_mb": sum((directory / f"train.{lang}").stat().st_size for lang in ("de", "en"))
            / 2**20,
            "encoded_mb": sum(_dir_mb(encoded[lang]) for lang in ("de", "en")),
            "subword_tokens": tokens,
            "encode_seconds": encode_s,
            "encode_pairs_per_s": n / encode_s,
            **worker_memory(encoded["de"], encoded["en"], max_tokens, seed),
        }
        corpora.append(row)
        print(
            f"[data] {n} pairs: encode {row['encode_pairs_per_s']:.0f} pairs/s, worker peak RSS "
            f"{row['worker_peak_rss_mb']:.0f} MB (anon {row['worker_peak_anon_rss_mb']:.0f} MB, "
            f"file {row['worker_peak_file_rss_mb']:.0f} MB)",
            flush=True,
        )
    large, small = corpora[0], corpora[-1]
    anon_growth = large["worker_peak_anon_rss_mb"] - small["worker_peak_anon_rss_mb"]
    corpus_growth = large["encoded_mb"] - small["encoded_mb"]
    return {
        "vocab_size": vocab_size,
        "max_tokens": max_tokens,
        "generate_seconds": generate_s,
        "tokenizer_sample_lines_per_side": sample_lines,
        "tokenizer_train_seconds": tokenizer_s,
        "corpora": corpora,
        "worker_anon_rss_growth_mb": anon_growth,
        "worker_rss_growth_mb": large["worker_peak_rss_mb"] - small["worker_peak_rss_mb"],
        "encoded_corpus_growth_mb": corpus_growth,
        # The claim: a worker's private memory does not scale with the corpus. Threshold: its
        # growth stays under 10% of the growth of the encoded corpus it iterates over.
        "claim_worker_private_memory_constant": anon_growth < 0.1 * max(corpus_growth, 1.0),
    }


def run_data(args: argparse.Namespace, device: torch.device) -> tuple[dict, list[str]]:
    notes = [
        "non_padding_share = real tokens / all elements of src and tgt_out over one epoch of the "
        "training batches (EOS/BOS counted as real tokens, as the loss sees them).",
        "worker memory: DataLoader(num_workers=1) whose worker is started by a fork server "
        "(a clean process with torch and mt imported, not a fork of the benchmark) over one "
        "shuffled epoch of token-budget batches; the worker reports /proc/self/status with every "
        "batch. RssAnon is the worker's private heap; RssFile counts the memory-mapped corpus "
        "pages it touched, which live in the shared, reclaimable OS page cache, so VmHWM (peak "
        "RSS) grows with the corpus even when the worker's own memory does not.",
        "encode_pairs_per_s: mt.data.cache.encode_corpus on both sides (sentencepiece with all cores), "
        "pairs / (seconds for de + en).",
    ]
    results: dict[str, Any] = {}
    if args.data_dir and Path(args.data_dir).is_dir():
        print(f"[data] padding on {args.data_dir} at max_tokens={args.max_tokens}", flush=True)
        results["padding"] = padding_benchmark(
            args.data_dir, args.vocab_size, args.max_tokens, args.random_batch, args.seed
        )
        pad = results["padding"]
        print(
            f"[data] non-padding share: token budget {pad['token_budget']['non_padding_share']:.3f}"
            f", random {args.random_batch}-sentence batches "
            f"{pad['random_batches']['non_padding_share']:.3f}",
            flush=True,
        )
    else:
        notes.append(f"padding part skipped: no corpus at --data-dir {args.data_dir}")
    with tempfile.TemporaryDirectory(prefix="mt-bench-") as tmp:
        work = Path(args.work_dir) if args.work_dir else Path(tmp)
        results["corpus_memory"] = corpus_memory_benchmark(
            args.pairs,
            args.synthetic_vocab_size,
            args.max_tokens,
            args.seed,
            work,
            args.tokenizer_sample,
        )
    return results, notes


# --------------------------------------------------------------------------------------------
# decode: search speed
# --------------------------------------------------------------------------------------------


@dataclass
class DecodeBatch:
    """A source batch (longest first) and the number of tokens every system generates for it."""

    src: Tensor  # (B, S)
    src_pad_mask: Tensor  # (B, S)
    steps: int


def decode_batches(
    sources: Sequence[Sequence[int]], max_tokens: int, max_len_a: float, max_len_b: float
) -> list[DecodeBatch]:
    """The batches of :func:`mt.data.batching.decoding_batches` (longest first, rows x longest source
    <= max_tokens), as ``mt.tools.translate.Translator`` cuts them; ``steps`` = ``int(a * longest +
    b)`` (EOS counted)."""
    batches = []
    for rows in decoding_batches([len(s) for s in sources], max_tokens):
        src = pad_sources([sources[i] for i in rows])  # (B, S)
        steps = max(1, int(max_len_a * src.size(1) + max_len_b))
        batches.append(DecodeBatch(src, src == PAD_ID, steps))
    return batches


class NoEOS(nn.Module):
    """Wraps a model so that it never emits EOS: every hypothesis runs to the length cap.

    Random weights would otherwise end sentences at arbitrary points and the systems compared
    would generate different numbers of tokens; with EOS banned both generate exactly the cap.
    """

    def __init__(self, model: Seq2SeqModule) -> None:
        super().__init__()
        self.model = model

    def encode(self, src: Tensor, src_pad_mask: Tensor) -> Any:
        return self.model.encode(src, src_pad_mask)

    def decode_step(self, prev_tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        log_probs, state = self.model.decode_step(prev_tokens, state)
        eos = torch.tensor([EOS_ID], device=log_probs.device)
        return log_probs.index_fill_(1, eos, float("-inf")), state


def _ours(model: Seq2SeqModule, beam: int) -> Callable[[DecodeBatch], list[list[int]]]:
    wrapped = NoEOS(model)

    def run(b: DecodeBatch) -> list[list[int]]:
        if beam == 1:
            hyps = greedy_search(wrapped, b.src, b.src_pad_mask, max_len_a=0.0, max_len_b=b.steps)
            return [h.tokens for h in hyps]
        nbest = beam_search(
            wrapped, b.src, b.src_pad_mask, beam_size=beam,
            length_penalty=DEFAULT_SEARCH.length_penalty, max_len_a=0.0, max_len_b=b.steps,
        )
        return [n[0].tokens for n in nbest]

    return run


def _hf(model: nn.Module, beam: int) -> Callable[[DecodeBatch], list[list[int]]]:
    def run(b: DecodeBatch) -> list[list[int]]:
        out = model.generate(
            input_ids=b.src,
            attention_mask=(~b.src_pad_mask).long(),
            num_beams=beam,
            do_sample=False,
            max_new_tokens=b.steps,
            min_new_tokens=b.steps,
            length_penalty=DEFAULT_SEARCH.length_penalty,
            early_stopping=False,
            use_cache=True,
        )  # (B, 1 + steps): the decoder start token, then the generated ones
        return out[:, 1:].tolist()

    return run


def _ctranslate2(
    model_dir: Path, tokenizer: Tokenizer, beam: int, device: torch.device, threads: int
) -> Callable[[DecodeBatch], list[list[int]]]:
    """Decode with CTranslate2 on an exported folder: the same sources (as sentencepiece pieces;
    CTranslate2 appends the EOS) and, with EOS banned until then (``min_decoding_length``),
    exactly ``steps`` tokens, as the other systems."""
    import ctranslate2

    translator = ctranslate2.Translator(
        str(model_dir), device=device.type, inter_threads=1, intra_threads=threads
    )
    piece_ids = {tokenizer.id_to_piece(i): i for i in range(tokenizer.vocab_size)}

    def run(b: DecodeBatch) -> list[list[int]]:
        sources = [
            [tokenizer.id_to_piece(i) for i in row if i not in (PAD_ID, EOS_ID)]
            for row in b.src.tolist()
        ]
        results = translator.translate_batch(
            sources, beam_size=beam, length_penalty=DEFAULT_SEARCH.length_penalty,
            max_decoding_length=b.steps,
            min_decoding_length=b.steps, max_input_length=0, max_batch_size=0,
        )  # fmt: skip
        return [[piece_ids[p] for p in r.hypotheses[0]] for r in results]

    return run


def export_for_decode(model: Seq2SeqModule, tokenizer: Tokenizer, folder: Path) -> dict[str, Path]:
    """The CTranslate2 folders of ``model`` (random weights) for the ``CT2_SYSTEMS`` rows."""
    from mt.tools.export import export_ctranslate2

    model.tokenizer = tokenizer
    return {
        name: export_ctranslate2(model, folder / name, quantization=quantization)
        for name, quantization in CT2_SYSTEMS.items()
    }


@torch.no_grad()
def greedy_without_cache(model: Seq2SeqModule, b: DecodeBatch) -> list[list[int]]:
    """Greedy decoding that recomputes the whole prefix with ``model.decode`` at every step
    (no self-attention KV cache; the encoder and its cross-attention keys/values run once)."""
    state = model.encode(b.src, b.src_pad_mask)
    prefix = torch.full((b.src.size(0), 1), BOS_ID, dtype=torch.long, device=b.src.device)
    banned = torch.tensor([PAD_ID, BOS_ID, EOS_ID], device=b.src.device)
    for _ in range(b.steps):
        logits = model.decode(prefix, state)[:, -1]  # (B, V) of the last position
        log_probs = F.log_softmax(logits.float(), dim=-1).index_fill(1, banned, float("-inf"))
        prefix = torch.cat([prefix, log_probs.argmax(dim=1, keepdim=True)], dim=1)  # (B, t + 1)
    return prefix[:, 1:].tolist()


def time_decoding(
    run: Callable[[DecodeBatch], list[list[int]]],
    batches: Sequence[DecodeBatch],
    device: torch.device,
) -> tuple[dict[str, float], list[list[int]]]:
    """Decode every batch once after one warm-up batch (the smallest); speed and outputs."""
    with torch.inference_mode(), _autocast(device):
        run(batches[-1])
        _synchronize(device)
        outputs: list[list[int]] = []
        start = time.perf_counter()
        for b in batches:
            outputs += run(b)
        _synchronize(device)
        seconds = time.perf_counter() - start
    return _decode_speed(len(outputs), sum(len(o) for o in outputs), seconds), outputs


def _decode_speed(sentences: int, tokens: int, seconds: float) -> dict[str, Any]:
    """A decode row: counts, seconds and the two rates."""
    return {
        "sentences": sentences,
        "generated_tokens": tokens,
        "seconds": seconds,
        "sentences_per_s": sentences / seconds,
        "tgt_tokens_per_s": tokens / seconds,
    }


def time_systems(
    systems: dict[str, Callable[[DecodeBatch], list[list[int]]]],
    batches: Sequence[DecodeBatch],
    device: torch.device,
    repeats: int,
) -> dict[str, tuple[dict[str, Any], list[list[int]]]]:
    """``time_decoding`` of every system ``repeats`` times, the systems taking turns (a, b, a,
    b, ...), so that a machine whose speed drifts during the run slows them alike. Each row
    reports the median seconds (and every run's); outputs are those of the first run."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
    outputs: dict[str, list[list[int]]] = {}
    for _ in range(repeats):
        for name, run in systems.items():
            row, out = time_decoding(run, batches, device)
            runs[name].append(row)
            outputs.setdefault(name, out)
    results = {}
    for name, rows in runs.items():
        seconds = sorted(r["seconds"] for r in rows)[len(rows) // 2]  # the median (upper)
        row = _decode_speed(rows[0]["sentences"], rows[0]["generated_tokens"], seconds)
        row["seconds_runs"] = [r["seconds"] for r in rows]
        results[name] = (row, outputs[name])
    return results


def _load_split_sources(args: argparse.Namespace) -> tuple[list[np.ndarray], Tokenizer]:
    """The source ids of the first ``--sentences`` lines of the test split, and the tokenizer."""
    dm = TranslationDataModule(
        data_dir=args.data_dir, vocab_size=args.vocab_size, num_workers=0, seed=args.seed
    )
    dm.setup("test")
    src = dm.datasets["test"].src
    n = len(src) if args.sentences is None else min(args.sentences, len(src))
    return [np.asarray(src.ids(i)) for i in range(n)], dm.tokenizer


def run_decode(args: argparse.Namespace, device: torch.device) -> tuple[dict, list[str]]:
    sources, tokenizer = _load_split_sources(args)
    vocab = tokenizer.vocab_size
    batches = decode_batches(sources, args.max_tokens, args.max_len_a, args.max_len_b)
    batches = [DecodeBatch(b.src.to(device), b.src_pad_mask.to(device), b.steps) for b in batches]
    kv_batches = batches
    if args.kv_sentences is not None and args.kv_sentences < len(sources):
        kv_batches = decode_batches(
            sources[: args.kv_sentences], args.max_tokens, args.max_len_a, args.max_len_b
        )
        kv_batches = [
            DecodeBatch(b.src.to(device), b.src_pad_mask.to(device), b.steps) for b in kv_batches
        ]
    use_hf = not args.no_hf and hf_available()
    notes = [
        "Random weights. EOS is banned for every system (ours through a wrapper around "
        "decode_step, Hugging Face through min_new_tokens = max_new_tokens), so every sentence of "
        "a batch generates exactly steps = int(max_len_a * longest source + max_len_b) tokens in "
        "all systems: the same work, counted as generated tokens.",
        "Batches: sources sorted longest first and cut at rows x longest source (EOS included) "
        "<= max_tokens, as mt.tools.translate.Translator does; the same batches for every system. One "
        "warm-up batch (the smallest) is decoded before timing.",
        f"Each system decodes all batches {args.repeats} times, the systems taking turns; rows "
        "report the median seconds (seconds_runs lists every run).",
        "Beam search: ours with length penalty 1.0, Hugging Face num_beams=K, length_penalty=1.0, "
        "early_stopping=False, use_cache=True.",
        f"Precision: {'bf16 autocast' if device.type == 'cuda' else 'fp32'}, torch.inference_mode "
        "for both.",
        "kv_cache: greedy mt.models.search.greedy_search (decode_step with a KV cache) vs a loop that "
        "calls model.decode on the whole prefix at every step (the encoder and the "
        "cross-attention keys/values still computed once); same batches and steps; "
        "identical_outputs compares their tokens.",
    ]
    if not use_hf:
        notes.append(HF_MISSING if not args.no_hf else "Hugging Face rows skipped (--no-hf)")
        if not args.no_hf:
            print(f"[decode] note: {HF_MISSING}", flush=True)
    use_ct2 = ctranslate2_available()
    threads = args.threads or torch.get_num_threads()
    notes.append(
        "CTranslate2 rows (ct2-float32, ct2-int8): the same randomly initialised Transformer "
        "exported with mt export (float32 weights, int8 weights), run by ctranslate2.Translator "
        f"with intra_threads={threads} (the torch threads of the other rows), inter_threads=1, "
        "on the same batches (max_batch_size=0: no re-batching); EOS is banned until the "
        "same number of steps (min_decoding_length = max_decoding_length = steps); the ids "
        "are turned into sentencepiece pieces and back inside the timed call, as a user's "
        "translation does."
        if use_ct2
        else CT2_MISSING
    )
    if not use_ct2:
        print(f"[decode] note: {CT2_MISSING}", flush=True)
    _quiet_transformers()
    results: dict[str, Any] = {
        "split": f"{args.data_dir}/test_2016_flickr (first {len(sources)} lines), de->en",
        "sentences": len(sources),
        "batches": len(batches),
        "max_tokens": args.max_tokens,
        "generated_tokens_per_sentence_mean": sum(b.steps * b.src.size(0) for b in batches)
        / len(sources),
        "models": [],
    }
    for spec in model_specs(args, device):
        torch.manual_seed(args.seed)
        model = spec.build(vocab).to(device).eval()
        entry: dict[str, Any] = {
            "name": spec.name,
            "arch": spec.arch,
            "config": spec.source,
            "init_args": spec.init_args,
            "parameters": num_parameters(model),
            "rows": [],
        }
        hf_model = None
        if use_hf and spec.arch == "transformer":
            torch.manual_seed(args.seed)
            hf_model = marian_for(spec, vocab).to(device).eval()
            entry["hf_parameters"] = num_parameters(hf_model)
        ct2_dirs: dict[str, Path] = {}
        ct2_tmp = None  # the exported folders, removed with it
        if use_ct2 and spec.arch == "transformer":
            ct2_tmp = tempfile.TemporaryDirectory(prefix="mt-bench-ct2-")
            ct2_dirs = export_for_decode(model, tokenizer, Path(ct2_tmp.name))
        for beam in args.beams:
            systems = {"mt": _ours(model, beam)}
            if hf_model is not None:
                systems["hf-marian"] = _hf(hf_model, beam)
            for name, folder in ct2_dirs.items():
                systems[name] = _ctranslate2(folder, tokenizer, beam, device, threads)
            timed = time_systems(systems, batches, device, args.repeats)
            mt_out = timed["mt"][1]
            for name, (row, out) in timed.items():
                if name in ct2_dirs:  # the same model: how often its tokens are mt's
                    row["same_tokens_as_mt"] = sum(
                        a == b for a, b in zip(out, mt_out, strict=True)
                    ) / len(out)
                entry["rows"].append({"system": name, "beam": beam, **row})
                versus = ""
                if hf_model is not None and name != "hf-marian":
                    speedup = timed["hf-marian"][0]["seconds"] / row["seconds"]
                    entry.setdefault("speedup_over_hf", {}).setdefault(name, {})[
                        f"beam{beam}"
                    ] = speedup
                    versus = f"  ({name} is {speedup:.2f}x HF)"
                print(f"[decode] {spec.name} {name} beam {beam}: {_fmt_decode(row)}{versus}",
                      flush=True)  # fmt: skip
            if hf_model is not None:  # the key earlier result files have
                entry["speedup_mt_over_hf"] = entry["speedup_over_hf"]["mt"]
        if spec.arch == "transformer" and not args.no_kv_check:
            cached, cached_out = time_decoding(_ours(model, 1), kv_batches, device)
            plain, plain_out = time_decoding(
                lambda b, m=model: greedy_without_cache(m, b), kv_batches, device
            )
            same = sum(a == b for a, b in zip(cached_out, plain_out, strict=True))
            entry["kv_cache"] = {
                "with_cache": cached,
                "recompute_prefix": plain,
                "speedup": plain["seconds"] / cached["seconds"],
                "identical_outputs": same / len(cached_out),
            }
            print(
                f"[decode] {spec.name} KV cache speed-up {entry['kv_cache']['speedup']:.2f}x "
                f"(identical outputs {same}/{len(cached_out)})",
                flush=True,
            )
        results["models"].append(entry)
        if ct2_tmp is not None:
            ct2_tmp.cleanup()
        del model, hf_model
        _free(device)
    return results, notes


def _fmt_decode(row: dict[str, float]) -> str:
    return (
        f"{row['sentences_per_s']:.1f} sent/s, {row['tgt_tokens_per_s']:.0f} tok/s "
        f"({row['seconds']:.2f} s)"
    )


# --------------------------------------------------------------------------------------------
# train: training throughput
# --------------------------------------------------------------------------------------------


def training_batches(args: argparse.Namespace, max_tokens: int, n: int) -> list[Batch]:
    """The first ``n`` training batches of the data module (epoch 0, its shuffled order),
    cycling through further epochs if one epoch has fewer."""
    dm = TranslationDataModule(
        data_dir=args.data_dir,
        vocab_size=args.vocab_size,
        max_tokens=max_tokens,
        num_workers=0,
        seed=args.seed,
        pad_to_multiple=args.pad_to_multiple,
    )
    dm.setup("fit")
    batches: list[Batch] = []
    sampler_epoch = 0
    while len(batches) < n:
        loader = dm.train_dataloader()
        loader.batch_sampler.set_epoch(sampler_epoch)  # type: ignore[union-attr]
        batches += list(itertools.islice(loader, n - len(batches)))
        sampler_epoch += 1
    return batches


def _make_optimizer(model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """AdamW as in the configs (lr 1e-3, betas (0.9, 0.98), wd 1e-4); fused on a GPU."""
    kwargs: dict[str, Any] = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(
        model.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=1e-4, **kwargs
    )


def _mt_step(
    model: Seq2SeqModule, optimizer: torch.optim.Optimizer, device: torch.device, precision: str
):
    def step(batch: Batch) -> None:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, precision):
            loss, _, n_tokens = model._loss(batch, model.label_smoothing)  # as training_step
            loss = loss / n_tokens
        loss.backward()
        optimizer.step()

    return step


def _hf_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device, precision: str
):
    def step(batch: Batch) -> None:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, precision):
            loss = model(
                input_ids=batch.src,
                attention_mask=(~batch.src_pad_mask).long(),
                decoder_input_ids=batch.tgt_in,
                labels=batch.tgt_out.masked_fill(batch.tgt_pad_mask, -100),
            ).loss
        loss.backward()
        optimizer.step()

    return step


def time_training(
    step: Callable[[Batch], None],
    batches: Sequence[Batch],
    warmup: int,
    device: torch.device,
    flops_of: Callable[[Batch], float] | None,
) -> dict[str, Any]:
    """Run ``step`` on every batch; time the ones after ``warmup``. Non-padding tokens only."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_start = proc_status_kb().get("VmRSS", 0)
    reset_peak_rss()
    times: list[float] = []
    warmup_s = 0.0
    graphs_after_warmup = _compiled_graphs() if warmup == 0 else None
    for i, batch in enumerate(batches):
        if i == warmup:
            graphs_after_warmup = _compiled_graphs()
        _synchronize(device)
        t0 = time.perf_counter()
        step(batch)
        _synchronize(device)
        dt = time.perf_counter() - t0
        if i < warmup:
            warmup_s += dt
        else:
            times.append(dt)
    timed = batches[warmup:]
    seconds = sum(times)
    src = sum(b.n_src_tokens for b in timed)
    tgt = sum(b.n_tgt_tokens for b in timed)
    elements = sum(b.src.numel() + b.tgt_out.numel() for b in timed)
    stats: dict[str, Any] = {
        "warmup_steps": warmup,
        "steps": len(timed),
        "warmup_seconds": warmup_s,
        "seconds": seconds,
        "step_time_s": seconds / len(timed),
        "step_time_median_s": float(np.median(times)),
        "sentences_per_s": sum(len(b) for b in timed) / seconds,
        "src_tokens_per_s": src / seconds,
        "tgt_tokens_per_s": tgt / seconds,
        "tokens_per_s": (src + tgt) / seconds,
        "padded_tokens_per_s": elements / seconds,
        "padding_ratio": 1.0 - (src + tgt) / elements,
        # Graphs torch.compile built during the timed steps (recompilations for new shapes).
        "graphs_compiled_in_timed_steps": _compiled_graphs() - (graphs_after_warmup or 0),
    }
    if device.type == "cuda":
        stats["peak_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        mem = proc_status_kb()
        stats["peak_mem_gb"] = mem.get("VmHWM", 0) / 2**20  # process peak RSS during the run
        stats["rss_at_start_gb"] = rss_start / 2**20
    if flops_of is not None:
        flops = sum(flops_of(b) for b in timed)
        stats["model_tflops_per_s"] = flops / seconds / 1e12
        from mt.eval.throughput import peak_flops

        peak = peak_flops(device, "bf16")
        stats["mfu"] = flops / seconds / peak if peak else None
    return stats


def _compiled_graphs() -> int:
    """Number of graphs torch.compile has built in this process so far."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return 0
    return int(counters["stats"]["unique_graphs"])


def run_train(args: argparse.Namespace, device: torch.device) -> tuple[dict, list[str]]:
    from mt.eval.throughput import train_flops

    specs = model_specs(args, device)
    max_tokens = args.max_tokens or specs[0].max_tokens
    n_batches = args.warmup + args.steps
    batches = [b.to(device) for b in training_batches(args, max_tokens, n_batches)]
    use_hf = not args.no_hf and hf_available()
    compile_systems = set(args.compile_systems.split(",")) if args.compile else set()
    precisions = tuple(args.precisions or train_precisions(device))
    notes = [
        "Plain PyTorch loop (no Trainer): zero_grad, forward + loss, backward, AdamW step "
        "(lr 1e-3, betas (0.9, 0.98), wd 1e-4; fused on a GPU); no gradient clipping. "
        f"{args.warmup} warm-up steps excluded, then {args.steps} timed steps, each timed "
        "between device synchronisations. Data loading is outside the timing (batches are "
        "collated and moved to the device first). The same batches for every system.",
        "mt loss = Seq2SeqModule._loss as in training_step (label-smoothed CE + the plain NLL "
        "for logging: two cross-entropies over (tokens, V)); Hugging Face: MarianMTModel with "
        "labels (one plain CE, PAD labels = -100), decoder_input_ids = our tgt_in.",
        "tokens/s count non-padding tokens (src incl. EOS, tgt_out incl. EOS); "
        "padded_tokens_per_s counts all elements of src and tgt_out.",
        "model FLOPs from mt.eval.throughput.train_flops on non-padding tokens; the Marian rows use "
        "the formula of our Transformer of the same size (same matrix shapes). MFU only on a "
        "GPU with a known dense bf16 peak.",
        "peak_mem_gb: torch.cuda.max_memory_allocated on a GPU; on a CPU the process's peak RSS "
        "(VmHWM, reset through /proc/self/clear_refs before each run), which includes the "
        "interpreter, libraries and data (see rss_at_start_gb).",
        f"Precision: {', '.join(precisions)} (bf16-mixed: torch.autocast to bf16, weights and "
        "optimizer in float32, as Lightning's bf16-mixed; mt's log-softmax and loss in float32).",
    ]
    if args.compile:
        notes.append(
            f"torch.compile (nn.Module.compile, default mode) for {sorted(compile_systems)}; "
            "compilation and recompilation for new shapes happen in the warm-up steps "
            "(warmup_seconds); 'lstm' is left out by default because its input-feeding "
            "decoder loops over time, which compiles once per target length."
        )
    if not use_hf:
        notes.append(HF_MISSING if not args.no_hf else "Hugging Face rows skipped (--no-hf)")
        if not args.no_hf:
            print(f"[train] note: {HF_MISSING}", flush=True)
    _quiet_transformers()
    real = [b.n_src_tokens + b.n_tgt_tokens for b in batches]
    results: dict[str, Any] = {
        "data_dir": args.data_dir,
        "max_tokens": max_tokens,
        "pad_to_multiple": args.pad_to_multiple,
        "batches": len(batches),
        "mean_sentences_per_batch": sum(len(b) for b in batches) / len(batches),
        "mean_real_tokens_per_batch": sum(real) / len(real),
        "runs": [],
    }
    for spec in specs:
        systems = ["mt"] + (["hf-marian"] if spec.arch == "transformer" and use_hf else [])
        compile_key = {"mt": spec.arch, "hf-marian": "hf-marian"}
        variants = [(s, False, p) for p in precisions for s in systems]
        variants += [
            (s, True, p) for p in precisions for s in systems if compile_key[s] in compile_systems
        ]
        for system, compiled, precision in variants:
            torch.manual_seed(args.seed)
            reference = spec.build(args.vocab_size)  # for the FLOP formula
            if system == "mt":
                model = reference.to(device).train()
                step = _mt_step(model, _make_optimizer(model, device), device, precision)
            else:
                model = marian_for(spec, args.vocab_size).to(device).train()
                step = _hf_step(model, _make_optimizer(model, device), device, precision)
            if compiled:
                model.compile()
            label = f"{spec.name} {system} {precision}{' compiled' if compiled else ''}"
            print(f"[train] {label} ...", flush=True)
            try:
                stats = time_training(
                    step, batches, args.warmup, device, lambda b, m=reference: train_flops(m, b)
                )
            except Exception as err:  # e.g. a compiler missing on this machine: keep the others
                stats = {"error": f"{type(err).__name__}: {err}"}
                print(f"[train] {label} failed: {stats['error']}", flush=True)
            run = {
                "model": spec.name,
                "arch": spec.arch,
                "system": system,
                "compiled": compiled,
                "precision": precision,
                "config": spec.source,
                "init_args": spec.init_args,
                "parameters": num_parameters(model),
                **stats,
            }
            results["runs"].append(run)
            if "error" not in stats:
                print(
                    f"[train] {label}: {stats['tokens_per_s']:.0f} tok/s "
                    f"(tgt {stats['tgt_tokens_per_s']:.0f}), step {stats['step_time_s']:.3f} s, "
                    f"peak {stats['peak_mem_gb']:.2f} GB, "
                    f"{stats.get('model_tflops_per_s', 0) * 1e3:.1f} GFLOP/s",
                    flush=True,
                )
            del model, reference, step
            _free(device)
    return results, notes


# --------------------------------------------------------------------------------------------
# length: throughput against sentence length
# --------------------------------------------------------------------------------------------


def fixed_length_batch(sentences: int, length: int, vocab_size: int, seed: int) -> Batch:
    """``sentences`` random pairs whose source and target both have ``length`` tokens (EOS
    included): no padding, every element is a real token."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(EOS_ID + 1, vocab_size, (2, sentences, length - 1), generator=gen)
    return collate([(k, ids[0, k].numpy(), ids[1, k].numpy(), "") for k in range(sentences)])


def length_training(
    spec: ModelSpec, args: argparse.Namespace, device: torch.device
) -> list[dict[str, Any]]:
    """Training throughput and peak memory of ``spec`` at every ``args.lengths``, each on a
    fresh model (and optimizer) so that each length's peak memory is its own."""
    from mt.eval.throughput import train_flops

    rows = []
    for length in args.lengths:
        sentences = max(1, args.max_tokens // length)
        batch = fixed_length_batch(sentences, length, args.vocab_size, args.seed).to(device)
        torch.manual_seed(args.seed)
        model = spec.build(args.vocab_size).to(device).train()
        step = _mt_step(model, _make_optimizer(model, device), device, args.precision)
        try:
            stats = time_training(step, [batch] * (args.warmup + args.steps), args.warmup, device,
                                  lambda b, m=model: train_flops(m, b))  # fmt: skip
        except Exception as err:  # out of memory at the longest lengths: keep the others
            stats = {"error": f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"}
        rows.append({"length": length, "sentences_per_batch": sentences, **stats})
        if "error" in stats:
            print(f"[length] {spec.name} L={length} failed: {stats['error']}", flush=True)
        else:
            print(f"[length] {spec.name} train L={length}: {stats['tokens_per_s']:.0f} tok/s, "
                  f"peak {stats['peak_mem_gb']:.2f} GB", flush=True)  # fmt: skip
        del model, step
        _free(device)
    return rows


def length_decoding(
    model: Seq2SeqModule, name: str, args: argparse.Namespace, device: torch.device
) -> list[dict[str, Any]]:
    """Seconds per sentence of greedy and beam search against the output length, every
    hypothesis forced to the length (EOS banned, :class:`NoEOS`); the same sources throughout."""
    src = fixed_length_batch(args.decode_sentences, args.decode_src_len, args.vocab_size,
                             args.seed).src.to(device)  # fmt: skip
    rows = []
    with torch.inference_mode(), _autocast(device, args.precision):
        for beam in args.beams:
            run = _ours(model, beam)
            run(DecodeBatch(src, src == PAD_ID, min(args.lengths)))  # warm-up
            for length in args.lengths:
                _synchronize(device)
                start = time.perf_counter()
                outputs = run(DecodeBatch(src, src == PAD_ID, length))
                _synchronize(device)
                seconds = time.perf_counter() - start
                generated = sum(len(o) for o in outputs)
                rows.append({
                    "beam": beam, "output_length": length,
                    "mean_generated_length": generated / len(outputs),
                    "seconds_per_sentence": seconds / len(outputs),
                    "ms_per_token": 1e3 * seconds / max(generated, 1),
                    **_decode_speed(len(outputs), generated, seconds),
                })  # fmt: skip
                print(f"[length] {name} decode beam {beam} N={length}: "
                      f"{rows[-1]['seconds_per_sentence'] * 1e3:.1f} ms/sentence", flush=True)  # fmt: skip
    return rows


def run_length(args: argparse.Namespace, device: torch.device) -> tuple[dict, list[str]]:
    notes = [
        "Training: for every length L, batches of max_tokens // L random sentence pairs whose "
        "source and target both have exactly L tokens (EOS included), so no padding and the "
        "same token budget at every length; a fresh model and AdamW per length (lr 1e-3, betas "
        f"(0.9, 0.98), wd 1e-4); {args.warmup} untimed warm-up step(s), then {args.steps} timed "
        "steps of the same batch (forward + label-smoothed loss, backward, optimizer step), each "
        "between device synchronisations. tokens_per_s counts source + target tokens.",
        "peak_mem_gb: torch.cuda.max_memory_allocated on a GPU; on a CPU the process's peak RSS "
        "(VmHWM, reset before each length), which includes the interpreter and libraries "
        "(rss_at_start_gb).",
        f"Decoding: {args.decode_sentences} random sources of {args.decode_src_len} tokens in one "
        "batch, EOS banned (NoEOS) so that every hypothesis runs to the output length N; one "
        "untimed warm-up at the shortest N per beam size, then one timed run per N. A recurrent "
        "decoder carries a state of fixed size per step; a Transformer's self-attention cache "
        "grows with the prefix.",
        "Random weights: speed only. Recurrent models with 'feed'/'nofeed' in their name run "
        "with input feeding on/off (per-step loop vs one RNN call per layer in training).",
        f"Precision: {args.precision} for training and decoding (bf16-mixed: torch.autocast to "
        "bf16, weights and optimizer in float32).",
    ]
    results: dict[str, Any] = {
        "lengths": args.lengths, "max_tokens": args.max_tokens,
        "decode_sentences": args.decode_sentences, "decode_src_len": args.decode_src_len,
        "models": [],
    }  # fmt: skip
    for spec in model_specs(args, device):
        torch.manual_seed(args.seed)
        model = spec.build(args.vocab_size)
        entry: dict[str, Any] = {
            "name": spec.name, "arch": spec.arch, "config": spec.source,
            "input_feeding": spec.init_args.get("input_feeding") if spec.recurrent else None,
            "init_args": spec.init_args, "parameters": num_parameters(model),
            "train": length_training(spec, args, device),
        }  # fmt: skip
        if not args.no_decode:
            entry["decode"] = length_decoding(model.to(device).eval(), spec.name, args, device)
        results["models"].append(entry)
        del model
        _free(device)
    return results, notes


def plot_length(results: dict[str, Any], path: Path) -> Path:
    """Training tokens/s and peak memory against L, decoding time per sentence against N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (tps, mem, dec) = plt.subplots(1, 3, figsize=(16, 4.8))
    for k, model in enumerate(results["models"]):
        color = f"C{k % 10}"
        train = [r for r in model["train"] if "error" not in r]
        lengths = [r["length"] for r in train]
        tps.plot(lengths, [r["tokens_per_s"] for r in train], marker=".", color=color, label=model["name"])
        mem.plot(lengths, [r["peak_mem_gb"] for r in train], marker=".", color=color, label=model["name"])
        for i, beam in enumerate(sorted({r["beam"] for r in model.get("decode", [])})):
            style = ["-", "--", ":", "-."][i % 4]
            rows = [r for r in model["decode"] if r["beam"] == beam]
            dec.plot([r["output_length"] for r in rows], [r["seconds_per_sentence"] for r in rows],
                     marker=".", color=color, linestyle=style, label=f"{model['name']} beam {beam}")  # fmt: skip
    for ax, title, ylabel in [
        (tps, "training throughput", "tokens/s (source + target)"),
        (mem, "training peak memory", "GB"),
        (dec, "decoding (EOS banned)", "seconds per sentence"),
    ]:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    tps.set_xlabel(f"sentence length L (budget {results['max_tokens']} tokens per batch)")
    mem.set_xlabel("sentence length L")
    dec.set_xlabel(f"output length N (source length {results['decode_src_len']})")
    tps.legend(fontsize=7)
    dec.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _apply_defaults(args: argparse.Namespace, device: torch.device) -> list[str]:
    """Fill size defaults that depend on --smoke and the device; say which were reduced."""
    gpu = device.type == "cuda"
    if args.vocab_size is None:
        args.vocab_size = 320 if args.smoke else 8000
    reduced = []
    if args.subcommand == "data":
        if args.pairs is None:
            args.pairs = [20_000, 2_000] if args.smoke else [2_000_000, 200_000]
        if args.synthetic_vocab_size is None:
            args.synthetic_vocab_size = 1000 if args.smoke else 8000
        if args.tokenizer_sample is None:
            args.tokenizer_sample = 2_000 if args.smoke else 20_000
    if args.subcommand == "decode":
        if args.sentences is None and args.smoke:
            args.sentences = 48
        if args.max_tokens is None:
            args.max_tokens = 256 if args.smoke else 4096
        if args.repeats is None:
            args.repeats = 1 if args.smoke else 3
        if args.repeats < 1:
            raise UsageError(f"--repeats must be >= 1, got {args.repeats}")
        if args.sentences is not None:
            reduced.append(f"decode: first {args.sentences} sentences of the test split")
        if args.kv_sentences is not None:
            reduced.append(f"decode: KV-cache speed-up on the first {args.kv_sentences} sentences")
    if args.subcommand == "train":
        if args.warmup is None:
            args.warmup = 1 if args.smoke else (10 if gpu else 3)
        if args.steps is None:
            args.steps = 2 if args.smoke else (50 if gpu else 10)
        if args.steps < 1 or args.warmup < 0:
            raise UsageError(f"--steps must be >= 1 and --warmup >= 0, got {args.steps} and {args.warmup}")
    if args.subcommand == "length":
        _length_defaults(args, gpu)
    if args.subcommand in ("decode", "train", "length") and args.input_feeding is None:
        args.input_feeding = "both" if args.subcommand == "length" else "config"
    if args.smoke:
        reduced.append("--smoke: tiny models and sizes; the numbers only show that it runs")
    return reduced


def _length_defaults(args: argparse.Namespace, gpu: bool) -> None:
    """``mt benchmark length``'s size defaults, and its option checks."""
    if args.lengths is None:
        args.lengths = [8, 16] if args.smoke else [8, 16, 32, 64, 128, 256]
    if args.max_tokens is None:
        args.max_tokens = 128 if args.smoke else 4096
    if args.warmup is None:
        args.warmup = 1
    if args.steps is None:
        args.steps = 1 if args.smoke else (20 if gpu else 3)
    if args.decode_sentences is None:
        args.decode_sentences = 2 if args.smoke else 16
    if args.precision is None:  # what `--trainer.precision null` chooses on this device
        args.precision = resolve_precision(None, "gpu" if gpu else "cpu")[0]
    if min(args.lengths) < 2 or args.decode_src_len < 2:
        raise UsageError("--lengths and --decode_src_len must be >= 2 (a token and EOS)")
    if args.steps < 1 or args.warmup < 0 or args.max_tokens < 1 or args.decode_sentences < 1:
        raise UsageError("--steps, --max_tokens and --decode_sentences must be >= 1, --warmup >= 0")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mt benchmark data|decode|train|length`` (options: :mod:`mt.commands`); returns the
    exit status (2: bad input); a bad command line is ``SystemExit(2)``."""
    from mt.commands import run_command

    return run_command("benchmark", argv)


def _main(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    try:
        device = resolve_device(args.device)
    except TranslateError as err:
        raise SystemExit(f"error: {err}") from None
    reduced = _apply_defaults(args, device)
    command = shlex.join(sys.argv if argv is None else ["scripts/benchmark.py", *argv])
    env = environment(device)
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    started = time.perf_counter()
    timestamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    print(f"[{args.subcommand}] {env['device']}, {env['torch_threads']} threads", flush=True)
    runner = {"data": run_data, "decode": run_decode, "train": run_train, "length": run_length}[
        args.subcommand
    ]
    results, notes = runner(args, device)
    settings = {k: v for k, v in vars(args).items() if k not in ("out",)}
    payload = {
        "benchmark": args.subcommand,
        "timestamp": timestamp,
        "command": command,
        **env,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "wall_seconds": time.perf_counter() - started,
        "settings": settings,
        "reduced": reduced,
        "notes": notes,
        "results": results,
    }
    out = args.out or default_output(args.subcommand, device, args.smoke)
    write_result(out, payload)
    print(f"[{args.subcommand}] wrote {out}", flush=True)
    if args.subcommand == "length":
        print(f"[length] wrote {plot_length(results, out.with_suffix('.png'))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
