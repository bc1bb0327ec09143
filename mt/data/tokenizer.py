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
import re
from collections.abc import Iterable, Iterator, Sequence
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
                f"expected {SPECIAL_IDS}; retrain it with mt.data.tokenizer.train_tokenizer"
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

    def id_to_piece(self, i: int) -> str:
        return self._sp.id_to_piece(i)

    def encode(self, lines: Sequence[str], num_threads: int = -1) -> list[list[int]]:
        """Subword ids of each line, without BOS/EOS."""
        return self._sp.encode(list(lines), out_type=int, num_threads=num_threads)

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


def describe_difference(first: Tokenizer, second: Tokenizer) -> str:
    """What differs between two sentencepiece models, in a few words (for error messages):
    ``"8000 vs 7000 pieces"`` or ``"312 of 8000 pieces differ (first at id 517: '▁Hund' vs
    '▁Hunde')"``, or the scores/settings when every piece is the same."""
    if first.fingerprint == second.fingerprint:
        return "nothing (the same model)"
    n = min(first.vocab_size, second.vocab_size)
    differing = [i for i in range(n) if first.id_to_piece(i) != second.id_to_piece(i)]
    sizes = (
        f"{first.vocab_size} vs {second.vocab_size} pieces"
        if first.vocab_size != second.vocab_size
        else f"{n} pieces each"
    )
    if not differing:
        return f"{sizes}, the same pieces in the same order, other scores or settings"
    i = differing[0]
    return (
        f"{sizes}, {len(differing)} of the first {n} differ (first at id {i}: "
        f"{first.id_to_piece(i)!r} vs {second.id_to_piece(i)!r})"
    )


# The seed of sentencepiece's input sampling: a constant, so that the tokenizer is a function of
# the training files and the vocabulary settings only (data.seed, which orders batches, does not
# change it; the cache key does not include it either).
TRAINER_SEED = 0


def train_tokenizer(
    files: Sequence[str | os.PathLike],
    vocab_size: int,
    model_type: ModelType = "unigram",
    character_coverage: float = 0.9995,
    input_sentence_size: int = 2_000_000,
    seed: int = TRAINER_SEED,
) -> Tokenizer:
    """Train a joint sentencepiece model on the lines of ``files``.

    The result is a pure function of the files' lines and the arguments: the same bytes in every
    process and on every machine. Sentencepiece's trainer is run with one thread (its multi-threaded
    EM sums in an order that depends on the thread count, so 1 and 2 threads give different
    models), a fixed sampling seed, and the lines fed from Python (a file name would be stored in
    the model, and a temporary file's name differs every time). A corpus of more than
    ``input_sentence_size`` lines is sampled with ``seed``.

    Raises:
        TokenizerError: when the corpus cannot support ``vocab_size`` or has no text.
    """
    if vocab_size <= len(SPECIAL_IDS) + 256:
        raise TokenizerError(
            f"vocab_size={vocab_size} is too small: byte fallback alone needs 256 pieces plus "
            f"{len(SPECIAL_IDS)} special ids; use at least 300"
        )
    if sum(Path(f).stat().st_size for f in files) == 0:
        raise TokenizerError(f"cannot train a tokenizer: no text in {', '.join(map(str, files))}")

    def sentences() -> Iterator[str]:
        for f in files:
            with open(f, encoding="utf-8") as inp:
                for line in inp:
                    yield line.rstrip("\n")

    model = io.BytesIO()
    spm.set_random_generator_seed(seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentences(),
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
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as err:
        msg = (str(err).strip().splitlines() or [repr(err)])[-1].rstrip(".")
        raise TokenizerError(
            f"sentencepiece could not train vocab_size={vocab_size} on "
            f"{', '.join(map(str, files))}: {_explain_trainer_error(msg)}"
        ) from None
    return Tokenizer(model.getvalue())


def _explain_trainer_error(message: str) -> str:
    """Sentencepiece's vocabulary-size errors in a sentence that says which way to go."""
    if found := re.search(r"Vocabulary size too high \((\d+)\)\. .*<= (\d+)", message):
        return (
            f"the text supports at most {found[2]} pieces; choose a smaller vocab_size "
            f"(<= {found[2]})"
        )
    if found := re.search(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)", message):
        return (
            f"the text has more distinct characters than vocab_size leaves room for (with the "
            f"byte and special pieces it needs {found[2]}); choose a larger vocab_size "
            f"(>= {found[2]})"
        )
    return message + "."


def tokenizer_cache_key(
    file_digests: Iterable[str], vocab_size: int, model_type: str, character_coverage: float
) -> str:
    """A key that changes when the training files' content (their sha256 digests, see
    ``mt.data.corpora.sha256_file``) or the settings change."""
    h = hashlib.sha256()
    for digest in file_digests:
        h.update(digest.encode())
    # "deterministic": tokenizers cached before training became a pure function of its inputs
    # (they depended on the CPU count) are not reused.
    settings = f"{vocab_size}|{model_type}|{character_coverage}|spm{spm.__version__}|deterministic"
    h.update(settings.encode())
    return h.hexdigest()[:16]
