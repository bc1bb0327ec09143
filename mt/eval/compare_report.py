"""The comparison report's Markdown (``report.md``) and PNG plots, from a
:class:`mt.eval.comparison.CompareReport`.

Plots are drawn with matplotlib's Agg canvas (no display needed); without matplotlib they are
skipped with a warning.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mt.eval.comparison import CompareReport

__all__ = ["format_report_md", "write_plots"]


# --------------------------------------------------------------------------------------------
# report.md
# --------------------------------------------------------------------------------------------


def _missing(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _num(x: float | None, digits: int = 1) -> str:
    return "n/a" if _missing(x) else f"{x:.{digits}f}"


def _with_ci(value: float, ci: Sequence[float]) -> str:
    text = _num(value)
    if not _missing(value) and not any(_missing(c) for c in ci):
        text += f" [{ci[0]:.1f}, {ci[1]:.1f}]"
    return text


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> list[str]:
    aligns = align or "l" + "r" * (len(header) - 1)
    marks = ["---:" if a == "r" else "---" for a in aligns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _count(x: float | None) -> str:
    if x is None:
        return "n/a"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:.2f}{unit}"
    return f"{x:.0f}"


def format_report_md(report: CompareReport) -> str:
    """The Markdown report (``report.md``) of a comparison."""
    models = report.models
    names = [m.name for m in models]
    md = [
        "# Model comparison",
        "",
        f"Test set: `{report.src}` -> `{report.ref}`, {report.n_sentences} sentences. "
        f"Beam size {report.beam_size}, length penalty {report.length_penalty}, "
        f"decoding batches of at most {report.max_tokens} source subwords. Intervals are "
        f"95% bootstrap intervals ({report.n_bootstrap} resamples, seed {report.seed}).",
        "",
        f"- `{report.signatures['bleu']}`",
        f"- `{report.signatures['chrf']}`",
        "",
        "## Overall",
        "",
    ]
    rows = []
    for m in models:
        rows.append(
            [
                m.name,
                m.architecture,
                _count(m.num_parameters),
                _with_ci(m.scores.bleu, m.bleu_ci),
                _with_ci(m.scores.chrf, m.chrf_ci),
                _num(m.decoding.sentences_per_sec),
                _num(m.decoding.tgt_tokens_per_sec, 0),
            ]
        )
    md += _table(
        [
            "model",
            "architecture",
            "parameters",
            "BLEU [95% CI]",
            "chrF [95% CI]",
            "decoding sentences/s",
            "decoding target tokens/s",
        ],
        rows,
        "llrrrrr",
    )
    md += [
        "",
        f"Decoding speed: this comparison's translation run on `{models[0].decoding.device}`"
        " (one process, model loading excluded).",
        "",
        "## Attention health",
        "",
    ]
    rows = []
    for m in models:
        h = m.attention_health
        rows.append(
            [m.name, "-", "-", "-"]
            if h is None
            else [m.name, _num(h.entropy, 3), _num(h.same_argmax, 3), h.sentences]
        )
    md += _table(["model", "entropy / uniform", "same argmax as previous token", "sentences"], rows)
    md += [
        "",
        "Greedy translations of sources spread over the lengths. Entropy 1 is uniform attention, 0"
        " all weight on one source position; a collapsed attention (the model translating from one"
        " summary vector) shows entropy near 0 with the same argmax near 1. The Transformer's row"
        " is its last layer's cross-attention averaged over heads.",
        "",
        "## BLEU by source length (words)",
        "",
    ]
    rows = []
    for i, bucket in enumerate(models[0].buckets):
        row = [bucket.label, bucket.n]
        row += [_with_ci(m.buckets[i].bleu, m.buckets[i].bleu_ci) for m in models]
        row += [_num(m.buckets[i].chrf) for m in models]
        rows.append(row)
    md += _table(
        ["bucket", "n", *(f"{n} BLEU [95% CI]" for n in names), *(f"{n} chrF" for n in names)],
        rows,
    )
    md += ["", "A bucket with few sentences has a wide interval: read it as such.", ""]

    md += ["## Stress set: k consecutive sentences joined into one line", ""]
    rows = []
    for i, entry in enumerate(models[0].stress):
        row = [entry.k, entry.lines, _num(entry.mean_src_words)]
        row += [_num(m.stress[i].bleu) for m in models]
        row += [_num(m.stress[i].chrf) for m in models]
        rows.append(row)
    md += _table(
        [
            "k",
            "lines",
            "mean source words",
            *(f"{n} BLEU" for n in names),
            *(f"{n} chrF" for n in names),
        ],
        rows,
    )

    md += ["", "## Paired bootstrap test (BLEU)", ""]
    if report.paired:
        rows = [
            [
                p.baseline,
                p.system,
                _num(p.result.bleu_a),
                _num(p.result.bleu_b),
                f"{p.result.delta:+.2f}",
                f"{p.result.p_value:.4f}",
            ]
            for p in report.paired
        ]
        md += _table(
            ["baseline", "system", "BLEU baseline", "BLEU system", "delta", "p-value"],
            rows,
            "llrrrr",
        )
        md += [
            "",
            "p-value as `sacrebleu --paired-bs` computes it (two-sided, on the absolute "
            "difference): small means the difference is unlikely to be resampling noise.",
        ]
    else:
        md += ["(one model: nothing to compare)"]

    md += ["", "## Training (from the run logs)", ""]
    rows = []
    for m in models:
        t = m.training
        tp = t.throughput
        last = t.curve[-1] if t.curve else None
        mfu = tp["train/mfu"]
        rows.append(
            [
                m.name,
                len(t.files),
                _num(t.best_val_bleu()),
                "n/a" if last is None else last.step,
                _num(None if last is None else last.wall_s, 0),
                _count(None if last is None else last.tgt_tokens_seen),
                _num(tp["train/tgt_tokens_per_sec"], 0),
                _num(tp["train/tokens_per_sec"], 0),
                _num(tp["train/padding_ratio"], 3),
                _num(tp["train/step_time"], 3),
                "n/a" if mfu is None else f"{100 * mfu:.1f}%",
            ]
        )
    md += _table(
        [
            "model",
            "metrics.csv files",
            "best val BLEU",
            "last val step",
            "wall-clock s",
            "target tokens seen",
            "train target tokens/s",
            "train tokens/s",
            "padding ratio",
            "step time s",
            "MFU",
        ],
        rows,
    )
    md += [
        "",
        "From every `metrics.csv` (CSVLogger) under each run directory: throughput and MFU are "
        "means over the windows `ThroughputMonitor` logged (non-padding tokens; MFU only on a "
        "GPU with a known peak); wall-clock and target tokens seen are logged by "
        "`mt.eval.reporting.EvalReport` at each validation. n/a: not in the logs.",
    ]
    if report.plots:
        md += ["", "## Plots", ""]
        md += [f"![{Path(p).stem}]({p})" for p in report.plots]
    return "\n".join(md) + "\n"


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _plot_buckets(report: CompareReport, path: Path) -> None:
    models = report.models
    labels = [f"{b.label}\n(n={b.n})" for b in models[0].buckets]
    fig = _new_figure(max(6.0, 1.2 * len(labels) + 2), 4.5)
    ax = fig.add_subplot()
    width = 0.8 / len(models)
    for j, m in enumerate(models):
        xs = [i - 0.4 + width * (j + 0.5) for i in range(len(labels))]
        ys = [b.bleu for b in m.buckets]
        # Clamped at 0: a bootstrap interval (mean +- ci) need not contain the point score.
        lo = [0.0 if _missing(b.bleu_ci[0]) else max(0.0, b.bleu - b.bleu_ci[0]) for b in m.buckets]
        hi = [0.0 if _missing(b.bleu_ci[1]) else max(0.0, b.bleu_ci[1] - b.bleu) for b in m.buckets]
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=m.name)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel("source length in words (sentences per bucket)")
    ax.set_ylabel("BLEU")
    ax.set_title("BLEU by source length, with 95% bootstrap intervals")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def _plot_stress(report: CompareReport, path: Path) -> None:
    models = report.models
    entries = models[0].stress
    fig = _new_figure(6.5, 4.5)
    ax = fig.add_subplot()
    xs = list(range(len(entries)))
    for m in models:
        ax.plot(xs, [e.bleu for e in m.stress], marker="o", label=m.name)
    ax.set_xticks(xs, [f"{e.k}\n({e.mean_src_words:.0f} words)" for e in entries])
    ax.set_xlabel("k sentences joined per line (mean source length)")
    ax.set_ylabel("BLEU")
    ax.set_title("BLEU on the stress set: k consecutive sentences joined")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def _plot_curves(report: CompareReport, path: Path) -> bool:
    """Validation BLEU against wall-clock and target tokens (or the step); False if no logs."""
    models = [m for m in report.models if m.training.curve]
    if not models:
        return False
    panels = []
    for key, label in (
        ("wall_s", "wall-clock time (minutes)"),
        ("tgt_tokens_seen", "training target tokens seen"),
    ):
        if any(getattr(c, key) is not None for m in models for c in m.training.curve):
            panels.append((key, label))
    if not panels:
        panels = [("step", "optimizer step")]
    fig = _new_figure(6.0 * len(panels), 4.5)
    for i, (key, label) in enumerate(panels, 1):
        ax = fig.add_subplot(1, len(panels), i)
        for m in models:
            points = [
                (getattr(c, key), c.val_bleu)
                for c in m.training.curve
                if getattr(c, key) is not None
            ]
            if key == "wall_s":
                points = [(x / 60.0, y) for x, y in points]
            if points:
                ax.plot(*zip(*points, strict=True), marker=".", label=m.name)
        ax.set_xlabel(label)
        ax.set_ylabel("validation BLEU")
        ax.set_title(f"Validation BLEU vs {label.split(' (')[0]}")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return True


def _plot_throughput(report: CompareReport, path: Path) -> None:
    models = report.models
    names = [m.name for m in models]
    panels: list[tuple[str, list[float], str]] = [
        (
            "decoding (this run)",
            [m.decoding.tgt_tokens_per_sec for m in models],
            "target tokens/s",
        ),
    ]
    train = [_nan(m.training.throughput["train/tgt_tokens_per_sec"]) for m in models]
    if any(not math.isnan(v) for v in train):
        panels.insert(0, ("training (mean of logged windows)", train, "target tokens/s"))
    mfu = [_nan(m.training.throughput["train/mfu"]) for m in models]
    if any(not math.isnan(v) for v in mfu):
        panels.append(("training MFU", [100 * v for v in mfu], "MFU (%)"))
    fig = _new_figure(max(6.0, 3.6 * len(panels)), 4.5)
    colors = [f"C{i}" for i in range(len(models))]
    for i, (title, values, unit) in enumerate(panels, 1):
        ax = fig.add_subplot(1, len(panels), i)
        bars = ax.bar(range(len(names)), values, color=colors, label=names)
        ax.bar_label(
            bars, labels=[_num(v, 1 if unit.startswith("MFU") else 0) for v in values], fontsize=8
        )
        ax.set_xticks(range(len(names)), names, rotation=20)
        ax.set_xlabel("model")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.suptitle(f"Throughput (non-padding tokens; decoding at beam {report.beam_size})")
    fig.tight_layout()
    fig.savefig(path)


def write_plots(report: CompareReport, out_dir: str | Path) -> list[str]:
    """Draw the report's PNG plots into ``out_dir``; returns their file names.

    Without matplotlib nothing is drawn and a warning is printed.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(
            "warning: matplotlib is not installed: no plots (pip install matplotlib)",
            file=sys.stderr,
        )
        return []
    out = Path(out_dir)
    written = []
    _plot_buckets(report, out / "bleu_by_length.png")
    written.append("bleu_by_length.png")
    _plot_stress(report, out / "stress_bleu.png")
    written.append("stress_bleu.png")
    if _plot_curves(report, out / "val_bleu_curves.png"):
        written.append("val_bleu_curves.png")
    _plot_throughput(report, out / "throughput.png")
    written.append("throughput.png")
    return written
