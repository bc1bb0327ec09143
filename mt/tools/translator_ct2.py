"""CTranslate2Translator: :class:`mt.tools.translator.Translator` with CTranslate2 as the engine.

Reads a folder written by ``mt export`` (:mod:`mt.tools.export`); everything but the search
(reading, splitting, batching, n-best, writing) is the PyTorch translator's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from torch import nn

from mt.data.tokenizer import Tokenizer
from mt.models.search import DEFAULT_SEARCH, Hypothesis, length_penalty_factor
from mt.tools.translator import TranslateError, TranslateUsageError, Translator, _Unit

__all__ = ["CTranslate2Translator"]


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
