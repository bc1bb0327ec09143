"""Tests for :mod:`mt.data.corpora` and ``scripts/download_data.py`` (no network access)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mt.data import corpora
from mt.data.corpora import DataError

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "download_data.py"

SPLITS = ("train", "val", "test_2016_flickr")
LINES = {
    "en": ["A dog runs.", "Two men talk.", "A girl smiles."],
    "de": ["Ein Hund rennt.", "Zwei Männer reden.", "Ein Mädchen lächelt."],
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _text(lang: str, split: str) -> bytes:
    return "".join(f"{split} {line}\n" for line in LINES[lang]).encode("utf-8")


@pytest.fixture
def fake_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A mirror with multi30k train/val/test_2016_flickr in en+de and matching known hashes."""
    root = tmp_path / "mirror"
    folder = root / corpora.MULTI30K_DIR
    folder.mkdir(parents=True)
    table: dict[str, str | None] = {}
    for split in SPLITS:
        for lang in LINES:
            data = _text(lang, split)
            (folder / f"{split}.{lang}").write_bytes(data)
            table[f"{split}.{lang}"] = _sha(data)
    monkeypatch.setitem(corpora.KNOWN_SHA256, corpora.MULTI30K_DIR, table)
    return root


def _fetch(out: Path, mirror: Path, **kwargs: object) -> corpora.FetchReport:
    return corpora.fetch_multi30k(
        out, mirror=mirror, langs=["en", "de"], log=lambda _msg: None, **kwargs
    )


def test_mirror_copy_produces_layout(fake_mirror: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = _fetch(out, fake_mirror)
    for split in SPLITS:
        for lang in LINES:
            dest = out / "multi30k" / f"{split}.{lang}"
            assert dest.read_bytes() == _text(lang, split)
    assert len(report.written) == 6
    assert not report.unverified
    # test_2017_* / test_2018_* are absent from the mirror: skipped with a reason, no crash.
    skipped = dict(report.skipped)
    assert "not in mirror" in skipped["multi30k/test_2017_flickr.en"]
    assert not list((out / "multi30k").glob(".*.part"))


def test_rerun_skips_up_to_date(fake_mirror: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _fetch(out, fake_mirror, splits=SPLITS)
    dest = out / "multi30k" / "train.en"
    before = dest.stat().st_mtime_ns
    messages: list[str] = []
    report = corpora.fetch_multi30k(
        out, mirror=fake_mirror, splits=SPLITS, langs=["en", "de"], log=messages.append
    )
    assert len(report.up_to_date) == 6 and not report.written
    assert dest.stat().st_mtime_ns == before
    assert any("up to date" in message for message in messages)


def test_line_count_mismatch_names_both_files(fake_mirror: Path, tmp_path: Path, monkeypatch):
    bad = fake_mirror / "multi30k" / "val.de"
    bad.write_bytes(bad.read_bytes() + b"Noch eine Zeile.\n")
    monkeypatch.setitem(corpora.KNOWN_SHA256[corpora.MULTI30K_DIR], "val.de", None)
    with pytest.raises(DataError) as info:
        _fetch(tmp_path / "out", fake_mirror, splits=["val"])
    message = str(info.value)
    assert "val.en has 3 lines" in message and "val.de has 4" in message


def test_checksum_mismatch_names_file_and_hashes(fake_mirror: Path, tmp_path: Path, monkeypatch):
    wrong = "0" * 64
    monkeypatch.setitem(corpora.KNOWN_SHA256[corpora.MULTI30K_DIR], "train.de", wrong)
    out = tmp_path / "out"
    with pytest.raises(DataError) as info:
        _fetch(out, fake_mirror, splits=["train"])
    message = str(info.value)
    dest = out / "multi30k" / "train.de"
    assert str(dest) in message
    assert wrong in message and _sha(_text("de", "train")) in message
    assert not dest.exists()
    assert not list((out / "multi30k").glob(".*.part"))


def test_stale_file_with_bad_hash_is_replaced(fake_mirror: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    dest = out / "multi30k" / "val.en"
    dest.parent.mkdir(parents=True)
    dest.write_text("half a fi")
    report = _fetch(out, fake_mirror, splits=["val"])
    assert dest.read_bytes() == _text("en", "val")
    assert dest in report.written


def test_unknown_hash_is_reported_unverified(fake_mirror: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setitem(corpora.KNOWN_SHA256[corpora.MULTI30K_DIR], "val.en", None)
    messages: list[str] = []
    report = corpora.fetch_multi30k(
        tmp_path / "out", mirror=fake_mirror, splits=["val"], langs=["en"], log=messages.append
    )
    assert report.unverified == [tmp_path / "out" / "multi30k" / "val.en"]
    assert any(m.startswith("warning:") and "unverified" in m for m in messages)


def test_missing_mirror_folder_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty_mirror"
    empty.mkdir()
    with pytest.raises(DataError, match=str(empty / "multi30k")):
        corpora.fetch_multi30k(tmp_path / "out", mirror=empty, log=lambda _m: None)


def test_split_without_language_is_skipped(fake_mirror: Path, tmp_path: Path) -> None:
    report = corpora.fetch_multi30k(
        tmp_path / "out",
        mirror=fake_mirror,
        splits=["test_2017_mscoco"],
        langs=["cs"],
        log=lambda _m: None,
    )
    assert "no cs side" in dict(report.skipped)["multi30k/test_2017_mscoco.cs"]


@pytest.fixture
def gz_server(tmp_path: Path) -> Iterator[str]:
    """A localhost HTTP server serving gzipped val.{en,de} (no outside network)."""
    root = tmp_path / "www"
    root.mkdir()
    for lang in LINES:
        (root / f"val.{lang}.gz").write_bytes(gzip.compress(_text(lang, "val")))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{{split}}.{{lang}}.gz"
    finally:
        server.shutdown()
        server.server_close()


def test_download_gunzips_verifies_and_skips_404(
    gz_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(corpora, "MULTI30K_URL", gz_server)
    table = {f"val.{lang}": _sha(_text(lang, "val")) for lang in LINES}
    monkeypatch.setitem(corpora.KNOWN_SHA256, corpora.MULTI30K_DIR, table)
    out = tmp_path / "out"
    report = corpora.fetch_multi30k(
        out, splits=["val", "train"], langs=["en", "de"], timeout=5, log=lambda _m: None
    )
    assert (out / "multi30k" / "val.de").read_bytes() == _text("de", "val")
    assert len(report.written) == 2
    assert "HTTP 404" in dict(report.skipped)["multi30k/train.en"]


def test_offline_download_error_mentions_mirror(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(corpora, "MULTI30K_URL", "http://127.0.0.1:9/{split}.{lang}.gz")
    with pytest.raises(DataError, match="could not reach URL .*--mirror DIR or MT_DATA_MIRROR"):
        corpora.fetch_multi30k(
            tmp_path / "out", splits=["val"], langs=["en"], timeout=5, log=lambda _m: None
        )


def test_sacrebleu_pair_copied_and_unverified(tmp_path: Path, monkeypatch) -> None:
    src, ref = tmp_path / "src.de", tmp_path / "ref.en"
    src.write_bytes(_text("de", "val"))
    ref.write_bytes(_text("en", "val"))
    calls: list[tuple[str, str]] = []

    def fake(test_set: str, langpair: str, timeout: float) -> tuple[Path, Path, int]:
        calls.append((test_set, langpair))
        return src, ref, 1

    monkeypatch.setattr(corpora, "_sacrebleu_files", fake)
    out = tmp_path / "out"
    report = corpora.fetch_iwslt17(out, splits=["tst2017"], log=lambda _m: None)
    assert calls == [("iwslt17", "de-en")]
    assert (out / "iwslt17-de-en" / "tst2017.de").read_bytes() == src.read_bytes()
    assert (out / "iwslt17-de-en" / "tst2017.en").read_bytes() == ref.read_bytes()
    assert len(report.unverified) == 2
    report = corpora.fetch_sacrebleu_test_set("wmt14", "de-en", out, log=lambda _m: None)
    assert (out / "wmt14-de-en" / "test.en").read_bytes() == ref.read_bytes()


def test_sacrebleu_pair_in_place_needs_no_network(tmp_path: Path, monkeypatch) -> None:
    """Files already fetched from the mirror (known sha256) are reused offline; a changed file
    is fetched again."""
    folder = tmp_path / "out" / corpora.IWSLT17_DIR
    folder.mkdir(parents=True)
    data = {"de": _text("de", "test"), "en": _text("en", "test")}
    for lang, text in data.items():
        (folder / f"tst2017.{lang}").write_bytes(text)
    monkeypatch.setitem(
        corpora.KNOWN_SHA256,
        corpora.IWSLT17_DIR,
        {f"tst2017.{lang}": _sha(text) for lang, text in data.items()},
    )

    def offline(test_set: str, langpair: str, timeout: float) -> tuple[Path, Path, int]:
        raise DataError("offline")

    monkeypatch.setattr(corpora, "_sacrebleu_files", offline)
    report = corpora.fetch_iwslt17(tmp_path / "out", splits=["tst2017"], log=lambda _m: None)
    assert sorted(p.name for p in report.up_to_date) == ["tst2017.de", "tst2017.en"]
    assert not report.written and not report.unverified
    (folder / "tst2017.en").write_bytes(b"changed\n")
    with pytest.raises(DataError, match="offline"):
        corpora.fetch_iwslt17(tmp_path / "out", splits=["tst2017"], log=lambda _m: None)


def _run_script(*args: str, env_mirror: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop(corpora.MIRROR_ENV, None)
    if env_mirror is not None:
        env[corpora.MIRROR_ENV] = env_mirror
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def test_script_missing_mirror_exits_2_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = _run_script(
        "--corpus", "multi30k", "--out", str(tmp_path / "out"), env_mirror=str(missing)
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mt download: error: ")
    assert str(missing / "multi30k") in lines[0]
    assert "Traceback" not in result.stderr


def test_script_checksum_error_exits_2(fake_mirror: Path, tmp_path: Path) -> None:
    # The subprocess uses the real hash table, which the fake files cannot match.
    out = tmp_path / "out"
    result = _run_script(
        "--corpus",
        "multi30k",
        "--splits",
        "val",
        "--langs",
        "en",
        "--out",
        str(out),
        "--mirror",
        str(fake_mirror),
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mt download: error: checksum mismatch")
    assert not (out / "multi30k" / "val.en").exists()


def test_script_success_reports_summary(fake_mirror: Path, tmp_path: Path) -> None:
    # No known hash -> unverified warning, but the copy succeeds and the exit code is 0.
    corpus = fake_mirror / "multi30k"
    for path in corpus.iterdir():
        path.rename(corpus / path.name.replace("test_2016_flickr", "test_2018_flickr"))
    result = _run_script(
        "--corpus",
        "multi30k",
        "--splits",
        "test_2018_flickr",
        "--langs",
        "en,de",
        "--out",
        str(tmp_path / "out"),
        env_mirror=str(fake_mirror),
    )
    assert result.returncode == 0, result.stderr
    assert "warning: multi30k/test_2018_flickr.en is unverified" in result.stdout
    assert "done: 2 written" in result.stdout


def test_real_mirror_multi30k_hashes(tmp_path: Path) -> None:
    value = os.environ.get(corpora.MIRROR_ENV, "").strip()
    if not value:
        pytest.skip(f"{corpora.MIRROR_ENV} is not set; no local corpus mirror to test against")
    folder = Path(value) / corpora.MULTI30K_DIR
    if not folder.is_dir():
        pytest.skip(f"{folder} does not exist ({corpora.MIRROR_ENV}={value})")
    out = tmp_path / "out"
    report = corpora.fetch_multi30k(
        out, mirror=Path(value), splits=SPLITS, langs=["de", "en"], log=lambda _m: None
    )
    assert len(report.written) == 6 and not report.unverified and not report.skipped
    for split in SPLITS:
        for lang in ("de", "en"):
            name = f"{split}.{lang}"
            assert (
                corpora.sha256_file(out / "multi30k" / name)
                == (corpora.KNOWN_SHA256["multi30k"][name])
            )
