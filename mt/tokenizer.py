"""Subword tokenizer: sentencepiece with fixed special ids and byte fallback.

One joint sentencepiece model (unigram by default, BPE as an option) is trained on the training split
of both languages. Its ids 0-3 are fixed (see below) so that every part of the project can use them
as constants, and byte fallback guarantees that no input character is ever mapped to UNK.

The serialized model (``Tokenizer.model_proto``) is small (a few hundred kB) and travels inside every
checkpoint, so a checkpoint file alone can translate.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import sentencepiece as spm

PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3
SPECIAL_IDS = (PAD_ID, UNK_ID, BOS_ID, EOS_ID)

ModelType = Literal["unigram", "bpe"]


class TokenizerError(ValueError):
    """Raised when a tokenizer cannot be trained or loaded; the message names the cause."""


class Tokenizer:
    """A loaded sentencepiece model with the project's special ids.

    Args:
        model_proto: the serialized sentencepiece model (the bytes of a ``.model`` file).
    """

    def __init__(self, model_proto: bytes) -> None:
        self.model_proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(self.model_proto)
        except Exception as err:  # sentencepiece raises a bare RuntimeError/OSError
            raise TokenizerError(f"not a valid sentencepiece model: {err}") from None
        found = (self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id())
        if found != SPECIAL_IDS:
            raise TokenizerError(
                f"sentencepiece model has special ids (pad, unk, bos, eos) = {found}, "
                f"expected {SPECIAL_IDS}; retrain it with mt.tokenizer.train_tokenizer"
            )

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Tokenizer:
        """Load a ``.model`` file written by sentencepiece."""
        return cls(Path(path).read_bytes())

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def fingerprint(self) -> str:
        """A short hash of the model; encoded-corpus caches are keyed by it."""
        return hashlib.sha256(self.model_proto).hexdigest()[:16]

    def encode(self, lines: Sequence[str], num_threads: int = -1) -> list[list[int]]:
        """Subword ids of each line, without BOS/EOS."""
        return self._sp.encode(list(lines), out_type=int, num_threads=num_threads)

    def encode_pieces(self, line: str) -> list[str]:
        return self._sp.encode(line, out_type=str)

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Detokenize id sequences; special ids (pad, bos, eos) are dropped and decoding stops at
        the first EOS, so raw search output can be passed as it is."""
        cleaned = []
        for seq in ids:
            out = []
            for i in seq:
                i = int(i)
                if i == EOS_ID:
                    break
                if i not in (PAD_ID, BOS_ID):
                    out.append(i)
            cleaned.append(out)
        return self._sp.decode(cleaned)


def train_tokenizer(
    files: Sequence[str | os.PathLike],
    vocab_size: int,
    model_type: ModelType = "unigram",
    character_coverage: float = 0.9995,
    input_sentence_size: int = 2_000_000,
    seed: int = 0,
) -> Tokenizer:
    """Train a joint sentencepiece model on the lines of ``files``.

    Raises:
        TokenizerError: when the corpus cannot support ``vocab_size`` or has no text.
    """
    if vocab_size <= len(SPECIAL_IDS) + 256:
        raise TokenizerError(
            f"vocab_size={vocab_size} is too small: byte fallback alone needs 256 pieces plus "
            f"{len(SPECIAL_IDS)} special ids; use at least 300"
        )
    model = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp:
        # One concatenated input file, so that one sentencepiece call sees both languages.
        joined = Path(tmp) / "input.txt"
        with open(joined, "w", encoding="utf-8") as out:
            for f in files:
                with open(f, encoding="utf-8") as inp:
                    for line in inp:
                        out.write(line if line.endswith("\n") else line + "\n")
        if joined.stat().st_size == 0:
            raise TokenizerError(f"cannot train a tokenizer: no text in {', '.join(map(str, files))}")
        spm.set_random_generator_seed(seed)  # input sampling is then reproducible
        try:
            spm.SentencePieceTrainer.train(
                input=str(joined),
                model_writer=model,
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=character_coverage,
                byte_fallback=True,
                pad_id=PAD_ID,
                unk_id=UNK_ID,
                bos_id=BOS_ID,
                eos_id=EOS_ID,
                input_sentence_size=input_sentence_size,
                shuffle_input_sentence=True,
                num_threads=max(1, os.cpu_count() or 1),
                minloglevel=2,
            )
        except RuntimeError as err:
            msg = (str(err).strip().splitlines() or [repr(err)])[-1].rstrip(".")
            hint = " Choose a smaller vocab_size." if "ocabulary size" in msg else ""
            raise TokenizerError(
                f"sentencepiece could not train vocab_size={vocab_size} on "
                f"{', '.join(map(str, files))}: {msg}.{hint}"
            ) from None
    return Tokenizer(model.getvalue())


def tokenizer_cache_key(
    file_digests: Iterable[str], vocab_size: int, model_type: str, character_coverage: float
) -> str:
    """A key that changes when the training files' content (their sha256 digests, see
    ``mt.corpora.sha256_file``) or the settings change."""
    h = hashlib.sha256()
    for digest in file_digests:
        h.update(digest.encode())
    h.update(f"{vocab_size}|{model_type}|{character_coverage}|spm{spm.__version__}".encode())
    return h.hexdigest()[:16]
