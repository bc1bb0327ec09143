"""Fetch the parallel corpora used by ``mt``, verify them, and lay them out on disk.

Every corpus ends up as ``{out}/{corpus_dir}/{split}.{lang}``: plain UTF-8, one sentence per
line, line *i* of every language of a split parallel to each other. Files come from one of
three sources:

* the official Multi30k repository (gzipped raw text over HTTPS, decompressed here),
* sacreBLEU's own test-set download (IWSLT17 de-en, WMT test sets, ...),
* a local mirror directory laid out exactly like the output (``--mirror`` / ``MT_DATA_MIRROR``).

Files whose decompressed sha256 is known (``KNOWN_SHA256``) are verified; the others are
reported as unverified. Every file is written atomically (temporary file in the destination
directory, then :func:`os.replace`), so an interrupted run never leaves a partial file. After a
split is fetched, all of its languages must have the same number of lines.

Library functions raise :class:`DataError` for every expected failure; ``mt download`` (and its
alias ``scripts/download_data.py``) turns it into one line ``mt download: error: ...`` and exit
status 2.

Why not ``pooch``: it fetches one URL into a cache and checks its hash, which covers the first
source only. The mirror copy, sacreBLEU's downloads, the hash of the *decompressed* text (the
Multi30k files are gzipped upstream; the mirror holds them plain), the UTF-8 check, the parallel
line counts and the one-line offline error would all stay ours, beside a new dependency. The
module is ~650 lines because those checks and the table of known hashes (~35 lines) live here
together, as one path from a source to a verified file.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import hashlib
import http.client
import os
import socket
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "CORPORA",
    "IWSLT17_DIR",
    "IWSLT17_SACREBLEU",
    "KNOWN_SHA256",
    "MIRROR_ENV",
    "MULTI30K_DIR",
    "MULTI30K_SPLITS",
    "MULTI30K_URL",
    "DataError",
    "FetchReport",
    "check_text_file",
    "fetch_corpus",
    "fetch_iwslt17",
    "fetch_multi30k",
    "fetch_sacrebleu_test_set",
    "mirror_from_env",
    "sha256_file",
]

MIRROR_ENV = "MT_DATA_MIRROR"
"""Environment variable naming the default mirror directory."""

MULTI30K_DIR = "multi30k"
IWSLT17_DIR = "iwslt17-de-en"

MULTI30K_URL = (
    "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/{split}.{lang}.gz"
)
"""Raw (untokenized, cased) Multi30k task-1 files in the official repository."""

MULTI30K_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("en", "de", "fr", "cs"),
    "val": ("en", "de", "fr", "cs"),
    "test_2016_flickr": ("en", "de", "fr", "cs"),
    "test_2017_flickr": ("en", "de", "fr"),
    "test_2017_mscoco": ("en", "de", "fr"),
    "test_2018_flickr": ("en", "de", "fr", "cs"),
}
"""Split -> languages that exist in ``data/task1/raw`` of the Multi30k repository."""

IWSLT17_SACREBLEU: dict[str, str] = {
    "tst2016": "iwslt17/tst2016",
    "tst2017": "iwslt17",
}
"""Our IWSLT17 split name -> sacreBLEU test-set name (sacreBLEU calls tst2017 plain ``iwslt17``)."""

IWSLT17_LANGPAIR = "de-en"

CORPORA: tuple[str, ...] = ("multi30k", "iwslt17")
"""Corpus names accepted by :func:`fetch_corpus` (besides ``"all"``)."""

KNOWN_SHA256: dict[str, dict[str, str | None]] = {
    MULTI30K_DIR: {
        # sha256 of the decompressed raw files, from the mirror's README.md.
        "train.en": "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6",
        "train.de": "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72",
        "train.fr": "5925a3c18f1587b6b54b87743106e6e8ab93618edb6f65d19eac0621f853a10d",
        "train.cs": "2be68b38c8d586ff4f54eb13cc6e1baaaa053695b3f070d3038303a47f2268da",
        "val.en": "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227",
        "val.de": "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660",
        "val.fr": "5304e444d842e962b2dda4d816b70b22a1765b15401642b7ca37a67477e708dc",
        "val.cs": "d53827e469b0a1ca8d57e9e26b2b64c4bc4b33f5479c7b03ae87ae5c882c3e33",
        "test_2016_flickr.en": "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182",
        "test_2016_flickr.de": "4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16",
        "test_2016_flickr.fr": "cb3160d69b002bb638e66cc7612fcd56cb0af82eadc9c142dedc438afb885ef6",
        "test_2016_flickr.cs": "45adb85f688de8407fddcbe1b36dca15d12aab868149b337e2576f2d6d2ff8d8",
        # Hashes not known: fetched files are reported as unverified.
        "test_2017_flickr.en": None,
        "test_2017_flickr.de": None,
        "test_2017_flickr.fr": None,
        "test_2017_mscoco.en": None,
        "test_2017_mscoco.de": None,
        "test_2017_mscoco.fr": None,
        "test_2018_flickr.en": None,
        "test_2018_flickr.de": None,
        "test_2018_flickr.fr": None,
        "test_2018_flickr.cs": None,
    },
    IWSLT17_DIR: {
        # sha256 of the mirror's XML-parser extraction (README.md of the mirror). sacreBLEU's
        # own extraction collapses internal whitespace, so these apply to mirror copies only.
        "tst2016.de": "6f5f9f5441c0bf2181e63919e8422e14fdc3dbc097ecfa3a09dba9edec9d6e29",
        "tst2016.en": "806e5f3e420d6855258ed7c1ea943c40842fbe743e5cf2d3292ad5b69050cb59",
        "tst2017.de": "d4559b6ac03c4d0a10cf45fa1f88c6478f303edea5d0b37871ae8c35dca816ee",
        "tst2017.en": "5602b9145505d7983f57414a9830a52037144a21c697bd4fb2bd76565e5023ef",
    },
}
"""Corpus directory -> file name -> expected sha256 of the plain-text file (``None``: unknown)."""

_CHUNK = 1 << 16
Log = Callable[[str], None]


class DataError(Exception):
    """A corpus could not be fetched, verified or laid out (message is one line, user-facing)."""


class _Unavailable(Exception):
    """The source does not have this file; the caller reports it as skipped."""


@dataclass
class FetchReport:
    """What one fetch run did, file by file (paths are destinations under ``out``)."""

    written: list[Path] = field(default_factory=list)
    up_to_date: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unverified: list[Path] = field(default_factory=list)

    def extend(self, other: FetchReport) -> None:
        """Append everything recorded in ``other`` to this report."""
        self.written += other.written
        self.up_to_date += other.up_to_date
        self.skipped += other.skipped
        self.unverified += other.unverified

    def summary(self) -> str:
        """One line with the counts of each outcome."""
        return (
            f"{len(self.written)} written, {len(self.up_to_date)} up to date, "
            f"{len(self.skipped)} skipped, {len(self.unverified)} unverified"
        )


# --------------------------------------------------------------------------------------------
# Small helpers


def _one_line(text: str) -> str:
    """Collapse ``text`` onto one line so error messages stay one line."""
    return " ".join(str(text).split())


def sha256_file(path: Path) -> str:
    """Hex sha256 of the bytes of ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_text_file(path: str | os.PathLike, chunk: int = 1 << 22) -> int:
    """Count the lines of a file and check that it is valid UTF-8, in one pass.

    Raises:
        DataError: naming the file and the 1-based line of the first invalid byte.
    """
    n, rest = 0, b""
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            data = rest + block
            # Decode whole lines only, so that a character split between two reads is no error.
            cut = len(data) if not block else data.rfind(b"\n") + 1
            part, rest = data[:cut], data[cut:]
            try:
                part.decode("utf-8")
            except UnicodeDecodeError as err:
                line = n + part[: err.start].count(b"\n") + 1
                raise DataError(
                    f"{path}:{line}: invalid UTF-8 (byte {part[err.start]:#04x})"
                ) from None
            n += part.count(b"\n")
            if not block:
                return n + (len(part) > 0 and not part.endswith(b"\n"))


def mirror_from_env() -> Path | None:
    """The mirror directory named by ``$MT_DATA_MIRROR``, or ``None`` when unset or empty."""
    value = os.environ.get(MIRROR_ENV, "").strip()
    return Path(value) if value else None


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _default_log(message: str) -> None:
    print(message, flush=True)


def _expected_sha(corpus_dir: str, name: str) -> str | None:
    """Known sha256 for ``{corpus_dir}/{name}`` (looked up at call time so tests can patch it)."""
    return KNOWN_SHA256.get(corpus_dir, {}).get(name)


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Apply a default socket timeout to libraries (sacreBLEU) that do not take one."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


# --------------------------------------------------------------------------------------------
# Atomic, verified install of one file


def _install(
    stream: BinaryIO,
    dest: Path,
    expected: str | None,
    origin: str,
) -> bool:
    """Copy ``stream`` to ``dest`` atomically; verify UTF-8 and (if known) sha256.

    Returns ``True`` if ``dest`` was (re)written, ``False`` if an existing ``dest`` already had
    exactly these bytes. On a checksum mismatch nothing is left at ``dest``.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                for chunk in iter(lambda: stream.read(_CHUNK), b""):
                    digest.update(chunk)
                    decoder.decode(chunk)
                    out.write(chunk)
                decoder.decode(b"", final=True)
            except UnicodeDecodeError as exc:
                raise DataError(f"{origin} is not valid UTF-8 ({exc.reason})") from None
            except (OSError, EOFError, zlib.error, http.client.HTTPException) as exc:
                raise DataError(
                    f"could not copy {origin} to {dest}: {_one_line(str(exc))}"
                ) from None
        actual = digest.hexdigest()
        if expected is not None and actual != expected:
            # The existing file (if any) failed the same check, or we would have skipped it.
            dest.unlink(missing_ok=True)
            raise DataError(
                f"checksum mismatch for {dest} (from {origin}): "
                f"expected sha256 {expected}, got {actual}"
            )
        if dest.is_file() and sha256_file(dest) == actual:
            return False
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, dest)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _has_known_sha(dest: Path, expected: str | None) -> bool:
    """Whether ``dest`` exists with the known sha256 ``expected`` (False when none is known): such
    a file is up to date and needs no fetching."""
    return expected is not None and dest.is_file() and sha256_file(dest) == expected


def _record_up_to_date(dest: Path, corpus_dir: str, report: FetchReport, log: Log) -> None:
    log(f"{corpus_dir}/{dest.name}: up to date (sha256 ok)")
    report.up_to_date.append(dest)


def _fetch_file(
    dest: Path,
    corpus_dir: str,
    opener: Callable[[], contextlib.AbstractContextManager[BinaryIO]],
    origin: str,
    report: FetchReport,
    log: Log,
    *,
    use_known_hash: bool = True,
    unverified_reason: str = "no known sha256",
) -> bool:
    """Fetch one file into ``dest`` and record the outcome; returns whether ``dest`` is present."""
    label = f"{corpus_dir}/{dest.name}"
    expected = _expected_sha(corpus_dir, dest.name) if use_known_hash else None
    if _has_known_sha(dest, expected):
        _record_up_to_date(dest, corpus_dir, report, log)
        return True
    try:
        with opener() as stream:
            changed = _install(stream, dest, expected, origin)
    except _Unavailable as exc:
        log(f"{label}: skipped: {exc}")
        report.skipped.append((label, str(exc)))
        return False
    except OSError as exc:  # e.g. unreadable mirror file or unwritable output directory
        raise DataError(f"could not fetch {origin} into {dest}: {_one_line(str(exc))}") from None
    (report.written if changed else report.up_to_date).append(dest)
    status = "written" if changed else "up to date"
    if expected is not None:
        log(f"{label}: {status} (sha256 ok)")
    else:
        log(f"{label}: {status}")
        log(f"warning: {label} is unverified ({unverified_reason})")
        report.unverified.append(dest)
    return True


def _check_parallel(paths: Sequence[Path]) -> None:
    """Raise :class:`DataError` unless every file in ``paths`` has the same number of lines."""
    if len(paths) < 2:
        return
    counts = [(path, check_text_file(path)) for path in paths]
    first_path, first_count = counts[0]
    for path, count in counts[1:]:
        if count != first_count:
            raise DataError(
                f"line count mismatch: {first_path} has {first_count} lines but {path} has {count}"
            )


# --------------------------------------------------------------------------------------------
# Sources


def _mirror_corpus_dir(mirror: Path, corpus_dir: str) -> Path:
    """``mirror/corpus_dir``, or :class:`DataError` naming the path if it is not a directory."""
    path = mirror / corpus_dir
    if not path.is_dir():
        raise DataError(f"mirror folder {path} does not exist (mirror root: {mirror})")
    return path


def _mirror_opener(path: Path) -> Callable[[], contextlib.AbstractContextManager[BinaryIO]]:
    def opener() -> contextlib.AbstractContextManager[BinaryIO]:
        if not path.is_file():
            raise _Unavailable(f"not in mirror ({path} does not exist)")
        return open(path, "rb")

    return opener


@contextlib.contextmanager
def _gzip_url(url: str, timeout: float) -> Iterator[BinaryIO]:
    """Open ``url`` and yield its gunzipped byte stream."""
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise _Unavailable(f"not in source ({url} returned HTTP 404)") from None
        raise DataError(f"could not download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"could not reach URL {url} ({_one_line(str(reason))}); "
            f"use --mirror DIR or {MIRROR_ENV}"
        ) from None
    with response, gzip.GzipFile(fileobj=response, mode="rb") as stream:
        yield stream  # type: ignore[misc]


def _resolve_selection(
    requested: Iterable[str] | None, available: Sequence[str], what: str, corpus: str
) -> list[str]:
    """Validate a user-chosen subset (``None``: everything available), keeping its order."""
    if requested is None:
        return list(available)
    chosen = list(dict.fromkeys(requested))
    unknown = [item for item in chosen if item not in available]
    if unknown:
        raise DataError(
            f"unknown {what} for {corpus}: {', '.join(unknown)} (known: {', '.join(available)})"
        )
    return chosen


# --------------------------------------------------------------------------------------------
# Corpora


def fetch_multi30k(
    out: Path,
    *,
    mirror: Path | None = None,
    splits: Iterable[str] | None = None,
    langs: Iterable[str] | None = None,
    timeout: float = 60.0,
    log: Log = _default_log,
) -> FetchReport:
    """Fetch Multi30k task 1 into ``out/multi30k/{split}.{lang}``.

    Args:
        out: Output root.
        mirror: Copy from ``mirror/multi30k/`` instead of downloading.
        splits: Subset of :data:`MULTI30K_SPLITS` (default: all).
        langs: Subset of ``en, de, fr, cs`` (default: all). Split/language pairs that do not
            exist in the Multi30k repository are reported as skipped.
        timeout: Seconds before a network read gives up.
        log: Receives one progress line per file.

    Raises:
        DataError: Unreachable source, missing mirror folder, checksum or line-count mismatch.
    """
    all_langs = ("en", "de", "fr", "cs")
    split_list = _resolve_selection(splits, list(MULTI30K_SPLITS), "split", "multi30k")
    lang_list = _resolve_selection(langs, all_langs, "language", "multi30k")
    source_dir = _mirror_corpus_dir(mirror, MULTI30K_DIR) if mirror is not None else None
    dest_dir = out / MULTI30K_DIR
    report = FetchReport()
    for split in split_list:
        present: list[Path] = []
        for lang in lang_list:
            name = f"{split}.{lang}"
            if lang not in MULTI30K_SPLITS[split]:
                if langs is None:
                    continue  # nothing to report: the source never had this file
                reason = f"{split} has no {lang} side in the Multi30k repository"
                log(f"{MULTI30K_DIR}/{name}: skipped: {reason}")
                report.skipped.append((f"{MULTI30K_DIR}/{name}", reason))
                continue
            if source_dir is not None:
                src = source_dir / name
                opener = _mirror_opener(src)
                origin = str(src)
            else:
                url = MULTI30K_URL.format(split=split, lang=lang)
                opener = _bind_gzip_url(url, timeout)
                origin = url
            if _fetch_file(dest_dir / name, MULTI30K_DIR, opener, origin, report, log):
                present.append(dest_dir / name)
        _check_parallel(present)
    return report


def _bind_gzip_url(
    url: str, timeout: float
) -> Callable[[], contextlib.AbstractContextManager[BinaryIO]]:
    return lambda: _gzip_url(url, timeout)


def _sacrebleu_files(test_set: str, langpair: str, timeout: float) -> tuple[Path, Path, int]:
    """Download ``test_set``/``langpair`` with sacreBLEU; return (source, first ref, #refs)."""
    try:
        from sacrebleu import utils as sb_utils
        from sacrebleu.dataset import DATASETS
    except ImportError as exc:  # pragma: no cover - sacrebleu is a dependency
        raise DataError(f"sacrebleu is not importable: {exc}") from None
    if test_set not in DATASETS:
        raise DataError(f"sacreBLEU has no test set named {test_set!r}")
    pairs = sb_utils.get_langpairs_for_testset(test_set)
    if langpair not in pairs:
        raise DataError(
            f"sacreBLEU test set {test_set!r} has no language pair {langpair!r} "
            f"(it has: {', '.join(sorted(pairs))})"
        )
    try:
        with _socket_timeout(timeout):
            sb_utils.download_test_set(test_set, langpair)
            source = sb_utils.get_source_file(test_set, langpair)
            refs = sb_utils.get_reference_files(test_set, langpair)
    except SystemExit:
        # sacreBLEU exits on SSL errors and on an MD5 mismatch of its downloaded archive.
        raise DataError(
            f"sacreBLEU failed to download {test_set} {langpair} (see its log above); "
            f"use --mirror DIR or {MIRROR_ENV}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"could not reach URL for sacreBLEU test set {test_set} "
            f"({_one_line(str(reason))}); use --mirror DIR or {MIRROR_ENV}"
        ) from None
    except Exception as exc:  # sacreBLEU raises bare Exception for several conditions
        raise DataError(
            f"sacreBLEU could not provide {test_set} {langpair}: {_one_line(str(exc))}"
        ) from None
    if not refs:
        raise DataError(f"sacreBLEU returned no reference file for {test_set} {langpair}")
    return Path(source), Path(refs[0]), len(refs)


def _all_verified(
    dest_dir: Path,
    corpus_dir: str,
    split: str,
    langs: Sequence[str],
    report: FetchReport,
    log: Log,
) -> bool:
    """Whether every ``{split}.{lang}`` is already in ``dest_dir`` with its known sha256 (then
    recorded as up to date). A file without a known sha256 never counts as verified."""
    paths = [dest_dir / f"{split}.{lang}" for lang in langs]
    if not all(_has_known_sha(path, _expected_sha(corpus_dir, path.name)) for path in paths):
        return False
    for path in paths:
        _record_up_to_date(path, corpus_dir, report, log)
    return True


def _fetch_pair(
    dest_dir: Path,
    corpus_dir: str,
    split: str,
    langpair: str,
    mirror_dir: Path | None,
    test_set: str,
    report: FetchReport,
    log: Log,
    timeout: float,
) -> None:
    """Fetch one source/reference pair (from the mirror or via sacreBLEU) and check it."""
    src_lang, tgt_lang = langpair.split("-", 1)
    present: list[Path] = []
    if mirror_dir is not None:
        for lang in (src_lang, tgt_lang):
            src = mirror_dir / f"{split}.{lang}"
            if _fetch_file(
                dest_dir / f"{split}.{lang}", corpus_dir, _mirror_opener(src), str(src), report, log
            ):
                present.append(dest_dir / f"{split}.{lang}")
    elif _all_verified(dest_dir, corpus_dir, split, (src_lang, tgt_lang), report, log):
        return  # already in place with the known sha256: no network needed
    else:
        source, ref, n_refs = _sacrebleu_files(test_set, langpair, timeout)
        if n_refs > 1:
            log(f"warning: {test_set} {langpair} has {n_refs} references; using the first")
        reason = (
            "fetched via sacreBLEU, whose text extraction collapses whitespace, "
            "so it is not compared with the mirror's sha256"
        )
        for lang, path in ((src_lang, source), (tgt_lang, ref)):
            if _fetch_file(
                dest_dir / f"{split}.{lang}",
                corpus_dir,
                _bind_open(path),
                f"sacreBLEU {test_set} ({path})",
                report,
                log,
                use_known_hash=False,
                unverified_reason=reason,
            ):
                present.append(dest_dir / f"{split}.{lang}")
    _check_parallel(present)


def _bind_open(path: Path) -> Callable[[], contextlib.AbstractContextManager[BinaryIO]]:
    return lambda: open(path, "rb")


def fetch_iwslt17(
    out: Path,
    *,
    mirror: Path | None = None,
    splits: Iterable[str] | None = None,
    timeout: float = 60.0,
    log: Log = _default_log,
) -> FetchReport:
    """Fetch IWSLT17 de-en tst2016/tst2017 into ``out/iwslt17-de-en/{split}.{de,en}``.

    Downloads go through sacreBLEU (``iwslt17/tst2016`` and ``iwslt17``, pair ``de-en``); with
    ``mirror`` the files are copied from ``mirror/iwslt17-de-en/`` and checked against the
    known sha256 (which describe the mirror's extraction, not sacreBLEU's).

    Raises:
        DataError: As for :func:`fetch_multi30k`.
    """
    split_list = _resolve_selection(splits, list(IWSLT17_SACREBLEU), "split", "iwslt17")
    mirror_dir = _mirror_corpus_dir(mirror, IWSLT17_DIR) if mirror is not None else None
    report = FetchReport()
    for split in split_list:
        _fetch_pair(
            out / IWSLT17_DIR,
            IWSLT17_DIR,
            split,
            IWSLT17_LANGPAIR,
            mirror_dir,
            IWSLT17_SACREBLEU[split],
            report,
            log,
            timeout,
        )
    return report


def sacrebleu_corpus_dir(test_set: str, langpair: str) -> str:
    """Output directory name for a generic sacreBLEU test set, e.g. ``wmt14-de-en``."""
    return f"{test_set.replace('/', '_')}-{langpair}"


def fetch_sacrebleu_test_set(
    test_set: str,
    langpair: str,
    out: Path,
    *,
    mirror: Path | None = None,
    timeout: float = 60.0,
    log: Log = _default_log,
) -> FetchReport:
    """Fetch any sacreBLEU test set into ``out/{test_set}-{langpair}/test.{src,tgt}``.

    The source side is written as ``test.{src}`` and the first reference as ``test.{tgt}``.
    With ``mirror``, ``mirror/{test_set}-{langpair}/test.{src,tgt}`` is copied instead.

    Raises:
        DataError: Unknown test set or pair, download failure, line-count mismatch.
    """
    parts = langpair.split("-")
    if len(parts) != 2 or not all(parts):
        raise DataError(f"language pair must look like 'de-en', got {langpair!r}")
    corpus_dir = sacrebleu_corpus_dir(test_set, langpair)
    mirror_dir = _mirror_corpus_dir(mirror, corpus_dir) if mirror is not None else None
    report = FetchReport()
    _fetch_pair(
        out / corpus_dir, corpus_dir, "test", langpair, mirror_dir, test_set, report, log, timeout
    )
    return report


def fetch_corpus(
    name: str,
    out: Path,
    *,
    mirror: Path | None = None,
    timeout: float = 60.0,
    log: Log = _default_log,
) -> FetchReport:
    """Fetch ``name`` (``multi30k``, ``iwslt17`` or ``all``) with every split and language."""
    if name not in (*CORPORA, "all"):
        raise DataError(f"unknown corpus {name!r} (known: {', '.join(CORPORA)}, all)")
    report = FetchReport()
    if name in ("multi30k", "all"):
        report.extend(fetch_multi30k(out, mirror=mirror, timeout=timeout, log=log))
    if name in ("iwslt17", "all"):
        report.extend(fetch_iwslt17(out, mirror=mirror, timeout=timeout, log=log))
    return report
