"""Translate text files with a checkpoint: one output line per input line, in input order, always.

``scripts/translate.py`` is a thin wrapper over :func:`main`. The reusable part is
:class:`Translator`, which tokenizes, sorts by length, cuts token-budget batches, runs the shared
search (:func:`mt.models.search.search`), detokenizes and restores the input order. The file is read in
chunks of ``--chunk-lines`` lines, so the whole input never sits in memory.

Guarantees (each one is tested):

* exactly one output line per input line (``--nbest N``: N lines per input line), in input order;
  the numbers of input and output lines are compared at the end and a difference is an error;
* an empty or whitespace-only input line gives an empty output line without running the model;
* no silent truncation: a line longer than ``--max-input-tokens`` subwords (by default the
  ``data.max_len`` the checkpoint was trained with) is split, at sentence punctuation where
  possible, else between words, else between subwords; its pieces are translated alone and
  joined, nothing is dropped; every split line is reported on stderr with its line number and
  counted in the summary;
* input is decoded as strict UTF-8 (``--errors replace`` to replace and warn instead); lines are
  split on ``\\n`` only and a trailing ``\\r`` (CRLF) is removed;
* a batch that runs out of memory is retried in halves, down to single sentences;
* the output file is written atomically (a temporary file in its folder, renamed into place once
  every line is written and counted): a failed or killed run leaves an earlier output untouched;
  the output folder is checked, and the output compared with the input by device and inode
  (hard and symbolic links included), before the model is loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import signal
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import BinaryIO, Literal, TextIO

import torch
from torch import nn

from mt.atomic import atomic_write
from mt.data.batching import decoding_batches, pad_sources
from mt.data.lines import LineDecodeError, decode_lines
from mt.data.tokenizer import PAD_ID, Tokenizer
from mt.models.search import DEFAULT_SEARCH, Hypothesis, length_penalty_factor, search

__all__ = [
    "CTranslate2Translator",
    "TranslateError",
    "TranslateStats",
    "TranslateUsageError",
    "Translation",
    "Translator",
    "is_out_of_memory",
    "check_paths",
    "main",
    "open_output",
    "read_lines",
    "resolve_device",
]

Precision = Literal["32", "bf16", "16"]
ErrorMode = Literal["strict", "replace"]
_AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "32": None,
    "32-true": None,
    "bf16": torch.bfloat16,
    "bf16-mixed": torch.bfloat16,
    "16": torch.float16,
    "16-mixed": torch.float16,
}
# Sentence boundaries for --max-input-tokens: . ! ? ; followed by whitespace.
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")


class TranslateError(RuntimeError):
    """An error for the user: ``main`` prints it as one line ``error: <message>`` and exits 1."""

    exit_status = 1


class TranslateUsageError(TranslateError):
    """Bad input (a missing input file or checkpoint, an unreadable checkpoint, invalid UTF-8 in
    the input, an unusable ``--output``): exit status 2."""

    exit_status = 2


@dataclass
class Translation:
    """One hypothesis as text.

    Attributes:
        text: the detokenized translation (one line: never contains ``\\n`` or ``\\r``).
        score: the length-normalised search score (summed over pieces of a split line).
        log_prob: the summed log-probability (summed over pieces of a split line).
        num_tokens: generated subwords, without EOS.
    """

    text: str
    score: float
    log_prob: float
    num_tokens: int


EMPTY_TRANSLATION = Translation(text="", score=0.0, log_prob=0.0, num_tokens=0)


@dataclass
class TranslateStats:
    """Counters of a translation run; ``sentences`` counts non-empty input lines translated and
    ``tgt_tokens`` the subwords of the best hypotheses (EOS excluded)."""

    lines_in: int = 0
    lines_out: int = 0
    empty: int = 0
    split: int = 0
    sentences: int = 0
    tgt_tokens: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        secs = max(self.seconds, 1e-9)
        return (
            f"summary: {self.lines_in} lines in, {self.lines_out} lines out, "
            f"{self.empty} empty, {self.split} split, "
            f"{self.seconds:.1f} s, {self.sentences / secs:.1f} sentences/s, "
            f"{self.tgt_tokens / secs:.1f} target tokens/s"
        )


def is_out_of_memory(err: BaseException) -> bool:
    """True for ``torch.cuda.OutOfMemoryError`` or a RuntimeError about running out of memory."""
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; ``"cuda"`` without a GPU is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise TranslateError("--device cuda was requested but no CUDA device is available")
    return resolved


def read_lines(
    stream: BinaryIO,
    name: str,
    errors: ErrorMode = "strict",
    warn: Callable[[str], None] | None = None,
) -> Iterator[str]:
    """Lines of a binary stream, decoded as UTF-8, lazily, by :func:`mt.data.lines.decode_lines`
    (split on ``b"\\n"`` only, one trailing ``b"\\r"`` removed).

    Raises:
        TranslateError: ``FILE line N: invalid UTF-8 (...)`` on an invalid byte when
            ``errors == "strict"``; with ``"replace"`` the bytes become U+FFFD and ``warn`` is
            called with the line number.
    """
    try:
        yield from decode_lines(stream, name, errors, warn)
    except LineDecodeError as err:
        raise TranslateUsageError(
            f"{name} line {err.line}: invalid UTF-8 ({err.detail}); "
            "use --errors replace to replace invalid bytes"
        ) from None


def _stderr_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


@dataclass
class _Unit:
    """A source sequence to translate: a whole line or one piece of a split line."""

    line: int  # 1-based input line number, for messages
    ids: list[int]  # subword ids without EOS


class Translator:
    """Batched translation of lists of lines with a model implementing the decoding interface.

    Args:
        model: ``encode``/``decode_step`` model (see :mod:`mt.models.search`); moved to ``device`` and
            put in eval mode.
        tokenizer: the checkpoint's tokenizer.
        beam_size: beam size K (1 = greedy).
        nbest: hypotheses returned per line (<= beam_size).
        length_penalty: GNMT alpha, 0 = raw log-probability.
        max_tokens: batch budget in source tokens, padding counted: rows x longest source (EOS
            included). A single sentence longer than the budget is translated alone.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a ``torch.device``.
        precision: ``"32"``, or ``"bf16"``/``"16"`` to run the model under ``torch.autocast``.
        max_input_tokens: if set, lines longer than this many subwords are split into pieces of
            at most this many subwords: at sentence punctuation (``. ! ? ;`` then whitespace)
            where possible, else between words, else between subwords; nothing is dropped. Each
            piece is translated alone and the outputs are joined with a space. ``None``:
            translate every line whole.
        max_len_a, max_len_b: maximum output length ``a * source length + b``.
        warn: called with a message (naming the line) for each split line; prints
            ``warning: ...`` on stderr by default.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Tokenizer,
        beam_size: int = DEFAULT_SEARCH.beam_size,
        nbest: int = DEFAULT_SEARCH.nbest,
        length_penalty: float = DEFAULT_SEARCH.length_penalty,
        max_tokens: int = 4096,
        device: str | torch.device = "cpu",
        precision: Precision = "32",
        max_input_tokens: int | None = None,
        max_len_a: float = DEFAULT_SEARCH.max_len_a,
        max_len_b: float = DEFAULT_SEARCH.max_len_b,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        if not 1 <= nbest <= beam_size:
            raise ValueError(f"nbest must be between 1 and beam_size={beam_size}, got {nbest}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if max_input_tokens is not None and max_input_tokens < 1:
            raise ValueError(f"max_input_tokens must be >= 1, got {max_input_tokens}")
        if precision not in _AUTOCAST_DTYPES:
            raise ValueError(f"precision must be one of 32, bf16, 16, got {precision!r}")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.beam_size = beam_size
        self.nbest = nbest
        self.length_penalty = length_penalty
        self.max_tokens = max_tokens
        self.autocast_dtype = _AUTOCAST_DTYPES[precision]
        self.max_input_tokens = max_input_tokens
        self.max_len_a = max_len_a
        self.max_len_b = max_len_b
        self.warn = warn or _stderr_warning
        self.stats = TranslateStats()

    # ----------------------------------------------------------------------------------- lists

    def translate(
        self,
        lines: Sequence[str],
        first_line: int = 1,
        progress: Callable[[int], None] | None = None,
    ) -> list[list[Translation]]:
        """Translate ``lines``; returns ``nbest`` translations per line, best first, in input order.

        Args:
            lines: input lines (without newline characters).
            first_line: the 1-based line number of ``lines[0]`` in its file, for messages.
            progress: called with the number of sentences finished after each batch.

        An empty or whitespace-only line gives ``nbest`` empty translations (score 0) without
        running the model.
        """
        results: list[list[Translation] | None] = [None] * len(lines)
        texts: list[tuple[int, str]] = []
        for i, line in enumerate(lines):
            if line.strip():
                texts.append((i, line.strip()))
            else:
                results[i] = [EMPTY_TRANSLATION] * self.nbest
                self.stats.empty += 1
        encoded = self.tokenizer.encode([t for _, t in texts]) if texts else []

        units: list[_Unit] = []
        owners: list[tuple[int, range]] = []  # (line index, its units)
        for (i, text), ids in zip(texts, encoded, strict=True):
            pieces = self._segment(first_line + i, text, ids)
            owners.append((i, range(len(units), len(units) + len(pieces))))
            units.extend(_Unit(first_line + i, p) for p in pieces)

        unit_hyps = self._translate_units(units, progress)
        unit_texts = self._detokenize(unit_hyps)
        for i, span in owners:
            results[i] = self._combine([unit_texts[u] for u in span])
            self.stats.sentences += 1
            self.stats.tgt_tokens += results[i][0].num_tokens
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def _segment(self, line: int, text: str, ids: list[int]) -> list[list[int]]:
        """The pieces' ids of a line: the line whole, or, when it exceeds ``max_input_tokens``,
        pieces of at most that many subwords (see :meth:`_pieces`)."""
        limit = self.max_input_tokens
        if limit is None or len(ids) <= limit:
            return [ids]
        pieces = self._pieces(text, limit)
        self.stats.split += 1
        self.warn(
            f"line {line}: {len(ids)} subwords > --max-input-tokens {limit}: split into "
            f"{len(pieces)} pieces (at sentence punctuation where possible, else between words, "
            "else between subwords) translated separately and joined"
        )
        return pieces

    def _pieces(self, text: str, limit: int) -> list[list[int]]:
        """Greedily pack whole sentences into pieces of at most ``limit`` subwords; a sentence
        that is too long alone is packed word by word, a word that is too long alone is cut
        between subwords. Sentencepiece never joins subwords across whitespace, so the pieces'
        ids concatenated are the ids of the whole line: nothing is lost or changed."""
        pieces: list[list[int]] = []
        current: list[int] = []
        sentences = _SENTENCE_END.split(text)
        for sentence, sentence_ids in zip(sentences, self.tokenizer.encode(sentences), strict=True):
            units = [sentence_ids]
            if len(sentence_ids) > limit:
                words = sentence.split()
                units = [
                    word_ids[k : k + limit]
                    for word_ids in self.tokenizer.encode(words)
                    for k in range(0, len(word_ids), limit)
                ]
            for unit in units:
                if current and len(current) + len(unit) > limit:
                    pieces.append(current)
                    current = []
                current = current + unit
        if current:
            pieces.append(current)
        return pieces

    def _translate_units(
        self, units: list[_Unit], progress: Callable[[int], None] | None
    ) -> list[list[Hypothesis]]:
        """Sort by length, cut token-budget batches, search; results in the order of ``units``."""
        hyps: list[list[Hypothesis] | None] = [None] * len(units)
        done = 0
        for batch in decoding_batches([len(u.ids) for u in units], self.max_tokens):
            for u, h in zip(batch, self._search_with_retry([units[u] for u in batch]), strict=True):
                hyps[u] = h
            done += len(batch)
            if progress is not None:
                progress(done)
        return hyps  # type: ignore[return-value]

    def _search_with_retry(self, units: list[_Unit]) -> list[list[Hypothesis]]:
        """Search one batch; on out-of-memory retry it in halves, down to single sentences."""
        failed = False
        try:
            return self._search(units)
        except Exception as err:  # only OOM is handled; anything else propagates
            if not is_out_of_memory(err):
                raise
            failed = True  # retry outside the except block: the traceback pins the tensors
        assert failed
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if len(units) == 1:
            unit = units[0]
            raise TranslateError(
                f"line {unit.line}: out of memory even when translated alone "
                f"({len(unit.ids)} subwords, beam size {self.beam_size}); use "
                "a smaller --max-input-tokens to split long lines, or a smaller --beam-size"
            )
        half = len(units) // 2
        return self._search_with_retry(units[:half]) + self._search_with_retry(units[half:])

    def _search(self, units: list[_Unit]) -> list[list[Hypothesis]]:
        src = pad_sources([u.ids for u in units]).to(self.device)  # (B, S)
        src_pad_mask = src == PAD_ID  # (B, S)
        autocast = (
            torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            return search(
                self.model,
                src,
                src_pad_mask,
                beam_size=self.beam_size,
                length_penalty=self.length_penalty,
                nbest=self.nbest,
                max_len_a=self.max_len_a,
                max_len_b=self.max_len_b,
            )

    def _detokenize(self, unit_hyps: list[list[Hypothesis]]) -> list[list[Translation]]:
        flat = [h for hyps in unit_hyps for h in hyps]
        texts = iter(self.tokenizer.decode([h.tokens for h in flat]) if flat else [])
        out = []
        for hyps in unit_hyps:
            out.append(
                [
                    Translation(_one_line(next(texts)), h.score, h.log_prob, len(h.tokens))
                    for h in hyps
                ]
            )
        return out

    def _combine(self, pieces: list[list[Translation]]) -> list[Translation]:
        """The n-best list of a line from its pieces' n-best lists.

        The k-th translation joins the pieces' k-th translations with a space; scores and
        log-probs are summed. An n-best list shorter than ``nbest`` (possible only when the model
        leaves fewer sequences with finite probability) is padded by repeating its last entry,
        so that every line always has ``nbest`` translations.
        """
        combined = []
        for k in range(self.nbest):
            parts = [p[min(k, len(p) - 1)] for p in pieces]
            combined.append(
                Translation(
                    text=" ".join(p.text for p in parts if p.text),
                    score=sum(p.score for p in parts),
                    log_prob=sum(p.log_prob for p in parts),
                    num_tokens=sum(p.num_tokens for p in parts),
                )
            )
        return combined

    # --------------------------------------------------------------------------------- streams

    def translate_stream(
        self,
        in_lines: Iterable[str],
        out: TextIO,
        chunk_lines: int = 10_000,
        progress: TextIO | Callable[[int], None] | None = None,
        progress_interval: float = 5.0,
    ) -> TranslateStats:
        """Translate lines from an iterable to ``out``, ``chunk_lines`` lines at a time.

        Writes one line per input line (``nbest > 1``: ``nbest`` lines
        ``INDEX ||| SCORE ||| TRANSLATION`` with the 0-based input line index), in input order.

        Args:
            in_lines: input lines without newline characters (e.g. :func:`read_lines`).
            out: text stream the translations are written to, each line ended by ``\\n``.
            chunk_lines: lines read, translated and written at a time (bounds memory).
            progress: where to report progress (lines done, sentences/s), or a callable given
                the number of sentences translated so far after every batch; None = silent.
            progress_interval: seconds between progress reports.

        Returns:
            The counters of this call (``lines_out`` counts the lines actually written).
        """
        if chunk_lines < 1:
            raise ValueError(f"chunk_lines must be >= 1, got {chunk_lines}")
        self.stats = stats = TranslateStats()
        start = last_report = time.perf_counter()

        def report(done_in_chunk: int) -> None:
            nonlocal last_report
            if callable(progress):
                progress(stats.sentences + done_in_chunk)
                return
            now = time.perf_counter()
            if progress is None or now - last_report < progress_interval:
                return
            last_report = now
            sentences = stats.sentences + done_in_chunk
            print(
                f"progress: {stats.lines_out} lines written, {sentences} sentences translated, "
                f"{sentences / max(now - start, 1e-9):.1f} sentences/s",
                file=progress,
                flush=True,
            )

        iterator = iter(in_lines)
        while chunk := list(islice(iterator, chunk_lines)):
            first_index = stats.lines_in
            stats.lines_in += len(chunk)
            results = self.translate(chunk, first_line=first_index + 1, progress=report)
            for offset, translations in enumerate(results):
                if self.nbest == 1:
                    out.write(translations[0].text + "\n")
                    stats.lines_out += 1
                    continue
                for t in translations:
                    out.write(f"{first_index + offset} ||| {t.score:.4f} ||| {t.text}\n")
                    stats.lines_out += 1
            out.flush()
        stats.seconds = time.perf_counter() - start
        return stats


class CTranslate2Translator(Translator):
    """A :class:`Translator` whose search runs in CTranslate2, on a folder written by
    ``mt export``: the same reading, splitting, batching, n-best and writing, another engine.

    Where CTranslate2's search differs from :mod:`mt.models.search`:

    * CTranslate2 has one maximum output length per batch; it decodes to the longest of the
      batch's ``int(a * source length + b)`` and each hypothesis is cut to its own sentence's
      maximum afterwards. For greedy search that is exactly mt's result; beam search may rank
      differently a hypothesis that outgrew its sentence's maximum.
    * CTranslate2 normalises finished hypotheses by ``length ** length_penalty``, not by GNMT's
      ``((5 + length) / 6) ** length_penalty`` as mt does. So CTranslate2 returns all K of its
      hypotheses, their scores are recomputed with mt's formula (from the log-probability that
      CTranslate2's score implies) and the ``nbest`` best by that score are kept. Its search
      still stops by its own rule, so with a length penalty a line can end with another
      hypothesis than mt's (without one, alpha = 0, the two agree).
    * Positions: the export holds ``max_positions`` of them, so lines are split at
      ``max_positions - 1`` subwords at most (also with ``max_input_tokens=0``) and outputs are
      capped at ``max_positions`` subwords.

    Args:
        model_dir: the exported folder (``mt_export.json``, ``sentencepiece.model``, model).
        device: ``auto`` (CUDA when CTranslate2 sees a GPU), ``cpu`` or ``cuda``.
        threads: CTranslate2's ``intra_threads`` (0: its default); ``inter_threads`` is 1.
        compute_type: CTranslate2's compute type; ``default`` runs the exported weight type.
        max_input_tokens: as for :class:`Translator`; None = the ``data.max_len`` the model was
            trained with (recorded by the export).
        Other arguments: as for :class:`Translator`.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike,
        beam_size: int = DEFAULT_SEARCH.beam_size,
        nbest: int = DEFAULT_SEARCH.nbest,
        length_penalty: float = DEFAULT_SEARCH.length_penalty,
        max_tokens: int = 4096,
        device: str = "auto",
        threads: int = 0,
        compute_type: str = "default",
        max_input_tokens: int | None = None,
        max_len_a: float = DEFAULT_SEARCH.max_len_a,
        max_len_b: float = DEFAULT_SEARCH.max_len_b,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        from mt.tools.export import CT2_MISSING, ExportError, load_export_info

        try:
            import ctranslate2
        except ImportError:
            raise TranslateError(CT2_MISSING) from None

        try:
            info = load_export_info(model_dir)
            tokenizer = Tokenizer.from_file(Path(model_dir) / info["tokenizer"])
        except (ExportError, OSError, KeyError, ValueError) as err:
            raise TranslateUsageError(str(err)) from None
        self.max_positions = int(info["max_positions"])
        limit = info.get("trained_max_len") if max_input_tokens is None else max_input_tokens
        limit = min(limit or self.max_positions - 1, self.max_positions - 1)
        super().__init__(
            nn.Module(),  # no PyTorch model: the search below is CTranslate2's
            tokenizer,
            beam_size=beam_size,
            nbest=nbest,
            length_penalty=length_penalty,
            max_tokens=max_tokens,
            device="cpu",
            max_input_tokens=limit,
            max_len_a=max_len_a,
            max_len_b=max_len_b,
            warn=warn,
        )
        gpus = ctranslate2.get_cuda_device_count()
        if device == "auto":
            device = "cuda" if gpus > 0 else "cpu"
        if device == "cuda" and gpus == 0:
            raise TranslateError("--device cuda was requested but CTranslate2 sees no CUDA device")
        self.engine = ctranslate2.Translator(
            str(model_dir),
            device=device,
            compute_type=compute_type,
            inter_threads=1,
            intra_threads=threads,
        )
        self.piece_ids = {tokenizer.id_to_piece(i): i for i in range(tokenizer.vocab_size)}

    def _search(self, units: list[_Unit]) -> list[list[Hypothesis]]:
        caps = [
            min(max(1, int(self.max_len_a * (len(u.ids) + 1) + self.max_len_b)), self.max_positions)
            for u in units
        ]  # mt's per-sentence maximum (the source's EOS counted), within the position table
        results = self.engine.translate_batch(
            [[self.tokenizer.id_to_piece(i) for i in u.ids] for u in units],
            beam_size=self.beam_size,
            num_hypotheses=self.beam_size,  # all K, re-ranked below with mt's length penalty
            length_penalty=self.length_penalty,
            max_decoding_length=max(caps),
            max_input_length=0,  # never truncate: long lines were split before
            max_batch_size=0,  # the batch is already cut to the token budget
            return_scores=True,
        )
        nbests = []
        for result, cap in zip(results, caps, strict=True):
            pairs = zip(result.hypotheses, result.scores, strict=True)
            hyps = [self._hypothesis(pieces, score, cap, max(caps)) for pieces, score in pairs]
            nbests.append(sorted(hyps, key=lambda h: h.score, reverse=True)[: self.nbest])
        return nbests

    def _hypothesis(self, pieces: list[str], score: float, cap: int, steps: int) -> Hypothesis:
        """A CTranslate2 hypothesis of a search of at most ``steps`` steps as mt's: cut to its
        sentence's maximum ``cap``, scored with mt's length penalty.

        CTranslate2's ``score`` is the log-probability divided by ``length ** alpha``, the
        length counting the EOS of a hypothesis that ended with one (fewer than ``steps``
        pieces). A hypothesis cut to ``cap`` keeps the log-probability of the whole (CTranslate2
        gives no per-token scores): its score is approximate, its tokens are mt's.
        """
        alpha = self.length_penalty
        ct2_length = len(pieces) + 1 if len(pieces) < steps else len(pieces)
        log_prob = score * ct2_length**alpha if alpha else score
        length = min(ct2_length, cap)  # |Y| as mt counts it: EOS included, at most cap
        return Hypothesis(
            tokens=[self.piece_ids[p] for p in pieces[:cap]],
            score=log_prob / length_penalty_factor(length, alpha),
            log_prob=log_prob,
        )


def _one_line(text: str) -> str:
    """Keep one translation on one output line whatever the detokenizer returns."""
    return text.replace("\r", " ").replace("\n", " ")


# ------------------------------------------------------------------------------------------ CLI

ModelLoader = Callable[[str, str], nn.Module]


def _load_checkpoint(path: str, map_location: str) -> nn.Module:
    try:
        from mt.models.module import CheckpointError, load_checkpoint
    except ImportError as err:
        raise TranslateError(
            f"cannot load checkpoints: mt.models.module is not available ({err})"
        ) from None
    try:
        return load_checkpoint(path, map_location=map_location)
    except CheckpointError as err:
        message = str(err)
        raise TranslateUsageError(message if path in message else f"{path}: {message}") from None


def main(argv: Sequence[str] | None = None, *, loader: ModelLoader | None = None) -> int:
    """Run ``mt translate`` (options: :func:`mt.commands.translate`); returns the exit status of
    :func:`run`; a bad command line is ``SystemExit(2)``.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).
        loader: ``(checkpoint_path, map_location) -> model with .tokenizer``; defaults to
            ``mt.models.module.load_checkpoint``. Tests pass their own.
    """
    from mt.commands import run_command

    return run_command("translate", argv, loader=loader)


def run(args: argparse.Namespace, loader: ModelLoader | None = None) -> int:
    """Translate as ``args`` (the options of :func:`mt.commands.translate`) say; the exit status:
    0; 2 for bad input (a missing input file or checkpoint, an unreadable checkpoint, invalid
    UTF-8, an unusable ``--output``); 1 for other errors (out of memory, a line-count mismatch);
    143 when stopped by SIGTERM (the output's temporary file removed, an earlier output
    untouched)."""
    try:
        with _sigterm_unwinds():
            return _run(args, loader or _load_checkpoint)
    except TranslateError as err:
        print(f"mt translate: error: {err}", file=sys.stderr, flush=True)
        return err.exit_status
    except _Terminated:
        print(
            "mt translate: error: stopped by SIGTERM before the translation was complete (an output file is "
            "not replaced)",
            file=sys.stderr,
        )
        return 128 + signal.SIGTERM


class _Terminated(BaseException):
    """Raised by the SIGTERM handler of :func:`main` (not an Exception: nothing swallows it)."""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into :class:`_Terminated` while translating, so that the output's temporary
    file is removed on the way out (the default action would kill the process and leave it)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def terminate(signum: int, frame: object) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
def _run(args: argparse.Namespace, loader: ModelLoader) -> int:
    # Check the cheap things before loading the model, and open the output only after it.
    check_paths(args.input, args.output)
    if getattr(args, "engine", "pytorch") == "ctranslate2":
        translator: Translator = _ctranslate2_translator(args)
    else:
        translator = _pytorch_translator(args, loader)

    with contextlib.ExitStack() as stack:
        if args.input == "-":
            in_stream, in_name = sys.stdin.buffer, "<stdin>"
        else:
            in_stream, in_name = stack.enter_context(open(args.input, "rb")), args.input
        out = stack.enter_context(open_output(args.output))
        lines = read_lines(in_stream, in_name, args.errors, warn=_stderr_warning)
        stats = translator.translate_stream(
            lines, out, chunk_lines=args.chunk_lines, progress=_progress_bar(stack, args.quiet)
        )
        # Compared before the output is renamed into place: a short output never replaces a file.
        expected = stats.lines_in * args.nbest
        written = stats.lines_out
        if args.output != "-" and os.path.isfile(out.name):
            out.flush()
            written = _count_lines(out.name)
        if written != expected:
            raise TranslateError(
                f"line count mismatch: {stats.lines_in} input lines but {written} output lines "
                f"for {args.output if args.output != '-' else '<stdout>'} (expected {expected})"
            )
    if not args.quiet:
        print(stats.summary(), file=sys.stderr, flush=True)
    return 0


def _pytorch_translator(args: argparse.Namespace, loader: ModelLoader) -> Translator:
    """The translator of ``--checkpoint`` (mt's search on the PyTorch model)."""
    ckpt = Path(args.checkpoint)
    if not ckpt.is_file():
        what = "is a directory" if ckpt.is_dir() else "not found"
        raise TranslateUsageError(f"checkpoint {what}: {args.checkpoint}")
    device = resolve_device(args.device)
    model = loader(str(ckpt), "cpu")
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise TranslateUsageError(f"checkpoint {args.checkpoint} carries no tokenizer")
    return Translator(
        model,
        tokenizer,
        beam_size=args.beam_size,
        nbest=args.nbest,
        length_penalty=args.length_penalty,
        max_tokens=args.max_tokens,
        device=device,
        precision=args.precision,
        max_input_tokens=input_limit(args.max_input_tokens, model),
    )


def _ctranslate2_translator(args: argparse.Namespace) -> Translator:
    """The translator of ``--model`` (a folder written by ``mt export``) in CTranslate2."""
    return CTranslate2Translator(
        args.model,
        beam_size=args.beam_size,
        nbest=args.nbest,
        length_penalty=args.length_penalty,
        max_tokens=args.max_tokens,
        device=args.device,
        threads=args.threads,
        max_input_tokens=args.max_input_tokens,
    )


def input_limit(requested: int | None, model: nn.Module) -> int | None:
    """The ``max_input_tokens`` of a run: ``--max-input-tokens`` when given (0: no limit), else
    the longest input the model was trained on (``trained_max_len``, the checkpoint's
    ``data.max_len``; None when the model does not say)."""
    if requested is not None:
        return requested or None
    return getattr(model, "trained_max_len", None)


def check_paths(input: str, output: str) -> None:
    """Check ``--input`` and ``--output`` before anything is loaded.

    The input must be a file (``-``: stdin). The output (``-``: stdout) must be in an existing,
    writable folder and must not be the input file itself: compared by device and inode, so a hard
    link or a symbolic link to the input is caught as well as the same path.

    Raises:
        TranslateError: naming the path; an unusable output path is a usage error (exit 2).
    """
    if input != "-":
        in_path = Path(input)
        if not in_path.is_file():
            what = "is a directory" if in_path.is_dir() else "not found"
            raise TranslateUsageError(f"input file {what}: {input}")
    if output == "-":
        return
    target = Path(os.path.realpath(output))
    if target.is_dir():
        raise TranslateUsageError(f"--output is a directory: {output}")
    folder = target.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise TranslateUsageError(f"--output {output}: the folder {folder} {what}")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise TranslateUsageError(
            f"--output {output}: cannot write to the folder {folder} ({reason})"
        ) from None
    os.close(fd)
    os.unlink(probe)
    if not target.exists():
        return
    if input != "-":
        if os.path.samefile(input, target):
            raise TranslateUsageError(
                f"--output is the same file as --input (same device and inode): {output}"
            )
    elif _is_regular(sys.stdin) and os.path.samestat(os.fstat(sys.stdin.fileno()), target.stat()):
        raise TranslateUsageError(f"--output is the same file as the standard input: {output}")


def _is_regular(stream: TextIO) -> bool:
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False


@contextlib.contextmanager
def open_output(output: str) -> Iterator[TextIO]:
    """The output stream of a translation run: UTF-8 with ``\n`` line ends.

    ``-`` is stdout (flushed, never closed). A file is written atomically (:func:`atomic_write`):
    to a temporary file in its folder, renamed into place only when the ``with`` block succeeds,
    so a failed or killed run leaves an earlier output untouched. A symbolic link is followed (its
    target is replaced, the link kept). Something other than a regular file (``/dev/null``, a
    FIFO) is written in place.
    """
    if output == "-":
        out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n")
        try:
            yield out
        finally:
            out.flush()
            out.detach()  # never close the process's stdout
        return
    target = os.path.realpath(output)
    if os.path.exists(target) and not os.path.isfile(target):
        with open(target, "w", encoding="utf-8", newline="\n") as out:
            yield out
        return
    with atomic_write(target, "w", encoding="utf-8", newline="\n") as out:
        yield out
def _progress_bar(stack: contextlib.ExitStack, quiet: bool) -> Callable[[int], None] | None:
    """A tqdm bar of sentences translated on stderr when it is a terminal; None (silent) in a
    pipe, in a file or with ``--quiet``."""
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = stack.enter_context(tqdm(unit=" sentences", file=sys.stderr, dynamic_ncols=True))
    return lambda done: bar.update(done - bar.n)


def _count_lines(path: str | os.PathLike) -> int:
    """Number of ``\\n`` in a file, read in blocks."""
    count = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            count += block.count(b"\n")
    return count
