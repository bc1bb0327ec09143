"""Tests for mt.models.transformer: shapes, masking, causality, incremental decoding, overfitting."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from mt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from mt.models.transformer import (
    TransformerSeq2Seq,
    TransformerState,
    attend,
    sinusoidal_positions,
)

VOCAB = 50
TINY: dict[str, Any] = dict(
    d_model=32, n_heads=2, encoder_layers=2, decoder_layers=2, ffn_dim=64, label_smoothing=0.0
)


def tiny_model(seed: int = 0, **overrides: Any) -> TransformerSeq2Seq:
    """A tiny model in eval mode (no dropout)."""
    torch.manual_seed(seed)
    return TransformerSeq2Seq(vocab_size=VOCAB, **{**TINY, **overrides}).eval()


def make_batch(
    sentences: list[list[int]], targets: list[list[int]], extra_pad: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(src, src_pad_mask, tgt_in, tgt_out): src = ids + EOS, tgt_in = BOS + ids, right-padded."""
    src_rows = [s + [EOS_ID] for s in sentences]
    tgt_in_rows = [[BOS_ID] + t for t in targets]
    tgt_out_rows = [t + [EOS_ID] for t in targets]
    s_len = max(map(len, src_rows)) + extra_pad
    t_len = max(map(len, tgt_in_rows)) + extra_pad

    def pad(rows: list[list[int]], length: int) -> Tensor:
        return torch.tensor([r + [PAD_ID] * (length - len(r)) for r in rows], dtype=torch.long)

    src = pad(src_rows, s_len)
    return src, src == PAD_ID, pad(tgt_in_rows, t_len), pad(tgt_out_rows, t_len)


def random_batch(
    batch: int, seed: int = 0, min_len: int = 1, max_len: int = 9, vocab: int = VOCAB
) -> tuple[list[list[int]], list[list[int]]]:
    gen = torch.Generator().manual_seed(seed)

    def sentence() -> list[int]:
        length = int(torch.randint(min_len, max_len + 1, (1,), generator=gen))
        return torch.randint(4, vocab, (length,), generator=gen).tolist()

    return [sentence() for _ in range(batch)], [sentence() for _ in range(batch)]


def step_through(
    model: TransformerSeq2Seq,
    state: TransformerState,
    tgt_in: Tensor,
    reorder_at: int | None = None,
    indices: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Feed ``tgt_in`` (B, T) one token at a time; optionally ``index_select`` after step
    ``reorder_at`` (the rows of ``tgt_in`` are reordered alongside). Returns (B', T, V)
    log-probs and the ``tgt_in`` rows they correspond to."""
    outputs = []
    for t in range(tgt_in.size(1)):
        if t == reorder_at:
            assert indices is not None
            state = state.index_select(indices)
            tgt_in = tgt_in.index_select(0, indices)
            outputs = [o.index_select(0, indices) for o in outputs]
        log_probs, state = model.decode_step(tgt_in[:, t], state)
        assert state.step == t + 1
        outputs.append(log_probs.clone())  # the next step reuses the buffer
    return torch.stack(outputs, dim=1), tgt_in


# -- shapes and hyperparameters --------------------------------------------------------------------


def test_shapes_and_dtypes() -> None:
    model = tiny_model()
    src, src_pad_mask, tgt_in, _ = make_batch(*random_batch(3))
    state = model.encode(src, src_pad_mask)
    assert len(state.cross_kv) == 2 and state.rows == 3 and state.group == 1
    assert state.cross_kv[0][0].shape == (3, 2, src.size(1), 16)  # (B, H, S, Dh)
    assert model.decode(tgt_in, state).shape == (3, tgt_in.size(1), VOCAB)
    assert model(src, src_pad_mask, tgt_in).shape == (3, tgt_in.size(1), VOCAB)
    log_probs, new_state = model.decode_step(torch.full((3,), BOS_ID), state)
    assert log_probs.shape == (3, VOCAB) and log_probs.dtype == torch.float32
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(3))
    _, values = new_state.cache.layer(1)  # (T, R, H, Dh) buffers, the first `step` positions used
    assert new_state.step == 1 and values[: new_state.step].shape == (1, 3, 2, 16)
    assert state.step == 0 and state.cache is None  # a step-0 state holds no buffer


def test_attention_runs_in_float32_under_cpu_bf16_autocast() -> None:
    """Under CPU bf16 autocast, attention is computed from float32 inputs (PyTorch's bf16 CPU
    kernel was ~3x slower) and handed back in bf16; float32 inputs are untouched."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 5, 8, generator=gen) for _ in range(3))
    mask = torch.ones(5, 5, dtype=torch.bool).tril()
    exact = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.equal(attend(q, k, v, attn_mask=mask), exact)
    q16, k16, v16 = (t.bfloat16().requires_grad_() for t in (q, k, v))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attend(q16, k16, v16, attn_mask=mask)
    assert out.dtype == torch.bfloat16
    expected = F.scaled_dot_product_attention(q16.float(), k16.float(), v16.float(), attn_mask=mask)
    assert torch.equal(out, expected.bfloat16())
    out.float().sum().backward()
    assert q16.grad is not None and q16.grad.dtype == torch.bfloat16


def test_hparams_recorded_and_rebuild() -> None:
    model = tiny_model(norm="post", share_embeddings=False, tie_output=False)
    hparams = dict(model.hparams)
    assert hparams["d_model"] == 32 and hparams["norm"] == "post" and hparams["vocab_size"] == VOCAB
    assert hparams["label_smoothing"] == 0.0  # base-class arguments passed through **kwargs
    assert "optimizer" not in hparams and "lr_scheduler" not in hparams and "kwargs" not in hparams
    # What mt.models.module.load_checkpoint does: rebuild from hparams, load the weights.
    clone = TransformerSeq2Seq(**hparams).eval()
    clone.load_state_dict(model.state_dict())
    src, src_pad_mask, tgt_in, _ = make_batch(*random_batch(2))
    assert torch.equal(model(src, src_pad_mask, tgt_in), clone(src, src_pad_mask, tgt_in))


def test_shared_parameters_counted_once() -> None:
    shared = tiny_model()
    separate = tiny_model(share_embeddings=False, tie_output=False)
    assert shared.src_embed.weight is shared.tgt_embed.weight
    assert separate.num_parameters() - shared.num_parameters() == 2 * VOCAB * 32
    assert shared.num_parameters() == sum(p.numel() for p in set(shared.parameters()))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(d_model=30, n_heads=4),
        dict(d_model=33, n_heads=1),
        dict(decoder_layers=0),
        dict(dropout=1.0),
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TransformerSeq2Seq(vocab_size=VOCAB, **{**TINY, **kwargs})


def test_positions_any_length() -> None:
    device = torch.device("cpu")
    whole = sinusoidal_positions(0, 3000, 32, device)
    assert whole.shape == (3000, 32) and torch.isfinite(whole).all()
    assert torch.equal(sinusoidal_positions(2500, 1, 32, device)[0], whole[2500])
    model = tiny_model()
    src = torch.randint(4, VOCAB, (1, 1200))
    logits = model(src, src == PAD_ID, torch.randint(4, VOCAB, (1, 1100)))
    assert torch.isfinite(logits).all()


# -- masking and causality -------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_padding_invariance(norm: str) -> None:
    model = tiny_model(norm=norm)
    sentences, targets = random_batch(4, seed=1)
    src, src_pad_mask, tgt_in, _ = make_batch(sentences, targets)
    src_p, src_pad_mask_p, tgt_in_p, _ = make_batch(sentences, targets, extra_pad=5)
    logits = model(src, src_pad_mask, tgt_in)
    logits_p = model(src_p, src_pad_mask_p, tgt_in_p)
    real = tgt_in != PAD_ID  # (B, T)
    assert torch.isfinite(logits_p).all()
    torch.testing.assert_close(logits_p[:, : tgt_in.size(1)][real], logits[real], atol=1e-5, rtol=0)

    # One sentence alone vs. in a batch with longer ones.
    short_src, short_tgt = [[5, 6]], [[7]]
    long_sents, long_tgts = random_batch(3, seed=2, min_len=8, max_len=12)
    alone = model(*_model_inputs(short_src, short_tgt))
    batched = model(*_model_inputs(short_src + long_sents, short_tgt + long_tgts))
    torch.testing.assert_close(batched[:1, : alone.size(1)], alone, atol=1e-5, rtol=0)


def _model_inputs(sentences: list[list[int]], targets: list[list[int]]) -> tuple[Tensor, ...]:
    src, src_pad_mask, tgt_in, _ = make_batch(sentences, targets)
    return src, src_pad_mask, tgt_in


def test_all_padding_row_is_finite_and_isolated() -> None:
    """An all-PAD source row (never in real data) must not produce NaN nor disturb other rows."""
    model = tiny_model()
    src, src_pad_mask, tgt_in, _ = make_batch(*random_batch(3, seed=3))
    logits = model(src, src_pad_mask, tgt_in)
    src_bad = torch.cat([src, torch.full_like(src[:1], PAD_ID)])
    tgt_bad = torch.cat([tgt_in, tgt_in[:1]])
    logits_bad = model(src_bad, src_bad == PAD_ID, tgt_bad)
    assert torch.isfinite(logits_bad).all()
    torch.testing.assert_close(logits_bad[:3], logits, atol=1e-5, rtol=0)


def test_decoder_is_causal() -> None:
    model = tiny_model()
    src, src_pad_mask, tgt_in, _ = make_batch(*random_batch(2, seed=4, min_len=8, max_len=8))
    logits = model(src, src_pad_mask, tgt_in)
    for t in range(1, tgt_in.size(1)):
        changed = tgt_in.clone()
        changed[:, t] = (changed[:, t] - 4 + 1) % (VOCAB - 4) + 4  # another real token
        logits_changed = model(src, src_pad_mask, changed)
        torch.testing.assert_close(logits_changed[:, :t], logits[:, :t], atol=1e-6, rtol=0)
        assert not torch.allclose(logits_changed[:, t], logits[:, t])


# -- incremental decoding --------------------------------------------------------------------------

VARIANTS = [
    dict(),
    dict(norm="post"),
    dict(share_embeddings=False),
    dict(tie_output=False),
    dict(share_embeddings=False, tie_output=False, activation="gelu"),
]


@pytest.mark.parametrize(
    "overrides", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default"
)
def test_decode_step_matches_decode(overrides: dict[str, Any]) -> None:
    model = tiny_model(**overrides)
    src, src_pad_mask, tgt_in, _ = make_batch(*random_batch(4, seed=5))
    with torch.no_grad():
        state = model.encode(src, src_pad_mask)
        expected = F.log_softmax(model.decode(tgt_in, state).float(), dim=-1)  # (B, T, V)
        stepped, _ = step_through(model, state, tgt_in)
    torch.testing.assert_close(stepped, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("overrides", VARIANTS[:2], ids=["pre", "post"])
def test_decode_step_after_index_select(overrides: dict[str, Any]) -> None:
    """Reordering and repeating rows mid-sequence (beam search) keeps every row's cache intact."""
    model = tiny_model(**overrides)
    src, src_pad_mask, tgt_in, _ = make_batch(*random_batch(3, seed=6, min_len=6, max_len=9))
    indices = torch.tensor([2, 0, 0, 1, 2, 2])  # permute, repeat (beam expansion) and drop none
    with torch.no_grad():
        state = model.encode(src, src_pad_mask)
        full = F.log_softmax(model.decode(tgt_in, state).float(), dim=-1)  # (3, T, V)
        expected = full[indices]
        # Expanding right after encode, as beam search does, then reordering mid-sequence.
        beams = torch.arange(3).repeat_interleave(2)
        expanded = state.index_select(beams, group=2)
        assert expanded.step == 0 and expanded.rows == 6 and expanded.group == 2
        assert expanded.memory_pad_mask.shape[0] == 3  # the memory is not copied per beam
        beamed, _ = step_through(model, expanded, tgt_in[beams], reorder_at=3, indices=indices)
        stepped, _ = step_through(model, state, tgt_in, reorder_at=3, indices=indices)
        # Dropping rows mid-sequence (finished sentences) keeps the others unchanged.
        keep = torch.tensor([1])
        dropped, _ = step_through(model, state, tgt_in, reorder_at=2, indices=keep)
    torch.testing.assert_close(stepped, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(beamed, full[beams[indices]], atol=1e-5, rtol=0)
    torch.testing.assert_close(dropped, expected[[3]], atol=1e-5, rtol=0)


def test_bf16_autocast_gives_float32_log_probs() -> None:
    model = tiny_model()
    src, src_pad_mask, tgt_in, _ = make_batch(*random_batch(3, seed=9))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        log_probs, _ = model.decode_step(tgt_in[:, 0], model.encode(src, src_pad_mask))
    assert log_probs.dtype == torch.float32 and torch.isfinite(log_probs).all()


def test_training_mode_runs_with_dropout() -> None:
    torch.manual_seed(0)
    model = TransformerSeq2Seq(
        vocab_size=VOCAB, **{**TINY, "dropout": 0.3, "attention_dropout": 0.2}
    )
    model.train()
    src, src_pad_mask, tgt_in, tgt_out = make_batch(*random_batch(4, seed=7))
    logits = model(src, src_pad_mask, tgt_in)
    loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD_ID)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.src_embed.weight.grad is not None


# -- overfitting a tiny corpus -----------------------------------------------------------------------


def test_overfits_reversal_corpus() -> None:
    """64 pairs, target = reversed source: greedy decoding reproduces the targets."""
    from mt.models.search import beam_search, greedy_search

    torch.set_num_threads(1)
    sentences, _ = random_batch(64, seed=8, min_len=2, max_len=6, vocab=14)
    targets = [s[::-1] for s in sentences]
    src, src_pad_mask, tgt_in, tgt_out = make_batch(sentences, targets)
    torch.manual_seed(0)
    model = TransformerSeq2Seq(
        vocab_size=14,
        d_model=64,
        n_heads=4,
        encoder_layers=2,
        decoder_layers=2,
        ffn_dim=128,
        dropout=0.0,
        label_smoothing=0.0,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(300):
        logits = model(src, src_pad_mask, tgt_in)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD_ID)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if loss.item() < 0.01:
            break
    model.eval()

    def accuracy(hyps: list[list[int]]) -> float:
        pairs = list(zip(hyps, targets, strict=True))
        correct = sum(sum(h == r for h, r in zip(hyp, ref, strict=False)) for hyp, ref in pairs)
        total = sum(max(len(hyp), len(ref)) for hyp, ref in pairs)
        return correct / total

    greedy = [h.tokens for h in greedy_search(model, src, src_pad_mask, 1.0, 2)]
    beam = [nbest[0].tokens for nbest in beam_search(model, src, src_pad_mask, 3, 1.0, 1, 1.0, 2)]
    assert accuracy(greedy) >= 0.95, (loss.item(), accuracy(greedy))
    assert accuracy(beam) >= 0.95, (loss.item(), accuracy(beam))


def test_beam_reorder_within_sentences_keeps_cross_attention_cache() -> None:
    """Reordering beams of the same sentence reuses the memory's keys/values (no gather) and
    still matches teacher forcing; moving rows across sentences gathers them."""
    model = tiny_model()
    src, src_pad_mask, tgt_in, _ = make_batch(*random_batch(2, seed=8, min_len=5, max_len=9))
    beams = torch.arange(2).repeat_interleave(3)  # sentence of each of the 6 rows
    with torch.no_grad():
        state = model.encode(src, src_pad_mask)
        expected = F.log_softmax(model.decode(tgt_in, state).float(), dim=-1)  # (2, T, V)
        state = state.index_select(beams, group=3)
        within = torch.tensor([2, 0, 1, 5, 3, 4])  # each row stays in its own sentence
        reordered = state.index_select(within, group=3)
        assert reordered.cross_kv[0][0] is state.cross_kv[0][0]
        stepped, rows = step_through(model, state, tgt_in[beams], reorder_at=2, indices=within)
        across = state.index_select(torch.tensor([3, 4, 5, 0, 1, 2]), group=3)
        assert across.cross_kv[0][0] is not state.cross_kv[0][0]
        swapped, _ = step_through(
            model, state, tgt_in[beams], reorder_at=2, indices=torch.tensor([3, 4, 5, 0, 1, 2])
        )
    torch.testing.assert_close(stepped, expected[beams[within]], atol=1e-5, rtol=0)
    torch.testing.assert_close(swapped, expected[beams[[3, 4, 5, 0, 1, 2]]], atol=1e-5, rtol=0)


def test_cache_grows_past_its_capacity_and_survives_reorders() -> None:
    """Targets of 40 positions outgrow the initial 16-position buffer twice; beam reorders
    before and after each growth keep every row equal to teacher forcing."""
    model = tiny_model()
    src, src_pad_mask, tgt_in, _ = make_batch(*random_batch(3, seed=11, min_len=39, max_len=39))
    assert tgt_in.size(1) == 40
    beams = torch.arange(3).repeat_interleave(2)  # 2 beams per sentence
    reorders = {10: torch.tensor([1, 1, 2, 3, 5, 4]), 17: torch.tensor([0, 0, 3, 2, 4, 5])}
    with torch.no_grad():
        state = model.encode(src, src_pad_mask)
        full = F.log_softmax(model.decode(tgt_in, state).float(), dim=-1)  # (3, T, V)
        state = state.index_select(beams, group=2)
        rows, tokens, outputs = beams, tgt_in[beams], []
        for t in range(tgt_in.size(1)):
            if t in reorders:
                state = state.index_select(reorders[t], group=2)
                rows, tokens = rows[reorders[t]], tokens[reorders[t]]
                outputs = [o[reorders[t]] for o in outputs]
            log_probs, state = model.decode_step(tokens[:, t], state)
            outputs.append(log_probs.clone())
        assert state.cache is not None and state.cache.capacity >= 40
        assert state.group == 2 and state.memory_pad_mask.size(0) == 3
    torch.testing.assert_close(torch.stack(outputs, dim=1), full[rows], atol=1e-5, rtol=0)


def test_a_consumed_state_is_refused() -> None:
    """decode_step and index_select reuse the cache's buffers: an older state of the same
    decoding raises instead of reading keys that a later step overwrote. Step-0 states hold no
    buffer and may be reused."""
    model = tiny_model()
    src, src_pad_mask, tgt_in, _ = make_batch(*random_batch(2, seed=12, min_len=3))
    with torch.no_grad():
        start = model.encode(src, src_pad_mask)
        _, first = model.decode_step(tgt_in[:, 0], start)
        _, again = model.decode_step(tgt_in[:, 0], start)  # step 0: allowed
        _, second = model.decode_step(tgt_in[:, 1], first)
        with pytest.raises(RuntimeError, match="already passed to decode_step or index_select"):
            model.decode_step(tgt_in[:, 1], first)
        reordered = second.index_select(torch.tensor([1, 0]))
        with pytest.raises(RuntimeError, match="already passed"):
            second.index_select(torch.tensor([0, 1]))
        log_probs, _ = model.decode_step(tgt_in[[1, 0], 2], reordered)
        expected = F.log_softmax(model.decode(tgt_in, start).float(), dim=-1)[[1, 0], 2]
    assert again.cache is not first.cache
    torch.testing.assert_close(log_probs, expected, atol=1e-5, rtol=0)


def test_dropping_sentences_keeps_the_beam_grouping() -> None:
    """Beam search drops finished sentences with all their beams: the state stays grouped by
    sentence and only the kept sentences' memory is gathered."""
    model = tiny_model()
    src, src_pad_mask, tgt_in, _ = make_batch(*random_batch(3, seed=13, min_len=4, max_len=6))
    beams = torch.arange(3).repeat_interleave(2)
    with torch.no_grad():
        state = model.encode(src, src_pad_mask)
        full = F.log_softmax(model.decode(tgt_in, state).float(), dim=-1)  # (3, T, V)
        state = state.index_select(beams, group=2)
        _, state = model.decode_step(tgt_in[beams, 0], state)
        keep = torch.tensor([5, 4, 0, 1])  # sentence 2 (beams swapped), then sentence 0
        state = state.index_select(keep, group=2)
        assert state.group == 2 and state.memory_pad_mask.size(0) == 2
        assert torch.equal(state.memory_pad_mask, src_pad_mask[[2, 0]])
        log_probs, _ = model.decode_step(tgt_in[beams[keep], 1], state)
    torch.testing.assert_close(log_probs, full[beams[keep], 1], atol=1e-5, rtol=0)


def test_index_select_takes_the_grouping_it_is_given() -> None:
    """The state never infers the beam grouping: without ``group`` every row gets its own copy
    of the memory (still correct, only slower); a group that does not divide the rows is refused."""
    model = tiny_model()
    src, src_pad_mask, tgt_in, _ = make_batch(*random_batch(2, seed=14, min_len=4, max_len=6))
    beams = torch.arange(2).repeat_interleave(2)
    with torch.no_grad():
        state = model.encode(src, src_pad_mask)
        full = F.log_softmax(model.decode(tgt_in, state).float(), dim=-1)  # (2, T, V)
        with pytest.raises(ValueError, match="group=3"):
            state.index_select(beams, group=3)
        ungrouped = state.index_select(beams)
        assert ungrouped.group == 1 and ungrouped.memory_pad_mask.size(0) == 4
        log_probs, _ = model.decode_step(tgt_in[beams, 0], ungrouped)
    torch.testing.assert_close(log_probs, full[beams, 0], atol=1e-5, rtol=0)


def test_beam_search_over_a_large_vocabulary_equals_plain_topk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With V = 3000 the search ranks each beam's candidates through ``topk_rows``' chunked path;
    ranking with a plain ``topk`` instead finds the same hypotheses and scores."""
    import mt.models.search as search_module

    torch.manual_seed(0)
    model = TransformerSeq2Seq(vocab_size=3000, **TINY).eval()
    src, src_pad_mask, _, _ = make_batch(*random_batch(4, seed=14, min_len=3, vocab=3000))
    kwargs = dict(beam_size=4, length_penalty=1.0, nbest=4, max_len_a=1.0, max_len_b=6)
    chunked = search_module.beam_search(model, src, src_pad_mask, **kwargs)
    monkeypatch.setattr(search_module, "topk_rows", lambda x, k: x.topk(k, dim=1))
    plain = search_module.beam_search(model, src, src_pad_mask, **kwargs)
    assert [[h.tokens for h in n] for n in chunked] == [[h.tokens for h in n] for n in plain]
    for a, b in zip(chunked, plain, strict=True):
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-6)


def test_bf16_autocast_steps_and_reorders() -> None:
    """Under autocast the cache holds bf16 keys/values; several steps with a beam reorder stay
    close to teacher forcing under the same autocast."""
    model = tiny_model()
    src, src_pad_mask, tgt_in, _ = make_batch(*random_batch(3, seed=15, min_len=5, max_len=7))
    indices = torch.tensor([2, 0, 1])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        state = model.encode(src, src_pad_mask)
        full = F.log_softmax(model.decode(tgt_in, state).float(), dim=-1)  # (3, T, V)
        stepped, rows = step_through(model, state, tgt_in, reorder_at=2, indices=indices)
        assert state.cache is None and stepped.dtype == torch.float32
    torch.testing.assert_close(stepped, full[indices], atol=0.1, rtol=0)
