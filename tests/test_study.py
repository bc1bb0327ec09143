"""`mt study`: the study file's checks (exit 2, one line), the statistics behind the verdicts, and
the smoke scale end to end through the installed `mt` (runs, report, skip on rerun)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mt.study import claims as cl
from mt.study.runner import summarize_metrics
from mt.study.spec import StudyError, load_study

ROOT = Path(__file__).resolve().parents[1]
MT = Path(sys.executable).with_name("mt")
SMOKE = ROOT / "configs" / "study" / "smoke.yaml"


def _mt(*args: str, cwd: Path = ROOT, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(MT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _write(tmp_path: Path, study: dict) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def _smoke() -> dict:
    return yaml.safe_load(SMOKE.read_text())


def _mtimes(root: Path, pattern: str) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in sorted(root.rglob(pattern))}


# ------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda s: s["experiments"][0].update(config="configs/nope.yaml"), "experiments[0] (lstm).config"),
        (lambda s: s["experiments"][1].update(cell="lstmx"), "experiments[1] (rnn).cell"),
        (lambda s: s["experiments"][2].update(cell="gru"), "experiments[2] (transformer).cell"),
        (lambda s: s["experiments"][0].update(seeds=[0, 1]), "experiments[0] (lstm).seeds"),
        (lambda s: s["experiments"][0].update(lrr=0.1), "experiments[0].lrr: unknown key"),
        (lambda s: s["defaults"].update(budgett={}), "defaults.budgett: unknown key"),
        (lambda s: s["data"].update(m30k={"data_dir": "/nonexistent"}), "data.m30k.train_split"),
        (lambda s: s["experiments"][0].update(lr=[0.1, 0.2]), "claim 1 compares experiments with unequal"),
        (lambda s: s["experiments"][0].update(data="nope"), "experiments[0] (lstm).data"),
        (lambda s: s["experiments"][0].update(overrides={"trainr.x": 1}), "overrides.trainr.x"),
        (lambda s: s["eval"].update(stress={"k": [1, 0]}), "eval.stress.k"),
        (lambda s: s["eval"].update(gradient_flow={"sentencs": 3}), "eval.gradient_flow.sentencs: unknown key"),
        (lambda s: s["eval"].update(out_of_domain={"corpus": "wmt", "split": "x"}), "eval.out_of_domain.corpus"),
        (lambda s: s["eval"].update(out_of_domain={"corpus": "iwslt17", "split": "tst2015"}),
         "eval.out_of_domain.split"),
        (lambda s: s["eval"].update(out_of_domain={"data_dir": "/nonexistent", "split": "x"}),
         "eval.out_of_domain.data_dir"),
    ],
)
def test_load_study_names_the_bad_key(tmp_path: Path, change, named: str) -> None:
    study = _smoke()
    change(study)
    with pytest.raises(StudyError, match=None) as err:
        load_study(_write(tmp_path, study), tmp_path / "out")
    assert named in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_study_exits_2_with_one_line_and_trains_nothing(tmp_path: Path) -> None:
    study = _smoke()
    study["experiments"][0]["seeds"] = [0]
    result = _mt("study", "--config", str(_write(tmp_path, study)), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "experiments[0] (lstm).seeds" in lines[0]
    assert not (tmp_path / "out").exists()
    missing = _mt("study", "--config", str(tmp_path / "missing.yaml"))
    assert missing.returncode == 2 and "no such study file" in missing.stderr


# ------------------------------------------------------------------------------- statistics


def test_welch_interval_matches_a_hand_computation() -> None:
    # a = [1, 2, 3] (mean 2, var 1), b = [0, 0, 0] (var 0): se = sqrt(1/3), df = 2, t = 4.303
    d, lo, hi = cl.welch([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert d == pytest.approx(2.0)
    assert hi - d == pytest.approx(4.303 * (1 / 3) ** 0.5, rel=1e-3)
    assert cl.welch([1.0], [0.0, 1.0]) is None


def test_verdicts_follow_the_stated_rule() -> None:
    assert cl.verdict((1.0, 0.2, 1.8), +1) == "supported"
    assert cl.verdict((1.0, 0.2, 1.8), -1) == "contradicted"
    assert cl.verdict((0.5, -0.2, 1.2), +1) == "inconclusive at this scale"
    assert cl.verdict(None, +1) == "inconclusive at this scale"
    assert cl.verdict((0.1, -0.5, 0.7), 0, margin=1.0) == "supported"
    assert cl.verdict((3.0, 2.0, 4.0), 0, margin=1.0) == "contradicted"
    assert cl.verdict((0.5, -0.5, 1.5), 0, margin=1.0) == "inconclusive at this scale"


def test_newcombe_interval_of_diverged_shares() -> None:
    d, lo, hi = cl.newcombe(3, 3, 0, 3)
    assert d == 1.0 and 0 < lo < 1 and hi == pytest.approx(1.0)
    d, lo, hi = cl.newcombe(0, 3, 0, 3)
    assert d == 0 and lo < 0 < hi


def test_a_non_finite_loss_is_seen_and_gradients_not_logged_stay_none() -> None:
    rows = [{"step": 1, "train/loss": 5.0}, {"step": 2, "train/loss": float("nan")}]
    summary = summarize_metrics(rows)
    assert summary["non_finite_loss"] is True
    assert summary["grad_norm_max"] is None and summary["clipped_fraction"] is None
    logged = summarize_metrics([{"step": 1, "train/loss": 1.0, "train/grad_norm": 2.0, "train/clipped": 1.0}])
    assert logged["grad_norm_max"] == 2.0 and logged["clipped_fraction"] == 1.0


# ------------------------------------------------------------------------------- probes


def test_claim1_gradient_scalar_recovers_a_known_decay() -> None:
    """Norms that shrink by 0.6 per position of |i - j| give the decay factor 0.6, and the claims
    table compares such factors with the stated rule."""
    import torch

    from mt.eval.gradients import MIN_PAIRS_PLOTTED, GradientFlow, decay_per_position

    def run_with(w: float, seed: int) -> dict:
        i, j = torch.arange(12).view(12, 1), torch.arange(12).view(1, 12)
        norms = (w ** (i - j).abs().double()).float().expand(8, 12, 12)
        flow = GradientFlow()
        flow.add(norms, torch.ones(8, 12, dtype=torch.bool), torch.ones(8, 12, dtype=torch.bool))
        decay = decay_per_position(flow.by_distance(), MIN_PAIRS_PLOTTED)
        return {"seed": seed, "final": True, "status": "finished", "summary": {}, "test": None,
                "gradients": {"decay_per_position": decay}}  # fmt: skip

    assert cl.gradient_decay(run_with(0.6, 1)) == pytest.approx(0.6, rel=1e-4)

    def record(name: str, arch: str, ws: list[float]) -> dict:
        return {"name": name, "architecture": arch, "data": "syn", "synthetic": True, "fraction": 1.0,
                "claims": [1], "runs": [run_with(w, k) for k, w in enumerate(ws)]}  # fmt: skip

    keeps, loses = record("syn-lstm", "lstm", [0.9, 0.92, 0.91]), record("syn-rnn", "rnn", [0.5, 0.55, 0.52])
    row = next(r for r in cl.claim_rows([keeps, loses]) if r["unit"] == "factor/position")
    assert row["estimate"][0] == pytest.approx(0.91 - 0.5233, abs=1e-3)
    assert row["verdict"] == "supported"
    keeps["runs"], loses["runs"] = loses["runs"], keeps["runs"]
    row = next(r for r in cl.claim_rows([keeps, loses]) if r["unit"] == "factor/position")
    assert row["verdict"] == "contradicted"


def test_probe_cache_is_reused_and_recomputed_on_new_settings(tmp_path: Path) -> None:
    from mt.study.scoring import _cached, spread

    calls = []

    def compute() -> dict:
        calls.append(1)
        return {"value": len(calls)}

    path = tmp_path / "eval-x.json"
    assert _cached(path, {"k": [1, 2]}, compute)["value"] == 1
    assert _cached(path, {"k": [1, 2]}, compute)["value"] == 1 and len(calls) == 1
    assert _cached(path, {"k": [1, 4]}, compute)["value"] == 2
    assert spread(10, 4) == [0, 2, 5, 7] and spread(3, 8) == [0, 1, 2]


def test_probe_cache_key_changes_with_a_retrained_checkpoint(tmp_path: Path) -> None:
    """A run deleted and trained again writes a checkpoint of the same name: its probes must not
    come from the cache of the old one."""
    from mt.study.scoring import checkpoint_id

    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"weights of run one")
    first = checkpoint_id(ckpt)
    assert checkpoint_id(ckpt) == first and first.startswith("best.ckpt:")
    ckpt.write_bytes(b"weights of run two")  # same name and size, written later
    later = ckpt.stat().st_mtime_ns + 10**9
    os.utime(ckpt, ns=(later, later))
    assert checkpoint_id(ckpt) != first


def test_test_scores_are_recomputed_for_a_retrained_checkpoint(tmp_path: Path, monkeypatch) -> None:
    """eval-test.json is reused while its checkpoint is the same, and recomputed once the run's
    checkpoint is replaced (a run deleted and trained again in the same folder)."""
    from mt.models import module
    from mt.study import scoring
    from mt.study.spec import DataSet

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "test.de").write_text("ein hund rennt im park\nzwei katzen schlafen\n", "utf-8")
    (data_dir / "test.en").write_text("a dog runs in the park\ntwo cats sleep on a bed\n", "utf-8")
    data = DataSet("d", data_dir, None, {"test_split": "test", "src_lang": "de", "tgt_lang": "en"})
    options = {"beam_size": 1, "max_tokens": 64, "bucket_edges": [1], "n_bootstrap": 0}
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"first")
    outputs = iter([["a dog runs in the park", "two cats sleep on a bed"], ["a cat", "dogs"]])

    class Model:
        def num_parameters(self) -> int:
            return 7

    monkeypatch.setattr(module, "load_checkpoint", lambda *a, **k: Model())
    monkeypatch.setattr(scoring, "_translate", lambda *a: next(outputs))
    first = scoring.score_run(tmp_path / "run", data_dir, data, "test", options)
    assert first is not None and first["bleu"] == pytest.approx(100.0)
    assert scoring.score_run(tmp_path / "run", data_dir, data, "test", options) == first  # cached
    ckpt.write_bytes(b"again")
    later = ckpt.stat().st_mtime_ns + 10**9
    os.utime(ckpt, ns=(later, later))
    second = scoring.score_run(tmp_path / "run", data_dir, data, "test", options)
    assert second is not None and second["bleu"] < 50.0


def test_iwslt17_out_of_domain_set_comes_through_the_corpora_code(tmp_path: Path) -> None:
    from mt.data.corpora import mirror_from_env
    from mt.study.report import out_of_domain_set

    mirror = mirror_from_env()
    if mirror is None or not (mirror / "iwslt17-de-en" / "tst2017.de").is_file():
        pytest.skip("needs MT_DATA_MIRROR with iwslt17-de-en (no downloads in tests)")
    study = _smoke()
    study["eval"]["out_of_domain"] = {"corpus": "iwslt17", "split": "tst2017", "max_sentences": 5}
    ood = out_of_domain_set(load_study(_write(tmp_path, study), tmp_path / "out"))
    assert ood["label"] == "IWSLT17 tst2017 de-en" and (ood["src_lang"], ood["tgt_lang"]) == ("de", "en")
    assert len(ood["src"].read_text(encoding="utf-8").splitlines()) == 1138
    assert ood["src"].parent == tmp_path / "out" / "data" / "iwslt17-de-en"


def test_an_unavailable_out_of_domain_set_is_reported_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mt.study.report import _long_input_section, collect, out_of_domain_set

    monkeypatch.setenv("MT_DATA_MIRROR", str(tmp_path / "empty-mirror"))
    study = _smoke()
    study["eval"]["out_of_domain"] = {"corpus": "iwslt17", "split": "tst2016"}
    loaded = load_study(_write(tmp_path, study), tmp_path / "out")
    ood = out_of_domain_set(loaded)
    assert ood["label"] == "IWSLT17 tst2016 de-en" and "empty-mirror" in ood["error"]
    records = collect(loaded)  # no run is done: nothing decoded, the error kept for the report
    assert records[0]["out_of_domain_error"] == ood["error"]
    assert any("Out-of-domain set unavailable" in line for line in _long_input_section(records))


# ------------------------------------------------------------------------------- end to end


def test_smoke_study_end_to_end_then_skips_on_rerun(tmp_path: Path) -> None:
    out = tmp_path / "smoke"
    # Train without the report-time probes (as a study trained before they existed) ...
    plain = _smoke()
    for key in ("gradient_flow", "stress", "out_of_domain"):
        plain["eval"].pop(key, None)
    first = _mt("study", "--config", str(_write(tmp_path, plain)), "--out", str(out))
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    assert "| # | claim | experiment | effect | measured (95% interval) | verdict |" in md
    assert {row["claim"] for row in report["claims"]} == {1, 2, 5}
    for row in report["claims"]:
        assert row["verdict"] in ("supported", "contradicted", "inconclusive at this scale")
    # the transformer has one seed: no interval, so no verdict but inconclusive
    long_row = next(r for r in report["claims"] if r["claim"] == 5)
    assert long_row["estimate"] is None and long_row["verdict"] == "inconclusive at this scale"
    assert "Gradient norm against distance: not measured" in md and "stress set and out-of-domain" in md
    assert report["machine"]["torch_threads"] >= 1 and report["machine"]["processor"]
    assert f"torch {report['machine']['torch']} with" in md
    runs = sorted(p.parent for p in (out / "runs").rglob("study.json"))
    assert len(runs) == 5
    assert all((r / "eval-test.json").is_file() for r in runs)
    assert not list(out.rglob("eval-gradients.json"))
    assert list(out.glob("*.png"))

    # ... then --report_only with the probes (smoke.yaml's, and an out-of-domain set: the synthetic
    # validation split) adds them from the checkpoints, training nothing.
    probed = _smoke()
    probed["eval"]["out_of_domain"] = {"data_dir": str(out / "data" / "syn"), "split": "val",
                                       "src_lang": "src", "tgt_lang": "tgt", "max_sentences": 10}  # fmt: skip
    probed_yaml = tmp_path / "probed.yaml"
    probed_yaml.write_text(yaml.safe_dump(probed))
    tests_before = _mtimes(out, "eval-test.json")
    again = _mt("study", "--config", str(probed_yaml), "--out", str(out), "--report_only")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert not list((out / "runs").rglob("fit/version_1")) and _mtimes(out, "eval-test.json") == tests_before
    report = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    grad_rows = [r for r in report["claims"] if r["unit"] == "factor/position"]
    assert len(grad_rows) == 1 and grad_rows[0]["n_a"] == grad_rows[0]["n_b"] == 2  # lstm - rnn, 2 seeds
    assert "decay factor per position, mean [95%]" in md
    assert {p.parent.parent.name for p in out.rglob("eval-gradients.json")} == {"lstm", "rnn"}
    stress = [r for r in report["long_input"] if r["k"] is not None]
    assert [r["k"] for r in stress] == [1, 2]
    assert any(r.get("k") == 2 for r in report["claims"] if r["claim"] == 5)  # the largest k in the table
    ood = next(r for r in report["long_input"] if r["k"] is None)
    assert "syn/val" in ood["effect"] and ood["n_a"] == 1 and ood["n_b"] == 2
    assert "| transformer | stress k=2 | 10 |" in md and "syn/val" in md
    seeds1 = json.loads((out / "runs" / "transformer" / "s1" / "eval-stress.json").read_text())
    assert [r["lines"] for r in seeds1["by_k"]] == [20, 10] and seeds1["sentences"] == 20
    assert {"claim1_gradient_flow.png", "claim5_long_input.png"} <= set(report["plots"])

    # The rerun below writes a second report: it reads every probe from its cache.
    probes_before = _mtimes(out, "eval-*.json")
    assert len(probes_before) == 5 + 4 + 5 + 5  # test, gradients (lstm, rnn x 2 seeds), stress, ood

    second = _mt("study", "--config", str(SMOKE), "--out", str(out))
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.count("[study] skip") == 5 and "[study] start" not in second.stdout
    assert sorted(p.parent for p in (out / "runs").rglob("study.json")) == runs
    assert not list((out / "runs").rglob("fit/version_1"))  # no fit ran again
    assert _mtimes(out, "eval-*.json") == probes_before  # nothing decoded or measured again
    assert "decay factor per position, mean [95%]" in (out / "report.md").read_text()


# ------------------------------------------------------------------------------- one run, faked


def _fake_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str):
    """A study with one run whose `mt fit` is a shell script (``body``; $RUN is its run folder)."""
    from mt.study import runner

    script = tmp_path / "fake-mt"
    script.write_text(f'#!/bin/sh\nRUN=$(echo "$@" | sed "s/.*--run_dir \\([^ ]*\\).*/\\1/")\n{body}\n')
    script.chmod(0o755)
    monkeypatch.setattr(runner, "mt_executable", lambda: [str(script)])
    study = load_study(SMOKE, tmp_path / "out")
    run = runner.tuning_runs(study, study.experiments[0])[0]
    return runner, study, run


def test_a_nan_loss_is_recorded_as_diverged_and_not_rerun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = ('mkdir -p $RUN/fit/version_0\n'
            'printf "epoch,step,train/loss\\n0,1,5.0\\n0,2,nan\\n" > $RUN/fit/version_0/metrics.csv')
    runner, study, run = _fake_fit(tmp_path, monkeypatch, body)
    result = runner.execute(study, run)
    assert result["status"] == "diverged" and run.done()
    stamp = run.marker.stat().st_mtime_ns
    assert runner.run_study(study, ["lstm"]) == 0  # seed 1 skipped, seed 2 diverges too: no crash
    assert run.marker.stat().st_mtime_ns == stamp
    assert json.loads((study.out / "runs" / "lstm" / "s2" / "study.json").read_text())["status"] == "diverged"


def test_fit_exit_2_stops_the_study_with_its_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner, study, run = _fake_fit(tmp_path, monkeypatch, 'echo "mt: error: unknown key trainer.foo" >&2; exit 2')
    with pytest.raises(runner.BadInput, match="unknown key trainer.foo"):
        runner.execute(study, run)
    assert not run.done()


def test_a_signalled_fit_stops_the_study_and_leaves_the_run_to_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner, study, run = _fake_fit(tmp_path, monkeypatch, "exit 143")
    assert runner.run_study(study, ["lstm"]) == 1
    assert not run.done()
    assert not (study.out / "runs" / "lstm" / "s2").exists()  # stopped, did not go on


def test_an_interrupted_run_is_resumed_in_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    body = ('echo "$@" >> $RUN/args\nmkdir -p $RUN/fit/version_0\n'
            'printf "epoch,step,train/loss,val/bleu\\n0,1,5.0,1.5\\n" > $RUN/fit/version_0/metrics.csv')
    runner, study, run = _fake_fit(tmp_path, monkeypatch, body)
    run.run_dir.mkdir(parents=True)  # a folder without study.json: a run that was stopped
    assert runner.run_study(study, ["lstm"]) == 0
    assert f"resume lstm seed=1 -> {run.run_dir}" in capsys.readouterr().out
    assert "--ckpt_path last_or_new" in (run.run_dir / "args").read_text()
    assert run.result()["best_val_bleu"] == 1.5


def test_only_and_index_name_known_experiments(tmp_path: Path) -> None:
    bad = _mt("study", "--config", str(SMOKE), "--out", str(tmp_path / "o"), "--only", "lstm,gruu", "--dry_run", "true")
    assert bad.returncode == 2 and "--only: unknown experiment 'gruu'" in bad.stderr
    bad = _mt("study", "--config", str(SMOKE), "--out", str(tmp_path / "o"), "--index", "3", "--dry_run", "true")
    assert bad.returncode == 2 and "--index: 3 is not in 0..2" in bad.stderr
    dry = _mt("study", "--config", str(SMOKE), "--out", str(tmp_path / "o"), "--index", "1", "--dry_run", "true")
    assert dry.returncode == 0 and "rnn seed=1" in dry.stdout and "lstm seed=1" not in dry.stdout
    assert not (tmp_path / "o" / "runs").exists()
