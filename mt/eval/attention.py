"""Cross-attention of a trained model: heatmaps of greedy translations and a health measure.

Attention heatmaps (:func:`attention_map`) decode a sentence greedily and record, per output
token, the weights over the source subwords: for :class:`mt.models.lstm.LSTMSeq2Seq` the weights its
``decode_step`` returns in ``state.attention``; for :class:`mt.models.transformer.TransformerSeq2Seq`,
whose attention runs inside ``F.scaled_dot_product_attention`` and returns no weights, a forward
hook on the last decoder layer's cross-attention recomputes ``softmax(q k^T / sqrt(d_head))``
from the layer's own inputs (the same formula and mask as SDPA) and averages the heads. Models
with neither give no heatmap.

:func:`attention_health` sums the maps of a few sentences into two numbers (entropy relative to
uniform, and how often the most-attended source position stays put) that show a collapsed
attention; :func:`pick_lines` chooses fixed lines spread over the source lengths. Used by
:class:`mt.eval.reporting.EvalReport` and ``mt compare``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer

__all__ = [
    "AttentionHealth",
    "AttentionMap",
    "attention_figure",
    "attention_health",
    "attention_map",
    "pick_lines",
]


# --------------------------------------------------------------------------------------------
# Attention maps
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttentionMap:
    """Cross-attention of one greedily decoded sentence.

    Attributes:
        source_tokens: the source subwords as text, then ``</s>`` (S entries).
        output_tokens: the generated subwords as text, ``</s>`` last if generated (T entries).
        weights: (T, S) float array; row t is output token t's attention over the source (sums
            to 1).
        kind: where the weights come from, e.g. ``"LSTM attention"``.
    """

    source_tokens: list[str]
    output_tokens: list[str]
    weights: np.ndarray
    kind: str


def _label(text: str) -> str:
    """A tick label: ``▁`` for a bare word boundary, ``<0x04>`` for a control character (a
    byte-fallback piece), the text otherwise."""
    if not text:
        return "▁"
    return "".join(c if c.isprintable() else f"<0x{ord(c):02X}>" for c in text)


def _piece_texts(tokenizer: Tokenizer, ids: Sequence[int]) -> list[str]:
    """Each id as its own detokenized text (``</s>`` for EOS; see :func:`_label`)."""
    texts = tokenizer.decode([[i] for i in ids]) if ids else []
    return ["</s>" if i == EOS_ID else _label(t) for i, t in zip(ids, texts, strict=True)]


def _cross_attention_hook(model: nn.Module) -> tuple[nn.Module | None, list[Tensor]]:
    """The last Transformer cross-attention module of ``model`` (None if it has none) and the
    list its hook writes head-averaged weights (B, T, S) into."""
    from mt.models.transformer import CrossAttention

    modules = [m for m in model.modules() if isinstance(m, CrossAttention)]
    return (modules[-1] if modules else None), []


def _transformer_weights(module: nn.Module, args: tuple[Any, ...]) -> Tensor:
    """Recompute SDPA's weights from the inputs of ``CrossAttention.forward(x, memory_kv,
    memory_mask[, group])``: softmax(q k^T / sqrt(Dh)) with the boolean mask (True = attend),
    the ``group`` rows of a memory row attended together as there, head mean -> (B, T, S)."""
    x, memory_kv, memory_mask = args[:3]
    group = args[3] if len(args) > 3 else 1
    batch, length, _ = x.shape
    q = module.queries(x, group)  # (M, H, group * T, Dh)
    keys = memory_kv[0]  # (M, H, S, Dh)
    scores = q @ keys.transpose(-2, -1) / math.sqrt(q.size(-1))  # (M, H, group * T, S)
    scores = scores.float().masked_fill(~memory_mask, float("-inf"))
    weights = scores.softmax(dim=-1).mean(dim=1)  # (M, group * T, S)
    return weights.view(batch, length, -1)  # (B, T, S)


@torch.no_grad()
def attention_map(
    model: nn.Module, tokenizer: Tokenizer, line: str, max_len: int | None = None
) -> AttentionMap | None:
    """Greedy-decode ``line`` and record the cross-attention of every output token.

    Returns None when ``model`` exposes no attention weights (see the module docstring) or the
    line is empty. ``max_len`` caps the output (default: the model's ``max_len_a * S +
    max_len_b``). The model is put in eval mode for the call and restored afterwards.
    """
    ids = tokenizer.encode([line.strip()])[0] if line.strip() else []
    if not ids:
        return None
    src_ids = [*ids, EOS_ID]
    device = next(model.parameters()).device
    src = torch.tensor([src_ids], dtype=torch.long, device=device)  # (1, S)
    src_pad_mask = torch.zeros_like(src, dtype=torch.bool)  # (1, S)
    if max_len is None:
        a, b = float(getattr(model, "max_len_a", 1.2)), float(getattr(model, "max_len_b", 10))
        max_len = max(1, int(a * len(src_ids) + b))

    cross, captured = _cross_attention_hook(model)
    handle = None
    if cross is not None:
        handle = cross.register_forward_hook(
            lambda module, args, output: captured.append(_transformer_weights(module, args))
        )
    was_training = model.training
    model.eval()
    try:
        state = model.encode(src, src_pad_mask)
        prev = torch.tensor([BOS_ID], dtype=torch.long, device=device)
        rows: list[Tensor] = []
        out: list[int] = []
        kind = ""
        for _ in range(max_len):
            captured.clear()
            log_probs, state = model.decode_step(prev, state)  # (1, V)
            lstm_weights = getattr(state, "attention", None)
            if lstm_weights is not None:
                rows.append(lstm_weights[0].float())  # (S,)
                kind = "decoder attention weights"
            elif captured:
                rows.append(captured[-1][0, -1])  # (S,)
                kind = "last decoder layer's cross-attention, mean over heads"
            else:
                return None
            log_probs = log_probs.float().clone()
            log_probs[:, PAD_ID] = float("-inf")
            log_probs[:, BOS_ID] = float("-inf")
            token = int(log_probs.argmax(dim=-1))
            out.append(token)
            if token == EOS_ID:
                break
            prev = torch.tensor([token], dtype=torch.long, device=device)
    finally:
        if handle is not None:
            handle.remove()
        model.train(was_training)
    weights = torch.stack(rows).cpu().numpy()  # (T, S)
    return AttentionMap(
        _piece_texts(tokenizer, src_ids), _piece_texts(tokenizer, out), weights, kind
    )


@dataclass(frozen=True)
class AttentionHealth:
    """Whether cross-attention looks along the source or has collapsed onto one position.

    Attributes:
        entropy: mean over output tokens of H(a_t) / log S: 1 is uniform over the source, 0 all
            weight on one position. A collapsed model sits near 0 *and* has ``same_argmax`` near 1.
        same_argmax: share of output tokens (after the first) whose most-attended source
            position is the previous token's: near 1 when attention stays on one position for the
            whole output, lower when it moves along the source as the translation proceeds.
        sentences: sentences measured (sources of one subword are skipped).
        steps: output tokens measured.
    """

    entropy: float
    same_argmax: float
    sentences: int
    steps: int


def attention_health(
    model: nn.Module, tokenizer: Tokenizer, lines: Sequence[str]
) -> AttentionHealth | None:
    """:class:`AttentionHealth` of greedy translations of ``lines`` (see :func:`attention_map`:
    the LSTM's weights, or the Transformer's last-layer cross-attention averaged over heads).

    Sources of one subword (two positions with EOS) are skipped: they can only look at the word
    or at EOS. None when the model exposes no attention weights or no source is longer.
    """
    entropy_sum, same, moves, sentences, steps = 0.0, 0, 0, 0, 0
    for line in lines:
        amap = attention_map(model, tokenizer, line)
        if amap is None or amap.weights.shape[1] < 3:
            continue
        w = amap.weights.astype(np.float64)  # (T, S)
        ent = -(w * np.log(np.clip(w, 1e-12, None))).sum(axis=1) / math.log(w.shape[1])
        argmax = w.argmax(axis=1)
        entropy_sum += float(ent.sum())
        same += int((argmax[1:] == argmax[:-1]).sum())
        moves += len(argmax) - 1
        sentences += 1
        steps += len(argmax)
    if not sentences:
        return None
    return AttentionHealth(
        entropy=entropy_sum / steps,
        same_argmax=same / moves if moves else float("nan"),
        sentences=sentences,
        steps=steps,
    )


def attention_figure(amap: AttentionMap, title: str) -> Any:
    """A matplotlib ``Figure`` (Agg canvas, no pyplot state) of the heatmap, with labels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_out, n_src = amap.weights.shape
    fig = Figure(figsize=(min(18.0, 2.5 + 0.28 * n_src), min(18.0, 2.0 + 0.28 * n_out)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(amap.weights, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n_src), amap.source_tokens, rotation=90, fontsize=8)
    ax.set_yticks(range(n_out), amap.output_tokens, fontsize=8)
    ax.set_xlabel("source subwords")
    ax.set_ylabel("output subwords (greedy)")
    ax.set_title(f"{title}\n{amap.kind}", fontsize=10)
    fig.colorbar(image, ax=ax, label="attention weight", fraction=0.04)
    fig.tight_layout()
    return fig


def _figure_rgb(fig: Any) -> np.ndarray:
    """Render a figure to an (H, W, 3) uint8 array."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


# --------------------------------------------------------------------------------------------
# Fixed lines
# --------------------------------------------------------------------------------------------


def pick_lines(lengths: Sequence[int], n: int) -> list[int]:
    """``n`` line indices spread evenly over the range of ``lengths`` (shortest to longest).

    Lines are ordered by (length, index) and the ones at evenly spaced ranks are taken; the
    result is sorted and depends only on ``lengths``, so the same lines come back every epoch.
    """
    if n <= 0 or not lengths:
        return []
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    if n >= len(order):
        return sorted(order)
    if n == 1:
        return [order[len(order) // 2]]
    ranks = {round(j * (len(order) - 1) / (n - 1)) for j in range(n)}
    return sorted(order[r] for r in ranks)
