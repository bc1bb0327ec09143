"""Greedy and batched beam search over any model that implements the decoding interface.

The search knows nothing about the architecture. A model provides::

    encode(src (B, S), src_pad_mask (B, S)) -> State
    decode_step(prev_tokens (B,), State) -> (log_probs (B, V), State)
    State.index_select(indices (B',), group) -> State   # group: K beams of a sentence, or 1

``decode_step`` is incremental: the first call receives BOS for every row and the state keeps
track of the position. A state and a step's log-probabilities are used once, before the next
``decode_step``/``index_select`` (models may reuse their buffers; the search also overwrites the
log-probabilities in place). Every time step makes exactly one ``decode_step`` call for all
active rows (sentences x beams); rows whose sentence is finished are dropped from the state with
``index_select``, so a batch with one long sentence stops paying for the short ones.

Shape legend: B sentences in the batch, N sentences still active, K beam size, V vocabulary,
t the current step (number of tokens generated so far).

Conventions shared by both searches:

* Maximum output length of a sentence = ``int(max_len_a * src_len + max_len_b)`` (at least 1),
  where ``src_len`` counts the non-padding source tokens (the source's EOS included). A hypothesis
  that reaches it is finished without EOS ("capped").
* PAD and BOS are never generated (their log-probabilities are set to -inf).
* Length penalty (GNMT, Wu et al. 2016): ``lp(Y) = ((5 + |Y|) / 6) ** alpha`` with
  ``alpha = length_penalty``; ``alpha = 0`` ranks by the raw sum of log-probabilities. ``|Y|``
  counts the generated tokens whose log-probabilities are in the sum, i.e. the EOS too when the
  hypothesis ended with one. ``Hypothesis.score = log_prob / lp(Y)``.
* Log-probabilities are cast to float32 before they are accumulated, so the search is exact under
  bf16/fp16 autocast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from mt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID

__all__ = [
    "DEFAULT_SEARCH",
    "DecoderState",
    "Hypothesis",
    "SearchConfig",
    "Seq2SeqModel",
    "beam_search",
    "greedy_search",
    "length_penalty_factor",
    "max_output_lengths",
    "search",
]

_NEG_INF = float("-inf")


@dataclass(frozen=True)
class SearchConfig:
    """The decoding settings and their defaults, written once for every caller: the search
    functions below, the models' hyperparameters, ``mt translate``, ``mt compare``,
    ``scripts/evaluate.py`` and ``mt benchmark decode`` take their defaults from
    :data:`DEFAULT_SEARCH`. The option and config key names stay the field names.

    Attributes:
        beam_size: K (1 = greedy search).
        length_penalty: alpha of the GNMT length penalty; 0 ranks by the raw sum.
        nbest: hypotheses returned per sentence (<= beam_size).
        max_len_a, max_len_b: maximum output length ``int(a * src_len + b)``.
    """

    beam_size: int = 5
    length_penalty: float = 1.0
    nbest: int = 1
    max_len_a: float = 1.2
    max_len_b: float = 10


DEFAULT_SEARCH = SearchConfig()


class DecoderState(Protocol):
    """What a model's ``encode``/``decode_step`` returns: everything decoding needs per row."""

    def index_select(self, indices: Tensor, group: int = 1) -> DecoderState:
        """Return the state with rows ``indices`` (reorder, repeat or drop rows).

        ``group``: the new rows come in groups of ``group`` consecutive rows of one source
        sentence (beam search passes K: the beams of a sentence); 1 = no grouping. A state may
        use it to keep one copy of a sentence's memory for all its beams, or ignore it.
        """
        ...


class Seq2SeqModel(Protocol):
    """The decoding interface that both architectures implement."""

    def encode(self, src: Tensor, src_pad_mask: Tensor) -> DecoderState: ...

    def decode_step(
        self, prev_tokens: Tensor, state: DecoderState
    ) -> tuple[Tensor, DecoderState]: ...


@dataclass
class Hypothesis:
    """One search result.

    Attributes:
        tokens: generated ids, without BOS and without the final EOS.
        score: the length-normalised score used for ranking (``log_prob / lp``).
        log_prob: the sum of the log-probabilities of the generated tokens (EOS included when the
            hypothesis ended with EOS; a capped hypothesis has no EOS term).
    """

    tokens: list[int]
    score: float
    log_prob: float


def length_penalty_factor(length: int, alpha: float) -> float:
    """GNMT length penalty ``((5 + length) / 6) ** alpha``; 1.0 when ``alpha == 0``."""
    if alpha == 0.0:
        return 1.0
    return ((5.0 + length) / 6.0) ** alpha


def max_output_lengths(src_pad_mask: Tensor, max_len_a: float, max_len_b: float) -> Tensor:
    """Per-sentence maximum number of generated tokens, ``int(a * src_len + b)``, at least 1.

    Args:
        src_pad_mask: (B, S) bool, True at padding.

    Returns:
        (B,) long tensor on the mask's device.
    """
    src_len = (~src_pad_mask).sum(dim=1).to(torch.float64)  # (B,)
    return (src_len * max_len_a + max_len_b).floor().clamp(min=1).long()


def _prepare_log_probs(log_probs: Tensor) -> Tensor:
    """Float32, with PAD and BOS made impossible.  (R, V) -> (R, V).

    Works in place on a float32 input: the search owns the tensor ``decode_step`` returned.
    """
    log_probs = log_probs.float()
    banned = torch.tensor([PAD_ID, BOS_ID], device=log_probs.device)
    return log_probs.index_fill_(1, banned, _NEG_INF)


def topk_rows(x: Tensor, k: int, chunk: int = 64) -> tuple[Tensor, Tensor]:
    """The ``k`` largest values of every row of ``x`` (R, W), best first, and their columns.

    The values equal ``x.topk(k, dim=1)``'s (among equal values the columns may differ). On a CPU
    it ranks far fewer elements when W >> k: the row is cut into chunks of ``chunk`` columns, and
    only the ``k`` chunks with the largest maxima (plus the leftover columns) are ranked. That
    loses nothing: if an element of an unchosen chunk were larger than the k-th value, the k
    chosen chunks would each hold a distinct element at least as large, making it at best k+1-th.
    """
    rows, width = x.shape
    n_chunks = width // chunk
    if x.device.type != "cpu" or n_chunks <= k:
        return x.topk(k, dim=1)
    row_stride, col_stride = x.stride()
    chunked = x.as_strided(
        (rows, n_chunks, chunk), (row_stride, chunk * col_stride, col_stride)
    )  # (R, W // chunk, chunk), a view without the leftover columns
    best_chunks = chunked.amax(dim=2).topk(k, dim=1).indices  # (R, k)
    picked = chunked.gather(1, best_chunks.unsqueeze(2).expand(rows, k, chunk))  # (R, k, chunk)
    values, position = picked.view(rows, k * chunk).topk(k, dim=1)  # (R, k)
    columns = best_chunks.gather(1, position // chunk) * chunk + position % chunk  # (R, k)
    if n_chunks * chunk < width:  # the leftover columns compete with the chosen ones
        rest_values, rest_columns = x[:, n_chunks * chunk :].topk(min(k, width % chunk), dim=1)
        values, position = torch.cat([values, rest_values], dim=1).topk(k, dim=1)
        columns = torch.cat([columns, rest_columns + n_chunks * chunk], dim=1).gather(1, position)
    return values, columns


@torch.no_grad()
def greedy_search(
    model: Seq2SeqModel,
    src: Tensor,
    src_pad_mask: Tensor,
    max_len_a: float = DEFAULT_SEARCH.max_len_a,
    max_len_b: float = DEFAULT_SEARCH.max_len_b,
    length_penalty: float = DEFAULT_SEARCH.length_penalty,
) -> list[Hypothesis]:
    """Pick the most probable token at every step; one hypothesis per sentence.

    Rows stop at EOS or at their maximum length and are then dropped from the active batch.

    Args:
        model: anything implementing ``encode``/``decode_step`` (see module docstring).
        src: (B, S) source ids (subwords then EOS, right-padded with PAD).
        src_pad_mask: (B, S) bool, True at padding.
        max_len_a, max_len_b: maximum output length ``a * src_len + b``.
        length_penalty: alpha of the GNMT penalty used for ``Hypothesis.score`` only (the choice
            of tokens does not depend on it), so that scores compare with beam search's.

    Returns:
        One ``Hypothesis`` per sentence, in batch order.
    """
    batch_size = src.size(0)
    if batch_size == 0:
        return []
    device = src.device
    max_len = max_output_lengths(src_pad_mask, max_len_a, max_len_b)  # (B,)
    state = model.encode(src, src_pad_mask)

    alive = torch.arange(batch_size, device=device)  # (R,) batch index of each active row
    prev = torch.full((batch_size,), BOS_ID, dtype=torch.long, device=device)  # (R,)
    sum_log_prob = torch.zeros(batch_size, dtype=torch.float32, device=device)  # (R,)
    history = torch.empty((batch_size, 0), dtype=torch.long, device=device)  # (R, t)
    results: list[Hypothesis | None] = [None] * batch_size

    step = 0
    while alive.numel() > 0:
        log_probs, state = model.decode_step(prev, state)
        log_probs = _prepare_log_probs(log_probs)  # (R, V)
        best_log_prob, token = log_probs.max(dim=1)  # (R,), (R,)
        sum_log_prob = sum_log_prob + best_log_prob
        history = torch.cat([history, token.unsqueeze(1)], dim=1)  # (R, t + 1)
        is_eos = token == EOS_ID
        finished = is_eos | (max_len <= step + 1)  # (R,)

        finished_rows = finished.nonzero().squeeze(1)  # the one host sync of a step
        if finished_rows.numel() > 0:
            lp = length_penalty_factor(step + 1, length_penalty)
            ids = alive[finished_rows].tolist()
            eos = is_eos[finished_rows].tolist()
            sums = sum_log_prob[finished_rows].tolist()
            seqs = history[finished_rows].tolist()
            for i, ended, total, seq in zip(ids, eos, sums, seqs, strict=True):
                tokens = seq[:-1] if ended else seq
                results[i] = Hypothesis(tokens=tokens, score=total / lp, log_prob=total)
            keep = (~finished).nonzero().squeeze(1)  # (R',)
            if keep.numel() == 0:
                break
            state = state.index_select(keep)
            alive, token = alive[keep], token[keep]
            sum_log_prob, history, max_len = sum_log_prob[keep], history[keep], max_len[keep]
        prev = token
        step += 1

    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


@torch.no_grad()
def beam_search(
    model: Seq2SeqModel,
    src: Tensor,
    src_pad_mask: Tensor,
    beam_size: int = DEFAULT_SEARCH.beam_size,
    length_penalty: float = DEFAULT_SEARCH.length_penalty,
    nbest: int = DEFAULT_SEARCH.nbest,
    max_len_a: float = DEFAULT_SEARCH.max_len_a,
    max_len_b: float = DEFAULT_SEARCH.max_len_b,
) -> list[list[Hypothesis]]:
    """Batched beam search over all sentences and beams at once (rows = sentences x K).

    At every step each sentence ranks its K x V continuations and keeps the 2K best (found
    among the 2K best of each beam, which must contain them: a K x 2K ranking instead of K x V
    per sentence). An EOS candidate among the K best of those is finished and set aside; the K
    best non-EOS candidates (there are always at least K: each beam has a single EOS
    continuation) stay active. A continuation that reaches the maximum length is finished
    without EOS and ends the sentence.

    Stopping rule (per sentence): done when it has at least K finished hypotheses and its best
    active hypothesis, scored as if it ended now (``log_prob / lp(t)``), is no better than the
    ``nbest``-th best finished score. Log-probabilities only decrease as a hypothesis grows, so for
    ``length_penalty == 0`` this is an exact bound: stopping never changes the returned n-best
    relative to running to the maximum length. For ``alpha > 0`` the normaliser grows with length
    and no cheap exact bound exists (the only exact one, dividing by ``lp(max_len)``, keeps
    nearly every sentence running to its maximum length); we accept the usual heuristic (as in
    Hugging Face's ``early_stopping=False``), which never stops before the fairseq/OpenNMT rule
    "K finished" does. Done sentences are dropped from the active batch.

    Args:
        model: anything implementing ``encode``/``decode_step`` (see module docstring).
        src: (B, S) source ids (subwords then EOS, right-padded with PAD).
        src_pad_mask: (B, S) bool, True at padding.
        beam_size: K.
        length_penalty: alpha of the GNMT length penalty; 0 ranks by the raw sum.
        nbest: hypotheses returned per sentence (<= beam_size).
        max_len_a, max_len_b: maximum output length ``a * src_len + b``.

    Returns:
        For each sentence in batch order, up to ``nbest`` hypotheses, best first (fewer only when
        the model leaves fewer than ``nbest`` sequences with finite probability).
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if not 1 <= nbest <= beam_size:
        raise ValueError(f"nbest must be between 1 and beam_size={beam_size}, got {nbest}")
    batch_size = src.size(0)
    if batch_size == 0:
        return []
    k = beam_size
    device = src.device
    max_len = max_output_lengths(src_pad_mask, max_len_a, max_len_b)  # (N,)
    state = model.encode(src, src_pad_mask)
    state = state.index_select(torch.arange(batch_size, device=device).repeat_interleave(k), k)

    sent = torch.arange(batch_size, device=device)  # (N,) batch index of each active sentence
    # Only beam 0 is live at the start, so the K copies of BOS do not yield K identical beams.
    scores = torch.full((batch_size, k), _NEG_INF, device=device)  # (N, K) summed log-probs
    scores[:, 0] = 0.0
    history = torch.empty((batch_size, k, 0), dtype=torch.long, device=device)  # (N, K, t)
    prev = torch.full((batch_size * k,), BOS_ID, dtype=torch.long, device=device)  # (N*K,)
    n_finished = torch.zeros(batch_size, dtype=torch.long, device=device)  # (N,)
    top_finished = torch.full((batch_size, nbest), _NEG_INF, device=device)  # (N, nbest) desc
    finished: list[list[Hypothesis]] = [[] for _ in range(batch_size)]
    candidate_rank = torch.arange(2 * k, device=device)  # (2K,)

    step = 0
    while sent.numel() > 0:
        n = sent.numel()
        log_probs, state = model.decode_step(prev, state)
        log_probs = _prepare_log_probs(log_probs)  # (N*K, V)
        width = min(2 * k, log_probs.size(1))  # C candidates per beam
        beam_log_probs, beam_token = topk_rows(log_probs, width)  # (N*K, C)
        cand = (scores.unsqueeze(2) + beam_log_probs.view(n, k, width)).view(n, k * width)
        top_scores, top_index = cand.topk(2 * k, dim=1)  # (N, 2K), sorted best first
        top_beam = top_index // width  # (N, 2K)
        top_token = beam_token.view(n, k * width).gather(1, top_index)  # (N, 2K)
        is_eos = top_token == EOS_ID  # (N, 2K)
        eos_final = is_eos & (candidate_rank < k) & torch.isfinite(top_scores)  # (N, 2K)

        # The K best non-EOS candidates, best first (a stable sort keeps the score order).
        order = torch.argsort(is_eos.to(torch.uint8), dim=1, stable=True)[:, :k]  # (N, K)
        new_scores = top_scores.gather(1, order)  # (N, K)
        new_beam = top_beam.gather(1, order)  # (N, K)
        new_token = top_token.gather(1, order)  # (N, K)
        new_history = torch.cat(
            [
                history.gather(1, new_beam.unsqueeze(2).expand(n, k, step)),
                new_token.unsqueeze(2),
            ],
            dim=2,
        )  # (N, K, t + 1)

        at_max = max_len <= step + 1  # (N,)
        capped = at_max.unsqueeze(1) & torch.isfinite(new_scores)  # (N, K)
        lp = length_penalty_factor(step + 1, length_penalty)  # |Y| = t + 1 for both kinds
        finished_now = torch.cat(
            [
                torch.where(eos_final, top_scores / lp, _NEG_INF),
                torch.where(capped, new_scores / lp, _NEG_INF),
            ],
            dim=1,
        )  # (N, 3K)
        n_finished = n_finished + eos_final.sum(1) + capped.sum(1)
        top_finished = torch.cat([top_finished, finished_now], dim=1).topk(nbest, dim=1).values
        best_active = new_scores[:, 0] / lp  # (N,)
        done = (
            at_max
            | ~torch.isfinite(best_active)
            | ((n_finished >= k) & (best_active <= top_finished[:, -1]))
        )  # (N,)

        # Host bookkeeping, looping over the finished hypotheses only.
        any_final = eos_final.any(1) | capped.any(1)
        if bool(any_final.any()):  # the one host sync of a step without finished hypotheses
            eos_idx = eos_final.nonzero()  # (M, 2) of (sentence row, rank)
            if eos_idx.numel() > 0:
                rows, ranks = eos_idx[:, 0], eos_idx[:, 1]
                beams = top_beam[rows, ranks]
                _collect(finished, sent[rows], history[rows, beams], top_scores[rows, ranks], lp)
            cap_idx = capped.nonzero()  # (M', 2) of (sentence row, beam)
            if cap_idx.numel() > 0:
                rows, beams = cap_idx[:, 0], cap_idx[:, 1]
                _collect(
                    finished, sent[rows], new_history[rows, beams], new_scores[rows, beams], lp
                )

        row_base = torch.arange(n, device=device)  # (N,)
        if bool(done.any()):
            keep = (~done).nonzero().squeeze(1)  # (N',)
            if keep.numel() == 0:
                break
            row_base = keep
            sent, max_len = sent[keep], max_len[keep]
            n_finished, top_finished = n_finished[keep], top_finished[keep]
            new_scores, new_beam = new_scores[keep], new_beam[keep]
            new_token, new_history = new_token[keep], new_history[keep]
        # Reorder the beams and drop done sentences in one index_select.
        state = state.index_select((row_base.unsqueeze(1) * k + new_beam).view(-1), k)  # (N'*K,)
        scores, history, prev = new_scores, new_history, new_token.view(-1)
        step += 1

    results = []
    for hyps in finished:
        hyps.sort(key=lambda h: h.score, reverse=True)
        results.append(hyps[:nbest] or [Hypothesis(tokens=[], score=_NEG_INF, log_prob=_NEG_INF)])
    return results


def _collect(
    finished: list[list[Hypothesis]],
    sent: Tensor,
    tokens: Tensor,
    sums: Tensor,
    lp: float,
) -> None:
    """Append finished hypotheses: ``sent`` (M,) batch index, ``tokens`` (M, L), ``sums`` (M,)."""
    for i, seq, total in zip(sent.tolist(), tokens.tolist(), sums.tolist(), strict=True):
        finished[i].append(Hypothesis(tokens=seq, score=total / lp, log_prob=total))


def search(
    model: Seq2SeqModel,
    src: Tensor,
    src_pad_mask: Tensor,
    beam_size: int = DEFAULT_SEARCH.beam_size,
    length_penalty: float = DEFAULT_SEARCH.length_penalty,
    nbest: int = DEFAULT_SEARCH.nbest,
    max_len_a: float = DEFAULT_SEARCH.max_len_a,
    max_len_b: float = DEFAULT_SEARCH.max_len_b,
) -> list[list[Hypothesis]]:
    """Greedy search when ``beam_size == 1``, beam search otherwise.

    Returns:
        For each sentence, a list of up to ``nbest`` hypotheses, best first (greedy: one).
    """
    if beam_size == 1:
        if nbest != 1:
            raise ValueError(f"nbest={nbest} needs beam_size >= nbest, got beam_size=1")
        hyps = greedy_search(model, src, src_pad_mask, max_len_a, max_len_b, length_penalty)
        return [[h] for h in hyps]
    return beam_search(
        model, src, src_pad_mask, beam_size, length_penalty, nbest, max_len_a, max_len_b
    )
