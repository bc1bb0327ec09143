"""Gradient flow: how strongly the loss of each target token depends on each source position.

The direct test of "vanishing gradients": if a recurrent model's gradients vanish, the loss of a
target token barely moves with the embeddings of source tokens far from it, and the measured
norm falls with distance (exponentially for a plain RNN); attention and a Transformer's direct
paths should keep it flat.

Definition (one sentence pair, the model in eval mode, no dropout, in float32 whatever precision it
was trained at)::

    g(i, j) = || d loss_i / d e_j ||_2

* ``loss_i = -log p(y_i | y_<i, x)``: the cross-entropy of target token i (0-based position in
  ``tgt_out``, EOS included), without label smoothing;
* ``e_j``: the vector the model's source embedding lookup (``src_embed``) returns at source
  position j (0-based in ``src``, EOS included), before any scaling or position encoding: the
  gradient that this occurrence of the token sends to its embedding row;
* offset ``d = i - j`` (positive: the source token comes before the target position) and
  distance ``|d|``, in subword positions. Source and target positions are compared as if the
  sentences were aligned along the diagonal, which is roughly true for de-en.

For every offset (and every distance) the instrument reports the mean of ``g`` over all real
(sentence, i, j) pairs with it, and their count. Padding never counts. One number sums a curve
up: ``decay_per_position``, the factor by which the mean norm shrinks per position of distance
(an exponential fitted from distance 1 on, see :func:`decay_per_position`).

The core (:func:`gradient_norms`, :class:`GradientFlow`) takes any per-token losses computed from
any inputs in one autograd graph, so a model with a known answer (a linear recurrence, see the
tests) can check it; :func:`seq2seq_losses` provides them for mt's models through a forward hook on
``src_embed`` (no change to the models). ``mt gradients`` (:func:`run`) measures checkpoints, their
architectures at initialisation, or configs at initialisation, and writes JSON and a log-scale plot.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import shlex
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mt.data.batching import Batch, collate
from mt.data.tokenizer import Tokenizer
from mt.models.module import CheckpointError, Seq2SeqModule, load_checkpoint

__all__ = ["GradientFlow", "decay_per_position", "gradient_norms", "measure", "seq2seq_losses"]

#: Offsets/distances with fewer (sentence, i, j) pairs than this are left out of the plot (the
#: JSON has them all): a mean over a handful of long sentences is noise.
MIN_PAIRS_PLOTTED = 20

# --------------------------------------------------------------------------------------------
# The core: per-token losses and inputs -> gradient norms -> means per offset
# --------------------------------------------------------------------------------------------


def gradient_norms(losses: Tensor, inputs: Tensor, tgt_real: Tensor) -> Tensor:
    """``g[b, i, j] = || d losses[b, i] / d inputs[b, j] ||_2`` by one backward pass per target
    position.

    The rows of a batch must be independent (row b's losses depend on row b's inputs only, as in
    a seq2seq model without batch statistics): the gradient of ``losses[:, i].sum()`` then holds
    every row's own gradient at once.

    Args:
        losses: (B, T) per-token losses, computed from ``inputs`` in one autograd graph.
        inputs: (B, S, D) the inputs (a leaf or any tensor in the graph).
        tgt_real: (B, T) bool, True at the target positions to measure (not padding).

    Returns:
        (B, T, S) float32 norms; zero where ``tgt_real`` is False.
    """
    batch, tgt_len = losses.shape
    norms = torch.zeros(batch, tgt_len, inputs.size(1), device=inputs.device)
    last = int(tgt_real.any(dim=0).nonzero().max()) if tgt_real.any() else -1
    for i in range(last + 1):
        (grad,) = torch.autograd.grad(
            losses[:, i].sum(), inputs, retain_graph=i < last, allow_unused=True
        )
        if grad is not None:  # None: no input reaches this position (e.g. a causal model's start)
            norms[:, i] = grad.float().norm(dim=2)  # (B, S)
    return norms * tgt_real.unsqueeze(2)


@dataclass
class GradientFlow:
    """Sums and counts of gradient norms per offset ``d = i - j``, accumulated over batches."""

    sums: dict[int, float] = field(default_factory=dict)
    counts: dict[int, int] = field(default_factory=dict)

    def add(self, norms: Tensor, tgt_real: Tensor, src_real: Tensor) -> None:
        """Add (B, T, S) norms; pairs count where both ``tgt_real`` (B, T) and ``src_real``
        (B, S) are True."""
        tgt_len, src_len = norms.shape[1:]
        i = torch.arange(tgt_len, device=norms.device).view(tgt_len, 1)
        j = torch.arange(src_len, device=norms.device).view(1, src_len)
        offset = (i - j).expand(norms.shape)  # (B, T, S)
        real = tgt_real.unsqueeze(2) & src_real.unsqueeze(1)  # (B, T, S)
        shifted = (offset[real] + src_len - 1).cpu()  # >= 0 for bincount
        sums = torch.bincount(shifted, weights=norms[real].double().cpu(), minlength=1)
        counts = torch.bincount(shifted, minlength=1)
        for k in counts.nonzero().flatten().tolist():
            d = k - (src_len - 1)
            self.sums[d] = self.sums.get(d, 0.0) + float(sums[k])
            self.counts[d] = self.counts.get(d, 0) + int(counts[k])

    def by_offset(self) -> list[dict[str, float | int]]:
        """``[{"offset": d, "mean_norm": ..., "count": ...}]`` sorted by offset."""
        return [
            {"offset": d, "mean_norm": self.sums[d] / self.counts[d], "count": self.counts[d]}
            for d in sorted(self.counts)
        ]

    def by_distance(self) -> list[dict[str, float | int]]:
        """``[{"distance": |d|, "mean_norm": ..., "count": ...}]``: both signs pooled."""
        sums: dict[int, float] = {}
        counts: dict[int, int] = {}
        for d, n in self.counts.items():
            sums[abs(d)] = sums.get(abs(d), 0.0) + self.sums[d]
            counts[abs(d)] = counts.get(abs(d), 0) + n
        return [
            {"distance": d, "mean_norm": sums[d] / counts[d], "count": counts[d]}
            for d in sorted(counts)
        ]


def decay_per_position(by_distance: Sequence[dict[str, Any]], min_count: int) -> float | None:
    """``exp(slope)`` of a least-squares line through ``log(mean_norm)`` against distance, over
    the distances >= 1 with at least ``min_count`` pairs: the factor by which the norm shrinks per
    position of distance (1: flat; a linear recurrence h_t = w h_{t-1} + x_t gives w). Distance 0
    is left out: it is the one distance with a single offset (every other pools d and -d, and a
    causal model has no gradient at one of them). None with fewer than two such distances."""
    rows = [r for r in by_distance if r["distance"] >= 1 and r["count"] >= min_count and r["mean_norm"] > 0]
    if len(rows) < 2:
        return None
    slope = np.polyfit([r["distance"] for r in rows], np.log([r["mean_norm"] for r in rows]), 1)[0]
    return float(np.exp(slope))


# --------------------------------------------------------------------------------------------
# mt's models
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def captured_output(module: nn.Module) -> Iterator[list[Tensor]]:
    """Collect the outputs of ``module``'s calls inside the block (a forward hook)."""
    outputs: list[Tensor] = []
    handle = module.register_forward_hook(lambda _m, _args, out: outputs.append(out))
    try:
        yield outputs
    finally:
        handle.remove()


def seq2seq_losses(model: Seq2SeqModule, batch: Batch) -> tuple[Tensor, Tensor]:
    """Per-token NLL (B, T) of a teacher-forced batch and the source embeddings (B, S, E) they
    were computed from. The embeddings are caught by a hook on ``model.src_embed`` while
    ``encode`` runs (a shared source/target embedding is called again by ``decode``, later)."""
    with captured_output(model.src_embed) as outputs:
        state = model.encode(batch.src, batch.src_pad_mask)
    (embeddings,) = outputs  # (B, S, E)
    logits = model.decode(batch.tgt_in, state)  # (B, T, V)
    log_probs = logits.float().log_softmax(dim=-1)  # (B, T, V)
    nll = -log_probs.gather(2, batch.tgt_out.unsqueeze(2)).squeeze(2)  # (B, T)
    return nll.masked_fill(batch.tgt_pad_mask, 0.0), embeddings


def measure(model: Seq2SeqModule, batches: Iterable[Batch]) -> GradientFlow:
    """The gradient flow of ``model`` (put in eval mode) over ``batches`` (on its device).

    cuDNN's RNN backward refuses eval mode, so cuDNN is off during the measurement (PyTorch's
    own RNN kernels: the same numbers, slower).
    """
    model.eval()
    flow = GradientFlow()
    with torch.backends.cudnn.flags(enabled=False):
        for batch in batches:
            losses, embeddings = seq2seq_losses(model, batch)
            tgt_real = ~batch.tgt_pad_mask
            flow.add(gradient_norms(losses, embeddings, tgt_real), tgt_real, ~batch.src_pad_mask)
    return flow


def sentence_batches(
    tokenizer: Tokenizer, sources: Sequence[str], targets: Sequence[str], batch_size: int
) -> list[Batch]:
    """Batches of ``batch_size`` pairs, in file order (the measurement is per pair: the
    grouping only decides how much padding is computed)."""
    src_ids, tgt_ids = tokenizer.encode(sources), tokenizer.encode(targets)
    items = [
        (k, np.asarray(s, dtype=np.int64), np.asarray(t, dtype=np.int64), ref)
        for k, (s, t, ref) in enumerate(zip(src_ids, tgt_ids, targets, strict=True))
    ]
    return [collate(items[k : k + batch_size]) for k in range(0, len(items), batch_size)]


# --------------------------------------------------------------------------------------------
# The command: models, sentences, JSON and plot
# --------------------------------------------------------------------------------------------


class GradientInputError(ValueError):
    """Bad input of ``mt gradients`` (a missing file, a bad checkpoint or config): exit 2."""


@dataclass
class Subject:
    """One model to measure: its name in the plot, where it comes from, and the model."""

    name: str
    source: str
    weights: str  # "trained" or "init"
    model: Seq2SeqModule


def reinitialised(model: Seq2SeqModule, seed: int) -> Seq2SeqModule:
    """A freshly initialised model of the same class and hyperparameters, with its tokenizer."""
    torch.manual_seed(seed)
    hparams = {k: v for k, v in model.hparams.items() if not k.startswith("_")}
    fresh = type(model)(**hparams)
    fresh.tokenizer = model.tokenizer
    return fresh


def model_from_config(path: Path, seed: int) -> Seq2SeqModule:
    """The model of a ``mt fit`` config at initialisation, with the tokenizer its data section
    trains (sentencepiece on the training split, cached as ``mt fit`` caches it)."""
    import yaml

    from mt.data.corpora import DataError
    from mt.data.datamodule import TranslationDataModule
    from mt.options import OptionError
    from mt.tools.benchmark.specs import spec_from_config

    if not path.is_file():
        raise GradientInputError(f"{path}: no such config file")
    data: dict[str, Any] = {}
    try:
        for layer in (path.parent / "base.yaml", path):  # as `mt fit` layers it
            if layer.is_file():
                data.update((yaml.safe_load(layer.read_text("utf-8")) or {}).get("data") or {})
        datamodule = TranslationDataModule(**{**data, "num_workers": 0})
        datamodule.prepare_data()
        assert datamodule.tokenizer is not None
        torch.manual_seed(seed)
        model = spec_from_config(path).build(datamodule.tokenizer.vocab_size)
    except (yaml.YAMLError, DataError, OptionError, KeyError, TypeError, ValueError) as err:
        raise GradientInputError(f"{path}: {type(err).__name__}: {' '.join(str(err).split())}") from None
    model.tokenizer = datamodule.tokenizer
    return model


def checkpoint_name(path: Path) -> str:
    """``runs/x/lstm-small/checkpoints/last.ckpt`` -> ``lstm-small``; else the file's stem."""
    return path.parent.parent.name if path.parent.name == "checkpoints" else path.stem


def subjects(
    checkpoints: Sequence[str], configs: Sequence[str], at_init: bool, seed: int
) -> list[Subject]:
    """Every checkpoint (trained, and at initialisation with ``at_init``), every config (at
    initialisation)."""
    out = []
    for ckpt in checkpoints:
        try:
            model = load_checkpoint(ckpt)
        except CheckpointError as err:
            raise GradientInputError(str(err)) from None
        name = checkpoint_name(Path(ckpt))
        out.append(Subject(name, ckpt, "trained", model))
        if at_init:
            out.append(Subject(f"{name} (init)", ckpt, "init", reinitialised(model, seed)))
    for config in configs:
        out.append(Subject(f"{Path(config).stem} (init)", config, "init",
                           model_from_config(Path(config), seed)))  # fmt: skip
    return out


def read_lines(path: Path, n: int) -> list[str]:
    if not path.is_file():
        raise GradientInputError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in itertools.islice(f, n)]
    except UnicodeDecodeError as err:
        raise GradientInputError(f"{path}: not UTF-8 text ({err.reason})") from None


def plot(models: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Mean gradient norm against distance, log scale; trained solid, initialisation dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors: dict[str, str] = {}  # one colour per model source: trained and init side by side
    for entry in models:
        color = colors.setdefault(entry["source"], f"C{len(colors) % 10}")
        rows = [r for r in entry["by_distance"] if r["count"] >= MIN_PAIRS_PLOTTED and r["mean_norm"] > 0]
        ax.plot([r["distance"] for r in rows], [r["mean_norm"] for r in rows], marker=".", color=color,
                linestyle="--" if entry["weights"] == "init" else "-", label=entry["name"])  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("distance |i - j| (target position i, source position j, subwords)")
    ax.set_ylabel("mean || d loss_i / d e_j ||")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(
    checkpoints: Sequence[str],
    configs: Sequence[str],
    input: Path,
    reference: Path,
    out: Path,
    at_init: bool = False,
    sentences: int = 64,
    batch_size: int = 16,
    seed: int = 0,
    device: str = "cpu",
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Measure every model on the first ``sentences`` pairs; write ``out/gradients.json`` and
    ``out/gradients.png``; return the JSON's content (see :func:`mt.commands.gradients`)."""
    from mt.tools.benchmark.record import environment, write_result
    from mt.tools.benchmark.specs import num_parameters
    from mt.tools.translate import resolve_device

    if not checkpoints and not configs:
        raise GradientInputError("give at least one --checkpoint or --config")
    sources, targets = read_lines(input, sentences), read_lines(reference, sentences)
    if len(sources) != len(targets):
        raise GradientInputError(
            f"{input} has {len(sources)} lines but {reference} has {len(targets)} (of the first {sentences})"
        )
    dev = resolve_device(device)
    models = []
    for subject in subjects(checkpoints, configs, at_init, seed):
        assert subject.model.tokenizer is not None
        model = subject.model.to(dev)
        batches = [b.to(dev) for b in sentence_batches(model.tokenizer, sources, targets, batch_size)]
        print(f"[gradients] {subject.name} ...", flush=True)
        flow = measure(model, batches)
        models.append({
            "name": subject.name, "source": subject.source, "weights": subject.weights,
            "class": type(model).__name__, "cell": getattr(model, "cell", None),
            "input_feeding": getattr(model, "input_feeding", None),
            "parameters": num_parameters(model),
            "decay_per_position": decay_per_position(flow.by_distance(), MIN_PAIRS_PLOTTED),
            "by_distance": flow.by_distance(), "by_offset": flow.by_offset(),
        })  # fmt: skip
        near, far = _near_and_far(models[-1]["by_distance"])
        decay = models[-1]["decay_per_position"]
        print(f"[gradients] {subject.name}: mean norm {near:.3g} at distance 0, {far}; "
              f"x{decay if decay is not None else math.nan:.3f} per position", flush=True)  # fmt: skip
    payload = {
        "benchmark": "gradients",
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["mt", "gradients", *(sys.argv[2:] if argv is None else argv)]),
        **environment(dev),
        "definition": __doc__.split("Definition", 1)[1].split("The core", 1)[0].strip(),
        "input": str(input), "reference": str(reference), "sentences": len(sources),
        "seed": seed, "min_pairs_plotted": MIN_PAIRS_PLOTTED, "models": models,
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    write_result(out / "gradients.json", payload)
    plot(models, out / "gradients.png", f"Gradient flow on {len(sources)} pairs of {input.name}")
    print(f"[gradients] wrote {out / 'gradients.json'} and {out / 'gradients.png'}", flush=True)
    return payload


def _near_and_far(rows: Sequence[dict[str, Any]]) -> tuple[float, str]:
    """The mean norm at distance 0, and a phrase for the farthest distance plotted."""
    near = rows[0]["mean_norm"] if rows and rows[0]["distance"] == 0 else math.nan
    plotted = [r for r in rows if r["count"] >= MIN_PAIRS_PLOTTED]
    if not plotted:
        return near, "no distance with enough pairs"
    return near, f"{plotted[-1]['mean_norm']:.3g} at distance {plotted[-1]['distance']}"
