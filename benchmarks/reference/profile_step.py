#!/usr/bin/env python
"""Where one training step's CPU time goes, in float32 and under bf16 autocast (issue #19).

Runs mt's training step (forward, label-smoothed loss, backward, AdamW) on the same Multi30k
batches as ``mt benchmark train`` under ``torch.profiler`` and groups the operators' self time
into classes: matrix products (what bf16 speeds up), softmax/log-softmax, LayerNorm, dtype casts
and copies, the optimizer, and the remaining element-wise work. The bf16/float32 ratio per class
says which part of the step keeps the whole step from gaining what the matrix products gain.

    python benchmarks/reference/profile_step.py --config configs/transformer-small.yaml \
        --threads 1 --out benchmarks/results/profile-step
"""
import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.profiler import ProfilerActivity, profile

from mt.tools.benchmark import environment, spec_from_config, training_batches

CLASSES = [  # (class, substrings of the operator name), first match wins
    ("matmul", ("mm", "linear", "matmul", "mkldnn", "onednn", "_rnn", "lstm", "gru", "rnn_tanh")),
    ("softmax", ("softmax",)),
    ("layer_norm", ("layer_norm",)),
    ("cast/copy", ("copy_", "_to_copy", "to", "contiguous", "clone", "cat", "stack")),
    ("optimizer", ("adam", "_foreach", "lerp", "addcdiv", "addcmul", "sqrt")),
    ("loss", ("nll_loss", "cross_entropy", "logsumexp", "exp_", "scatter_add", "gather")),
    ("dropout", ("bernoulli", "random_", "dropout")),
]


def op_class(name: str) -> str:
    short = name.removeprefix("aten::")
    for cls, keys in CLASSES:
        if any(key == short or key in short for key in keys):
            return cls
    return "other"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/transformer-small.yaml")
    p.add_argument("--data_dir", default="data/multi30k")
    p.add_argument("--vocab_size", type=int, default=8000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--out", default="benchmarks/results/profile-step")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    spec = spec_from_config(a.config)
    data = SimpleNamespace(data_dir=a.data_dir, vocab_size=a.vocab_size, seed=1, pad_to_multiple=1)
    batches = training_batches(data, spec.max_tokens, a.warmup + a.steps)
    tokens = sum(b.n_tgt_tokens for b in batches[a.warmup:])
    result = {"config": a.config, "threads": a.threads, "steps": a.steps,
              "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "environment": environment(torch.device("cpu")), "precisions": {}}
    for precision in ("32-true", "bf16-mixed"):
        torch.manual_seed(1)
        model = spec.build(a.vocab_size).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=1e-4)
        cast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed")

        def step(batch):
            opt.zero_grad(set_to_none=True)
            with cast:
                loss, _, n = model._loss(batch, model.label_smoothing)
            (loss / n).backward()
            opt.step()

        for batch in batches[: a.warmup]:
            step(batch)
        t0 = time.perf_counter()
        for batch in batches[a.warmup:]:
            step(batch)
        wall = time.perf_counter() - t0
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for batch in batches[a.warmup:]:
                step(batch)
        by_class: dict[str, float] = defaultdict(float)
        ops = []
        for ev in prof.key_averages():
            ms = ev.self_cpu_time_total / 1e3 / a.steps
            by_class[op_class(ev.key)] += ms
            ops.append({"op": ev.key, "self_ms_per_step": round(ms, 3), "calls_per_step": ev.count / a.steps})
        ops.sort(key=lambda o: -o["self_ms_per_step"])
        result["precisions"][precision] = {
            "step_ms_unprofiled": 1e3 * wall / a.steps,
            "tgt_tokens_per_s_unprofiled": tokens / wall,
            "self_ms_per_step_by_class": {k: round(v, 2) for k, v in sorted(by_class.items(), key=lambda kv: -kv[1])},
            "top_ops": ops[:30],
        }
        print(f"{precision}: {1e3 * wall / a.steps:.0f} ms/step, {tokens / wall:.0f} tgt tokens/s")
        for cls, ms in result["precisions"][precision]["self_ms_per_step_by_class"].items():
            print(f"  {cls:12s} {ms:8.1f} ms")
    fp, bf = (result["precisions"][k]["self_ms_per_step_by_class"] for k in ("32-true", "bf16-mixed"))
    result["bf16_speedup_by_class"] = {k: round(fp[k] / bf[k], 2) for k in fp if bf.get(k)}
    result["bf16_speedup_step"] = round(result["precisions"]["32-true"]["step_ms_unprofiled"]
                                        / result["precisions"]["bf16-mixed"]["step_ms_unprofiled"], 3)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(a.config).stem
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    print("speedup by class:", result["bf16_speedup_by_class"], "step:", result["bf16_speedup_step"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
