"""The synthetic length-generalisation corpus (mt.data.synthetic, scripts/make_synthetic.py)."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mt.data.synthetic import (
    DICTIONARY,
    MARKERS,
    SyntheticSpec,
    agreement_marker,
    generate,
    sample_source,
    translate_source,
    write_corpus,
)

ROOT = Path(__file__).resolve().parent.parent
SPEC = SyntheticSpec(train_size=300, val_size=40, test_per_band=15, seed=3)


def lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return text[:-1].split("\n")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    out = tmp_path_factory.mktemp("synthetic")
    return out, write_corpus(out, SPEC)


def test_files_and_line_counts(corpus: tuple[Path, dict[str, int]]) -> None:
    out, counts = corpus
    bands = [f"test_len{lo}-{hi}" for lo, hi in SPEC.test_bands]
    assert set(counts) == {"train", "val", "test", *bands}
    assert counts["train"] == 300 and counts["val"] == 40
    assert all(counts[b] == 15 for b in bands) and counts["test"] == 15 * len(bands)
    for name, n in counts.items():
        assert len(lines(out / f"{name}.src")) == len(lines(out / f"{name}.tgt")) == n
    # test is the union of the bands, in band order
    assert lines(out / "test.src") == [s for b in bands for s in lines(out / f"{b}.src")]


def test_lengths_agreement_and_translation_on_every_line(
    corpus: tuple[Path, dict[str, int]],
) -> None:
    out, counts = corpus
    ranges = {"train": SPEC.train_lengths, "val": SPEC.val_lengths, "test": (4, 60)}
    ranges.update({f"test_len{lo}-{hi}": (lo, hi) for lo, hi in SPEC.test_bands})
    for name in counts:
        lo, hi = ranges[name]
        for src, tgt in zip(lines(out / f"{name}.src"), lines(out / f"{name}.tgt"), strict=True):
            s, t = src.split(), tgt.split()
            assert lo <= len(s) <= hi, (name, src)
            assert t[-1] == MARKERS[s[0]] == agreement_marker(s[0])  # the long-range rule
            assert t[0] == DICTIONARY[s[0]] and len(t) == len(s) + 1
            assert tgt == translate_source(src)
    # the bands really are spread: the longest test sentences reach the top band
    assert max(len(s.split()) for s in lines(out / "test.src")) > 50
    train = set(lines(out / "train.src"))
    assert not train & set(lines(out / "val.src")) and not train & set(lines(out / "test.src"))


def test_reordering_on_a_known_sentence() -> None:
    from mt.data.synthetic import WORD_CLASSES

    src = sample_source(random.Random(0), 30)
    words = src.split()
    tgt = translate_source(src).split()
    # the clause order is reversed and clauses are SOV: the first source clause's verb is the
    # last word before the marker
    first_verb = next(w for w in words if w in WORD_CLASSES["verb"])
    assert tgt[-2] == DICTIONARY[first_verb]
    with pytest.raises(ValueError, match="particle"):
        translate_source("zz " + " ".join(words[1:]))


def test_deterministic_by_seed(tmp_path: Path, corpus: tuple[Path, dict[str, int]]) -> None:
    out, _ = corpus
    write_corpus(tmp_path / "again", SPEC)
    for f in out.iterdir():
        assert (tmp_path / "again" / f.name).read_bytes() == f.read_bytes()
    other = generate(SyntheticSpec(train_size=300, val_size=40, test_per_band=15, seed=4))
    assert [s for s, _ in other["train"]] != lines(out / "train.src")


def test_spec_and_script_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SyntheticSpec(train_lengths=(2, 12))
    with pytest.raises(ValueError):
        sample_source(random.Random(0), 3)
    script = [sys.executable, str(ROOT / "scripts" / "make_synthetic.py"), "--out"]
    ok = subprocess.run(
        [*script, str(tmp_path / "s"), "--train-size", "20", "--val-size", "5",
         "--test-per-band", "3", "--test-bands", "4-8", "20-25"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert len(lines(tmp_path / "s" / "test_len20-25.src")) == 3
    bad = subprocess.run(
        [*script, str(tmp_path / "t"), "--test-bands", "20"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and bad.stderr.startswith("mt synthetic: error: ") and "LO-HI" in bad.stderr


def test_configs_have_equal_sizes() -> None:
    from mt.models.lstm import LSTMSeq2Seq
    from mt.models.transformer import TransformerSeq2Seq

    sizes = {}
    for name, cls in (("transformer", TransformerSeq2Seq), ("lstm", LSTMSeq2Seq)):
        cfg = yaml.safe_load((ROOT / "configs" / f"synthetic-{name}.yaml").read_text())
        assert cfg["data"]["data_dir"] == "data/synthetic"
        assert (cfg["data"]["src_lang"], cfg["data"]["tgt_lang"]) == ("src", "tgt")
        args = {k: v for k, v in cfg["model"]["init_args"].items()
                if k not in ("optimizer", "lr_scheduler")}  # fmt: skip
        sizes[name] = cls(vocab_size=cfg["data"]["vocab_size"], **args).num_parameters()
    assert abs(sizes["transformer"] - sizes["lstm"]) / sizes["lstm"] < 0.05, sizes
