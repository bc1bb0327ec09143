"""Compare trained models on one test set: ``scripts/compare.py``.

::

    python scripts/compare.py --checkpoints RUN_OR_CKPT [RUN_OR_CKPT ...] --src SRC --ref REF
                              --out DIR [--names A B ...] [--beam-size 5] [--max-tokens 4096]
                              [--stress-k 1 2 4 8] [--bucket-edges 10 20 30 40 50]
                              [--n-bootstrap 1000] [--seed 12345] [--device auto]

Each ``--checkpoints`` entry is a checkpoint file or a run directory (its
``checkpoints/best.ckpt``, else ``best.ckpt``, else ``checkpoints/last.ckpt``/``last.ckpt``).
The run directory of a checkpoint file ``RUN/checkpoints/X.ckpt`` is ``RUN`` (else the file's
folder, :func:`mt.runs.run_dir_of`); every ``metrics.csv`` under it (a ``CSVLogger``) is read for
the training logs. A model's default name is its run directory's (``transformer-small`` for
``runs/transformer-small/version_0``).

For every model: translate ``SRC`` with :class:`mt.tools.translate.Translator` (the decoding path of
``scripts/translate.py``), score with :func:`mt.eval.evaluation.corpus_scores` (so the numbers equal
``scripts/evaluate.py --hyp`` on the written hypotheses, and ``sacrebleu``), BLEU/chrF per
source-length bucket with bootstrap intervals (the same defaults as ``scripts/evaluate.py``, so
its ``--src`` table is the same), the stress set (:func:`mt.eval.evaluation.stress_set`: ``k``
consecutive sentences joined, translated and scored) for each ``k``, the parameter count, the
decoding speed of this run, and from the logs: validation BLEU against wall-clock and against
target tokens seen (``train/wall_s``, ``train/tgt_tokens_seen`` from
:class:`mt.eval.reporting.EvalReport`; against the step when those are absent), training throughput
and MFU (:class:`mt.eval.throughput.ThroughputMonitor`). Between every pair of models: the paired
bootstrap test of BLEU (:func:`mt.eval.evaluation.paired_bootstrap`).

Writes into ``DIR``: ``report.md`` (tables, plots linked), ``report.json`` (every number; NaN is
``null``), ``hyps/{name}.hyp`` (the translations of ``SRC``; ``hyps/{name}.k{k}.hyp`` for the
stress sets) and PNG plots (``bleu_by_length.png``, ``stress_bleu.png``,
``val_bleu_curves.png`` where logs exist, ``throughput.png``), drawn with matplotlib's Agg
canvas; without matplotlib the plots are skipped with a warning.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from mt.eval.evaluate_cli import InputError, read_lines
from mt.eval.evaluation import (
    DEFAULT_EDGES,
    DEFAULT_N_BOOTSTRAP,
    DEFAULT_SEED,
    BucketScore,
    corpus_scores,
    length_buckets,
    paired_bootstrap,
    stress_set,
)
from mt.models.search import DEFAULT_SEARCH
from mt.runs import run_dir_of, run_name

__all__ = [
    "THROUGHPUT_COLUMNS",
    "ModelRun",
    "compare",
    "find_checkpoint",
    "main",
    "read_training_logs",
    "write_plots",
]

#: ThroughputMonitor columns averaged over the logged windows of a run's metrics.csv files.
THROUGHPUT_COLUMNS: tuple[str, ...] = (
    "train/tgt_tokens_per_sec",
    "train/src_tokens_per_sec",
    "train/tokens_per_sec",
    "train/padding_ratio",
    "train/step_time",
    "train/peak_mem_gb",
    "train/mfu",
)


# --------------------------------------------------------------------------------------------
# Inputs: checkpoints, run directories, logs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRun:
    """One model to compare: its name, checkpoint file and run directory (None if unknown)."""

    name: str
    checkpoint: Path
    run_dir: Path | None


def find_checkpoint(path: str | Path) -> tuple[Path, Path | None]:
    """``(checkpoint file, run directory)`` of a ``--checkpoints`` entry (see module docstring).

    Raises:
        InputError: the path does not exist or a directory holds no checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        for candidate in (
            "checkpoints/best.ckpt",
            "best.ckpt",
            "checkpoints/last.ckpt",
            "last.ckpt",
        ):
            if (path / candidate).is_file():
                return path / candidate, path
        raise InputError(f"{path}: no checkpoints/best.ckpt, best.ckpt or last.ckpt in it")
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint file or run directory")
    return path, run_dir_of(path)


def _float(text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def read_training_logs(run_dir: Path | None) -> dict[str, Any]:
    """Validation curve and throughput from every ``metrics.csv`` under ``run_dir``.

    Files are read oldest first (a resumed run or a later ``mt test`` writes a new
    ``version_N``); rows of the same step are merged (Lightning writes the metrics of one step in
    several rows), a later file's value winning.

    Returns:
        ``{"files": [...], "curve": [{"step", "val_bleu", "wall_s", "tgt_tokens_seen"}...],
        "throughput": {column: mean or None}, "throughput_n": {column: count},
        "test_bleu": last logged test/bleu or None}``. Empty lists/None without logs.
    """
    result: dict[str, Any] = {
        "files": [],
        "curve": [],
        "throughput": {c: None for c in THROUGHPUT_COLUMNS},
        "throughput_n": {c: 0 for c in THROUGHPUT_COLUMNS},
        "test_bleu": None,
    }
    if run_dir is None or not run_dir.is_dir():
        return result
    files = sorted(run_dir.rglob("metrics.csv"), key=lambda p: (p.stat().st_mtime, str(p)))
    by_step: dict[int, dict[str, float]] = {}
    sums = {c: 0.0 for c in THROUGHPUT_COLUMNS}
    counts = {c: 0 for c in THROUGHPUT_COLUMNS}
    for file in files:
        try:
            with open(file, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        except (OSError, csv.Error, UnicodeDecodeError) as err:
            print(f"warning: cannot read {file}: {err}", file=sys.stderr)
            continue
        result["files"].append(str(file))
        for row in rows:
            step = _float(row.get("step"))
            values = {k: v for k, raw in row.items() if k and (v := _float(raw)) is not None}
            for column in THROUGHPUT_COLUMNS:
                if column in values:
                    sums[column] += values[column]
                    counts[column] += 1
            if "test/bleu" in values:
                result["test_bleu"] = values["test/bleu"]
            if step is not None:
                by_step.setdefault(int(step), {}).update(values)
    for step in sorted(by_step):
        values = by_step[step]
        if "val/bleu" in values:
            result["curve"].append(
                {
                    "step": step,
                    "val_bleu": values["val/bleu"],
                    "wall_s": values.get("train/wall_s"),
                    "tgt_tokens_seen": values.get("train/tgt_tokens_seen"),
                }
            )
    for column in THROUGHPUT_COLUMNS:
        result["throughput_n"][column] = counts[column]
        if counts[column]:
            result["throughput"][column] = sums[column] / counts[column]
    return result


def _model_names(
    runs: Sequence[tuple[Path, Path | None]], names: Sequence[str] | None
) -> list[str]:
    """``names`` if given, else each run directory's (or checkpoint's) name, made unique."""
    if names:
        if len(names) != len(runs) or len(set(names)) != len(names):
            raise InputError(f"--names needs {len(runs)} distinct names, got {list(names)}")
        return list(names)
    out: list[str] = []
    for ckpt, run_dir in runs:
        base = run_name(run_dir) if run_dir is not None and run_dir.name else ckpt.stem
        name, i = base, 2
        while name in out:
            name, i = f"{base}-{i}", i + 1
        out.append(name)
    return out


# --------------------------------------------------------------------------------------------
# Translation and scoring
# --------------------------------------------------------------------------------------------


def _translate(translator: Any, lines: list[str]) -> tuple[list[str], dict[str, float]]:
    """Best translations of ``lines`` and the decoding speed of the call."""
    before = (translator.stats.sentences, translator.stats.tgt_tokens)
    start = time.perf_counter()
    hyps = [nbest[0].text for nbest in translator.translate(lines)]
    seconds = time.perf_counter() - start
    sentences = translator.stats.sentences - before[0]
    tokens = translator.stats.tgt_tokens - before[1]
    speed = {
        "seconds": seconds,
        "sentences": sentences,
        "tgt_tokens": tokens,
        "sentences_per_sec": sentences / max(seconds, 1e-9),
        "tgt_tokens_per_sec": tokens / max(seconds, 1e-9),
    }
    return hyps, speed


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8", newline="\n")


def _bucket_dicts(buckets: Sequence[BucketScore]) -> list[dict[str, Any]]:
    return [b.to_dict() for b in buckets]


def compare(
    checkpoints: Sequence[str | Path],
    src_path: str | Path,
    ref_path: str | Path,
    out_dir: str | Path,
    names: Sequence[str] | None = None,
    beam_size: int = DEFAULT_SEARCH.beam_size,
    length_penalty: float = DEFAULT_SEARCH.length_penalty,
    max_tokens: int = 4096,
    stress_k: Sequence[int] = (1, 2, 4, 8),
    bucket_edges: Sequence[int] = DEFAULT_EDGES,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    device: str = "auto",
    plots: bool = True,
    n_health: int = 100,
) -> dict[str, Any]:
    """Run the comparison, write the report files into ``out_dir`` and return the report dict.

    ``n_health`` source lines, spread over the lengths, are translated greedily one at a time for
    each model's attention health (:func:`mt.eval.reporting.attention_health`).

    Raises:
        InputError: bad files, checkpoints or options (the message says which).
    """
    from mt.eval.reporting import attention_health, pick_lines
    from mt.models.module import CheckpointError, load_checkpoint
    from mt.tools.translate import TranslateError, Translator, resolve_device

    if not checkpoints:
        raise InputError("give at least one checkpoint")
    if beam_size < 1 or max_tokens < 1 or n_bootstrap < 1:
        raise InputError("--beam-size, --max-tokens and --n-bootstrap must be >= 1")
    if not stress_k or any(k < 1 for k in stress_k):
        raise InputError(f"--stress-k values must be >= 1, got {list(stress_k)}")
    src, refs = read_lines(src_path), read_lines(ref_path)
    if len(src) != len(refs):
        raise InputError(
            f"line counts differ: {src_path} has {len(src)} lines, {ref_path} has {len(refs)}"
        )
    if not src:
        raise InputError(f"no lines to translate in {src_path}")
    try:
        length_buckets([], [], [], bucket_edges, n_bootstrap=0)
        torch_device = resolve_device(device)
    except (ValueError, TranslateError) as err:
        raise InputError(str(err)) from None
    resolved = [find_checkpoint(c) for c in checkpoints]
    model_names = _model_names(resolved, names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stress_sets = {k: stress_set(src, refs, k) for k in sorted(set(stress_k))}
    health_lines = pick_lines([len(line.split()) for line in src], n_health)

    models: list[dict[str, Any]] = []
    hyps_of: dict[str, list[str]] = {}
    for name, (ckpt, run_dir) in zip(model_names, resolved, strict=True):
        print(f"[compare] {name}: translating {len(src)} lines with {ckpt}", file=sys.stderr)
        try:
            model = load_checkpoint(ckpt, map_location="cpu")
        except CheckpointError as err:
            raise InputError(" ".join(str(err).split())) from None  # one line
        assert model.tokenizer is not None
        translator = Translator(
            model,
            model.tokenizer,
            beam_size=beam_size,
            length_penalty=length_penalty,
            max_tokens=max_tokens,
            device=torch_device,
            warn=lambda m: None,
        )
        hyps, speed = _translate(translator, src)
        hyps_of[name] = hyps
        _write_lines(out / "hyps" / f"{name}.hyp", hyps)
        scores = corpus_scores(hyps, refs)
        overall = length_buckets(src, hyps, refs, [], n_bootstrap=n_bootstrap, seed=seed)[0]
        buckets = length_buckets(src, hyps, refs, bucket_edges, n_bootstrap=n_bootstrap, seed=seed)
        stress = []
        for k, (src_k, ref_k) in stress_sets.items():
            if k == 1:
                hyps_k = hyps
            else:
                hyps_k, _ = _translate(translator, src_k)
                _write_lines(out / "hyps" / f"{name}.k{k}.hyp", hyps_k)
            s = corpus_scores(hyps_k, ref_k)
            stress.append(
                {
                    "k": k,
                    "lines": len(src_k),
                    "mean_src_words": _mean_words(src_k),
                    "bleu": s.bleu,
                    "chrf": s.chrf,
                }
            )
        health = attention_health(model, model.tokenizer, [src[i] for i in health_lines])
        num_params = (
            int(model.num_parameters())
            if hasattr(model, "num_parameters")
            else sum(p.numel() for p in model.parameters())
        )
        models.append(
            {
                "name": name,
                "checkpoint": str(ckpt),
                "run_dir": None if run_dir is None else str(run_dir),
                "architecture": type(model).__name__,
                "num_parameters": num_params,
                "hypotheses": str(out / "hyps" / f"{name}.hyp"),
                "scores": scores.to_dict(),
                "bleu_ci": list(overall.bleu_ci),
                "chrf_ci": list(overall.chrf_ci),
                "buckets": _bucket_dicts(buckets),
                "stress": stress,
                "attention_health": None if health is None else asdict(health),
                "decoding": {
                    **speed,
                    "beam_size": beam_size,
                    "max_tokens": max_tokens,
                    "device": str(torch_device),
                },
                "training": read_training_logs(run_dir),
            }
        )
        del translator, model

    paired = []
    for a, b in combinations(range(len(models)), 2):
        name_a, name_b = models[a]["name"], models[b]["name"]
        result = paired_bootstrap(
            hyps_of[name_a], hyps_of[name_b], refs, n_bootstrap=n_bootstrap, seed=seed
        )
        paired.append({"baseline": name_a, "system": name_b, **result.to_dict()})

    first = models[0]["scores"]
    report: dict[str, Any] = {
        "src": str(src_path),
        "ref": str(ref_path),
        "n_sentences": len(src),
        "beam_size": beam_size,
        "length_penalty": length_penalty,
        "max_tokens": max_tokens,
        "bucket_edges": [int(e) for e in bucket_edges],
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "stress_k": sorted(stress_sets),
        "signatures": {
            "bleu": f"BLEU|{first['bleu_signature']}",
            "chrf": f"{first['chrf_name']}|{first['chrf_signature']}",
        },
        "models": models,
        "paired_bootstrap": paired,
        "plots": [],
    }
    if plots:
        report["plots"] = write_plots(report, out)
    _clean_json(report)
    (out / "report.json").write_text(
        json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8"
    )
    (out / "report.md").write_text(format_report_md(report), encoding="utf-8")
    return report


def _mean_words(lines: Sequence[str]) -> float:
    return sum(len(s.split()) for s in lines) / max(len(lines), 1)


def _clean_json(value: Any) -> Any:
    """NaN/inf floats -> None and tuples -> lists, in place for dicts and lists."""
    if isinstance(value, dict):
        for k, v in value.items():
            value[k] = _clean_json(v)
        return value
    if isinstance(value, list | tuple):
        items = [_clean_json(v) for v in value]
        if isinstance(value, list):
            value[:] = items
            return value
        return items
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------------------------
# report.md
# --------------------------------------------------------------------------------------------


def _num(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _with_ci(value: float | None, ci: Sequence[float | None] | None) -> str:
    text = _num(value)
    if value is not None and ci and all(c is not None for c in ci):
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


def format_report_md(report: dict[str, Any]) -> str:
    """The Markdown report of a :func:`compare` result."""
    models = report["models"]
    names = [m["name"] for m in models]
    md = [
        "# Model comparison",
        "",
        f"Test set: `{report['src']}` -> `{report['ref']}`, {report['n_sentences']} sentences. "
        f"Beam size {report['beam_size']}, length penalty {report['length_penalty']}, "
        f"decoding batches of at most {report['max_tokens']} source subwords. Intervals are "
        f"95% bootstrap intervals ({report['n_bootstrap']} resamples, seed {report['seed']}).",
        "",
        f"- `{report['signatures']['bleu']}`",
        f"- `{report['signatures']['chrf']}`",
        "",
        "## Overall",
        "",
    ]
    rows = []
    for m in models:
        s, d = m["scores"], m["decoding"]
        rows.append(
            [
                m["name"],
                m["architecture"],
                _count(m["num_parameters"]),
                _with_ci(s["bleu"], m["bleu_ci"]),
                _with_ci(s["chrf"], m["chrf_ci"]),
                _num(d["sentences_per_sec"]),
                _num(d["tgt_tokens_per_sec"], 0),
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
        f"Decoding speed: this comparison's translation run on `{models[0]['decoding']['device']}`"
        " (one process, model loading excluded).",
        "",
        "## Attention health",
        "",
    ]
    rows = []
    for m in models:
        h = m.get("attention_health")
        rows.append(
            [m["name"], "-", "-", "-"]
            if h is None
            else [m["name"], _num(h["entropy"], 3), _num(h["same_argmax"], 3), h["sentences"]]
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
    for i, bucket in enumerate(models[0]["buckets"]):
        row = [bucket["label"], bucket["n"]]
        row += [_with_ci(m["buckets"][i]["bleu"], m["buckets"][i]["bleu_ci"]) for m in models]
        row += [_num(m["buckets"][i]["chrf"]) for m in models]
        rows.append(row)
    md += _table(
        ["bucket", "n", *(f"{n} BLEU [95% CI]" for n in names), *(f"{n} chrF" for n in names)],
        rows,
    )
    md += ["", "A bucket with few sentences has a wide interval: read it as such.", ""]

    md += ["## Stress set: k consecutive sentences joined into one line", ""]
    rows = []
    for i, entry in enumerate(models[0]["stress"]):
        row = [entry["k"], entry["lines"], _num(entry["mean_src_words"])]
        row += [_num(m["stress"][i]["bleu"]) for m in models]
        row += [_num(m["stress"][i]["chrf"]) for m in models]
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
    if report["paired_bootstrap"]:
        rows = [
            [
                p["baseline"],
                p["system"],
                _num(p["bleu_a"]),
                _num(p["bleu_b"]),
                f"{p['delta']:+.2f}",
                f"{p['p_value']:.4f}",
            ]
            for p in report["paired_bootstrap"]
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
        t = m["training"]
        curve, tp = t["curve"], t["throughput"]
        best = max((c["val_bleu"] for c in curve), default=None)
        last = curve[-1] if curve else {}
        mfu = tp["train/mfu"]
        rows.append(
            [
                m["name"],
                len(t["files"]),
                _num(best),
                last.get("step", "n/a"),
                _num(last.get("wall_s"), 0),
                _count(last.get("tgt_tokens_seen")),
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
    if report["plots"]:
        md += ["", "## Plots", ""]
        md += [f"![{Path(p).stem}]({p})" for p in report["plots"]]
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


def _plot_buckets(report: dict[str, Any], path: Path) -> None:
    models = report["models"]
    labels = [f"{b['label']}\n(n={b['n']})" for b in models[0]["buckets"]]
    fig = _new_figure(max(6.0, 1.2 * len(labels) + 2), 4.5)
    ax = fig.add_subplot()
    width = 0.8 / len(models)
    for j, m in enumerate(models):
        xs = [i - 0.4 + width * (j + 0.5) for i in range(len(labels))]
        ys = [_nan(b["bleu"]) for b in m["buckets"]]
        lo = [
            y - _nan(b["bleu_ci"][0]) if b["bleu_ci"][0] is not None else 0.0
            for y, b in zip(ys, m["buckets"], strict=True)
        ]
        hi = [
            _nan(b["bleu_ci"][1]) - y if b["bleu_ci"][1] is not None else 0.0
            for y, b in zip(ys, m["buckets"], strict=True)
        ]
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=m["name"])
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel("source length in words (sentences per bucket)")
    ax.set_ylabel("BLEU")
    ax.set_title("BLEU by source length, with 95% bootstrap intervals")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def _plot_stress(report: dict[str, Any], path: Path) -> None:
    models = report["models"]
    entries = models[0]["stress"]
    fig = _new_figure(6.5, 4.5)
    ax = fig.add_subplot()
    xs = list(range(len(entries)))
    for m in models:
        ax.plot(xs, [_nan(e["bleu"]) for e in m["stress"]], marker="o", label=m["name"])
    ax.set_xticks(xs, [f"{e['k']}\n({e['mean_src_words']:.0f} words)" for e in entries])
    ax.set_xlabel("k sentences joined per line (mean source length)")
    ax.set_ylabel("BLEU")
    ax.set_title("BLEU on the stress set: k consecutive sentences joined")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def _plot_curves(report: dict[str, Any], path: Path) -> bool:
    """Validation BLEU against wall-clock and target tokens (or the step); False if no logs."""
    models = [m for m in report["models"] if m["training"]["curve"]]
    if not models:
        return False
    panels = []
    for key, label in (
        ("wall_s", "wall-clock time (minutes)"),
        ("tgt_tokens_seen", "training target tokens seen"),
    ):
        if any(c[key] is not None for m in models for c in m["training"]["curve"]):
            panels.append((key, label))
    if not panels:
        panels = [("step", "optimizer step")]
    fig = _new_figure(6.0 * len(panels), 4.5)
    for i, (key, label) in enumerate(panels, 1):
        ax = fig.add_subplot(1, len(panels), i)
        for m in models:
            points = [(c[key], c["val_bleu"]) for c in m["training"]["curve"] if c[key] is not None]
            if key == "wall_s":
                points = [(x / 60.0, y) for x, y in points]
            if points:
                ax.plot(*zip(*points, strict=True), marker=".", label=m["name"])
        ax.set_xlabel(label)
        ax.set_ylabel("validation BLEU")
        ax.set_title(f"Validation BLEU vs {label.split(' (')[0]}")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return True


def _plot_throughput(report: dict[str, Any], path: Path) -> None:
    models = report["models"]
    names = [m["name"] for m in models]
    panels: list[tuple[str, list[float], str]] = [
        (
            "decoding (this run)",
            [m["decoding"]["tgt_tokens_per_sec"] for m in models],
            "target tokens/s",
        ),
    ]
    train = [_nan(m["training"]["throughput"]["train/tgt_tokens_per_sec"]) for m in models]
    if any(not math.isnan(v) for v in train):
        panels.insert(0, ("training (mean of logged windows)", train, "target tokens/s"))
    mfu = [_nan(m["training"]["throughput"]["train/mfu"]) for m in models]
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
    fig.suptitle(f"Throughput (non-padding tokens; decoding at beam {report['beam_size']})")
    fig.tight_layout()
    fig.savefig(path)


def write_plots(report: dict[str, Any], out_dir: str | Path) -> list[str]:
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


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mt compare`` (options: :func:`mt.commands.compare`); returns the exit status (0 ok,
    2 bad input); a bad command line is ``SystemExit(2)``."""
    from mt.commands import run_command

    return run_command("compare", argv)
