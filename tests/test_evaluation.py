"""Tests for mt.eval.evaluation and the scoring mode of scripts/evaluate.py (mt.eval.evaluate_cli)."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU
from sacrebleu.significance import PairedTest

import mt.eval.evaluation as ev
from mt.eval.evaluate_cli import main, read_lines
from mt.eval.evaluation import (
    BucketScore,
    Scores,
    corpus_scores,
    format_buckets_table,
    length_buckets,
    paired_bootstrap,
    stress_set,
)

REPO = Path(__file__).resolve().parents[1]
VOCAB = (
    "the a cat dog house River Berlin runs sat quickly , . ? ! don't 3.5 "
    "über Straße naïve café 東京 I you we They"
).split()


def synth(
    n: int, seed: int = 0, noise: float = 0.3, max_len: int = 60
) -> tuple[list[str], list[str], list[str]]:
    """Random (source, hypothesis, reference) lines; hypotheses are noisy references."""
    rng = random.Random(seed)
    src, hyp, ref = [], [], []
    for _ in range(n):
        length = rng.randint(1, max_len)
        r = [rng.choice(VOCAB) for _ in range(length)]
        s = [rng.choice(VOCAB) for _ in range(max(1, length + rng.randint(-3, 3)))]
        h: list[str] = []
        for w in r:
            u = rng.random()
            if u < noise / 3:
                continue  # deletion
            if u < 2 * noise / 3:
                h.append(rng.choice(VOCAB))  # substitution
            elif u < noise:
                h.extend([w, rng.choice(VOCAB)])  # insertion
            else:
                h.append(w)
        src.append(" ".join(s))
        hyp.append(" ".join(h))
        ref.append(" ".join(r))
    return src, hyp, ref


def write(path: Path, lines: list[str], eol: str = "\n") -> Path:
    """Write lines with the given line ending as UTF-8 bytes."""
    path.write_bytes("".join(x + eol for x in lines).encode("utf-8"))
    return path


def sacrebleu_cli(ref: Path, hyp: Path, *extra: str) -> str:
    """Run the sacrebleu command line and return its stdout."""
    cmd = [sys.executable, "-m", "sacrebleu", str(ref), "-i", str(hyp), "-m", "bleu", "chrf"]
    out = subprocess.run(cmd + list(extra), capture_output=True, text=True, check=True)
    return out.stdout


@pytest.fixture(scope="module")
def data() -> tuple[list[str], list[str], list[str]]:
    return synth(400, seed=1)


# ------------------------------------------------------------------ corpus_scores vs the CLI


def test_corpus_scores_match_sacrebleu_cli_json(tmp_path, data):
    _, hyp, ref = data
    ref_f, hyp_f = write(tmp_path / "ref.txt", ref), write(tmp_path / "hyp.txt", hyp)
    cli = json.loads(sacrebleu_cli(ref_f, hyp_f, "--format", "json", "-w", "4"))
    s = corpus_scores(hyp, ref)
    assert isinstance(s, Scores) and s.n == len(hyp)
    assert cli[0]["name"] == "BLEU" and cli[1]["name"] == s.chrf_name == "chrF2"
    assert round(s.bleu, 4) == cli[0]["score"]
    assert round(s.chrf, 4) == cli[1]["score"]
    assert s.bleu_signature == cli[0]["signature"]
    assert s.chrf_signature == cli[1]["signature"]
    assert "tok:13a" in s.bleu_signature and "case:mixed" in s.bleu_signature
    assert s.bleu_verbose == cli[0]["verbose_score"]
    assert s.bleu_detail.startswith(f"BLEU = {s.bleu:.2f} ") and s.bleu_detail.endswith(
        s.bleu_verbose
    )
    d = s.to_dict()
    assert d["bleu"] == s.bleu and d["n"] == len(hyp) and json.dumps(d)


@pytest.mark.parametrize("width", [1, 4])
def test_format_scores_equals_sacrebleu_text_output(tmp_path, data, width):
    _, hyp, ref = data
    ref_f, hyp_f = write(tmp_path / "ref.txt", ref), write(tmp_path / "hyp.txt", hyp)
    cli = sacrebleu_cli(ref_f, hyp_f, "--format", "text", "-w", str(width))
    assert ev.format_scores(corpus_scores(hyp, ref), width=width) == cli.rstrip("\n")


def test_corpus_scores_length_mismatch_names_both_counts():
    with pytest.raises(ValueError, match=r"3 hypotheses.*2 references"):
        corpus_scores(["a", "b", "c"], ["a", "b"])
    with pytest.raises(ValueError):
        corpus_scores([], [])


def test_corpus_scores_perfect_and_empty_hypotheses():
    ref = ["the cat sat on the mat .", "hello world"]
    assert corpus_scores(ref, ref).bleu == pytest.approx(100.0)
    assert corpus_scores(["", ""], ref).bleu == 0.0


# ------------------------------------------------------------------ evaluate.py scoring mode


def test_evaluate_script_matches_sacrebleu_cli(tmp_path, data):
    src, hyp, ref = data
    # CRLF endings and trailing blanks in the hypothesis file: read as sacrebleu reads them.
    hyp_f = write(tmp_path / "hyp.txt", [h + " \t" for h in hyp], eol="\r\n")
    ref_f = write(tmp_path / "ref.txt", ref)
    src_f = write(tmp_path / "src.txt", src)
    cli = sacrebleu_cli(ref_f, hyp_f, "--format", "text").rstrip("\n").split("\n")
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "evaluate.py"),
            "--hyp",
            str(hyp_f),
            "--ref",
            str(ref_f),
            "--src",
            str(src_f),
            "--n-bootstrap",
            "200",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert out[:2] == cli
    assert "| bucket | n | BLEU [95% CI] | chrF |" in out
    assert any(line.startswith("| 51+ |") for line in out)


def test_evaluate_main_json(tmp_path, data, capsys):
    src, hyp, ref = data
    src = src[:50] + ["word " * 100]  # one very long source sentence
    hyp, ref = hyp[:51], ref[:51]
    files = {
        k: write(tmp_path / f"{k}.txt", v) for k, v in {"src": src, "hyp": hyp, "ref": ref}.items()
    }
    out_json = tmp_path / "out.json"
    rc = main(
        [
            "--hyp",
            str(files["hyp"]),
            "--ref",
            str(files["ref"]),
            "--src",
            str(files["src"]),
            "--json",
            str(out_json),
            "--bucket-edges",
            "5",
            "20",
            "60",
            "--n-bootstrap",
            "50",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    result = json.loads(out_json.read_text(encoding="utf-8"))
    s = corpus_scores(hyp, ref)
    assert result["bleu"] == s.bleu and result["chrf"] == s.chrf
    assert result["bleu_signature"] == s.bleu_signature and result["n"] == 51
    assert [b["label"] for b in result["buckets"]] == ["1-5", "6-20", "21-60", "61+"]
    assert sum(b["n"] for b in result["buckets"]) == 51
    n_long = sum(len(x.split()) > 60 for x in src)
    assert result["buckets"][-1]["n"] == n_long >= 1
    assert format_buckets_table(length_buckets(src, hyp, ref, (5, 20, 60), 50)) in printed


def run_main_error(argv: list[str], capsys) -> str:
    """Run main expecting exit status 2 (bad input); return the single stderr line."""
    assert main(argv) == 2  # bad input
    err = capsys.readouterr().err
    assert err.startswith("mt evaluate: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_evaluate_line_count_mismatch(tmp_path, capsys):
    hyp_f = write(tmp_path / "hyp.txt", ["a b", "c d", "e"])
    ref_f = write(tmp_path / "ref.txt", ["a b", "c d"])
    err = run_main_error(["--hyp", str(hyp_f), "--ref", str(ref_f)], capsys)
    assert str(hyp_f) in err and str(ref_f) in err and "3 lines" in err and "2 lines" in err
    src_f = write(tmp_path / "src.txt", ["x"])
    err = run_main_error(["--hyp", str(ref_f), "--ref", str(ref_f), "--src", str(src_f)], capsys)
    assert str(src_f) in err and "1 lines" in err and "2 lines" in err


def test_evaluate_invalid_utf8_names_file_and_line(tmp_path, capsys):
    ref_f = write(tmp_path / "ref.txt", ["one", "two", "three"])
    bad = tmp_path / "hyp.txt"
    bad.write_bytes(b"one\r\ntwo\n\xff\xfe three\n")
    err = run_main_error(["--hyp", str(bad), "--ref", str(ref_f)], capsys)
    assert f"{bad}:3:" in err and "invalid UTF-8" in err


def test_evaluate_missing_file_and_checkpoint(tmp_path, capsys):
    ref_f = write(tmp_path / "ref.txt", ["one"])
    err = run_main_error(["--hyp", str(tmp_path / "nope.txt"), "--ref", str(ref_f)], capsys)
    assert "nope.txt" in err
    err = run_main_error(
        ["--checkpoint", str(tmp_path / "m.ckpt"), "--src", str(ref_f), "--ref", str(ref_f)],
        capsys,
    )
    assert "m.ckpt" in err and "no such checkpoint" in err


def test_evaluate_script_exit_code_no_traceback(tmp_path):
    hyp_f = write(tmp_path / "hyp.txt", ["a"])
    ref_f = write(tmp_path / "ref.txt", ["a", "b"])
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "evaluate.py"),
            "--hyp",
            str(hyp_f),
            "--ref",
            str(ref_f),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("mt evaluate: error: ") and "Traceback" not in proc.stderr


def test_read_lines_like_sacrebleu(tmp_path):
    f = tmp_path / "x.txt"
    f.write_bytes("  lead\r\nform\x0cfeed\u2028sep \nlast".encode())
    assert read_lines(f) == ["  lead", "form\x0cfeed\u2028sep", "last"]
    f.write_bytes(b"")
    assert read_lines(f) == []
    f.write_bytes(b"\n\n")
    assert read_lines(f) == ["", ""]


# ------------------------------------------------------------------ length buckets


def test_buckets_equal_corpus_scores_on_subsets(data):
    src, hyp, ref = data
    buckets = length_buckets(src, hyp, ref, n_bootstrap=100)
    assert [b.label for b in buckets] == ["1-10", "11-20", "21-30", "31-40", "41-50", "51+"]
    assert [(b.lo, b.hi) for b in buckets] == [
        (1, 10),
        (11, 20),
        (21, 30),
        (31, 40),
        (41, 50),
        (51, None),
    ]
    assert sum(b.n for b in buckets) == len(src)
    for b in buckets:
        idx = [
            i
            for i, s in enumerate(src)
            if max(len(s.split()), 1) >= b.lo and (b.hi is None or len(s.split()) <= b.hi)
        ]
        assert len(idx) == b.n > 0
        s = corpus_scores([hyp[i] for i in idx], [ref[i] for i in idx])
        assert b.bleu == s.bleu and b.chrf == s.chrf


def test_buckets_boundaries_empty_bucket_and_empty_source():
    src = ["", "w " * 10, "w " * 11, "w " * 20, "w " * 60]
    hyp = ["a b c d e"] * 5
    ref = ["a b c d f"] * 5
    buckets = length_buckets(src, hyp, ref, n_bootstrap=20)
    assert [b.n for b in buckets] == [2, 2, 0, 0, 0, 1]
    empty = buckets[2]
    assert isinstance(empty, BucketScore) and empty.label == "21-30"
    assert math.isnan(empty.bleu) and math.isnan(empty.chrf)
    assert all(math.isnan(x) for x in empty.bleu_ci)
    assert empty.to_dict()["bleu"] is None and json.dumps([b.to_dict() for b in buckets])
    table = format_buckets_table(buckets)
    assert table.splitlines()[0] == "| bucket | n | BLEU [95% CI] | chrF |"
    assert "| 21-30 | 0 | n/a | n/a |" in table and len(table.splitlines()) == 8
    custom = length_buckets(src, hyp, ref, edges=(10,), n_bootstrap=0)
    assert [(b.label, b.n) for b in custom] == [("1-10", 2), ("11+", 3)]
    assert all(math.isnan(x) for x in custom[0].bleu_ci)
    with pytest.raises(ValueError):
        length_buckets(src, hyp, ref, edges=(10, 10))
    with pytest.raises(ValueError, match="5 source, 4 hypotheses"):
        length_buckets(src, hyp[:4], ref)


def test_bucket_ci_contains_estimate_and_shrinks_with_more_data():
    src, hyp, ref = synth(150, seed=7)
    src4, hyp4, ref4 = synth(600, seed=8)
    small = length_buckets(src, hyp, ref, edges=(), n_bootstrap=500)[0]
    big = length_buckets(src4, hyp4, ref4, edges=(), n_bootstrap=500)[0]
    for b in (small, big):
        assert b.label == "1+"
        assert b.bleu_ci[0] < b.bleu < b.bleu_ci[1]
        assert b.chrf_ci[0] < b.chrf < b.chrf_ci[1]
    w_small = small.bleu_ci[1] - small.bleu_ci[0]
    w_big = big.bleu_ci[1] - big.bleu_ci[0]
    assert w_big < 0.75 * w_small  # ~1/2 expected for 4x data


def test_bucket_intervals_are_sacrebleus_own(monkeypatch):
    """A bucket's interval is what ``sacrebleu --confidence`` prints (mean ± ci) for its lines."""
    src, hyp, ref = synth(400, seed=3)
    (bucket,) = length_buckets(src, hyp, ref, edges=(), n_bootstrap=1000, seed=777)
    monkeypatch.setenv("SACREBLEU_SEED", "777")
    metric = BLEU()
    printed = json.loads(
        metric.corpus_score(hyp, [ref], n_bootstrap=1000).format(
            width=4, signature=str(metric.get_signature()), is_json=True
        )
    )
    mean, half = printed["confidence_mean"], printed["confidence_var"]
    assert bucket.bleu_ci[0] == pytest.approx(mean - half, abs=1e-4)
    assert bucket.bleu_ci[1] == pytest.approx(mean + half, abs=1e-4)
    # Our seed is ours: the caller's SACREBLEU_SEED is left as it was, and another seed differs.
    assert os.environ["SACREBLEU_SEED"] == "777"
    (other,) = length_buckets(src, hyp, ref, edges=(), n_bootstrap=1000, seed=778)
    assert other.bleu == bucket.bleu and other.bleu_ci != bucket.bleu_ci
    # Seed 0 is reproducible for one system (intervals); only the paired test refuses it.
    zero = [length_buckets(src, hyp, ref, edges=(), n_bootstrap=50, seed=0)[0] for _ in range(2)]
    assert zero[0].bleu_ci == zero[1].bleu_ci
    with pytest.raises(ValueError, match="seed 0"):
        paired_bootstrap(hyp, hyp[::-1], ref, n_bootstrap=10, seed=0)


def test_a_one_sentence_bucket_has_its_score_as_interval():
    """No spread: the interval is the point score (sacreBLEU's float32 mean is not), so a report's
    error bars never go negative."""
    src = ["ein kurzer satz", "ein viel laengerer satz mit sehr vielen woertern darin und mehr"]
    hyp = ["a short sentence", "a much longer sentence with very many words in it and more"]
    ref = ["a short sentence .", "a much longer sentence with many words in it and more"]
    short, long_ = length_buckets(src, hyp, ref, edges=(5,), n_bootstrap=100, seed=3)
    for bucket in (short, long_):
        assert bucket.n == 1 and bucket.bleu_ci == (bucket.bleu, bucket.bleu)


# ------------------------------------------------------------------ paired bootstrap


def test_paired_bootstrap_matches_sacrebleu(monkeypatch):
    _, hyp_a, ref = synth(300, seed=11, noise=0.35)
    _, hyp_b, _ = synth(300, seed=11, noise=0.30)  # same refs, slightly better system
    monkeypatch.setenv("SACREBLEU_SEED", "12345")
    sigs, scores = PairedTest(
        [("a", hyp_a), ("b", hyp_b)],
        {"BLEU": BLEU(references=[ref])},
        references=None,
        test_type="bs",
        n_samples=1000,
    )()
    base, sys_ = scores["BLEU"]
    res = paired_bootstrap(hyp_a, hyp_b, ref, n_bootstrap=1000, seed=12345)
    assert (res.bleu_a, res.bleu_b) == (base.score, sys_.score)
    assert res.delta == pytest.approx(sys_.score - base.score, abs=1e-12)
    assert res.p_value == sys_.p_value
    assert (res.mean_a, res.mean_b) == (base.mean, sys_.mean)
    assert res.ci_a == pytest.approx((base.mean - base.ci, base.mean + base.ci), abs=1e-9)
    assert res.ci_b == pytest.approx((sys_.mean - sys_.ci, sys_.mean + sys_.ci), abs=1e-9)
    assert json.dumps(res.to_dict())


def test_paired_bootstrap_sanity():
    _, hyp, ref = synth(200, seed=5)
    same = paired_bootstrap(hyp, hyp, ref, n_bootstrap=300)
    assert same.delta == 0.0 and same.ci_a == same.ci_b
    assert same.ci_a[0] <= same.bleu_a <= same.ci_a[1]
    # Nearly identical systems: no significant difference.
    close = paired_bootstrap(hyp, hyp[:-1] + ref[-1:], ref, n_bootstrap=300)
    assert 0 < close.delta < 1.0 and close.p_value > 0.05
    better = paired_bootstrap(hyp, ref, ref, n_bootstrap=300)
    assert better.bleu_b == pytest.approx(100.0) and better.delta > 0
    assert better.p_value == pytest.approx(1 / 301)
    again = paired_bootstrap(hyp, ref, ref, n_bootstrap=300)
    assert again == better  # deterministic under the seed
    with pytest.raises(ValueError, match="system B"):
        paired_bootstrap(hyp, hyp[:-1], ref)


# ------------------------------------------------------------------ stress set


@pytest.mark.parametrize("n,k", [(10, 1), (10, 3), (9, 3), (1, 4), (0, 2), (7, 7)])
def test_stress_set(n, k):
    src = [f"s{i} x" for i in range(n)]
    ref = [f"r{i}" for i in range(n)]
    s2, r2 = stress_set(src, ref, k)
    assert len(s2) == len(r2) == math.ceil(n / k)
    if k == 1:
        assert (s2, r2) == (src, ref)
    for g, (s, r) in enumerate(zip(s2, r2, strict=True)):
        assert s == " ".join(src[g * k : (g + 1) * k])
        assert r == " ".join(ref[g * k : (g + 1) * k])


def test_stress_set_errors():
    with pytest.raises(ValueError):
        stress_set(["a"], ["b"], 0)
    with pytest.raises(ValueError, match="2 source vs 1 references"):
        stress_set(["a", "b"], ["c"], 2)
