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

The results are typed (:mod:`mt.eval.comparison`: :class:`~mt.eval.comparison.CompareReport` of
:class:`~mt.eval.comparison.ModelResult` and :class:`~mt.eval.comparison.PairComparison`);
``report.md`` and the plots are drawn from them by :mod:`mt.eval.compare_report`.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from mt.eval.compare_report import format_report_md, write_plots
from mt.eval.comparison import (
    THROUGHPUT_COLUMNS,
    CompareReport,
    CurvePoint,
    DecodingSpeed,
    ModelResult,
    PairComparison,
    StressResult,
    TrainingLogs,
)
from mt.eval.evaluate_cli import InputError, read_lines
from mt.eval.evaluation import (
    DEFAULT_EDGES,
    DEFAULT_N_BOOTSTRAP,
    DEFAULT_SEED,
    check_paired_seed,
    corpus_scores,
    length_buckets,
    paired_bootstrap,
    stress_set,
)
from mt.models.search import DEFAULT_SEARCH
from mt.runs import run_dir_of, run_name

__all__ = [
    "THROUGHPUT_COLUMNS",
    "CompareReport",
    "ModelResult",
    "ModelRun",
    "compare",
    "find_checkpoint",
    "format_report_md",
    "main",
    "read_training_logs",
    "write_plots",
]


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


def read_training_logs(run_dir: Path | None) -> TrainingLogs:
    """Validation curve and throughput from every ``metrics.csv`` under ``run_dir``.

    Files are read oldest first (a resumed run or a later ``mt test`` writes a new
    ``version_N``); rows of the same step are merged (Lightning writes the metrics of one step in
    several rows), a later file's value winning. Without logs: empty lists and None.
    """
    result = TrainingLogs()
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
        result.files.append(str(file))
        for row in rows:
            step = _float(row.get("step"))
            values = {k: v for k, raw in row.items() if k and (v := _float(raw)) is not None}
            for column in THROUGHPUT_COLUMNS:
                if column in values:
                    sums[column] += values[column]
                    counts[column] += 1
            if "test/bleu" in values:
                result.test_bleu = values["test/bleu"]
            if step is not None:
                by_step.setdefault(int(step), {}).update(values)
    for step in sorted(by_step):
        values = by_step[step]
        if "val/bleu" in values:
            result.curve.append(
                CurvePoint(
                    step=step,
                    val_bleu=values["val/bleu"],
                    wall_s=values.get("train/wall_s"),
                    tgt_tokens_seen=values.get("train/tgt_tokens_seen"),
                )
            )
    for column in THROUGHPUT_COLUMNS:
        result.throughput_n[column] = counts[column]
        if counts[column]:
            result.throughput[column] = sums[column] / counts[column]
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


def _translate(translator: Any, lines: list[str]) -> tuple[list[str], DecodingSpeed]:
    """Best translations of ``lines`` and the decoding speed of the call."""
    before = (translator.stats.sentences, translator.stats.tgt_tokens)
    start = time.perf_counter()
    hyps = [nbest[0].text for nbest in translator.translate(lines)]
    seconds = time.perf_counter() - start
    sentences = translator.stats.sentences - before[0]
    tokens = translator.stats.tgt_tokens - before[1]
    speed = DecodingSpeed(
        seconds=seconds,
        sentences=sentences,
        tgt_tokens=tokens,
        sentences_per_sec=sentences / max(seconds, 1e-9),
        tgt_tokens_per_sec=tokens / max(seconds, 1e-9),
        beam_size=translator.beam_size,
        max_tokens=translator.max_tokens,
        device=str(translator.device),
    )
    return hyps, speed


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8", newline="\n")


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
    """Run the comparison, write the report files into ``out_dir`` and return the report as
    ``report.json`` holds it (:meth:`mt.eval.comparison.CompareReport.to_dict`).

    ``n_health`` source lines, spread over the lengths, are translated greedily one at a time for
    each model's attention health (:func:`mt.eval.attention.attention_health`).

    Raises:
        InputError: bad files, checkpoints or options (the message says which).
    """
    from mt.eval.attention import attention_health, pick_lines
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
        if len(checkpoints) > 1:  # the paired test between models
            check_paired_seed(seed)
        torch_device = resolve_device(device)
    except (ValueError, TranslateError) as err:
        raise InputError(str(err)) from None
    resolved = [find_checkpoint(c) for c in checkpoints]
    model_names = _model_names(resolved, names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stress_sets = {k: stress_set(src, refs, k) for k in sorted(set(stress_k))}
    health_lines = pick_lines([len(line.split()) for line in src], n_health)

    models: list[ModelResult] = []
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
        overall = length_buckets(src, hyps, refs, [], n_bootstrap=n_bootstrap, seed=seed)[0]
        stress = []
        for k, (src_k, ref_k) in stress_sets.items():
            if k == 1:
                hyps_k = hyps
            else:
                hyps_k, _ = _translate(translator, src_k)
                _write_lines(out / "hyps" / f"{name}.k{k}.hyp", hyps_k)
            s = corpus_scores(hyps_k, ref_k)
            stress.append(StressResult(k, len(src_k), _mean_words(src_k), s.bleu, s.chrf))
        models.append(
            ModelResult(
                name=name,
                checkpoint=str(ckpt),
                run_dir=None if run_dir is None else str(run_dir),
                architecture=type(model).__name__,
                num_parameters=_num_parameters(model),
                hypotheses=str(out / "hyps" / f"{name}.hyp"),
                scores=corpus_scores(hyps, refs),
                bleu_ci=overall.bleu_ci,
                chrf_ci=overall.chrf_ci,
                buckets=length_buckets(
                    src, hyps, refs, bucket_edges, n_bootstrap=n_bootstrap, seed=seed
                ),
                stress=stress,
                attention_health=attention_health(
                    model, model.tokenizer, [src[i] for i in health_lines]
                ),
                decoding=speed,
                training=read_training_logs(run_dir),
            )
        )
        del translator, model

    paired = [
        PairComparison(
            a.name,
            b.name,
            paired_bootstrap(
                hyps_of[a.name], hyps_of[b.name], refs, n_bootstrap=n_bootstrap, seed=seed
            ),
        )
        for a, b in combinations(models, 2)
    ]
    report = CompareReport(
        src=str(src_path),
        ref=str(ref_path),
        n_sentences=len(src),
        beam_size=beam_size,
        length_penalty=length_penalty,
        max_tokens=max_tokens,
        bucket_edges=[int(e) for e in bucket_edges],
        n_bootstrap=n_bootstrap,
        seed=seed,
        stress_k=sorted(stress_sets),
        models=models,
        paired=paired,
    )
    if plots:
        report.plots = write_plots(report, out)
    as_json = report.to_dict()
    (out / "report.json").write_text(
        json.dumps(as_json, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8"
    )
    (out / "report.md").write_text(format_report_md(report), encoding="utf-8")
    return as_json


def _num_parameters(model: Any) -> int:
    if hasattr(model, "num_parameters"):
        return int(model.num_parameters())
    return sum(p.numel() for p in model.parameters())


def _mean_words(lines: Sequence[str]) -> float:
    return sum(len(s.split()) for s in lines) / max(len(lines), 1)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mt compare`` (options: :func:`mt.commands.compare`); returns the exit status (0 ok,
    2 bad input); a bad command line is ``SystemExit(2)``."""
    from mt.commands import run_command

    return run_command("compare", argv)
