"""Recurrent encoder-decoder with attention (Bahdanau et al. 2015; Luong et al. 2015), with LSTM,
GRU or plain tanh RNN cells.

Reads top to bottom: the padding-safe bidirectional encoder, the three attention score functions,
the decoder state that search carries, and the model that ties them together.

Shape legend:
    B batch (sentences, or sentences x beams during search)
    S source length, T target length (both include padding)
    E embedding size, H hidden size (memory, decoder, attention; H/2 per encoder direction)
    V vocabulary, K beam size, L number of recurrent layers (L_enc encoder, L_dec decoder)
    N states per layer: 2 for an LSTM (h, c), 1 for a GRU or an RNN (h)

Data flow::

    src (B, S) -> embed (x sqrt(E)) -> bidirectional L_enc-layer RNN, H/2 per direction
               -> memory (B, S, H) = [forward; backward] (split_directions false: H per
                  direction, then a linear map 2H -> H)
               -> final hidden states of every layer -> bridge -> decoder state N x (L_dec, B, H)
    tgt_in (B, T) -> embed [+ previous attentional vector] -> L_dec-layer RNN -> h_t (B, T, H)
               -> attention over memory -> context c_t (B, T, H)
               -> attentional vector h~_t = tanh(W_c [c_t; h_t]) (B, T, H) -> linear -> logits (B, T, V)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mt.data.tokenizer import PAD_ID
from mt.eval.throughput import FlopTerm, linear_macs, rnn_macs
from mt.models.dropout import Dropout
from mt.models.module import CheckpointError, Seq2SeqModule
from mt.options import require

__all__ = ["AttentionType", "Attention", "BiRNNEncoder", "Cell", "RNNSeq2Seq", "RNNState"]

AttentionType = Literal["bahdanau", "luong_dot", "luong_general"]
ATTENTION_TYPES: tuple[str, ...] = get_args(AttentionType)

Cell = Literal["lstm", "gru", "rnn"]
CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}  # RNN: tanh
Hidden = tuple[Tensor, ...]  # (h, c) for an LSTM, (h,) for a GRU or an RNN; each (L, B, H)


def run_rnn(rnn: nn.RNNBase, x: Tensor, hidden: Hidden) -> tuple[Tensor, Hidden]:
    """Call ``rnn`` with the state as a tuple whatever the cell: ``(h, c)`` or ``(h,)``."""
    out, new = rnn(x, hidden if len(hidden) == 2 else hidden[0])
    return out, (new if isinstance(new, tuple) else (new,))


def reverse_padded(x: Tensor, index: Tensor) -> Tensor:
    """Reverse the real (non-padding) prefix of every row; padding stays at the end.

    Args:
        x: (B, S, D) right-padded sequence.
        index: (B, S) long from :func:`reverse_index`. Applying it twice is the identity.

    Returns:
        (B, S, D), ``out[b, s] = x[b, len_b - 1 - s]`` for ``s < len_b`` and ``x[b, s]`` otherwise.
    """
    return x.gather(1, index.unsqueeze(2).expand_as(x))


def reverse_index(lengths: Tensor, max_len: int) -> Tensor:
    """Gather index (B, S) that reverses the first ``lengths[b]`` positions of each row."""
    pos = torch.arange(max_len, device=lengths.device).unsqueeze(0)  # (1, S)
    lengths = lengths.unsqueeze(1)  # (B, 1)
    return torch.where(pos < lengths, lengths - 1 - pos, pos)  # (B, S)


class BiRNNEncoder(nn.Module):
    """Multi-layer bidirectional RNN (LSTM, GRU or tanh RNN) over a right-padded batch, exact
    under any padding.

    A plain ``nn.LSTM(bidirectional=True)`` over a padded batch lets the backward direction read
    the padding *before* the real tokens, so PAD columns change every encoder output. The usual fix,
    ``pack_padded_sequence``, is exact but leaves cuDNN's fast padded kernels on the GPU. Here each
    layer runs two unidirectional ``nn.LSTM`` (``nn.GRU``, ``nn.RNN``) calls over the padded tensor
    instead: the forward
    direction on the batch as it is, the backward direction on the batch with each row's real
    tokens reversed by a gather index (padding stays at the end). In both, padding comes *after*
    every real token, and a recurrent layer is causal, so real positions never see padding; reversing the
    backward outputs with the same index aligns them again. Cost: two cuDNN calls per layer and two
    cheap gathers, no packing, no Python loop over the batch.

    The final hidden state of each direction is read from its outputs at the last real token
    (position ``len - 1`` forward, position 0 backward). An LSTM's final *cell* states are not
    exact (it kept stepping over padding) and are not used: the decoder is initialised from the
    hidden states only (see ``RNNSeq2Seq``).

    Args:
        cell: ``lstm``, ``gru`` or ``rnn``.
        input_size: E, size of the input embeddings.
        hidden_size: H, hidden size of each direction.
        num_layers: L_enc, stacked bidirectional layers (the input of layer l + 1 is the
            concatenation of both directions of layer l).
        dropout: dropout between layers (as in ``nn.LSTM``).
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int, dropout: float, cell: Cell = "lstm"
    ) -> None:
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        sizes = [input_size] + [2 * hidden_size] * (num_layers - 1)
        rnn = CELLS[cell]
        self.forward_layers = nn.ModuleList(rnn(size, hidden_size, batch_first=True) for size in sizes)
        self.backward_layers = nn.ModuleList(rnn(size, hidden_size, batch_first=True) for size in sizes)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, src_pad_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Encode a right-padded batch.

        Args:
            x: (B, S, E) input embeddings.
            src_pad_mask: (B, S) bool, True at padding; the real tokens of a row must come first.

        Returns:
            outputs (B, S, 2H), zero at padding, and the final hidden states (L_enc, B, 2H):
            [forward after the last real token; backward after the first token] of every layer.
        """
        batch, src_len, _ = x.shape
        lengths = (~src_pad_mask).sum(dim=1)  # (B,)
        index = reverse_index(lengths, src_len)  # (B, S)
        last = (lengths - 1).clamp(min=0).view(batch, 1, 1).expand(batch, 1, self.hidden_size)
        finals = []
        for layer, (fwd, bwd) in enumerate(
            zip(self.forward_layers, self.backward_layers, strict=True)
        ):
            if layer > 0:
                x = self.dropout(x)
            out_f, _ = fwd(x)  # (B, S, H)
            out_b = reverse_padded(bwd(reverse_padded(x, index))[0], index)  # (B, S, H)
            final_f = out_f.gather(1, last).squeeze(1)  # (B, H)
            finals.append(torch.cat([final_f, out_b[:, 0]], dim=1))  # (B, 2H)
            x = torch.cat([out_f, out_b], dim=2)  # (B, S, 2H)
        outputs = x.masked_fill(src_pad_mask.unsqueeze(2), 0.0)  # (B, S, 2H)
        return outputs, torch.stack(finals)  # (B, S, 2H), (L_enc, B, 2H)


class ResidualRNN(nn.Module):
    """Stacked single-layer LSTMs (GRUs, RNNs); from the second layer on, a layer's input is added
    to its output (residual connections between layers, Wu et al. 2016, sec. 3.1).

    Why: in a plain stacked decoder the attention query is the output of the *top* layer, which
    sees the previous target word only through every layer below it. Measured on a synthetic
    pair with clause reordering (BPE 500, sentences of 5-40 words, 60 Adam steps at 2e-3,
    validation NLL): a one-layer decoder 2.0 with attention moving along the source, a plain
    two-layer ``nn.LSTM`` decoder 4.5 with its attention on one source position for the whole
    output (a minimal standalone model: 1.45 with one decoder layer, 4.2 with two). With the
    lstm-small recipe (input feeding on) after 100 steps: 1.57 stacked, 1.43 residual.

    The state is a tuple of (L, B, H) tensors, ``(h, c)`` for an LSTM and ``(h,)`` for a GRU or
    an RNN; dropout is applied between layers.

    Args:
        cell: ``lstm``, ``gru`` or ``rnn``.
        input_size: size of the first layer's input.
        hidden_size: H.
        num_layers: L.
        dropout: dropout on the input of every layer but the first.
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int, dropout: float, cell: Cell = "lstm"
    ) -> None:
        super().__init__()
        sizes = [input_size] + [hidden_size] * (num_layers - 1)
        self.layers = nn.ModuleList(CELLS[cell](size, hidden_size, batch_first=True) for size in sizes)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, hidden: Hidden) -> tuple[Tensor, Hidden]:
        """(B, T, input_size), N x (L, B, H) -> (B, T, H), the new state."""
        finals = []
        for layer, rnn in enumerate(self.layers):
            inp = x if layer == 0 else self.dropout(x)
            out, state = run_rnn(rnn, inp, tuple(t[layer : layer + 1] for t in hidden))
            x = out if layer == 0 else out + x  # (B, T, H)
            finals.append(state)
        return x, tuple(torch.cat(parts) for parts in zip(*finals, strict=True))


class Attention(nn.Module):
    """Global attention over the encoder memory with one of three score functions.

    With decoder query h_t (B, T, H) and memory vectors m_s (B, S, H):

    * ``luong_dot``:      score(h_t, m_s) = h_t . m_s                          (Luong 2015, eq. 8)
    * ``luong_general``:  score(h_t, m_s) = h_t . (W_a m_s)                    (Luong 2015, eq. 8)
    * ``bahdanau``:       score(h_t, m_s) = v_a . tanh(W_q h_t + W_k m_s)      (Bahdanau 2015, A.1.2)

    With ``scaled`` the ``luong_general`` score is divided by sqrt(H), as the Transformer's
    dot-product attention is (Vaswani et al. 2017, sec. 3.2.1). Unscaled, a sum of H products of
    states near +-1 has a spread of several units at initialisation, so the softmax starts almost
    one-hot on an arbitrary position and its gradient is small: the attention can stay there.
    ``luong_dot`` is left unscaled: it has no weights that could grow back to a sharp
    attention, and bounded states divided by sqrt(H) stayed near uniform (the alignment test of
    tests/test_rnn.py: 0.52-0.54 of the words on an aligned position with the LSTM, against
    >= 0.8 unscaled).

    a_t = softmax_s(score) with padding masked out (Luong eq. 7), context c_t = sum_s a_ts m_s.
    The part that depends on the source only (W_a m_s, W_k m_s) is computed once per sentence by
    :meth:`keys`, so that a decoding step costs O(S H) (O(S H) + H^2 for ``bahdanau``).

    The additive score is used in the Luong architecture (query = the current decoder state h_t,
    context combined after the RNN step); in Bahdanau's original the context enters the RNN input,
    which is what input feeding does here.

    Args:
        kind: the score function.
        hidden_size: H, size of the query and of the memory vectors.
        scaled: divide the ``luong_general`` score by sqrt(H).
    """

    def __init__(self, kind: AttentionType, hidden_size: int, scaled: bool = False) -> None:
        super().__init__()
        self.kind = kind
        self.score_scale = hidden_size**-0.5 if scaled and kind == "luong_general" else 1.0
        self.key_proj: nn.Linear | None = None
        self.query_proj: nn.Linear | None = None
        self.score_proj: nn.Linear | None = None
        if kind == "luong_general":
            self.key_proj = nn.Linear(hidden_size, hidden_size, bias=False)  # W_a
        elif kind == "bahdanau":
            self.key_proj = nn.Linear(hidden_size, hidden_size, bias=False)  # W_k
            self.query_proj = nn.Linear(hidden_size, hidden_size)  # W_q (+ bias)
            self.score_proj = nn.Linear(hidden_size, 1, bias=False)  # v_a

    def keys(self, memory: Tensor) -> Tensor:
        """Source-side part of the score, once per sentence: (B, S, H) -> (B, S, H)."""
        return memory if self.key_proj is None else self.key_proj(memory)

    def forward(
        self, query: Tensor, keys: Tensor, memory: Tensor, src_pad_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Attend from every query position to the source.

        Args:
            query: (B, T, H) decoder states h_t.
            keys: (B, S, H) from :meth:`keys`.
            memory: (B, S, H) values.
            src_pad_mask: (B, S) bool, True at padding (at least one real token per row).

        Returns:
            context (B, T, H) and attention weights (B, T, S).
        """
        if self.score_proj is not None:  # bahdanau
            assert self.query_proj is not None
            q = self.query_proj(query)  # (B, T, H)
            hidden = torch.tanh(q.unsqueeze(2) + keys.unsqueeze(1))  # (B, T, S, H)
            scores = self.score_proj(hidden).squeeze(3)  # (B, T, S)
        else:
            scores = torch.bmm(query, keys.transpose(1, 2))  # (B, T, S)
            if self.score_scale != 1.0:
                scores = scores * self.score_scale
        scores = scores.masked_fill(src_pad_mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores.float(), dim=2).to(memory.dtype)  # (B, T, S)
        context = torch.bmm(weights, memory)  # (B, T, H)
        return context, weights


@dataclass
class RNNState:
    """Everything a decoding step needs, per row (rows are sentences, or sentences x beams).

    Attributes:
        memory: (B, S, H) encoder outputs projected to the decoder size (zero at padding).
        keys: (B, S, H) source side of the attention score, computed once per sentence.
        src_pad_mask: (B, S) bool, True at padding.
        hidden: decoder state, ``(h, c)`` for an LSTM or ``(h,)`` for a GRU/RNN, each
            (L_dec, B, H): the batch is dimension 1.
        attentional: (B, H) the previous attentional vector h~_{t-1} (zeros before the first
            step); fed to the next input when input feeding is on.
        attention: (B, S) attention weights of the last ``decode_step`` (None before the first),
            kept for visualisation.
    """

    memory: Tensor
    keys: Tensor
    src_pad_mask: Tensor
    hidden: Hidden
    attentional: Tensor
    attention: Tensor | None = None

    def index_select(self, indices: Tensor, group: int = 1) -> RNNState:
        """Rows ``indices`` (B',) of the state: reorder, repeat or drop rows (beam search).
        Every row keeps its own copy of the memory, so the beam grouping ``group`` is unused."""
        return RNNState(
            memory=self.memory.index_select(0, indices),
            keys=self.keys.index_select(0, indices),
            src_pad_mask=self.src_pad_mask.index_select(0, indices),
            hidden=tuple(t.index_select(1, indices) for t in self.hidden),
            attentional=self.attentional.index_select(0, indices),
            attention=None if self.attention is None else self.attention.index_select(0, indices),
        )


class RNNSeq2Seq(Seq2SeqModule):
    """Recurrent encoder-decoder with global attention (Luong et al. 2015), optional input feeding,
    and LSTM, GRU or plain (Elman, tanh) RNN cells in both the encoder and the decoder.

    Encoder: embedding -> bidirectional RNN (exact under padding, see :class:`BiRNNEncoder`) ->
    memory m_s = [h_fwd_s; h_bwd_s] (B, S, H) (or W_m [h_fwd_s; h_bwd_s] without
    ``split_directions``).

    Bridge: decoder layer l starts from ``tanh(W_l [h_fwd; h_bwd] + b_l)``, split in two for an
    LSTM (``h_0`` and ``c_0``) and used whole as ``h_0`` for a GRU or an RNN (which have no cell
    state), where [h_fwd; h_bwd] are the final hidden states of encoder layer
    ``l + L_enc - L_dec`` (clamped at 0: the top layers are aligned; equal depths map layer l to
    layer l). Starting from the encoder's summary rather than from zeros helps short training
    runs; only hidden states are used because they are exact under padding without packing (an
    LSTM's cell states are not).

    Decoder (Luong 2015, eqs. 5-6): h_t = RNN(x_t, h_{t-1}) with x_t = E y_{t-1}, or with input
    feeding x_t = [E y_{t-1}; h~_{t-1}] (Luong sec. 3.3); c_t = attention(h_t, memory);
    h~_t = tanh(W_c [c_t; h_t]); p(y_t | y_<t, x) = softmax(W_s h~_t + b_s).

    Without input feeding the decoder RNN runs over the whole target in one call and attention is
    batched over all steps (the fast path); with input feeding h~_{t-1} is an input of step t, so
    teacher forcing loops over time as well.

    Args:
        vocab_size: size of the joint subword vocabulary (linked from the data module).
        embed_dim: E, size of the token embeddings.
        hidden_size: H, size of the memory vectors, of the decoder and of the attention; with
            ``split_directions`` each encoder direction has H/2 units, else H.
        encoder_layers: stacked bidirectional encoder layers.
        decoder_layers: stacked decoder layers.
        attention: score function: ``bahdanau`` (additive), ``luong_dot`` or ``luong_general``.
        input_feeding: feed the previous attentional vector into the next decoder input.
        dropout: dropout on embeddings, between recurrent layers and on the attentional vector.
        scale_embeddings: multiply the input embeddings by sqrt(E), as the Transformer does. The
            embeddings start at N(0, 1/E), the scale a tied output matrix needs, so unscaled
            inputs are ~E^-1/2 per feature and barely move the gates at first. Measured on
            Multi30k de-en (lstm-small, 250 steps): validation perplexity 57 scaled vs 122 not.
        share_embeddings: one embedding matrix for source and target (joint vocabulary).
        tie_output: use the target embedding matrix as the output projection (needs
            ``embed_dim == hidden_size``).
        residual_decoder: residual connections between the decoder's layers
            (:class:`ResidualRNN`); without them a stacked decoder's attention locks onto one
            source position early in training and stays there.
        cell: ``lstm`` (the default), ``gru`` or ``rnn`` (Elman, tanh), in the encoder and the
            decoder alike.
        split_directions: each encoder direction has H/2 units and the memory is their
            concatenation, as in Luong et al.'s and OpenNMT's bidirectional encoders. Without it
            (the model before this option) each direction has H units and a linear map
            W_m (2H -> H) makes the memory; measured on a synthetic pair with reordering (BPE 500,
            1+1 layers, 300 Adam steps, validation NLL): a minimal attention LSTM reaches 1.13
            with the concatenation and stays on a plateau at 1.23 with the projection added, where
            mt's model was at 1.26.
        scale_attention: divide the ``luong_general`` score by sqrt(H)
            (:class:`Attention`). Measured on Multi30k de-en (seed 1, 240 steps, one thread,
            validation BLEU unscaled -> scaled): rnn-small 8.3 -> 24.7, lstm-small 18.4 -> 23.0.
            Unscaled, a fresh rnn-small puts 0.6 of its attention on one arbitrary position
            (20-token sources; uniform is 0.05) and stays near one-hot (entropy 0.003 after
            training); an LSTM's smaller states start it near uniform.
        **kwargs: the arguments of :class:`mt.models.module.Seq2SeqModule` (label_smoothing, optimizer,
            lr_scheduler, beam_size, length_penalty, max_len_a, max_len_b).
    """

    # Checkpoints from before these options existed were trained without them.
    checkpoint_defaults = {
        "scale_embeddings": False,
        "residual_decoder": False,
        "split_directions": False,
        "scale_attention": False,
    }

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 512,
        hidden_size: int = 512,
        encoder_layers: int = 2,
        decoder_layers: int = 2,
        attention: AttentionType = "luong_general",
        input_feeding: bool = True,
        dropout: float = 0.3,
        scale_embeddings: bool = True,
        share_embeddings: bool = True,
        tie_output: bool = False,
        residual_decoder: bool = True,
        cell: Cell = "lstm",
        split_directions: bool = True,
        scale_attention: bool = True,
        **kwargs: Any,
    ) -> None:
        if cell not in CELLS:
            raise ValueError(
                f"cell={cell!r} is not supported; choose one of " + ", ".join(map(repr, CELLS))
            )
        if attention not in ATTENTION_TYPES:
            raise ValueError(
                f"attention={attention!r} is not supported; choose one of "
                + ", ".join(repr(a) for a in ATTENTION_TYPES)
            )
        if tie_output and embed_dim != hidden_size:
            raise ValueError(
                f"tie_output=True needs embed_dim == hidden_size, got embed_dim={embed_dim} and "
                f"hidden_size={hidden_size}: make them equal or set tie_output=False"
            )
        for name, value in [
            ("vocab_size", vocab_size),
            ("embed_dim", embed_dim),
            ("hidden_size", hidden_size),
            ("encoder_layers", encoder_layers),
            ("decoder_layers", decoder_layers),
        ]:
            require(f"model.init_args.{name}", value, value >= 1, ">= 1")
        require("model.init_args.dropout", dropout, 0.0 <= dropout < 1.0, "in [0, 1)")
        if split_directions:
            require("model.init_args.hidden_size", hidden_size, hidden_size % 2 == 0,
                    "even with split_directions (H/2 units per encoder direction)")  # fmt: skip
        super().__init__(vocab_size=vocab_size, **kwargs)
        self.input_feeding = input_feeding
        self.hidden_size = hidden_size
        self.embed_scale = math.sqrt(embed_dim) if scale_embeddings else 1.0
        self.encoder_layers, self.decoder_layers = encoder_layers, decoder_layers

        self.src_embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.tgt_embed = (
            self.src_embed
            if share_embeddings
            else nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        )
        for emb in {id(m): m for m in [self.src_embed, self.tgt_embed]}.values():
            nn.init.normal_(emb.weight, std=embed_dim**-0.5)
            with torch.no_grad():
                emb.weight[PAD_ID].zero_()
        self.dropout = Dropout(dropout)

        self.cell = cell
        self.n_states = n_states = 2 if cell == "lstm" else 1  # (h, c) or h
        # Each direction's width; both together (the encoder output size) is enc_out.
        enc_dir = hidden_size // 2 if split_directions else hidden_size
        enc_out = 2 * enc_dir
        self.encoder = BiRNNEncoder(embed_dim, enc_dir, encoder_layers, dropout, cell)
        self.memory_proj = None if split_directions else nn.Linear(enc_out, hidden_size)  # W_m
        # Bridge: one (enc_out -> N H) affine map per decoder layer, one batched matmul for all.
        self.bridge_weight = nn.Parameter(
            torch.empty(decoder_layers, enc_out, n_states * hidden_size)
        )
        self.bridge_bias = nn.Parameter(torch.empty(decoder_layers, 1, n_states * hidden_size))
        bound = 1.0 / math.sqrt(enc_out)
        nn.init.uniform_(self.bridge_weight, -bound, bound)
        nn.init.uniform_(self.bridge_bias, -bound, bound)
        bridge_from = [
            max(0, layer + encoder_layers - decoder_layers) for layer in range(decoder_layers)
        ]
        self.register_buffer("bridge_from", torch.tensor(bridge_from), persistent=False)

        decoder_input = embed_dim + hidden_size if input_feeding else embed_dim
        self.decoder_rnn: nn.Module
        if residual_decoder:
            self.decoder_rnn = ResidualRNN(decoder_input, hidden_size, decoder_layers, dropout, cell)
        else:  # a plain stacked nn.LSTM: what checkpoints from before ResidualRNN hold
            self.decoder_rnn = CELLS[cell](
                decoder_input,
                hidden_size,
                num_layers=decoder_layers,
                batch_first=True,
                dropout=dropout if decoder_layers > 1 else 0.0,
            )
        # PyTorch's default LSTM initialisation, forget-gate bias included: a forget bias of 1
        # (Jozefowicz et al. 2015) made every encoder state carry more of the sentence, the memory
        # vectors more alike, and slowed learning where to attend (synthetic pair, 60 Adam steps:
        # validation NLL 2.8 with it, 2.0 without).
        self.attention = Attention(attention, hidden_size, scaled=scale_attention)
        self.combine = nn.Linear(2 * hidden_size, hidden_size, bias=False)  # W_c
        self.output_proj = nn.Linear(hidden_size, vocab_size)  # W_s, b_s
        if tie_output:
            self.output_proj.weight = self.tgt_embed.weight

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The cell decides the weights' shapes: refuse in one line before load_state_dict would
        # fail with a size mismatch per weight. Checkpoints without the option hold an LSTM.
        saved = checkpoint.get("hyper_parameters", {}).get("cell", "lstm")
        if saved != self.cell:
            raise CheckpointError(
                f"the checkpoint holds a model with cell={saved!r}, this model has "
                f"cell={self.cell!r}: set --model.init_args.cell {saved}"
            )
        super().on_load_checkpoint(checkpoint)

    def option_applies(self, name: str) -> bool:
        # Only the luong_general score is scaled.
        return not (name == "scale_attention" and self.attention.kind != "luong_general")

    def num_parameters(self) -> int:
        """Number of trainable parameters, shared (tied) matrices counted once."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # -- encoder ----------------------------------------------------------------------------

    def encode(self, src: Tensor, src_pad_mask: Tensor) -> RNNState:
        """Encode a batch and build the decoder's initial state.

        Args:
            src: (B, S) source ids (subwords then EOS), right-padded with PAD.
            src_pad_mask: (B, S) bool, True at padding.

        Returns:
            The state before the first decoding step (the first input is BOS).
        """
        x = self.dropout(self.src_embed(src) * self.embed_scale)  # (B, S, E)
        # H_e = H/2 per direction (or H with a projection: split_directions false)
        outputs, finals = self.encoder(x, src_pad_mask)  # (B, S, 2H_e), (L_enc, B, 2H_e)
        memory = outputs  # (B, S, H), zero at padding
        if self.memory_proj is not None:
            memory = self.memory_proj(outputs).masked_fill(src_pad_mask.unsqueeze(2), 0.0)
        finals = finals.index_select(0, self.bridge_from)  # (L_dec, B, 2H_e)
        init = torch.tanh(
            torch.baddbmm(self.bridge_bias, finals, self.bridge_weight)
        )  # (L_dec, B, N H)
        hidden = tuple(t.contiguous() for t in init.chunk(self.n_states, dim=2))  # N x (L_dec, B, H)
        batch = src.size(0)
        return RNNState(
            memory=memory,
            keys=self.attention.keys(memory),  # (B, S, H)
            src_pad_mask=src_pad_mask,
            hidden=hidden,
            attentional=memory.new_zeros(batch, self.hidden_size),  # (B, H)
        )

    # -- decoder ----------------------------------------------------------------------------

    def _attend(self, rnn_out: Tensor, state: RNNState) -> tuple[Tensor, Tensor]:
        """h_t (B, T, H) -> attentional vectors h~_t (B, T, H) (after dropout), weights (B, T, S)."""
        context, weights = self.attention(rnn_out, state.keys, state.memory, state.src_pad_mask)
        attentional = torch.tanh(self.combine(torch.cat([context, rnn_out], dim=2)))  # (B, T, H)
        return self.dropout(attentional), weights

    def _run_decoder(self, x: Tensor, hidden: Hidden) -> tuple[Tensor, Hidden]:
        """Decoder RNN over (B, T, input) from ``hidden``: outputs (B, T, H) and the new state."""
        if isinstance(self.decoder_rnn, nn.RNNBase):
            return run_rnn(self.decoder_rnn, x, hidden)
        return self.decoder_rnn(x, hidden)

    def _step(self, embedded: Tensor, state: RNNState) -> tuple[Tensor, Tensor, Hidden]:
        """One decoder step from embedded inputs (B, E): h~_t (B, H), weights (B, S), state."""
        x = embedded
        if self.input_feeding:
            x = torch.cat([embedded, state.attentional], dim=1)  # (B, E + H)
        rnn_out, hidden = self._run_decoder(x.unsqueeze(1), state.hidden)  # (B, 1, H)
        attentional, weights = self._attend(rnn_out, state)  # (B, 1, H), (B, 1, S)
        return attentional.squeeze(1), weights.squeeze(1), hidden

    def decode(self, tgt_in: Tensor, state: RNNState) -> Tensor:
        """Teacher-forced logits (B, T, V) for the inputs ``tgt_in`` (B, T) (BOS + ids, padded).

        ``state`` is not modified, so one encoding can serve several calls.
        """
        embedded = self.dropout(self.tgt_embed(tgt_in) * self.embed_scale)  # (B, T, E)
        if not self.input_feeding:
            rnn_out, _ = self._run_decoder(embedded, state.hidden)  # (B, T, H), one call
            attentional, _ = self._attend(rnn_out, state)  # (B, T, H)
        else:
            steps = []
            for t in range(tgt_in.size(1)):
                out, _, hidden = self._step(embedded[:, t], state)  # (B, H)
                state = replace(state, hidden=hidden, attentional=out)
                steps.append(out)
            attentional = torch.stack(steps, dim=1)  # (B, T, H)
        return self.output_proj(attentional)  # (B, T, V)

    def decode_step(self, prev_tokens: Tensor, state: RNNState) -> tuple[Tensor, RNNState]:
        """One incremental step: previous tokens (B,) (BOS first) -> float32 log-probs (B, V).

        Returns the next state (a new object; ``state`` is not modified) whose ``attention`` holds
        this step's attention weights (B, S).
        """
        embedded = self.dropout(self.tgt_embed(prev_tokens) * self.embed_scale)  # (B, E)
        attentional, weights, hidden = self._step(embedded, state)  # (B, H), (B, S)
        logits = self.output_proj(attentional)  # (B, V)
        log_probs = F.log_softmax(logits.float(), dim=-1)  # (B, V)
        return log_probs, replace(state, hidden=hidden, attentional=attentional, attention=weights)

    def flop_terms(self) -> list[FlopTerm]:
        """Forward FLOP terms, any cell, per unit of a batch's length statistics; the derivation
        is in :mod:`mt.eval.throughput`'s docstring. Sizes are read from the layers' weight shapes."""
        width = int(self.hidden_size)  # H of the memory, query and context
        src_linear = linear_macs([self.memory_proj, self.attention.key_proj])
        tgt_linear = linear_macs([self.attention.query_proj, self.combine])
        # Score (dot product, or v_a . tanh(.) for bahdanau) + context: H + H per (t, s) pair.
        pair_macs = 2 * width
        return [
            FlopTerm("encoder_rnn", "src", 2.0 * rnn_macs(self.encoder)),
            FlopTerm("memory_and_key_projections", "src", 2.0 * src_linear),
            FlopTerm("bridge", "sentences", 2.0 * self.bridge_weight.numel()),
            FlopTerm("decoder_rnn", "tgt", 2.0 * rnn_macs(self.decoder_rnn)),
            FlopTerm("query_and_combine_projections", "tgt", 2.0 * tgt_linear),
            FlopTerm("output_projection", "tgt", 2.0 * self.output_proj.weight.numel()),
            FlopTerm("attention", "src_tgt", 2.0 * pair_macs),
        ]
