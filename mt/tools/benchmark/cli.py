"""The command line of ``mt benchmark data|decode|train|length``: each job's options as typed
functions (jsonargparse builds the parser and ``--help`` from them, as for the other commands of
:mod:`mt.commands`), and the entry point.

Nothing here imports torch: ``mt --help`` and ``mt benchmark --help`` answer at once; the job
itself is :func:`mt.tools.benchmark.run.run_job`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal


def benchmark_common(
    smoke: bool = False,
    out: Path | None = None,
    device: str = "auto",
    threads: int | None = None,
    seed: int = 1,
    data_dir: str = "data/multi30k",
    vocab_size: int | None = None,
    no_hf: bool = False,
) -> None:
    """Options of every benchmark job (results: benchmarks/README.md).

    Args:
        smoke: tiny sizes for CI: seconds, not minutes.
        out: result file (default: benchmarks/results/{job}-{device}.json in the current folder).
        device: auto, cpu, cuda, cuda:1.
        threads: torch intra-op threads (default: torch's).
        seed: random seed.
        data_dir: corpus folder ({split}.{lang}).
        vocab_size: sentencepiece vocabulary (default: 8000; --smoke 320).
        no_hf: skip the Hugging Face Marian rows.
    """


def benchmark_models(
    transformer_config: str | None = None,
    lstm_config: str | None = None,
    large: bool = False,
    configs: list[str] | None = None,
    input_feeding: Literal["config", "both"] | None = None,
) -> None:
    """The models that decode, train and length measure.

    Args:
        transformer_config: config whose Transformer size is used (decode, train).
        lstm_config: config whose recurrent model is used, any cell (decode, train).
        large: also Transformer-base (512, 6+6, ffn 2048, 8 heads) and a GNMT-like 4-layer
            LSTM 1024 (decode, train).
        configs: measure these configs instead (any mix of Transformer and recurrent ones,
            e.g. configs/gru-small.yaml configs/rnn-small.yaml); length's default: the four
            small configs (transformer, lstm, gru, rnn).
        input_feeding: recurrent models as their config says (config), or each with input
            feeding off and on (both). Default: both for length, config for decode and train.
    """


def benchmark_data(
    max_tokens: int = 4096,
    random_batch: int = 128,
    pairs: tuple[int, int] | None = None,
    synthetic_vocab_size: int | None = None,
    tokenizer_sample: int | None = None,
    work_dir: str | None = None,
) -> None:
    """Padding share of token-budget batches and memory of the memory-mapped corpus.

    Args:
        max_tokens: token budget.
        random_batch: random batch size.
        pairs: synthetic corpus sizes LARGE SMALL (default: 2000000 200000; --smoke 20000 2000).
        synthetic_vocab_size: vocabulary of the synthetic corpora (8000; --smoke 1000).
        tokenizer_sample: lines per side the synthetic corpora's tokenizer is trained on
            (20000; --smoke 2000).
        work_dir: keep the synthetic corpora here (default: a temporary folder).
    """


def benchmark_decode(
    sentences: int | None = None,
    beams: tuple[int, ...] = (1, 5),
    max_tokens: int | None = None,
    max_len_a: float = 1.2,
    max_len_b: float = 10.0,
    repeats: int | None = None,
    no_kv_check: bool = False,
    kv_sentences: int | None = None,
) -> None:
    """Greedy and beam search speed, against Hugging Face Marian.

    Args:
        sentences: first N test lines (default: all; --smoke 48).
        beams: beam sizes.
        max_tokens: source-token budget per batch (4096).
        max_len_a: decoding steps = a * source length + b.
        max_len_b: decoding steps = a * source length + b.
        repeats: timed runs per system, taking turns; the median counts (3).
        no_kv_check: skip the KV-cache speed-up.
        kv_sentences: measure the KV-cache speed-up on the first N only (default: all).
    """


def benchmark_train(
    warmup: int | None = None,
    steps: int | None = None,
    max_tokens: int | None = None,
    pad_to_multiple: int = 1,
    compile: bool = False,
    compile_systems: str = "transformer,hf-marian",
    precisions: tuple[Literal["32-true", "bf16-mixed"], ...] | None = None,
    repeats: int | None = None,
) -> None:
    """Training throughput, against Hugging Face Marian on the same batches.

    Args:
        warmup: untimed warm-up steps (CPU 3, GPU 10).
        steps: timed steps (CPU 10, GPU 50; --smoke 2).
        max_tokens: token budget (default: the config's).
        pad_to_multiple: pad lengths to a multiple of this (8 helps torch.compile).
        compile: add torch.compile-d runs.
        compile_systems: which to compile with --compile: transformer, lstm, gru, rnn,
            hf-marian (comma-separated).
        precisions: measure each system at these (default: 32-true, plus bf16-mixed where
            the device has native bf16).
        repeats: timed runs per system, the systems taking turns; the median counts (CPU 3,
            GPU 1; --smoke 1).
    """


def benchmark_length(
    lengths: tuple[int, ...] | None = None,
    max_tokens: int | None = None,
    warmup: int | None = None,
    steps: int | None = None,
    beams: tuple[int, ...] = (1, 5),
    decode_sentences: int | None = None,
    decode_src_len: int = 32,
    no_decode: bool = False,
    precision: Literal["32-true", "bf16-mixed"] | None = None,
) -> None:
    """Throughput against sentence length: training tokens/s and peak memory on batches of
    one fixed length at an equal token budget, and decoding time per sentence against the
    output length (every hypothesis forced to the length).

    Args:
        lengths: sentence lengths L in subwords, source and target, EOS included (default 8 16
            32 64 128 256; --smoke 8 16).
        max_tokens: token budget per training batch: max_tokens // L sentences of L source and L
            target tokens (default 4096; --smoke 128).
        warmup: untimed warm-up steps per length (default 1).
        steps: timed training steps per length (CPU 3, GPU 20; --smoke 1).
        beams: beam sizes of the decoding part (1 = greedy).
        decode_sentences: sentences decoded per output length, in one batch (16; --smoke 2).
        decode_src_len: source length of the decoded sentences, the same for every output length.
        no_decode: training part only.
        precision: of training and decoding (default: bf16-mixed where the device has native
            bf16, else 32-true, as --trainer.precision null chooses).
    """


#: ``mt benchmark {job}``: the signatures whose options it takes, the job's own last.
BENCHMARKS: dict[str, tuple[Callable[..., None], ...]] = {
    "data": (benchmark_common, benchmark_data),
    "decode": (benchmark_common, benchmark_models, benchmark_decode),
    "train": (benchmark_common, benchmark_models, benchmark_train),
    "length": (benchmark_common, benchmark_models, benchmark_length),
}


BENCHMARK_HELP = """Benchmarks of mt: data pipeline, decoding speed, training throughput, throughput
against sentence length.

Each job writes a JSON with device, versions, git commit and command line (see
benchmarks/README.md): `mt benchmark data|decode|train|length --help`.
"""


def run_benchmark(job: str, options: dict[str, Any], argv: Sequence[str]) -> int:
    """Run one benchmark job with its parsed options; returns the exit status."""
    import torch

    from mt.tools.benchmark.run import run_job

    args = argparse.Namespace(subcommand=job, **options)
    for name in ("pairs", "beams", "lengths"):  # the lists the jobs expect
        if getattr(args, name, None) is not None:
            setattr(args, name, list(getattr(args, name)))
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return run_job(args, [job, *argv])
    finally:
        torch.set_num_threads(threads)  # may run in-process (tests)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mt benchmark data|decode|train|length``; returns the exit status (2: bad input); a
    bad command line is ``SystemExit(2)``."""
    from mt.commands import run_command

    return run_command("benchmark", argv)
