"""``mt benchmark data``: the share of non-padding tokens in the data module's token-budget
batches vs random fixed-size batches on a real corpus; ``encode_corpus`` throughput and the memory
of one data-loader worker iterating a full epoch, on a large vs a small synthetic corpus.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import multiprocessing.context
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from mt.data.batching import Batch, ParallelDataset, TokenBudgetBatchSampler, collate
from mt.data.cache import EncodedCorpus, encode_corpus
from mt.data.datamodule import TranslationDataModule
from mt.data.tokenizer import train_tokenizer
from mt.tools.benchmark.common import proc_status_kb


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

