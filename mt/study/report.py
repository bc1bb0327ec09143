"""The study's report: ``report.md``, ``report.json`` and plots in the study's output folder.

:func:`collect` gathers every run's marker and, for the runs behind the final numbers only, its
test scores (:func:`mt.study.scoring.score_run`, cached); :mod:`mt.study.claims` turns them into
the claims table; :func:`write_report` writes the files. Choices (learning rate, checkpoint) were
made on validation BLEU during the fits; the test split is decoded here, once per final run.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mt.study import claims as cl
from mt.study.runner import final_runs, planned_runs, prepare_data, tuning_runs
from mt.study.scoring import gradient_flow_run, ood_run, score_run, stress_run
from mt.study.spec import Experiment, Study

ARCH_COLOURS = {"transformer": "tab:blue", "lstm": "tab:orange", "gru": "tab:green", "rnn": "tab:red"}


def out_of_domain_set(study: Study) -> dict[str, Any] | None:
    """The study's out-of-domain set: ``{"label", "src", "ref", "src_lang", "tgt_lang"}`` (files
    fetched into ``{out}/data`` by :func:`mt.data.corpora.fetch_iwslt17` for ``corpus: iwslt17``,
    honouring ``MT_DATA_MIRROR``), ``{"label", "error"}`` when it cannot be had, None when the
    study has none."""
    ood = study.eval.get("out_of_domain")
    if ood is None:
        return None
    split = ood["split"]
    if "corpus" in ood:
        from mt.data.corpora import IWSLT17_DIR, DataError, fetch_iwslt17, mirror_from_env

        label = f"IWSLT17 {split} de-en"
        try:
            fetch_iwslt17(study.out / "data", mirror=mirror_from_env(), splits=[split], log=lambda _m: None)
        except DataError as err:
            return {"label": label, "error": " ".join(str(err).split())}
        folder = study.out / "data" / IWSLT17_DIR
    else:
        folder = Path(str(ood["data_dir"]))
        label = f"{folder.name}/{split}"
    return {"label": label, "src": folder / f"{split}.{ood['src_lang']}", "ref": folder / f"{split}.{ood['tgt_lang']}",
            "src_lang": ood["src_lang"], "tgt_lang": ood["tgt_lang"]}  # fmt: skip


def probes(study: Study, e: Experiment, run_dir: Path, ood: dict[str, Any] | None) -> dict[str, Any]:
    """The optional probes of ``study.eval`` that apply to a final run (:mod:`mt.study.scoring`)."""
    out: dict[str, Any] = {}
    grad, stress = study.eval.get("gradient_flow"), study.eval.get("stress")
    if grad is not None and 1 in e.claims:
        out["gradients"] = gradient_flow_run(run_dir, prepare_data(study, e), e.data, grad)
    if 5 in e.claims:
        if stress is not None:
            out["stress"] = stress_run(run_dir, prepare_data(study, e), e.data, stress, study.eval)
        same_pair = ood is not None and (e.data.options["src_lang"], e.data.options["tgt_lang"]) == (
            ood.get("src_lang"), ood.get("tgt_lang"))  # fmt: skip
        if same_pair and "error" not in ood:
            settings = {"max_sentences": study.eval["out_of_domain"]["max_sentences"]}
            out["ood"] = ood_run(run_dir, ood["src"], ood["ref"], ood["label"], settings, study.eval)
    return out


def collect(study: Study) -> list[dict[str, Any]]:
    """One record per experiment (layout in :mod:`mt.study.claims`); test scores and the
    optional probes for final runs."""
    records = []
    ood = out_of_domain_set(study) if any(5 in e.claims for e in study.experiments) else None
    if ood is not None and "error" in ood:
        print(f"warning: out-of-domain set {ood['label']} unavailable: {ood['error']}", file=sys.stderr)
    for e in study.experiments:
        finals = {r.run_dir for r in final_runs(study, e)}
        runs = []
        seen = set()
        for run in [*tuning_runs(study, e), *final_runs(study, e)]:
            if run.run_dir in seen or (result := run.result()) is None:
                continue
            seen.add(run.run_dir)
            final = run.run_dir in finals
            test, extra = None, {}
            if final and result["status"] == "finished":
                test = score_run(run.run_dir, prepare_data(study, e), e.data, "test", study.eval)
                extra = probes(study, e, run.run_dir, ood)
            runs.append({"seed": run.seed, "lr": run.lr, "final": final, "status": result["status"],
                         "run_dir": str(run.run_dir), "summary": result, "test": test, **extra})  # fmt: skip
        expected = len(e.lrs) + len(e.seeds) - 1
        records.append({
            "name": e.name, "architecture": e.architecture, "data": e.data.name,
            "synthetic": e.data.synthetic is not None, "fraction": e.fraction, "claims": list(e.claims),
            "config": str(e.config), "lrs": list(e.lrs), "seeds": list(e.seeds), "budget": e.budget,
            "runs_expected": expected, "runs": runs,
            "out_of_domain_error": ood["error"] if ood and "error" in ood and 5 in e.claims else None,
        })  # fmt: skip
    return records


def machine() -> dict[str, Any]:
    """Where the report (its decoding and gradient probes) ran: :func:`mt.tools.benchmark.record.environment`
    (CPU model, usable CPUs, torch threads, versions, git commit) in the study's terms."""
    import torch

    from mt.tools.benchmark.record import environment

    env = environment(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    return {"platform": env["platform"], "processor": env["cpu"], "cpus": env["cpu_count"],
            "cpus_usable": env["cpus_usable"], "torch": torch.__version__, "torch_threads": env["torch_threads"],
            "torch_interop_threads": env["torch_interop_threads"],
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "git_commit": env["git_commit"],
            "gpu": (env.get("gpu") or {}).get("name")}  # fmt: skip


def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _effect(row: dict[str, Any]) -> str:
    est = row["estimate"]
    if est is None:
        return f"n/a (runs: {row['n_a']} vs {row['n_b']})"
    digits = {"tokens/s": 0, "factor/position": 3}.get(row["unit"], 2)
    return f"{est[0]:+.{digits}f} [{est[1]:+.{digits}f}, {est[2]:+.{digits}f}] {row['unit']}"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _per_arch(records: list[dict[str, Any]], claim: int) -> list[dict[str, Any]]:
    return [r for r in records if claim in r["claims"]]


def _section_rows(records: list[dict[str, Any]], claim: int) -> list[str]:
    """A table of the claim's experiments: runs, parameters, throughput, BLEU (mean [95%])."""
    out = []
    for r in _per_arch(records, claim):
        fin = cl.finished(r)
        diverged = sum(x["status"] == "diverged" for x in r["runs"])
        params = next((x["test"]["num_parameters"] for x in fin if x.get("test")), None)

        def show(get: Any, digits: int = 2, rec: dict[str, Any] = r) -> str:
            xs = cl.values(rec, get)
            ci = cl.mean_interval(xs)
            if ci is None:
                return _fmt(xs[0], digits) if xs else "n/a"
            return f"{ci[0]:.{digits}f} [{ci[1]:.{digits}f}, {ci[2]:.{digits}f}]"

        out.append([r["name"], r["architecture"], f"{r['data']} {r['fraction']:.0%}",
                    f"{len(fin)}/{len(r['seeds'])} (+{diverged} diverged)",
                    "n/a" if params is None else f"{params / 1e6:.2f}M",
                    show(cl.summary("tgt_tokens_per_sec"), 0), show(cl.summary("best_val_bleu")),
                    show(cl.test_bleu), show(cl.loss_gap, 3)])  # fmt: skip
    header = ["experiment", "arch", "data", "runs finished", "params", "train tgt tok/s",
              "best val BLEU", "test BLEU", "val-train loss"]  # fmt: skip
    return _table(header, out) if out else ["No experiment of this study feeds this claim."]


def _bucket_table(records: list[dict[str, Any]], claim: int, key: str, field: str, scale: float) -> list[str]:
    rows = []
    for r in _per_arch(records, claim):
        labels: dict[str, list[float]] = defaultdict(list)
        counts: dict[str, int] = {}
        for run in cl.finished(r):
            for b in (run.get("test") or {}).get(key) or []:
                if b.get(field) is not None and b.get("n"):
                    labels[b["label"]].append(scale * b[field])
                    counts[b["label"]] = b["n"]
        for label, xs in labels.items():
            ci = cl.mean_interval(xs)
            shown = f"{ci[0]:.1f} [{ci[1]:.1f}, {ci[2]:.1f}]" if ci else _fmt(xs[0], 1)
            rows.append([r["name"], label, counts[label], shown])
    return _table(["experiment", "source words", "sentences", "mean over seeds [95%]"], rows) if rows else []


def _mean_ci(xs: list[float], digits: int) -> str:
    ci = cl.mean_interval(xs)
    if ci is None:
        return _fmt(xs[0], digits) if xs else "n/a"
    return f"{ci[0]:.{digits}f} [{ci[1]:.{digits}f}, {ci[2]:.{digits}f}]"


def _gradient_section(records: list[dict[str, Any]]) -> list[str]:
    """Claim 1: the gradient-flow probe's decay factor per experiment (mean over seeds [95%])."""
    rows = []
    for r in _per_arch(records, 1):
        runs = [x for x in cl.finished(r) if x.get("gradients")]
        if not runs:
            continue
        sentences = runs[0]["gradients"]["sentences"]
        far = [max((d["distance"] for d in x["gradients"]["by_distance"] if d["count"] >= x["gradients"]["min_pairs"]),
                   default=0) for x in runs]  # fmt: skip
        rows.append([r["name"], r["architecture"], len(runs), sentences, min(far),
                     _mean_ci(cl.values(r, cl.gradient_decay), 3)])  # fmt: skip
    if not rows:
        return ["Gradient norm against distance: not measured (set `eval.gradient_flow` in the study file; "
                "`mt study --report_only` then measures the finished runs' checkpoints)."]  # fmt: skip
    return ["Gradient norm against source distance (`mt gradients`' measure, ||d loss_i / d e_j|| of target "
            "position i and source position j, on test pairs spread over the split): the decay factor per "
            "position of distance is exp(slope) of log mean-norm against distance |i - j| >= 1, over the "
            "distances with enough pairs; 1 is flat, smaller decays faster.", "",
            *_table(["experiment", "cell", "runs", "test sentences per run", "farthest distance fitted",
                     "decay factor per position, mean [95%]"], rows)]  # fmt: skip


def _long_input_section(records: list[dict[str, Any]]) -> list[str]:
    """Claim 5 on long input: stress-set BLEU per k and out-of-domain BLEU per experiment, and the
    transformer - lstm differences."""
    lines: list[str] = []
    errors = {r["out_of_domain_error"] for r in _per_arch(records, 5) if r.get("out_of_domain_error")}
    lines += [f"Out-of-domain set unavailable: {e}" for e in sorted(errors)] + ([""] if errors else [])
    ks = cl.stress_ks(_per_arch(records, 5))
    label = cl.ood_label(_per_arch(records, 5))
    rows = []
    for r in _per_arch(records, 5):
        runs = cl.finished(r)
        for k in ks:
            info = next((row for x in runs for row in (x.get("stress") or {}).get("by_k") or [] if row["k"] == k), None)
            if info is not None:
                rows.append([r["name"], f"stress k={k}", info["lines"], f"{info['mean_source_words']:.1f}",
                             _mean_ci(cl.values(r, cl.stress_bleu(k)), 1)])  # fmt: skip
        ood = next((x["ood"] for x in runs if x.get("ood")), None)
        if ood is not None:
            rows.append([r["name"], ood["set"], ood["sentences"], f"{ood['mean_source_words']:.1f}",
                         _mean_ci(cl.values(r, cl.ood_bleu), 1)])  # fmt: skip
    if not rows:
        return [*lines, "Concatenation stress set and out-of-domain long input: not measured (set `eval.stress` and "
                "`eval.out_of_domain` in the study file; `mt study --report_only` decodes the finished runs)."]  # fmt: skip
    lines += ["Long input: the test split with k consecutive sentences joined into one line (the concatenation "
              "stress set), and an out-of-domain set" + (f" ({label})" if label else "") +
              ", decoded from the final checkpoints (the study's `eval.beam_size`):", ""]  # fmt: skip
    lines += _table(["experiment", "set", "lines", "mean source words", "BLEU, mean over seeds [95%]"], rows)
    diffs = [[d["effect"], _effect(d), d["verdict"]] for d in cl.long_input_rows(records)]
    if diffs:
        lines += ["", *_table(["difference", "measured (95% interval)", "verdict"], diffs)]
    return lines


def format_report(study: Study, records: list[dict[str, Any]], rows: list[dict[str, Any]],
                  gradient_rows: list[dict[str, Any]], plots: list[str], meta: dict[str, Any]) -> str:  # fmt: skip
    m = meta["machine"]
    scale = (f"Scale: study `{study.name}` ({study.path}); every verdict holds for this scale only "
             "(the models, data and budgets below), not for larger models or longer training.")  # fmt: skip
    lines = [f"# Claims study `{study.name}`", "", scale, "",
             f"Machine (of this report: test decoding and probes): {m['processor']}, "
             f"{m['cpus_usable']} of {m['cpus']} CPUs usable, GPU {m['gpu'] or 'none'}, torch {m['torch']} "
             f"with {m['torch_threads']} intra-op / {m['torch_interop_threads']} inter-op threads "
             f"(OMP_NUM_THREADS={m['omp_num_threads'] or 'unset'}); git {meta['git_commit'] or 'unknown'}; "
             f"written {meta['written']}.", "",
             f"Command: `{meta['command']}`", "", "## Claims", "", cl.RULE, ""]  # fmt: skip
    table = [[row["claim"], cl.STATEMENTS[row["claim"]], row["experiment"], row["effect"], _effect(row),
              f"**{row['verdict']}**"] for row in rows]  # fmt: skip
    lines += _table(["#", "claim", "experiment", "effect", "measured (95% interval)", "verdict"], table)
    missing = [c for c in cl.STATEMENTS if c not in {r["claim"] for r in rows}]
    if missing:
        lines += ["", f"No row for claim(s) {', '.join(map(str, missing))}: this study has no pair of "
                  "experiments that tests them (see their sections)."]  # fmt: skip
    for claim, statement in cl.STATEMENTS.items():
        lines += ["", f"## Claim {claim}: {statement}", ""]
        lines += _section_rows(records, claim)
        if claim == 1:
            lines += ["", "Agreement-marker accuracy (% of test sentences ending in the marker their first "
                      "word asks for) by source length:", ""]  # fmt: skip
            lines += _bucket_table(records, 1, "marker_accuracy", "accuracy", 100.0) or ["(no synthetic runs)"]
            lines += ["", *_gradient_section(records)]
        if claim == 2:
            grads = [[g["effect"], _effect(g), g["verdict"]] for g in gradient_rows]
            lines += ["", *(_table(["gradient figure", "measured", "verdict"], grads) if grads else
                           ["Gradient norms and clipped steps: not logged (no `train/grad_norm` or "
                            "`train/clipped` in these runs' metrics)."])]  # fmt: skip
        if claim == 4:
            lines += ["", "Throughput against sentence length is measured by `mt benchmark train`, not "
                      "by these runs; the curves below are validation BLEU against wall-clock and "
                      "target tokens seen."]  # fmt: skip
        if claim == 5:
            lines += ["", "Test BLEU by source length:", ""]
            lines += _bucket_table(records, 5, "buckets", "bleu", 1.0) or ["(no test scores)"]
            lines += ["", *_long_input_section(records)]
        if claim == 6:
            lines += ["", "Learning curve: the table above lists each fraction of the training data."]
        lines += ["", *[f"![{p}]({p})" for p in plots if p.startswith(f"claim{claim}_")]]
    lines += ["", "## Every run", ""]
    run_rows = [[r["name"], x["seed"], _fmt(x["lr"], 5) if x["lr"] else "config", x["status"],
                 "final" if x["final"] else "lr trial", _fmt(x["summary"].get("best_val_bleu")),
                 _fmt(cl.test_bleu(x)), _fmt(x["summary"].get("wall_s"), 0), x["summary"].get("steps"),
                 x["summary"].get("message", "")] for r in records for x in r["runs"]]  # fmt: skip
    lines += _table(["experiment", "seed", "lr", "status", "role", "best val BLEU", "test BLEU", "wall s",
                     "steps", "note"], run_rows)  # fmt: skip
    pending = [f"{r['name']} ({len(r['runs'])}/{r['runs_expected']})" for r in records
               if len(r["runs"]) < r["runs_expected"]]  # fmt: skip
    if pending:
        lines += ["", f"Runs not done yet (the report covers those done): {', '.join(pending)}."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def write_plots(records: list[dict[str, Any]], out: Path) -> list[str]:
    """PNG plots per claim; returns their file names (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("warning: matplotlib is not installed; no plots", file=sys.stderr)
        return []
    written = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        written.append(name)

    curves = [(r, x) for r in _per_arch(records, 4) for x in cl.finished(r) if x["summary"]["curve"]]
    if curves:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for r, x in curves:
            c = x["summary"]["curve"]
            colour = ARCH_COLOURS.get(r["architecture"])
            label = f"{r['name']} s{x['seed']}"
            axes[0].plot([p["wall_s"] or 0 for p in c], [p["val_bleu"] for p in c], color=colour, label=label)
            seen = [(p["tgt_tokens_seen"] or 0) / 1000 for p in c]  # thousands: readable ticks
            axes[1].plot(seen, [p["val_bleu"] for p in c], color=colour)
        axes[0].set(xlabel="wall-clock (s)", ylabel="validation BLEU")
        axes[1].set(xlabel="target tokens seen (thousands)", ylabel="validation BLEU")
        axes[0].legend(fontsize=7)
        save(fig, "claim4_val_bleu.png")
    for claim, key, field, scale, ylabel in ((5, "buckets", "bleu", 1.0, "test BLEU"),
                                            (1, "marker_accuracy", "accuracy", 100.0, "marker accuracy (%)")):  # fmt: skip
        fig, ax = plt.subplots(figsize=(6, 4))
        drawn = False
        for r in _per_arch(records, claim):
            by_label: dict[str, list[float]] = defaultdict(list)
            for x in cl.finished(r):
                for b in (x.get("test") or {}).get(key) or []:
                    if b.get(field) is not None and b.get("n"):
                        by_label[b["label"]].append(scale * b[field])
            if by_label:
                labels = list(by_label)
                ax.plot(labels, [sum(v) / len(v) for v in by_label.values()], marker="o",
                        color=ARCH_COLOURS.get(r["architecture"]), label=r["name"])  # fmt: skip
                drawn = True
        ax.set(xlabel="source length (words)", ylabel=ylabel)
        if drawn:
            ax.legend(fontsize=7)
            save(fig, f"claim{claim}_by_length.png")
        else:
            plt.close(fig)
    _probe_plots(records, save, plt)
    learning = [r for r in _per_arch(records, 6) if cl.values(r, cl.test_bleu)]
    if learning:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for arch in sorted({r["architecture"] for r in learning}):
            rs = sorted((r for r in learning if r["architecture"] == arch), key=lambda r: r["fraction"])
            fr = [r["fraction"] for r in rs]
            bleu = [sum(v) / len(v) for v in (cl.values(r, cl.test_bleu) for r in rs)]
            gaps = [sum(v) / len(v) if v else math.nan for v in (cl.values(r, cl.loss_gap) for r in rs)]
            axes[0].plot(fr, bleu, marker="o", color=ARCH_COLOURS.get(arch), label=arch)
            axes[1].plot(fr, gaps, marker="o", color=ARCH_COLOURS.get(arch), label=arch)
        for ax in axes:
            ax.set_xscale("log")
        axes[0].set(xlabel="fraction of the training data", ylabel="test BLEU")
        axes[1].set(xlabel="fraction of the training data", ylabel="validation - training loss")
        axes[0].legend()
        save(fig, "claim6_learning_curves.png")
    cost = [r for r in _per_arch(records, 3) if cl.values(r, cl.summary("tgt_tokens_per_sec"))]
    if cost:
        fig, ax = plt.subplots(figsize=(6, 4))
        tps = [cl.values(r, cl.summary("tgt_tokens_per_sec")) for r in cost]
        ax.bar([r["name"] for r in cost], [sum(v) / len(v) for v in tps],
               color=[ARCH_COLOURS.get(r["architecture"]) for r in cost])  # fmt: skip
        ax.set(ylabel="training target tokens/s (mean over seeds)")
        save(fig, "claim3_throughput.png")
    return written


def _probe_plots(records: list[dict[str, Any]], save: Any, plt: Any) -> None:
    """Claim 1's gradient norm against distance per run (one panel per cell) and claim 5's BLEU
    against k on the stress set (with the out-of-domain BLEU beside)."""
    grads = [(r, [x for x in cl.finished(r) if x.get("gradients")]) for r in _per_arch(records, 1)]
    grads = [(r, runs) for r, runs in grads if runs]
    if grads:
        fig, axes = plt.subplots(1, len(grads), figsize=(4 * len(grads), 3.6), sharey=True, squeeze=False)
        for ax, (r, runs) in zip(axes[0], grads, strict=True):
            for x in runs:
                g = x["gradients"]
                pts = [d for d in g["by_distance"] if d["count"] >= g["min_pairs"] and d["mean_norm"] > 0]
                ax.plot([d["distance"] for d in pts], [d["mean_norm"] for d in pts], marker=".",
                        color=ARCH_COLOURS.get(r["architecture"]), alpha=0.8, label=f"seed {x['seed']}")  # fmt: skip
            ax.set_yscale("log")
            ax.set(title=f"{r['name']} ({r['architecture']})", xlabel="source distance |i - j| (subwords)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        axes[0][0].set_ylabel("mean || d loss_i / d e_j ||")
        save(fig, "claim1_gradient_flow.png")
    ks = cl.stress_ks(_per_arch(records, 5))
    if ks:
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in _per_arch(records, 5):
            means = [(k, sum(v) / len(v)) for k in ks if (v := cl.values(r, cl.stress_bleu(k)))]
            if means:
                ax.plot([k for k, _ in means], [m for _, m in means], marker="o",
                        color=ARCH_COLOURS.get(r["architecture"]), label=f"{r['name']} (stress set)")  # fmt: skip
            if v := cl.values(r, cl.ood_bleu):
                ax.axhline(sum(v) / len(v), linestyle="--", color=ARCH_COLOURS.get(r["architecture"]),
                           label=f"{r['name']} ({cl.ood_label([r])})")  # fmt: skip
        ax.set_xticks(ks)
        ax.set(xlabel="sentences joined per line (k)", ylabel="BLEU (mean over seeds)")
        ax.legend(fontsize=7)
        save(fig, "claim5_long_input.png")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_report(study: Study, command: str, plots: bool = True) -> dict[str, Any]:
    """Collect, score, decide and write ``report.md``/``report.json``/plots; returns the JSON."""
    study.out.mkdir(parents=True, exist_ok=True)
    records = collect(study)
    rows = cl.claim_rows(records)
    gradient_rows = cl.gradient_rows(records)
    names = write_plots(records, study.out) if plots else []
    hardware = machine()
    meta = {"machine": hardware, "git_commit": hardware["git_commit"], "command": command,
            "written": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}  # fmt: skip
    report = {"study": study.name, "file": str(study.path), **meta, "rule": cl.RULE,
              "claims": rows, "gradient_claims": gradient_rows, "long_input": cl.long_input_rows(records),
              "probes": {k: study.eval.get(k) for k in ("gradient_flow", "stress", "out_of_domain")},
              "experiments": records, "plots": names}  # fmt: skip
    (study.out / "report.json").write_text(json.dumps(_clean(report), indent=2) + "\n")
    (study.out / "report.md").write_text(format_report(study, records, rows, gradient_rows, names, meta))
    return report


def pending_runs(study: Study) -> int:
    """Runs of the study not done yet (the seeds after unfinished trials count as pending)."""
    count = 0
    for e in study.experiments:
        done = sum(run.done() for run in planned_runs(study, e))
        count += len(e.lrs) + len(e.seeds) - 1 - done
    return count
