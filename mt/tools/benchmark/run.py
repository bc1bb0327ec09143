"""One run of a benchmark job: the size defaults that depend on ``--smoke`` and the device, the job,
and its result file (environment, command line, settings, notes, numbers).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone

import torch

from mt.commands import UsageError
from mt.precision import resolve_precision
from mt.tools.benchmark.data import run_data
from mt.tools.benchmark.decode import run_decode
from mt.tools.benchmark.length import plot_length, run_length
from mt.tools.benchmark.record import default_output, environment, write_result
from mt.tools.benchmark.train import run_train
from mt.tools.translate import TranslateError, resolve_device


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
        if args.repeats is None:
            args.repeats = 1 if args.smoke or gpu else 3
        if args.repeats < 1:
            raise UsageError(f"--repeats must be >= 1, got {args.repeats}")
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


def run_job(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """Run the job ``args.subcommand`` with the parsed options ``args`` (see
    :func:`mt.tools.benchmark.cli.run_benchmark`) and write its result file: ``--out``, else
    ``benchmarks/results/{job}-{device tag}[-smoke].json`` under the current folder; returns 0."""
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


