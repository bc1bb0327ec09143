"""Tests for mt.models.search with a hand-made "table model" whose probabilities we control.

The table model's next-token log-probabilities depend on (source variant, step, previous token),
so exhaustive enumeration of every output up to the maximum length is feasible and gives the
exact answer that beam search must find.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

from mt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from mt.models.lstm import LSTMSeq2Seq
from mt.models.search import (
    DEFAULT_SEARCH,
    Hypothesis,
    beam_search,
    greedy_search,
    length_penalty_factor,
    max_output_lengths,
    search,
    topk_rows,
)
from mt.models.transformer import TransformerSeq2Seq

torch.set_num_threads(1)

VOCAB = 6  # PAD 0, UNK 1, BOS 2, EOS 3, and ids 4, 5
GENERATED = [1, 4, 5]  # the non-EOS ids the search may produce (PAD and BOS are banned)
MAX_STEPS = 40
N_VARIANTS = 4


@dataclass
class TableState:
    """Per-row source variant and the shared step counter."""

    variant: Tensor  # (R,) long
    step: int

    def index_select(self, indices: Tensor, group: int = 1) -> TableState:
        return TableState(self.variant.index_select(0, indices), self.step)


class TableModel(nn.Module):
    """log p(y_t | prefix, x) = table[variant(x), t, y_{t-1}], variant = first source id % 4."""

    def __init__(self, seed: int = 0, eos_bias: float = 0.0, dtype: torch.dtype | None = None):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        logits = torch.randn(N_VARIANTS, MAX_STEPS, VOCAB, VOCAB, generator=gen) * 2.0
        logits[..., EOS_ID] += eos_bias
        self.table = torch.log_softmax(logits, dim=-1)  # (variant, step, prev, next)
        self.out_dtype = dtype
        self.rows_seen: list[int] = []

    def encode(self, src: Tensor, src_pad_mask: Tensor) -> TableState:
        return TableState(src[:, 0] % N_VARIANTS, 0)

    def decode_step(self, prev_tokens: Tensor, state: TableState) -> tuple[Tensor, TableState]:
        self.rows_seen.append(prev_tokens.numel())
        log_probs = self.table[state.variant, state.step, prev_tokens]  # (R, V)
        if self.out_dtype is not None:
            log_probs = log_probs.to(self.out_dtype)
        return log_probs, TableState(state.variant, state.step + 1)

    def sequence_log_prob(self, variant: int, tokens: list[int], with_eos: bool) -> float:
        prev, total = BOS_ID, 0.0
        for t, y in enumerate([*tokens, EOS_ID] if with_eos else tokens):
            total += float(self.table[variant, t, prev, y])
            prev = y
        return total


def exhaustive(model: TableModel, variant: int, max_len: int, alpha: float) -> list[Hypothesis]:
    """Every possible output (EOS-terminated shorter than max_len, or capped at max_len)."""
    hyps = []
    for length in range(max_len + 1):
        with_eos = length < max_len
        for tokens in itertools.product(GENERATED, repeat=length):
            log_prob = model.sequence_log_prob(variant, list(tokens), with_eos)
            n = length + int(with_eos)
            hyps.append(
                Hypothesis(list(tokens), log_prob / length_penalty_factor(n, alpha), log_prob)
            )
    hyps.sort(key=lambda h: h.score, reverse=True)
    return hyps


def make_batch(lengths: list[int], first_ids: list[int]) -> tuple[Tensor, Tensor]:
    """Sources of the given lengths (EOS included), right-padded: (B, S) ids and pad mask."""
    width = max(lengths)
    src = torch.full((len(lengths), width), PAD_ID, dtype=torch.long)
    for i, (n, first) in enumerate(zip(lengths, first_ids, strict=True)):
        src[i, : n - 1] = torch.arange(n - 1) % 3 + 4
        src[i, 0] = first
        src[i, n - 1] = EOS_ID
    return src, src == PAD_ID


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_large_beam_equals_exhaustive(alpha: float, seed: int) -> None:
    model = TableModel(seed=seed)
    src, mask = make_batch([2, 2, 2, 2], [4, 5, 6, 7])  # four variants, max_len = 4 each
    results = beam_search(
        model, src, mask, beam_size=128, length_penalty=alpha, nbest=5, max_len_a=0, max_len_b=4
    )
    for i, hyps in enumerate(results):
        best = exhaustive(model, int(src[i, 0]) % N_VARIANTS, 4, alpha)[:5]
        assert [h.tokens for h in hyps] == [h.tokens for h in best]
        for got, want in zip(hyps, best, strict=True):
            assert got.score == pytest.approx(want.score, abs=1e-5)
            assert got.log_prob == pytest.approx(want.log_prob, abs=1e-5)


@pytest.mark.parametrize("seed", range(6))
def test_moderate_beam_finds_exhaustive_best_without_length_penalty(seed: int) -> None:
    model = TableModel(seed=seed, eos_bias=1.0)
    src, mask = make_batch([3, 3], [4, 5])
    results = beam_search(
        model, src, mask, beam_size=27, length_penalty=0.0, max_len_a=0, max_len_b=3
    )
    for i, hyps in enumerate(results):
        best = exhaustive(model, int(src[i, 0]) % N_VARIANTS, 3, 0.0)[0]
        assert hyps[0].tokens == best.tokens
        assert hyps[0].log_prob == pytest.approx(best.log_prob, abs=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
def test_beam_size_one_equals_greedy(alpha: float) -> None:
    for seed in range(5):
        model = TableModel(seed=seed, eos_bias=1.0)
        src, mask = make_batch([2, 5, 3, 7], [4, 5, 6, 7])
        greedy = greedy_search(model, src, mask, max_len_a=1.0, max_len_b=2, length_penalty=alpha)
        beam = beam_search(
            model, src, mask, beam_size=1, length_penalty=alpha, max_len_a=1.0, max_len_b=2
        )
        dispatched = search(
            model, src, mask, beam_size=1, length_penalty=alpha, max_len_a=1.0, max_len_b=2
        )
        for g, b, d in zip(greedy, beam, dispatched, strict=True):
            assert g.tokens == b[0].tokens == d[0].tokens
            assert g.score == pytest.approx(b[0].score, abs=1e-5)
            assert g.log_prob == pytest.approx(b[0].log_prob, abs=1e-5)


@pytest.mark.parametrize("beam_size", [1, 3, 5])
def test_alone_equals_in_batch(beam_size: int) -> None:
    model = TableModel(seed=3, eos_bias=0.5)
    lengths, firsts = [6, 2, 9, 4, 3], [4, 5, 6, 7, 8]
    src, mask = make_batch(lengths, firsts)
    batched = search(model, src, mask, beam_size=beam_size, nbest=1, max_len_a=1.0, max_len_b=1)
    for i in range(len(lengths)):
        alone_src, alone_mask = make_batch([lengths[i]], [firsts[i]])
        alone = search(
            model, alone_src, alone_mask, beam_size=beam_size, max_len_a=1.0, max_len_b=1
        )
        assert alone[0][0].tokens == batched[i][0].tokens
        assert alone[0][0].score == pytest.approx(batched[i][0].score, abs=1e-5)


def test_nbest_is_sorted_and_distinct() -> None:
    model = TableModel(seed=4)
    src, mask = make_batch([4, 6, 3], [4, 5, 6])
    results = beam_search(model, src, mask, beam_size=6, nbest=6, length_penalty=1.0)
    for hyps, cap in zip(results, max_output_lengths(mask, 1.2, 10).tolist(), strict=True):
        assert len(hyps) == 6
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == 6
        for h in hyps:  # scores are consistent with log-probs and the length penalty
            n = len(h.tokens) + int(len(h.tokens) < cap)  # EOS counts unless capped
            assert h.score == pytest.approx(h.log_prob / length_penalty_factor(n, 1.0), abs=1e-5)


@pytest.mark.parametrize("beam_size", [1, 4])
def test_max_length_cap(beam_size: int) -> None:
    model = TableModel(seed=5, eos_bias=-1e4)  # EOS is (almost) impossible: every row is capped
    lengths = [2, 5, 8]
    src, mask = make_batch(lengths, [4, 5, 6])
    a, b = 0.5, 2
    caps = max_output_lengths(mask, a, b).tolist()
    assert caps == [int(a * n + b) for n in lengths]
    results = search(model, src, mask, beam_size=beam_size, max_len_a=a, max_len_b=b)
    for hyps, cap, variant in zip(results, caps, [0, 1, 2], strict=True):
        for h in hyps:
            assert len(h.tokens) == cap
            assert EOS_ID not in h.tokens
            assert h.log_prob == pytest.approx(
                model.sequence_log_prob(variant, h.tokens, with_eos=False), abs=1e-4
            )


def test_finished_rows_are_dropped() -> None:
    model = TableModel(seed=6, eos_bias=-1e4)  # rows end at their own cap: 2, 4, 9 tokens
    src, mask = make_batch([2, 4, 9], [4, 5, 6])
    greedy_search(model, src, mask, max_len_a=1.0, max_len_b=0)
    assert model.rows_seen == [3, 3, 2, 2, 1, 1, 1, 1, 1]
    model.rows_seen.clear()
    beam_search(model, src, mask, beam_size=3, max_len_a=1.0, max_len_b=0)
    assert model.rows_seen == [9, 9, 6, 6, 3, 3, 3, 3, 3]


def test_sentences_done_early_are_dropped_by_eos() -> None:
    model = TableModel(seed=0)  # sentences end by EOS at different steps, far below the cap
    src, mask = make_batch([2, 3, 4, 5], [4, 5, 6, 7])
    beam_search(model, src, mask, beam_size=2, max_len_b=30)
    seen = model.rows_seen
    assert seen[0] == 8 and seen[-1] < 8
    assert all(a >= b for a, b in zip(seen, seen[1:], strict=False))
    assert all(r % 2 == 0 for r in seen)  # whole sentences (K rows each) are dropped
    assert len(seen) < 30


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_log_probs(dtype: torch.dtype) -> None:
    """A model that returns bf16/fp16 log-probabilities is searched as exactly as one that returns
    the same values in float32: the search accumulates in float32, not in the model's dtype."""
    src, mask = make_batch([3, 5, 9], [4, 5, 6])
    low_model = TableModel(seed=8, dtype=dtype)
    same_values = TableModel(seed=8)
    same_values.table = low_model.table.to(dtype).float()  # the low-precision values, in float32
    for beam_size, nbest in ((1, 1), (3, 2)):
        low = search(low_model, src, mask, beam_size=beam_size, nbest=nbest, max_len_b=12)
        ref = search(same_values, src, mask, beam_size=beam_size, nbest=nbest, max_len_b=12)
        assert [[h.tokens for h in hyps] for hyps in low] == [[h.tokens for h in hyps] for hyps in ref]
        for i, hyps in enumerate(low):
            for got, want in zip(hyps, ref[i], strict=True):
                assert got.score == want.score and got.log_prob == want.log_prob
                # and the sum of its tokens' log-probabilities, to float32's rounding (a sum in
                # bf16/fp16 is off by 1e-2..1e-1 after a few steps of values around -2)
                ended = len(got.tokens) < int(max_output_lengths(mask, 1.2, 12)[i])
                variant = int(src[i, 0]) % N_VARIANTS
                exact = same_values.sequence_log_prob(variant, got.tokens, with_eos=ended)
                assert got.log_prob == pytest.approx(exact, abs=1e-4)


def test_empty_batch_and_bad_arguments() -> None:
    model = TableModel()
    src = torch.empty((0, 3), dtype=torch.long)
    assert search(model, src, src == PAD_ID, beam_size=1) == []
    assert search(model, src, src == PAD_ID, beam_size=4) == []
    one, mask = make_batch([3], [4])
    with pytest.raises(ValueError, match="nbest"):
        beam_search(model, one, mask, beam_size=2, nbest=3)
    with pytest.raises(ValueError, match="nbest"):
        search(model, one, mask, beam_size=1, nbest=2)


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_real_models_alone_equals_in_batch(arch: str) -> None:
    """The shared search over both architectures: padding and beam reordering are exact."""
    if arch == "transformer":
        make = lambda: TransformerSeq2Seq(  # noqa: E731
            vocab_size=40, d_model=16, n_heads=2, encoder_layers=1, decoder_layers=2,
            ffn_dim=32, dropout=0.0,
        )  # fmt: skip
    else:
        make = lambda: LSTMSeq2Seq(  # noqa: E731
            vocab_size=40, embed_dim=16, hidden_size=16, encoder_layers=1, decoder_layers=1,
            dropout=0.0,
        )  # fmt: skip
    torch.manual_seed(0)
    model = make().eval()
    lengths = [4, 8, 2, 6]
    gen = torch.Generator().manual_seed(1)
    src = torch.full((len(lengths), max(lengths)), PAD_ID, dtype=torch.long)
    for i, n in enumerate(lengths):
        src[i, : n - 1] = torch.randint(4, 40, (n - 1,), generator=gen)
        src[i, n - 1] = EOS_ID
    mask = src == PAD_ID
    for beam_size in (1, 3):
        batched = search(model, src, mask, beam_size=beam_size, max_len_a=1.0, max_len_b=3)
        for i, n in enumerate(lengths):
            alone = search(
                model, src[i : i + 1, :n], mask[i : i + 1, :n], beam_size=beam_size,
                max_len_a=1.0, max_len_b=3,
            )  # fmt: skip
            assert alone[0][0].tokens == batched[i][0].tokens
            assert alone[0][0].score == pytest.approx(batched[i][0].score, abs=1e-4)


@pytest.mark.parametrize("width", [64 * 12, 64 * 12 + 37, 1000, 70, 3000])
@pytest.mark.parametrize("k", [1, 4, 10])
def test_topk_rows_equals_topk(width: int, k: int) -> None:
    """Same values as torch.topk, best first, at columns that hold them: with ties (small
    integers), -inf entries, a width that is or is not a multiple of the chunk, and rows whose
    best values all lie in one chunk or in the leftover columns."""
    gen = torch.Generator().manual_seed(width * 31 + k)
    x = torch.randint(-20, 20, (40, width), generator=gen).float()
    x[::3, : width // 2] = float("-inf")
    x[1, 5:15] = 100.0  # all in one chunk
    x[2, -7:] = 100.0  # all in the leftover columns (or the last chunk)
    values, columns = topk_rows(x, k)
    expected = x.topk(k, dim=1).values
    assert torch.equal(values, expected)
    assert torch.equal(x.gather(1, columns), values)
    assert all(len(set(row)) == k for row in columns.tolist())  # distinct columns
    # A non-contiguous view (every other row of a transposed matrix) gives the same answer.
    strided = x.t().contiguous().t()[::2]
    values, columns = topk_rows(strided, k)
    assert torch.equal(values, strided.topk(k, dim=1).values)
    assert torch.equal(strided.gather(1, columns), values)


def test_decoding_defaults_are_written_once() -> None:
    """The command line's decoding options default to ``DEFAULT_SEARCH`` (the CLI keeps its
    option names; these defaults are still spelled out in mt/commands.py, so this test keeps the
    two from drifting apart), and so do the models' hyperparameters (but validation's greedy
    ``beam_size=1``)."""
    import inspect

    from mt import commands
    from mt.models.module import Seq2SeqModule
    from mt.tools.benchmark.cli import benchmark_decode

    for name in ("translate", "evaluate", "compare"):
        params = inspect.signature(getattr(commands, name)).parameters
        assert params["beam_size"].default == DEFAULT_SEARCH.beam_size, name
        assert params["length_penalty"].default == DEFAULT_SEARCH.length_penalty, name
    params = inspect.signature(Seq2SeqModule.__init__).parameters
    assert params["beam_size"].default == 1
    for key in ("length_penalty", "max_len_a", "max_len_b"):
        assert params[key].default == getattr(DEFAULT_SEARCH, key)
    bench = inspect.signature(benchmark_decode).parameters
    assert (bench["max_len_a"].default, bench["max_len_b"].default) == (
        DEFAULT_SEARCH.max_len_a,
        DEFAULT_SEARCH.max_len_b,
    )
