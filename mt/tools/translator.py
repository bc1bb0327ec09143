"""Translator: batched translation of lists of lines with a trained model, keeping every line.

:class:`Translator` tokenizes, splits over-long lines (``max_input_tokens``), sorts by length,
cuts token-budget batches (:func:`mt.data.batching.decoding_batches`), runs the shared search
(:func:`mt.models.search.search`), retries a batch that runs out of memory in halves, detokenizes
and restores the input order. Empty lines give empty translations without running the model.
:meth:`Translator.translate_stream` does the same chunk by chunk from an iterable to a text stream
(what ``mt translate``, :mod:`mt.tools.translate`, runs). The CTranslate2 engine is
:class:`mt.tools.translator_ct2.CTranslate2Translator`.
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Literal, TextIO

import torch
from torch import nn

from mt.data.batching import decoding_batches, pad_sources
from mt.data.tokenizer import PAD_ID, Tokenizer
from mt.models.search import DEFAULT_SEARCH, Hypothesis, search

__all__ = [
    "EMPTY_TRANSLATION",
    "Precision",
    "TranslateError",
    "TranslateStats",
    "TranslateUsageError",
    "Translation",
    "Translator",
    "is_out_of_memory",
    "resolve_device",
]

Precision = Literal["32", "bf16", "16"]
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
        progress_interval: float = 0.1,
    ) -> TranslateStats:
        """Translate lines from an iterable to ``out``, ``chunk_lines`` lines at a time.

        Writes one line per input line (``nbest > 1``: ``nbest`` lines
        ``INDEX ||| SCORE ||| TRANSLATION`` with the 0-based input line index), in input order.

        Args:
            in_lines: input lines without newline characters (e.g. :func:`mt.tools.translate.read_lines`).
            out: text stream the translations are written to, each line ended by ``\\n``.
            chunk_lines: lines read, translated and written at a time (bounds memory).
            progress: a text stream to draw a tqdm bar of sentences translated on, or a
                callable given the number of sentences translated so far after every batch;
                None = silent.
            progress_interval: at least this many seconds between two updates of the bar.

        Returns:
            The counters of this call (``lines_out`` counts the lines actually written).
        """
        if chunk_lines < 1:
            raise ValueError(f"chunk_lines must be >= 1, got {chunk_lines}")
        self.stats = stats = TranslateStats()
        start = time.perf_counter()
        with contextlib.ExitStack() as stack:
            if progress is None or callable(progress):
                report = progress
            else:
                from tqdm import tqdm  # a dependency of Lightning, so always installed

                bar = stack.enter_context(
                    tqdm(
                        unit=" sentences",
                        file=progress,
                        mininterval=progress_interval,
                        dynamic_ncols=True,
                    )
                )
                report = lambda done: bar.update(done - bar.n)  # noqa: E731
            self._write_stream(in_lines, out, chunk_lines, stats, report)
        stats.seconds = time.perf_counter() - start
        return stats

    def _write_stream(
        self,
        in_lines: Iterable[str],
        out: TextIO,
        chunk_lines: int,
        stats: TranslateStats,
        progress: Callable[[int], None] | None,
    ) -> None:
        """The loop of :meth:`translate_stream`: read a chunk, translate it, write it."""

        def report(done_in_chunk: int) -> None:
            if progress is not None:
                progress(stats.sentences + done_in_chunk)

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


def _one_line(text: str) -> str:
    """Keep one translation on one output line whatever the detokenizer returns."""
    return text.replace("\r", " ").replace("\n", " ")
