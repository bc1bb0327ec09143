"""``mt benchmark length``: training tokens/s and peak memory on batches of one fixed sentence
length L at an equal token budget, and decoding time per sentence against the output length (EOS
banned), for every architecture and cell, recurrent ones with input feeding off and on; JSON + plot.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from mt.data.batching import Batch, collate
from mt.data.tokenizer import EOS_ID, PAD_ID
from mt.models.module import Seq2SeqModule
from mt.tools.benchmark.common import autocast, free_memory, synchronize
from mt.tools.benchmark.decode import DecodeBatch, decode_speed, mt_search
from mt.tools.benchmark.specs import ModelSpec, model_specs, num_parameters
from mt.tools.benchmark.train import make_optimizer, mt_train_step, time_training


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
        step = mt_train_step(model, make_optimizer(model, device), device, args.precision)
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
        free_memory(device)
    return rows


def length_decoding(
    model: Seq2SeqModule, name: str, args: argparse.Namespace, device: torch.device
) -> list[dict[str, Any]]:
    """Seconds per sentence of greedy and beam search against the output length, every
    hypothesis forced to the length (EOS banned, :class:`NoEOS`); the same sources throughout."""
    src = fixed_length_batch(args.decode_sentences, args.decode_src_len, args.vocab_size,
                             args.seed).src.to(device)  # fmt: skip
    rows = []
    with torch.inference_mode(), autocast(device, args.precision):
        for beam in args.beams:
            run = mt_search(model, beam)
            run(DecodeBatch(src, src == PAD_ID, min(args.lengths)))  # warm-up
            for length in args.lengths:
                synchronize(device)
                start = time.perf_counter()
                outputs = run(DecodeBatch(src, src == PAD_ID, length))
                synchronize(device)
                seconds = time.perf_counter() - start
                generated = sum(len(o) for o in outputs)
                rows.append({
                    "beam": beam, "output_length": length,
                    "mean_generated_length": generated / len(outputs),
                    "seconds_per_sentence": seconds / len(outputs),
                    "ms_per_token": 1e3 * seconds / max(generated, 1),
                    **decode_speed(len(outputs), generated, seconds),
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
        free_memory(device)
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

