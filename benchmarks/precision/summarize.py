"""Summarise benchmarks/precision/parity.sh: validation BLEU and loss per model and precision
over seeds, the bf16 - float32 difference paired by seed with a 95% t-interval, and the mean
training step time. Writes JSON (--out) and prints a Markdown table.

    python benchmarks/precision/summarize.py runs/parity --out benchmarks/results/precision/parity-cpu.json
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
from pathlib import Path

#: Two-sided 95% quantiles of Student's t for 1-10 degrees of freedom.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228}  # fmt: skip


def read_run(run: Path) -> dict[str, float]:
    rows = [r for f in run.glob("fit/**/metrics.csv") for r in csv.DictReader(f.open())]
    val = [r for r in rows if r.get("val/bleu")]
    if not val:
        raise SystemExit(f"{run}: no validation row yet (run benchmarks/precision/parity.sh)")
    last = max(val, key=lambda r: int(r["step"]))
    times = [float(r["train/step_time"]) for r in rows if r.get("train/step_time")]
    return {
        "step": int(last["step"]),
        "val_bleu": float(last["val/bleu"]),
        "val_loss": float(last["val/loss"]),
        "mean_step_time_s": statistics.mean(times) if times else float("nan"),
    }


def interval(values: list[float]) -> list[float]:
    mean = statistics.mean(values)
    if len(values) < 2:
        return [mean, mean]
    half = T975[len(values) - 1] * statistics.stdev(values) / len(values) ** 0.5
    return [mean - half, mean + half]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    runs: dict[tuple[str, str], dict[int, dict[str, float]]] = {}
    for run in sorted(p for p in args.runs.iterdir() if p.is_dir()):
        match = re.fullmatch(r"(.+)-(32-true|bf16-mixed)-s(\d+)", run.name)
        if match:
            model, precision, seed = match.groups()
            runs.setdefault((model, precision), {})[int(seed)] = read_run(run)
    summary = []
    print("| model | precision | seeds | steps | val BLEU (mean ± sd) | val loss | step time (s) |")
    print("|---|---|---|---:|---:|---:|---:|")
    for (model, precision), by_seed in sorted(runs.items()):
        bleu = [r["val_bleu"] for r in by_seed.values()]
        loss = [r["val_loss"] for r in by_seed.values()]
        times = [r["mean_step_time_s"] for r in by_seed.values()]
        sd = statistics.stdev(bleu) if len(bleu) > 1 else 0.0
        steps = sorted({r["step"] for r in by_seed.values()})
        print(f"| {model} | {precision} | {len(bleu)} | {steps} | {statistics.mean(bleu):.2f} ± "
              f"{sd:.2f} | {statistics.mean(loss):.3f} | {statistics.mean(times):.2f} |")
        summary.append({"model": model, "precision": precision, "seeds": by_seed})
    differences = []
    for model in sorted({m for m, _ in runs}):
        fp32, bf16 = runs.get((model, "32-true"), {}), runs.get((model, "bf16-mixed"), {})
        seeds = sorted(set(fp32) & set(bf16))
        if not seeds:
            continue
        diff = [bf16[s]["val_bleu"] - fp32[s]["val_bleu"] for s in seeds]
        loss_diff = [bf16[s]["val_loss"] - fp32[s]["val_loss"] for s in seeds]
        entry = {"model": model, "seeds": seeds, "bleu_bf16_minus_fp32": diff,
                 "bleu_difference_mean": statistics.mean(diff), "bleu_difference_ci95": interval(diff),
                 "loss_bf16_minus_fp32": loss_diff, "loss_difference_ci95": interval(loss_diff)}  # fmt: skip
        differences.append(entry)
        lo, hi = entry["bleu_difference_ci95"]
        print(f"\n{model}: bf16 - fp32 val BLEU {entry['bleu_difference_mean']:+.2f} "
              f"[{lo:+.2f}, {hi:+.2f}] over seeds {seeds}; val loss {statistics.mean(loss_diff):+.3f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"runs": summary, "differences": differences}, indent=1))


if __name__ == "__main__":
    main()
