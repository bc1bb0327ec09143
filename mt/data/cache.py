"""The corpus cache: text files -> sentencepiece ids, encoded once and memory-mapped.

Cache layout (every entry is written to a temporary directory and renamed into place, so a killed
run never leaves a half-written entry)::

    {cache_dir}/spm-{key}/spm.model                      key: hash of training files + settings
    {cache_dir}/corpus-{key}/{tokens.bin,offsets.npy,text.bin,text_offsets.npy}
                                                         key: hash of the file + tokenizer
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mt.data.corpora import DataError
from mt.data.lines import LineDecodeError, decode_lines
from mt.data.tokenizer import (
    Tokenizer,
)

# --------------------------------------------------------------------------------------------
# Reading text
# --------------------------------------------------------------------------------------------


def iter_lines(path: str | os.PathLike) -> Iterator[str]:
    """Yield the lines of a UTF-8 file without their line ending ("\\n" or "\\r\\n"), as
    :func:`mt.data.lines.decode_lines` reads them.

    Raises:
        DataError: on the first line that is not valid UTF-8, naming the file and line number.
    """
    with open(path, "rb") as f:
        try:
            yield from decode_lines(f, str(path))
        except LineDecodeError as err:
            raise DataError(str(err)) from None


# --------------------------------------------------------------------------------------------
# Encoded, memory-mapped corpus
# --------------------------------------------------------------------------------------------


class EncodedCorpus:
    """One side of one split: subword ids and raw text of every line, memory-mapped.

    The arrays are opened lazily, so a corpus object pickles cheaply into data-loader workers and
    each worker maps the same files (no copy of the corpus per worker).
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def _load(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self._arrays is None:
            d = self.directory
            offsets = np.load(d / "offsets.npy", mmap_mode="r")
            text_offsets = np.load(d / "text_offsets.npy", mmap_mode="r")
            tokens = _map(d / "tokens.bin", np.int32)
            text = _map(d / "text.bin", np.uint8)
            self._arrays = (tokens, offsets, text, text_offsets)
        return self._arrays

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": self.directory, "_arrays": None}

    def __len__(self) -> int:
        return len(self._load()[1]) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Number of subword tokens of every line (without BOS/EOS)."""
        offsets = self._load()[1]
        return np.diff(offsets).astype(np.int64)

    def ids(self, i: int) -> np.ndarray:
        tokens, offsets, _, _ = self._load()
        return tokens[offsets[i] : offsets[i + 1]]

    def text(self, i: int) -> str:
        _, _, text, text_offsets = self._load()
        return bytes(text[text_offsets[i] : text_offsets[i + 1]]).decode("utf-8")


def _map(path: Path, dtype: type) -> np.ndarray:
    # np.memmap refuses empty files; an empty corpus side is legal (then it has no tokens).
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


def encode_corpus(
    path: str | os.PathLike, tokenizer: Tokenizer, out_dir: str | os.PathLike, chunk: int = 50_000
) -> None:
    """Encode a text file into ``out_dir`` (see EncodedCorpus). Memory stays O(chunk)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    offsets = [np.zeros(1, dtype=np.int64)]
    text_offsets = [np.zeros(1, dtype=np.int64)]
    n_tokens = n_bytes = 0
    with open(out_dir / "tokens.bin", "wb") as tok_f, open(out_dir / "text.bin", "wb") as txt_f:

        def flush(lines: list[str]) -> None:
            nonlocal n_tokens, n_bytes
            encoded = tokenizer.encode(lines)
            lengths = np.fromiter((len(x) for x in encoded), dtype=np.int64, count=len(encoded))
            flat = np.fromiter((t for x in encoded for t in x), dtype=np.int32, count=lengths.sum())
            flat.tofile(tok_f)
            offsets.append(n_tokens + np.cumsum(lengths))
            n_tokens += int(lengths.sum())
            raw = [s.encode("utf-8") for s in lines]
            txt_f.write(b"".join(raw))
            byte_lengths = np.fromiter((len(b) for b in raw), dtype=np.int64, count=len(raw))
            text_offsets.append(n_bytes + np.cumsum(byte_lengths))
            n_bytes += int(byte_lengths.sum())

        buffer: list[str] = []
        for line in iter_lines(path):
            buffer.append(line)
            if len(buffer) == chunk:
                flush(buffer)
                buffer = []
        if buffer:
            flush(buffer)
    np.save(out_dir / "offsets.npy", np.concatenate(offsets))
    np.save(out_dir / "text_offsets.npy", np.concatenate(text_offsets))


def _atomic_cache_entry(final: Path, build: Any) -> Path:
    """Run ``build(tmp_dir)`` and rename the result to ``final``, unless ``final`` exists."""
    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        build(tmp)
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished first; its entry is identical
            if not final.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final




def default_cache_dir() -> Path:
    return Path(os.environ.get("MT_CACHE_DIR", Path.home() / ".cache" / "mt"))
