"""Transformer encoder-decoder (Vaswani et al. 2017) with an incremental decoding cache.

Shape legend:
    B   batch (sentences; sentences x beams during beam search)
    S   source length
    T   target length (t: the current decoding step, counted from 0)
    D   model width (``d_model``)
    H   attention heads; Dh = D / H is the width of one head
    F   feed-forward width (``ffn_dim``)
    V   vocabulary (one joint subword vocabulary)
    K   beam size
    L   number of decoder layers

Read top to bottom: positions and masks -> attention -> layers -> decoding state -> the model.
One module of ~770 lines on purpose: the KV cache, the beam grouping of the cross-attention memory
and the layers that read them are one mechanism, and splitting them would spread one invariant
(which rows share which memory) over several files.

Masks. ``F.scaled_dot_product_attention`` (SDPA) takes a boolean ``attn_mask`` that is True where
attention is *allowed*, the opposite of ``src_pad_mask`` (True at padding). The source key mask is
(B, 1, 1, S) and broadcasts over heads and queries, so a padding query row still attends to the real
tokens of its sentence and stays finite; padding rows of the encoder output are never read because
they are masked as keys in cross-attention. A row without any real key (an all-PAD source, which real
data never has: sources end in EOS) would give softmax over nothing = NaN, and NaN values leak
through a masked attention weight (0 * NaN = NaN); such a row is allowed to attend everywhere
instead, so every value stays finite. The decoder's self-attention needs no target padding mask:
targets are right-padded, so under the causal mask a real position never sees a padding one.

Incremental decoding. ``encode`` computes every decoder layer's cross-attention keys/values of the
encoder memory once and puts them in a ``TransformerState``, which both ``decode`` (teacher forcing)
and ``decode_step`` read. Two things keep beam search cheap (profiles in
``benchmarks/README.md``):

* The memory is stored once per source sentence, not once per beam: the state's rows (sentences x
  beams) come in groups of ``group`` consecutive rows that read the same memory row, and the
  cross-attention runs the ``group`` queries of a sentence against its one copy of the memory.
  The search says the grouping (``index_select(indices, group=K)``); the state never infers it.
  Reordering beams within their sentences therefore never touches the memory.
* The self-attention keys/values of the positions decoded so far live in one preallocated buffer
  (``SelfAttentionCache``), position-major: a step writes its keys/values at position t in place
  instead of concatenating (which would copy the whole history), and a beam reorder copies the
  history once, with a single ``index_select`` for all layers, into a second buffer.

Because the buffer is shared, a state is *consumed* by ``decode_step`` and ``index_select``: only
the newest state of a decoding may be used, and using an older one raises an error instead of
reading overwritten keys. States at step 0 (what ``encode`` returns, or its ``index_select``) hold
no buffer and may be reused freely.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mt.data.tokenizer import PAD_ID
from mt.eval.throughput import FlopTerm, linear_macs
from mt.models.dropout import Dropout
from mt.models.module import Seq2SeqModule
from mt.options import OptionError, require

__all__ = ["TransformerSeq2Seq", "TransformerState", "sinusoidal_positions"]

# Keys and values, each (batch, H, length, Dh); the batch is M sentences for the encoder memory.
KeyValue = tuple[Tensor, Tensor]
# One decoder layer's slice of the self-attention cache: keys and values, each (capacity, B, H, Dh).
KeyValueBuffer = tuple[Tensor, Tensor]


# -- positions and masks -------------------------------------------------------------------------


def sinusoidal_positions(start: int, length: int, dim: int, device: torch.device) -> Tensor:
    """Sinusoidal position encodings of positions ``start .. start + length - 1``, any length.

    ``PE[pos, i] = sin(pos * w_i)`` and ``PE[pos, D/2 + i] = cos(pos * w_i)`` with
    ``w_i = 10000 ** (-2i / D)``: Vaswani et al.'s encodings with the sines and cosines in two
    halves instead of interleaved (an equivalent permutation of the features). Computed in float32
    and element-wise, so one position computed alone is bit-identical to the same position in a
    longer range (what makes ``decode_step`` match ``decode``).

    Returns:
        (length, D) float32.
    """
    positions = torch.arange(start, start + length, device=device, dtype=torch.float32)  # (T,)
    exponents = torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim  # (D/2,)
    angles = positions[:, None] * torch.pow(10000.0, -exponents)[None, :]  # (T, D/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)  # (T, D)


def key_padding_to_attn_mask(pad_mask: Tensor) -> Tensor:
    """SDPA mask from a key padding mask: (B, S) True at padding -> (B, 1, 1, S) True = attend.

    A row whose keys are all padding may attend to all of them (see the module docstring), so that
    no NaN is ever produced.
    """
    allowed = ~pad_mask  # (B, S)
    allowed = allowed | ~allowed.any(dim=1, keepdim=True)  # (B, S)
    return allowed[:, None, None, :]  # (B, 1, 1, S)


def split_heads(x: Tensor, n_heads: int) -> Tensor:
    """(B, T, D) -> (B, H, T, Dh)."""
    batch, length, width = x.shape
    return x.view(batch, length, n_heads, width // n_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, T, Dh) -> (B, T, D)."""
    batch, n_heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, n_heads * head_dim)


def _xavier_blocks(linear: nn.Linear, n_blocks: int) -> None:
    """Xavier-uniform init of a fused projection as if its ``n_blocks`` row blocks were separate
    (D, D) matrices (a fused (3D, D) matrix would otherwise get a smaller range); zero bias."""
    for block in linear.weight.chunk(n_blocks, dim=0):
        nn.init.xavier_uniform_(block)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


# -- attention -----------------------------------------------------------------------------------


def attend(q: Tensor, k: Tensor, v: Tensor, **kwargs: Any) -> Tensor:
    """``F.scaled_dot_product_attention``, computed in float32 for bfloat16 inputs on a CPU.

    Under CPU bf16 autocast the projections arrive in bf16, and PyTorch's CPU attention kernel in
    bf16 was the slowest part of a transformer-small training step: measured on this project's
    AMD EPYC (avx512_bf16, one thread, fp32 -> bf16, forward and backward of one batch's shapes,
    B 100, H 4, T 22, Dh 64): 33.7 -> 98.3 ms; with float32 inputs cast back after, 36.4 ms.
    Attention's own products are a small share of the model's, so float32 costs little here.
    """
    if q.dtype == torch.bfloat16 and q.device.type == "cpu":
        with torch.autocast("cpu", enabled=False):  # autocast would cast the inputs back to bf16
            out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **kwargs)
        return out.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, **kwargs)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused query/key/value projection and an optional cache.

    Args:
        d_model: D.
        n_heads: H.
        attention_dropout: dropout on the attention weights (training only).
    """

    def __init__(self, d_model: int, n_heads: int, attention_dropout: float) -> None:
        super().__init__()
        self.n_heads, self.attention_dropout = n_heads, attention_dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        _xavier_blocks(self.qkv, 3)
        _xavier_blocks(self.out, 1)

    def forward(
        self,
        x: Tensor,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        cache: KeyValueBuffer | None = None,
        position: int = 0,
    ) -> Tensor:
        """Attend over ``x`` itself, or (incremental decoding) over the cached positions.

        Args:
            x: (B, T, D).
            attn_mask: boolean SDPA mask, True = attend, broadcastable to (B, H, T, T').
            is_causal: causal mask over ``x`` (teacher forcing; not with ``cache``).
            cache: incremental decoding (T = 1): key and value buffers, each (capacity, B, H, Dh),
                holding positions ``0 .. position - 1``; this position's key/value is written
                at ``position`` in place and the query attends to positions ``0 .. position``.
            position: t, the position of ``x`` (with ``cache`` only).

        Returns:
            (B, T, D).
        """
        batch, length, _ = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # 3 x (B, T, D)
        q = split_heads(q, self.n_heads)  # (B, H, T, Dh)
        if cache is None:
            k, v = split_heads(k, self.n_heads), split_heads(v, self.n_heads)  # (B, H, T, Dh)
        else:
            k_buf, v_buf = cache  # (capacity, B, H, Dh)
            k_buf[position].copy_(k.view(batch, self.n_heads, -1))  # (B, H, Dh)
            v_buf[position].copy_(v.view(batch, self.n_heads, -1))
            k = k_buf[: position + 1].permute(1, 2, 0, 3)  # (B, H, t + 1, Dh), a strided view
            v = v_buf[: position + 1].permute(1, 2, 0, 3)
        y = attend(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.attention_dropout if self.training else 0.0,
            is_causal=is_causal,
        )  # (B, H, T, Dh)
        return self.out(merge_heads(y))  # (B, T, D)


class CrossAttention(nn.Module):
    """Multi-head attention of the decoder over the encoder memory.

    The memory's keys/values are computed separately (``memory_kv``), once per source batch.

    Args:
        d_model: D.
        n_heads: H.
        attention_dropout: dropout on the attention weights (training only).
    """

    def __init__(self, d_model: int, n_heads: int, attention_dropout: float) -> None:
        super().__init__()
        self.n_heads, self.attention_dropout = n_heads, attention_dropout
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        _xavier_blocks(self.q, 1)
        _xavier_blocks(self.kv, 2)
        _xavier_blocks(self.out, 1)

    def memory_kv(self, memory: Tensor) -> KeyValue:
        """(B, S, D) encoder memory -> its keys and values, each (B, H, S, Dh)."""
        k, v = self.kv(memory).chunk(2, dim=-1)  # 2 x (B, S, D)
        return split_heads(k, self.n_heads), split_heads(v, self.n_heads)

    def queries(self, x: Tensor, group: int = 1) -> Tensor:
        """(B, T, D) target positions -> (M, H, group * T, Dh) queries, B = M * group: the
        ``group`` consecutive rows that read one memory row become one sequence of queries."""
        batch, length, width = x.shape
        q = self.q(x).view(batch // group, group * length, width)  # (M, group * T, D)
        return split_heads(q, self.n_heads)  # (M, H, group * T, Dh)

    def forward(
        self, x: Tensor, memory_kv: KeyValue, memory_mask: Tensor, group: int = 1
    ) -> Tensor:
        """Attend from the target positions to the encoder memory.

        Args:
            x: (B, T, D) queries; B = M * group.
            memory_kv: memory keys/values, each (M, H, S, Dh).
            memory_mask: (M, 1, 1, S) SDPA mask of the memory.
            group: consecutive rows of ``x`` that read the same memory row (the beams of a
                sentence): rows ``m * group .. (m + 1) * group - 1`` read memory row m. Their
                queries are attended together, as ``group * T`` queries of one sentence.

        Returns:
            (B, T, D).
        """
        batch, length, width = x.shape
        y = attend(
            self.queries(x, group),
            memory_kv[0],
            memory_kv[1],
            attn_mask=memory_mask,
            dropout_p=self.attention_dropout if self.training else 0.0,
        )  # (M, H, group * T, Dh)
        return self.out(merge_heads(y).view(batch, length, width))  # (B, T, D)


class FeedForward(nn.Module):
    """Position-wise feed-forward network: Linear(D, F) -> activation -> Linear(F, D).

    Args:
        d_model: D.
        ffn_dim: F.
        activation: ``relu`` or ``gelu``.
    """

    def __init__(self, d_model: int, ffn_dim: int, activation: Literal["relu", "gelu"]) -> None:
        super().__init__()
        self.up = nn.Linear(d_model, ffn_dim)
        self.down = nn.Linear(ffn_dim, d_model)
        self.activation = F.relu if activation == "relu" else F.gelu
        _xavier_blocks(self.up, 1)
        _xavier_blocks(self.down, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, T, D)."""
        return self.down(self.activation(self.up(x)))  # (B, T, F) inside


# -- layers --------------------------------------------------------------------------------------


class _Block(nn.Module):
    """Residual connections around sub-layers, pre-norm or post-norm.

    Pre-norm:  ``x + dropout(f(norm(x)))``  (the stack ends with a final LayerNorm).
    Post-norm: ``norm(x + dropout(f(x)))``  (Vaswani et al.'s original arrangement).
    """

    def __init__(self, dropout: float, pre_norm: bool) -> None:
        super().__init__()
        self.dropout = Dropout(dropout)
        self.pre_norm = pre_norm

    def _sublayer_in(self, x: Tensor, norm: nn.LayerNorm) -> Tensor:
        return norm(x) if self.pre_norm else x

    def _sublayer_out(self, x: Tensor, y: Tensor, norm: nn.LayerNorm) -> Tensor:
        x = x + self.dropout(y)
        return x if self.pre_norm else norm(x)


class EncoderLayer(_Block):
    """Self-attention over the source, then the feed-forward network.

    Args:
        d_model: D.
        n_heads: H.
        ffn_dim: F.
        dropout: dropout on each sub-layer's output before the residual addition.
        attention_dropout: dropout on the attention weights.
        activation: feed-forward activation.
        pre_norm: pre-norm (True) or post-norm (False) residual blocks.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        ffn_dim: int,
        dropout: float,
        attention_dropout: float,
        activation: Literal["relu", "gelu"],
        pre_norm: bool,
    ) -> None:
        super().__init__(dropout, pre_norm)
        self.self_attn = SelfAttention(d_model, n_heads, attention_dropout)
        self.ffn = FeedForward(d_model, ffn_dim, activation)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)

    def forward(self, x: Tensor, src_mask: Tensor) -> Tensor:
        """(B, S, D), (B, 1, 1, S) SDPA mask -> (B, S, D)."""
        y = self.self_attn(self._sublayer_in(x, self.norm1), attn_mask=src_mask)
        x = self._sublayer_out(x, y, self.norm1)
        y = self.ffn(self._sublayer_in(x, self.norm2))
        return self._sublayer_out(x, y, self.norm2)


class DecoderLayer(_Block):
    """Causal self-attention, cross-attention over the encoder memory, feed-forward network.

    Args: as for ``EncoderLayer``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        ffn_dim: int,
        dropout: float,
        attention_dropout: float,
        activation: Literal["relu", "gelu"],
        pre_norm: bool,
    ) -> None:
        super().__init__(dropout, pre_norm)
        self.self_attn = SelfAttention(d_model, n_heads, attention_dropout)
        self.cross_attn = CrossAttention(d_model, n_heads, attention_dropout)
        self.ffn = FeedForward(d_model, ffn_dim, activation)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(
        self,
        x: Tensor,
        memory_kv: KeyValue,
        memory_mask: Tensor,
        group: int = 1,
        cache: KeyValueBuffer | None = None,
        position: int = 0,
    ) -> Tensor:
        """One decoder layer.

        Args:
            x: (B, T, D) target positions, B = M * group.
            memory_kv: this layer's cross-attention keys/values, each (M, H, S, Dh).
            memory_mask: (M, 1, 1, S) SDPA mask of the source.
            group: rows of ``x`` per memory row (see ``CrossAttention.forward``).
            cache: this layer's self-attention buffers for incremental decoding (T = 1; see
                ``SelfAttention.forward``); None for teacher forcing (causal over ``x``).
            position: t, the position of ``x`` (with ``cache`` only).

        Returns:
            (B, T, D).
        """
        h = self._sublayer_in(x, self.norm1)
        y = self.self_attn(h, is_causal=cache is None, cache=cache, position=position)
        x = self._sublayer_out(x, y, self.norm1)
        y = self.cross_attn(self._sublayer_in(x, self.norm2), memory_kv, memory_mask, group)
        x = self._sublayer_out(x, y, self.norm2)
        y = self.ffn(self._sublayer_in(x, self.norm3))
        return self._sublayer_out(x, y, self.norm3)


# -- decoding state ------------------------------------------------------------------------------


class SelfAttentionCache:
    """Self-attention keys/values of every decoder layer for the target positions decoded so far.

    One buffer of shape (capacity, R, L, 2, H, Dh): position-major, then rows, then per layer its
    keys and values. A step writes its position in place; ``reorder`` copies positions
    ``0 .. length - 1`` of the chosen rows into a second buffer with one ``index_select`` and
    swaps the two; the capacity doubles when a step needs more. The states of one decoding share
    the cache; ``version`` names the only state allowed to use it (see ``TransformerState``).
    ``scratch`` hands out further buffers that every step of the decoding reuses.

    Args:
        rows: R.
        layers, heads, head_dim: L, H, Dh of the decoder.
        capacity: positions to allocate room for.
        dtype, device: of the keys/values.
    """

    def __init__(
        self,
        rows: int,
        layers: int,
        heads: int,
        head_dim: int,
        capacity: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.shape = (rows, layers, 2, heads, head_dim)  # per position
        self.buffer = torch.empty((capacity, *self.shape), dtype=dtype, device=device)
        self.spare: Tensor | None = None  # flat storage for the next reorder
        self.version = 0
        self._scratch: dict[str, Tensor] = {}

    def scratch(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """A reusable buffer of ``shape``: the same storage every step (its prefix once rows
        have been dropped); its previous contents are overwritten by the caller."""
        numel = math.prod(shape)
        buffer = self._scratch.get(name)
        if buffer is None or buffer.numel() < numel or buffer.dtype != dtype:
            buffer = self._scratch[name] = self.buffer.new_empty(numel, dtype=dtype)
        return buffer[:numel].view(shape)

    @property
    def capacity(self) -> int:
        return self.buffer.size(0)

    def layer(self, index: int) -> KeyValueBuffer:
        """Layer ``index``'s key and value buffers, each (capacity, R, H, Dh) views."""
        return self.buffer[:, :, index, 0], self.buffer[:, :, index, 1]

    def ensure_capacity(self, length: int, needed: int) -> None:
        """Grow (doubling) so that ``needed`` positions fit, keeping positions ``0 .. length - 1``."""
        if needed <= self.capacity:
            return
        capacity = max(needed, 2 * self.capacity)
        self.spare = None  # freed first: the peak is the old buffer plus the grown one
        grown = self.buffer.new_empty((capacity, *self.shape))
        grown[:length].copy_(self.buffer[:length])
        self.buffer, self.spare = grown, None

    @torch.no_grad()
    def reorder(self, indices: Tensor, length: int) -> None:
        """Keep rows ``indices`` (R',) of positions ``0 .. length - 1``, in that order."""
        rows = indices.numel()
        shape = (self.capacity, rows, *self.shape[1:])
        numel = math.prod(shape)
        if self.spare is None or self.spare.numel() < numel:
            self.spare = self.buffer.new_empty(numel)
        target = self.spare[:numel].view(shape)
        flat = self.buffer[:length].view(length, self.shape[0], -1)  # (t, R, L * 2 * H * Dh)
        torch.index_select(flat, 1, indices, out=target[:length].view(length, rows, -1))
        self.spare = self.buffer.view(-1)
        self.buffer, self.shape = target, (rows, *self.shape[1:])


@dataclass(frozen=True)
class TransformerState:
    """What the decoder needs from step to step.

    The state has R rows (sentences, or sentences x beams during beam search) in groups of
    ``group`` consecutive rows that read the same source sentence: row r reads memory row
    ``r // group`` (M = R / group memory rows).

    Attributes:
        memory_pad_mask: (M, S) bool, True at source padding.
        cross_kv: per decoder layer, the encoder memory's cross-attention keys and values, each
            (M, H, S, Dh); computed once in ``encode``.
        group: rows per memory row.
        step: t, the number of target positions decoded so far (the position of the next one).
        cache: the self-attention keys/values of positions ``0 .. step - 1``; None at step 0.
        version: the cache version this state may use (see ``SelfAttentionCache``).
    """

    memory_pad_mask: Tensor
    cross_kv: tuple[KeyValue, ...]
    group: int = 1
    step: int = 0
    cache: SelfAttentionCache | None = None
    version: int = 0

    @property
    def rows(self) -> int:
        """R, the number of rows."""
        return self.memory_pad_mask.size(0) * self.group

    def check_current(self) -> None:
        """Raise unless this is the newest state of its decoding (the cache holds its keys)."""
        if self.cache is not None and self.cache.version != self.version:
            raise RuntimeError(
                "this TransformerState was already passed to decode_step or index_select; its "
                "self-attention cache has moved on. Continue from the state that call returned."
            )

    def index_select(self, indices: Tensor, group: int = 1) -> TransformerState:
        """Rows ``indices`` (R',): reorder, repeat (beam expansion) or drop rows.

        ``group`` is the caller's promise about the new rows: they come in groups of ``group``
        consecutive rows of one source sentence (the K beams of a sentence, as beam search
        passes them); 1 promises nothing. The state keeps that grouping, so the cross-attention
        reads one copy of the memory per sentence, and the memory is gathered only when the kept
        sentences differ from the old ones: reordering the beams within their sentences,
        expanding every sentence into K beams (``arange(M).repeat_interleave(K)``, ``group=K``)
        or dropping whole sentences keep the memory of the kept sentences as it is (dropping
        gathers only the kept sentences). Consumes the state (see the module docstring).
        """
        self.check_current()
        rows = indices.numel()
        if group < 1 or rows % group:
            raise ValueError(f"group={group} must be >= 1 and divide the {rows} rows")
        memory_row = torch.div(indices, self.group, rounding_mode="floor")  # (R',)
        sentences = memory_row[::group]  # (M',) the memory row of each new group
        same_memory = sentences.numel() == self.memory_pad_mask.size(0) and bool(
            torch.equal(sentences, torch.arange(sentences.numel(), device=sentences.device))
        )

        def pick(kv: KeyValue) -> KeyValue:
            return kv[0].index_select(0, sentences), kv[1].index_select(0, sentences)

        cache, version = self.cache, self.version
        if cache is not None:
            cache.reorder(indices, self.step)
            cache.version += 1
            version = cache.version
        return TransformerState(
            memory_pad_mask=(
                self.memory_pad_mask
                if same_memory
                else self.memory_pad_mask.index_select(0, sentences)
            ),
            cross_kv=self.cross_kv if same_memory else tuple(pick(kv) for kv in self.cross_kv),
            group=group,
            step=self.step,
            cache=cache,
            version=version,
        )


# -- the model -----------------------------------------------------------------------------------


class TransformerSeq2Seq(Seq2SeqModule):
    """Transformer encoder-decoder for translation (Vaswani et al. 2017).

    Token embeddings scaled by sqrt(D) plus sinusoidal positions, then dropout; pre-norm (default)
    or post-norm residual blocks; scaled dot-product attention through
    ``F.scaled_dot_product_attention``; optionally one embedding matrix for source and target (a
    joint vocabulary) and an output projection tied to the target embeddings.

    Args:
        vocab_size: size of the joint subword vocabulary (linked from the data module).
        d_model: model width D (even, and divisible by ``n_heads``).
        n_heads: attention heads H.
        encoder_layers: number of encoder layers.
        decoder_layers: number of decoder layers.
        ffn_dim: width F of the position-wise feed-forward networks.
        dropout: dropout on embeddings and on every sub-layer's output before the residual
            addition.
        attention_dropout: dropout on the attention weights.
        activation: activation of the feed-forward networks.
        norm: ``pre`` (LayerNorm before each sub-layer, plus a final LayerNorm after each stack;
            stable without a long warm-up) or ``post`` (LayerNorm after each residual addition,
            as in the original paper).
        share_embeddings: one embedding matrix for source and target tokens.
        tie_output: the output projection is the transposed target embedding matrix.
        **kwargs: the arguments of ``Seq2SeqModule`` (label_smoothing, optimizer, lr_scheduler,
            beam_size, length_penalty, max_len_a, max_len_b).
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 512,
        n_heads: int = 8,
        encoder_layers: int = 6,
        decoder_layers: int = 6,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        activation: Literal["relu", "gelu"] = "relu",
        norm: Literal["pre", "post"] = "pre",
        share_embeddings: bool = True,
        tie_output: bool = True,
        **kwargs: Any,
    ) -> None:
        for name, value in [("d_model", d_model), ("n_heads", n_heads), ("ffn_dim", ffn_dim),
                            ("encoder_layers", encoder_layers), ("decoder_layers", decoder_layers)]:  # fmt: skip
            require(f"model.init_args.{name}", value, value >= 1, ">= 1")
        for name, value in [("dropout", dropout), ("attention_dropout", attention_dropout)]:
            require(f"model.init_args.{name}", value, 0 <= value < 1, "in [0, 1)")
        super().__init__(vocab_size=vocab_size, **kwargs)
        if d_model % n_heads != 0 or d_model % 2 != 0:
            raise OptionError(
                f"model.init_args.d_model={d_model}: must be even and divisible by "
                f"model.init_args.n_heads={n_heads}"
            )
        if activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {activation!r}")
        if norm not in ("pre", "post"):
            raise ValueError(f"norm must be 'pre' or 'post', got {norm!r}")
        self.d_model, self.n_heads = d_model, n_heads
        self.tie_output = tie_output
        self.embed_scale = math.sqrt(d_model)
        pre_norm = norm == "pre"
        layer_args = (d_model, n_heads, ffn_dim, dropout, attention_dropout, activation, pre_norm)

        self.src_embed = nn.Embedding(vocab_size, d_model, padding_idx=PAD_ID)
        self.tgt_embed = (
            self.src_embed
            if share_embeddings
            else nn.Embedding(vocab_size, d_model, padding_idx=PAD_ID)
        )
        self.embed_dropout = Dropout(dropout)
        self.encoder = nn.ModuleList(EncoderLayer(*layer_args) for _ in range(encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(*layer_args) for _ in range(decoder_layers))
        # Pre-norm leaves the residual stream unnormalised: each stack ends with a LayerNorm.
        self.encoder_norm = nn.LayerNorm(d_model) if pre_norm else nn.Identity()
        self.decoder_norm = nn.LayerNorm(d_model) if pre_norm else nn.Identity()
        self.output_proj: nn.Linear | None = (
            None if tie_output else nn.Linear(d_model, vocab_size, bias=False)
        )

        # Embeddings ~ N(0, 1/D): after the sqrt(D) scaling they have unit variance, and as a tied
        # output matrix they give logits of unit scale. The linear layers initialise themselves.
        embeddings = [self.src_embed] if share_embeddings else [self.src_embed, self.tgt_embed]
        for embedding in embeddings:
            nn.init.normal_(embedding.weight, mean=0.0, std=d_model**-0.5)
            nn.init.zeros_(embedding.weight[PAD_ID])  # a start only: tied, the row gets gradients
        if self.output_proj is not None:
            nn.init.normal_(self.output_proj.weight, mean=0.0, std=d_model**-0.5)

    def num_parameters(self) -> int:
        """Number of trainable parameters, shared ones counted once."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def _embed(self, embedding: nn.Embedding, tokens: Tensor, start: int) -> Tensor:
        """(B, T) ids at positions ``start ..`` -> (B, T, D) scaled embeddings + positions."""
        x = embedding(tokens) * self.embed_scale  # (B, T, D)
        positions = sinusoidal_positions(start, tokens.size(1), self.d_model, tokens.device)
        return self.embed_dropout(x + positions.to(x.dtype))  # (B, T, D)

    def _logits(self, x: Tensor) -> Tensor:
        """(B, T, D) final decoder states -> (B, T, V) logits."""
        if self.output_proj is None:
            return F.linear(x, self.tgt_embed.weight)  # (B, T, V)
        return self.output_proj(x)  # (B, T, V)

    def encode(self, src: Tensor, src_pad_mask: Tensor) -> TransformerState:
        """Run the encoder and precompute every decoder layer's cross-attention keys/values.

        Args:
            src: (B, S) source ids (subwords then EOS, right-padded with PAD).
            src_pad_mask: (B, S) bool, True at padding.
        """
        src_mask = key_padding_to_attn_mask(src_pad_mask)  # (B, 1, 1, S)
        x = self._embed(self.src_embed, src, start=0)  # (B, S, D)
        for layer in self.encoder:
            x = layer(x, src_mask)  # (B, S, D)
        memory = self.encoder_norm(x)  # (B, S, D)
        return TransformerState(
            memory_pad_mask=src_pad_mask,
            cross_kv=tuple(layer.cross_attn.memory_kv(memory) for layer in self.decoder),
        )

    def decode(self, tgt_in: Tensor, state: TransformerState) -> Tensor:
        """Teacher forcing: logits of every target position at once, causally.

        Starts at position 0 and ignores the state's self-attention cache.

        Args:
            tgt_in: (B, T) BOS followed by the target ids, right-padded with PAD.
            state: what ``encode`` returned (or its ``index_select``: B = ``state.rows``).

        Returns:
            (B, T, V) logits.
        """
        memory_mask = key_padding_to_attn_mask(state.memory_pad_mask)  # (M, 1, 1, S)
        x = self._embed(self.tgt_embed, tgt_in, start=0)  # (B, T, D)
        for layer, memory_kv in zip(self.decoder, state.cross_kv, strict=True):
            x = layer(x, memory_kv, memory_mask, state.group)  # (B, T, D)
        return self._logits(self.decoder_norm(x))  # (B, T, V)

    def _step_log_probs(self, x: Tensor, cache: SelfAttentionCache) -> Tensor:
        """(B, D) final decoder states -> (B, V) float32 log-probabilities, in ``cache``'s buffers.

        A step's logits and log-probabilities are the largest tensors of decoding; on a CPU,
        fresh ones every step come as fresh pages from the OS (measured: 15% of beam-5 decoding
        time), so they are written into two buffers that every step of a decoding reuses. Under
        autocast the plain path is taken (autocast does not apply to ``out=`` calls).
        """
        if torch.is_autocast_enabled(x.device.type):
            return F.log_softmax(self._logits(x).float(), dim=-1)
        # The same product as ``_logits``: the output projection has no bias.
        weight = self.tgt_embed.weight if self.output_proj is None else self.output_proj.weight
        shape = (x.size(0), weight.size(0))  # (B, V)
        logits = cache.scratch("logits", shape, weight.dtype)
        torch.matmul(x, weight.t(), out=logits)
        log_probs = cache.scratch("log_probs", shape, torch.float32)
        return torch.log_softmax(logits.float(), dim=-1, out=log_probs)

    @torch.no_grad()
    def decode_step(
        self, prev_tokens: Tensor, state: TransformerState
    ) -> tuple[Tensor, TransformerState]:
        """One incremental step: the next token's distribution given the previous token.

        Inference only: it runs without autograd (training uses ``decode``).

        Args:
            prev_tokens: (B,) the token at position ``state.step`` (BOS at the first step);
                B = ``state.rows``.
            state: from ``encode``, ``index_select`` or the previous ``decode_step``; consumed
                (see the module docstring) unless it is at step 0.

        Returns:
            (B, V) float32 log-probabilities and the state one position further. The
            log-probabilities are a buffer of the decoding that the next ``decode_step`` overwrites
            (the search reads them within the step; clone them to keep them).
        """
        state.check_current()
        step, rows = state.step, prev_tokens.size(0)
        cache = state.cache
        if cache is None:  # the first step: a fresh cache (it doubles when full)
            x_dtype = (
                torch.get_autocast_dtype(prev_tokens.device.type)
                if torch.is_autocast_enabled(prev_tokens.device.type)
                else self.tgt_embed.weight.dtype
            )
            cache = SelfAttentionCache(
                rows,
                len(self.decoder),
                self.n_heads,
                self.d_model // self.n_heads,
                capacity=16,
                dtype=x_dtype,
                device=prev_tokens.device,
            )
        cache.ensure_capacity(step, step + 1)
        memory_mask = key_padding_to_attn_mask(state.memory_pad_mask)  # (M, 1, 1, S)
        x = self._embed(self.tgt_embed, prev_tokens[:, None], start=step)  # (B, 1, D)
        for index, (layer, memory_kv) in enumerate(zip(self.decoder, state.cross_kv, strict=True)):
            x = layer(x, memory_kv, memory_mask, state.group, cache.layer(index), step)  # (B, 1, D)
        log_probs = self._step_log_probs(self.decoder_norm(x)[:, 0], cache)  # (B, V)
        cache.version += 1
        return log_probs, replace(state, step=step + 1, cache=cache, version=cache.version)

    def flop_terms(self) -> list[FlopTerm]:
        """Forward FLOP terms, per unit of a batch's length statistics; the derivation is in
        :mod:`mt.eval.throughput`'s docstring. Sizes are read from the layers' weight shapes."""
        enc_linear = sum(linear_macs(layer.modules()) for layer in self.encoder)
        cross_kv = sum(layer.cross_attn.kv.weight.numel() for layer in self.decoder)
        dec_linear = sum(linear_macs(layer.modules()) for layer in self.decoder) - cross_kv
        projection = self.tgt_embed if self.output_proj is None else self.output_proj
        output = projection.weight.numel()  # V x D, tied or not
        n_enc, n_dec = len(self.encoder), len(self.decoder)
        return [
            FlopTerm("encoder_linear", "src", 2.0 * enc_linear),
            FlopTerm("cross_attention_memory_kv", "src", 2.0 * cross_kv),
            FlopTerm("decoder_linear", "tgt", 2.0 * dec_linear),
            FlopTerm("output_projection", "tgt", 2.0 * output),
            # QK^T and AV: 2 products of (rows x keys x D) multiply-adds each, per layer.
            FlopTerm("encoder_self_attention", "src_sq", 2.0 * 2 * self.d_model * n_enc),
            FlopTerm("decoder_self_attention", "tgt_sq", 2.0 * 2 * self.d_model * n_dec),
            FlopTerm("cross_attention", "src_tgt", 2.0 * 2 * self.d_model * n_dec),
        ]
