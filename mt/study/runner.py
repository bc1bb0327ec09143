"""Running a study: every experiment x seed is an ordinary ``mt fit`` in its own run folder.

Layout of a study's output folder::

    {out}/data/{data set}[-f{fraction}]/      generated synthetic pairs, training-split subsets
    {out}/runs/{experiment}/lr{lr}-s{seed}/   one `mt fit --run_dir` each (s{seed} without lr trials)
        fit.log                               what mt fit printed (appended on resume)
        study.json                            the marker: written once fit and summary are done
    {out}/report.md, report.json, *.png       mt/study/report.py

Resuming: a run folder with ``study.json`` is skipped; any other is (re)started with
``--ckpt_path last_or_new``, which resumes from its last checkpoint or starts afresh. Learning-rate
trials: with ``lr: [a, b, ...]`` the first seed runs once per rate, the rate with the best
validation BLEU is chosen, and the other seeds run at that rate only; every architecture a claim
compares gets the same number of trials (checked in :mod:`mt.study.spec`).

A run whose training loss became non-finite, or whose ``mt fit`` failed saying so, is recorded as
``diverged`` (marker written, never retried); any other failure stops nothing else, is reported and
makes the study exit 1, and the run is retried next time.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mt.study.spec import DataSet, Experiment, Study

MARKER = "study.json"
DIVERGED_WORDS = ("nan", "non-finite", "inf loss", "infinite")


@dataclass(frozen=True)
class Run:
    """One `mt fit` of an experiment: a seed and a learning rate (None: the config's)."""

    experiment: Experiment
    seed: int
    lr: float | None
    run_dir: Path
    tuning: bool  # one of the learning-rate trials (first seed)

    @property
    def marker(self) -> Path:
        return self.run_dir / MARKER

    def done(self) -> bool:
        return self.marker.is_file()

    def result(self) -> dict[str, Any] | None:
        return json.loads(self.marker.read_text()) if self.done() else None


def run_folder(out: Path, experiment: Experiment, seed: int, lr: float | None) -> Path:
    tag = f"s{seed}" if len(experiment.lrs) == 1 else f"lr{lr:g}-s{seed}"
    return out / "runs" / experiment.name / tag


def tuning_runs(study: Study, experiment: Experiment) -> list[Run]:
    """The learning-rate trials (first seed), or the first seed's run without trials."""
    seed = experiment.seeds[0]
    return [Run(experiment, seed, lr, run_folder(study.out, experiment, seed, lr), len(experiment.lrs) > 1)
            for lr in experiment.lrs]  # fmt: skip


def chosen_lr(study: Study, experiment: Experiment) -> tuple[float | None, bool]:
    """``(learning rate, known)``: the trial with the best validation BLEU once all are done."""
    trials = tuning_runs(study, experiment)
    if len(trials) == 1:
        return trials[0].lr, True
    results = [t.result() for t in trials]
    if any(r is None for r in results):
        return None, False
    scores = [(r.get("best_val_bleu") if r["status"] == "finished" else None) for r in results]
    ranked = [(s, i) for i, s in enumerate(scores) if s is not None]
    best = max(ranked)[1] if ranked else 0
    return trials[best].lr, True


def final_runs(study: Study, experiment: Experiment) -> list[Run]:
    """The runs behind the experiment's numbers: every seed at the chosen rate (those known)."""
    lr, known = chosen_lr(study, experiment)
    if not known:
        return []
    return [Run(experiment, seed, lr, run_folder(study.out, experiment, seed, lr), False)
            for seed in experiment.seeds]  # fmt: skip


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def prepare_data(study: Study, experiment: Experiment) -> Path:
    """The data folder of an experiment: generates a synthetic pair and writes the training
    subset of ``fraction`` (a fixed random subset: 10% is inside 30%) where missing."""
    data = experiment.data
    if data.synthetic is not None and not data.split_file("test_split", "tgt_lang").is_file():
        from mt.data.synthetic import SyntheticSpec, parse_bands, write_corpus

        spec = dict(data.synthetic)
        for key in ("train_lengths", "val_lengths"):
            if key in spec:
                spec[key] = tuple(spec[key])
        if "test_bands" in spec:
            spec["test_bands"] = parse_bands([str(b) for b in spec["test_bands"]])
        tmp = data.data_dir.with_name(data.data_dir.name + f".tmp{os.getpid()}")
        write_corpus(tmp, SyntheticSpec(**spec))
        tmp.rename(data.data_dir)
    if experiment.fraction >= 1:
        return data.data_dir
    folder = study.out / "data" / f"{data.name}-f{experiment.fraction:g}"
    if (folder / "done").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    src, tgt = (data.split_file("train_split", k).read_text(encoding="utf-8").splitlines(keepends=True)
                for k in ("src_lang", "tgt_lang"))  # fmt: skip
    order = list(range(len(src)))
    random.Random(0).shuffle(order)
    keep = sorted(order[: max(1, round(experiment.fraction * len(src)))])
    for lines, lang in ((src, "src_lang"), (tgt, "tgt_lang")):
        name = data.split_file("train_split", lang).name
        (folder / name).write_text("".join(lines[i] for i in keep), encoding="utf-8")
    for split in ("val_split", "test_split"):
        for lang in ("src_lang", "tgt_lang"):
            link = folder / data.split_file(split, lang).name
            if not link.exists():
                link.symlink_to(data.split_file(split, lang).resolve())
    (folder / "done").write_text(f"{len(keep)} of {len(src)} training pairs\n")
    return folder


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------


def mt_executable() -> list[str]:
    """The installed ``mt`` beside this Python, else ``python -m mt``."""
    script = Path(sys.executable).with_name("mt")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mt"]


def fit_command(run: Run, data_dir: Path) -> list[str]:
    """The `mt fit` command line of a run (resumes or starts: ``--ckpt_path last_or_new``)."""
    e = run.experiment
    args = [*mt_executable(), "fit", "--config", str(e.config), "--run_dir", str(run.run_dir),
            "--ckpt_path", "last_or_new", "--seed_everything", str(run.seed),
            "--data.seed", str(run.seed), "--data.data_dir", str(data_dir),
            "--trainer.enable_progress_bar", "false"]  # fmt: skip
    for key, value in e.data.options.items():
        args += [f"--data.{key}", str(value)]
    for key, value in e.budget.items():
        args += [f"--trainer.{key}", str(value)]
    if e.cell is not None:
        args += ["--model.init_args.cell", e.cell]
    if run.lr is not None:
        args += ["--model.init_args.optimizer.init_args.lr", repr(run.lr)]
    for key, value in e.overrides.items():
        args += [f"--{key}", json.dumps(value) if isinstance(value, list | dict) else str(value)]
    return args


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    """Every row of the fit's ``metrics.csv`` files (oldest first; NaN and inf kept)."""
    rows: list[dict[str, float]] = []
    files = sorted((run_dir / "fit").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    for file in files:
        with open(file, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                rows.append({k: v for k, raw in row.items() if k and (v := _number(raw)) is not None})
    return rows


def _column(rows: list[dict[str, float]], key: str) -> list[float]:
    return [r[key] for r in rows if key in r]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize_metrics(rows: list[dict[str, float]]) -> dict[str, Any]:
    """What the report needs from a run's logs. Gradient figures are ``None`` ("not logged")
    unless the run logged ``train/grad_norm`` / ``train/clipped``."""
    losses = _column(rows, "train/loss")
    bleu = _column(rows, "val/bleu")
    nll = [x for x in _column(rows, "train/nll") if math.isfinite(x)]
    val_loss = _column(rows, "val/loss")
    norms = [x for x in _column(rows, "train/grad_norm") if math.isfinite(x)]
    clipped = _column(rows, "train/clipped")
    curve = [{"step": int(r.get("step", 0)), "val_bleu": r["val/bleu"], "wall_s": r.get("train/wall_s"),
              "tgt_tokens_seen": r.get("train/tgt_tokens_seen")}
             for r in _merge_steps(rows) if "val/bleu" in r]  # fmt: skip
    median = sorted(norms)[len(norms) // 2] if norms else None
    return {
        "non_finite_loss": any(not math.isfinite(x) for x in losses),
        "best_val_bleu": max(bleu) if bleu else None,
        "val_loss": val_loss[-1] if val_loss else None,
        "train_nll": _mean(nll[-3:]),
        "tgt_tokens_per_sec": _mean(_column(rows, "train/tgt_tokens_per_sec")),
        "tokens_per_sec": _mean(_column(rows, "train/tokens_per_sec")),
        "wall_s": max(_column(rows, "train/wall_s"), default=None),
        "steps": int(max(_column(rows, "step"), default=0)),
        "curve": curve,
        "grad_norm_median": median,
        "grad_norm_max": max(norms) if norms else None,
        "clipped_fraction": _mean(clipped),
    }


def _merge_steps(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    by_step: dict[int, dict[str, float]] = {}
    for row in rows:
        if "step" in row:
            by_step.setdefault(int(row["step"]), {}).update(row)
    return [by_step[s] for s in sorted(by_step)]


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class BadInput(RuntimeError):
    """`mt fit` refused the command line (exit 2): the study cannot go on."""


class Interrupted(RuntimeError):
    """`mt fit` was stopped by a signal (Ctrl-C, SIGTERM of a job's time limit or requeue): the
    study stops too, and the run resumes from its checkpoint next time."""


#: Exit statuses of a fit stopped by a signal: 128 + SIGINT, SIGKILL, SIGTERM.
SIGNALLED = (130, 137, 143)


def execute(study: Study, run: Run) -> dict[str, Any]:
    """Train (or resume) one run and write its marker; returns the marker's content.

    Raises:
        BadInput: mt fit exited 2 (bad option or input): its one-line message.
        RuntimeError: any other failure that is not a divergence (no marker is written).
    """
    data_dir = prepare_data(study, run.experiment)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    command = fit_command(run, data_dir)
    env = {**os.environ, "WANDB_RUN_GROUP": study.name}
    log = run.run_dir / "fit.log"
    start = time.monotonic()
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"$ {' '.join(command)}\n")
        f.flush()
        code = subprocess.call(command, stdout=f, stderr=subprocess.STDOUT, env=env)
    tail = _tail(log)
    summary = summarize_metrics(read_metrics(run.run_dir))
    said_diverged = code != 0 and any(w in tail.lower() for w in DIVERGED_WORDS)
    if code < 0 or code in SIGNALLED:
        raise Interrupted(f"mt fit stopped by a signal (exit {code}); run the study again to resume it")
    if code == 2 and not said_diverged:
        errors = [line for line in tail.splitlines() if "error" in line.lower()]
        raise BadInput((errors or tail.splitlines() or [f"mt fit exited 2 (see {log})"])[-1].strip())
    if code != 0 and not said_diverged:
        raise RuntimeError(f"mt fit exited {code} (see {log})")
    status = "diverged" if said_diverged or summary["non_finite_loss"] else "finished"
    result = {
        "status": status, "experiment": run.experiment.name, "architecture": run.experiment.architecture,
        "seed": run.seed, "lr": run.lr, "tuning": run.tuning, "exit_code": code,
        "fit_seconds": time.monotonic() - start, "command": command, **summary,
    }  # fmt: skip
    if status == "diverged":
        result["message"] = tail.splitlines()[-1] if code != 0 and tail else "non-finite training loss"
    tmp = run.marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, run.marker)
    return result


def planned_runs(study: Study, experiment: Experiment) -> Iterator[Run]:
    """The experiment's runs in order: trials first, then the other seeds (yielded once the
    trials are done and the rate is known)."""
    trials = tuning_runs(study, experiment)
    yield from trials
    for run in final_runs(study, experiment):
        if run.run_dir not in {t.run_dir for t in trials}:
            yield run


def describe(run: Run) -> str:
    lr = f" lr={run.lr:g}" if run.lr is not None else ""
    return f"{run.experiment.name} seed={run.seed}{lr}"


def run_study(study: Study, only: list[str] | None = None, dry_run: bool = False) -> int:
    """Run the study's experiments (all, or those named in ``only``) one after another.

    Returns 0 when every run is done, 1 when some failed (they are retried next time).
    Raises :class:`BadInput` when mt fit refuses a command line.
    """
    experiments = [e for e in study.experiments if not only or e.name in only]
    if hasattr(signal, "SIGUSR1") and not dry_run:
        # SLURM's warning before the time limit (scripts/slurm/study.sbatch) is for the mt fit
        # below, which checkpoints and requeues the job; it must not end this process first.
        signal.signal(signal.SIGUSR1, lambda *_: None)
    failed = 0
    for experiment in experiments:
        if dry_run:
            for run in tuning_runs(study, experiment):
                state = "done" if run.done() else "resume" if run.run_dir.is_dir() else "new"
                print(f"[study] {state:6} {describe(run)}: {' '.join(fit_command(run, experiment.data.data_dir))}")
            rest = len(experiment.seeds) - 1
            if rest:
                how = " at the learning rate the trials choose" if len(experiment.lrs) > 1 else ""
                print(f"[study]        {experiment.name}: {rest} more seed(s){how}")
            continue
        for run in planned_runs(study, experiment):
            if run.done():
                print(f"[study] skip   {describe(run)}: done ({run.result()['status']})", flush=True)
                continue
            print(f"[study] {'resume' if run.run_dir.is_dir() else 'start '} {describe(run)} -> {run.run_dir}", flush=True)
            try:
                result = execute(study, run)
            except Interrupted as err:
                print(f"[study] stopped {describe(run)}: {err}", flush=True)
                return 1
            except RuntimeError as err:
                if isinstance(err, BadInput):
                    raise
                print(f"[study] failed {describe(run)}: {err}", flush=True)
                failed += 1
                continue
            bleu = result["best_val_bleu"]
            shown = f"best val/bleu {bleu:.2f}" if bleu is not None else "no validation"
            print(f"[study] {result['status']} {describe(run)}: {shown} in {result['fit_seconds']:.0f} s", flush=True)
    if dry_run:
        n = len(study.experiments)
        print(f"[study] {n} experiment(s); on SLURM, one array task each: "
              f"sbatch --array=0-{n - 1} scripts/slurm/study.sbatch {study.path}")  # fmt: skip
    return 1 if failed else 0


def data_sets_used(study: Study) -> list[DataSet]:
    return list({e.data.name: e.data for e in study.experiments}.values())
