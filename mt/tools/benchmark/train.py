"""``mt benchmark train``: forward + backward + AdamW step throughput on non-padding tokens, step
time, peak memory, model FLOP/s (and MFU on a GPU with a known peak) for both architectures and
Marian, eager and optionally ``torch.compile``-d, at each precision.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mt.data.batching import Batch
from mt.data.datamodule import TranslationDataModule
from mt.models.module import Seq2SeqModule
from mt.precision import BF16, FP32, resolve_precision
from mt.tools.benchmark.common import (
    autocast,
    free_memory,
    hugging_face_rows,
    proc_status_kb,
    reset_peak_rss,
    synchronize,
)
from mt.tools.benchmark.specs import marian_for, model_specs, num_parameters


def train_precisions(device: torch.device) -> tuple[str, ...]:
    """What ``mt benchmark train`` compares by default: float32, and bf16 autocast where the
    device multiplies bf16 natively (as ``--trainer.precision null`` would choose)."""
    native = resolve_precision(None, "gpu" if device.type == "cuda" else "cpu")[0] == BF16
    return (FP32, BF16) if native else (FP32,)


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


def make_optimizer(model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """AdamW as in the configs (lr 1e-3, betas (0.9, 0.98), wd 1e-4); fused on a GPU."""
    kwargs: dict[str, Any] = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(
        model.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=1e-4, **kwargs
    )


def mt_train_step(
    model: Seq2SeqModule, optimizer: torch.optim.Optimizer, device: torch.device, precision: str
):
    def step(batch: Batch) -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss, _, n_tokens = model._loss(batch, model.label_smoothing)  # as training_step
            loss = loss / n_tokens
        loss.backward()
        optimizer.step()

    return step


def hf_train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device, precision: str
):
    def step(batch: Batch) -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
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
        synchronize(device)
        t0 = time.perf_counter()
        step(batch)
        synchronize(device)
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


def median_round(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median time (the upper one of an even count), with every round's
    seconds and tokens/s; a round's error wins."""
    errors = [r for r in rounds if "error" in r]
    if errors:
        return errors[0]
    median = sorted(rounds, key=lambda r: r["seconds"])[len(rounds) // 2]
    return {
        **median,
        "repeats": len(rounds),
        "seconds_runs": [round(r["seconds"], 3) for r in rounds],
        "tokens_per_s_runs": [round(r["tokens_per_s"]) for r in rounds],
    }


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
    compile_systems = set(args.compile_systems.split(",")) if args.compile else set()
    precisions = tuple(args.precisions or train_precisions(device))
    notes = [
        "Plain PyTorch loop (no Trainer): zero_grad, forward + loss, backward, AdamW step "
        "(lr 1e-3, betas (0.9, 0.98), wd 1e-4; fused on a GPU); no gradient clipping. "
        f"{args.warmup} warm-up steps excluded, then {args.steps} timed steps, each timed "
        "between device synchronisations. Data loading is outside the timing (batches are "
        "collated and moved to the device first). The same batches for every system.",
        f"Each system runs {args.repeats} time(s), the systems taking turns (a, b, a, b, ...) so "
        "that a machine whose speed drifts slows them alike; a row is its median run "
        "(seconds_runs and tokens_per_s_runs list every run; the models keep training from run "
        "to run). With more than one run every system stays in memory throughout, so peak_mem_gb "
        "includes the others' (see rss_at_start_gb); --repeats 1 measures each system's memory "
        "alone.",
        "mt loss = Seq2SeqModule._loss as in training_step (label-smoothed CE and the plain NLL "
        "for logging, both from one chunked float32 pass over the logits: mt.models.loss); "
        "Hugging Face: MarianMTModel with labels (one plain CE, PAD labels = -100), "
        "decoder_input_ids = our tgt_in.",
        "tokens/s count non-padding tokens (src incl. EOS, tgt_out incl. EOS); "
        "padded_tokens_per_s counts all elements of src and tgt_out.",
        "model FLOPs from mt.eval.throughput.train_flops on non-padding tokens; the Marian rows use "
        "the formula of our Transformer of the same size (same matrix shapes). MFU only on a "
        "GPU with a known dense bf16 peak.",
        "peak_mem_gb: torch.cuda.max_memory_allocated on a GPU; on a CPU the process's peak RSS "
        "(VmHWM, reset through /proc/self/clear_refs before each run), which includes the "
        "interpreter, libraries and data (see rss_at_start_gb).",
        f"Precision: {', '.join(precisions)} (bf16-mixed: torch.autocast to bf16, weights and "
        "optimizer in float32, as Lightning's bf16-mixed; mt's loss in float32: mt.models.loss).",
    ]
    if args.compile:
        notes.append(
            f"torch.compile (nn.Module.compile, default mode) for {sorted(compile_systems)}; "
            "compilation and recompilation for new shapes happen in the warm-up steps "
            "(warmup_seconds); 'lstm' is left out by default because its input-feeding "
            "decoder loops over time, which compiles once per target length."
        )
    use_hf = hugging_face_rows(args, notes)
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
    combos = []  # (spec, system, compiled, precision)
    for spec in specs:
        systems = ["mt"] + (["hf-marian"] if spec.arch == "transformer" and use_hf else [])
        compile_key = {"mt": spec.arch, "hf-marian": "hf-marian"}
        combos += [(spec, s, False, p) for p in precisions for s in systems]
        combos += [
            (spec, s, True, p)
            for p in precisions
            for s in systems
            if compile_key[s] in compile_systems
        ]

    def build(spec: Any, system: str, compiled: bool, precision: str) -> tuple[dict, Any, Any]:
        """A system ready to train: its row's fields, its step and its FLOP formula."""
        torch.manual_seed(args.seed)
        reference = spec.build(args.vocab_size)  # for the FLOP formula
        if system == "mt":
            model = reference.to(device).train()
            step = mt_train_step(model, make_optimizer(model, device), device, precision)
        else:
            model = marian_for(spec, args.vocab_size).to(device).train()
            step = hf_train_step(model, make_optimizer(model, device), device, precision)
        if compiled:
            model.compile()
        fields = {"parameters": num_parameters(model)}
        return fields, step, lambda b, m=reference: train_flops(m, b)

    # Taking turns needs every system in memory at once; one pass builds each in turn and frees
    # it before the next (so that its peak memory is its own).
    keep = args.repeats > 1
    built: dict[int, tuple[dict, Any, Any]] = {}
    rounds: list[list[dict[str, Any]]] = [[] for _ in combos]
    fields: list[dict[str, Any]] = [{} for _ in combos]
    labels = [
        f"{spec.name} {system} {precision}{' compiled' if compiled else ''}"
        for spec, system, compiled, precision in combos
    ]
    for round_ in range(args.repeats):
        for i, combo in enumerate(combos):
            if rounds[i] and "error" in rounds[i][-1]:
                continue
            print(f"[train] {labels[i]} (run {round_ + 1} of {args.repeats}) ...", flush=True)
            try:
                if i not in built:
                    built[i] = build(*combo)
                fields[i], step, flops_of = built[i]
                stats = time_training(step, batches, args.warmup, device, flops_of)
            except Exception as err:  # e.g. a compiler missing on this machine: keep the others
                stats = {"error": f"{type(err).__name__}: {err}"}
                print(f"[train] {labels[i]} failed: {stats['error']}", flush=True)
            rounds[i].append(stats)
            step = flops_of = None  # the last references outside `built`
            if not keep:
                built.pop(i, None)
            free_memory(device)
    built.clear()
    for (spec, system, compiled, precision), label, extra, stats_of_rounds in zip(
        combos, labels, fields, rounds, strict=True
    ):
        stats = median_round(stats_of_rounds)
        results["runs"].append({
            "model": spec.name,
            "arch": spec.arch,
            "system": system,
            "compiled": compiled,
            "precision": precision,
            "config": spec.source,
            "init_args": spec.init_args,
            **extra,
            **stats,
        })  # fmt: skip
        if "error" not in stats:
            print(
                f"[train] {label}: {stats['tokens_per_s']:.0f} tok/s "
                f"(tgt {stats['tgt_tokens_per_s']:.0f}), step {stats['step_time_s']:.3f} s, "
                f"peak {stats['peak_mem_gb']:.2f} GB, "
                f"{stats.get('model_tflops_per_s', 0) * 1e3:.1f} GFLOP/s"
                + (f", runs {stats['tokens_per_s_runs']}" if len(stats_of_rounds) > 1 else ""),
                flush=True,
            )
    return results, notes

