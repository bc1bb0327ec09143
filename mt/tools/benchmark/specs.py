"""The model sizes a benchmark measures: :class:`ModelSpec` (from a ``mt fit`` config, or the
built-in tiny and large sizes), and a Hugging Face Marian model of a Transformer's size.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from mt.commands import UsageError
from mt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from mt.models.module import Seq2SeqModule

#: A Transformer, or the recurrent model with its cell named (RNNSeq2Seq's ``cell``).
Arch = Literal["transformer", "lstm", "gru", "rnn"]
#: The shipped small configs, one per architecture and cell (``mt benchmark length``'s default).
SMALL_CONFIGS = (
    "configs/transformer-small.yaml",
    "configs/lstm-small.yaml",
    "configs/gru-small.yaml",
    "configs/rnn-small.yaml",
)


_FACTORIES = ("optimizer", "lr_scheduler")


@dataclass
class ModelSpec:
    """One model size: a name, the architecture and its constructor arguments (no vocabulary).

    Attributes:
        name: e.g. ``transformer-small`` (the config's file name) or ``transformer-base``.
        arch: ``transformer``, or the recurrent model's cell: ``lstm``, ``gru`` or ``rnn``
            (``build`` passes it as ``cell``, whatever ``init_args`` say).
        init_args: ``TransformerSeq2Seq``/``RNNSeq2Seq`` arguments, as in a config's
            ``model.init_args`` without the optimizer and scheduler.
        max_tokens: the training token budget of the config (``data.max_tokens``).
    """

    name: str
    arch: Arch
    init_args: dict[str, Any]
    max_tokens: int = 4096
    source: str = ""

    def build(self, vocab_size: int) -> Seq2SeqModule:
        """A freshly initialised model (random weights)."""
        if self.arch == "transformer":
            from mt.models.transformer import TransformerSeq2Seq

            return TransformerSeq2Seq(vocab_size=vocab_size, **self.init_args)
        from mt.models.rnn import RNNSeq2Seq

        return RNNSeq2Seq(vocab_size=vocab_size, **{**self.init_args, "cell": self.arch})

    @property
    def recurrent(self) -> bool:
        return self.arch != "transformer"

    def with_input_feeding(self, on: bool) -> ModelSpec:
        """This recurrent model with input feeding on or off, named ``{name} feed|nofeed``."""
        args = {**self.init_args, "input_feeding": on}
        return replace(self, name=f"{self.name} {'feed' if on else 'nofeed'}", init_args=args)


def spec_from_config(path: str | os.PathLike) -> ModelSpec:
    """The model size of a ``mt fit`` config file (a relative path is from the current folder,
    as ``mt fit --config`` reads it; the default configs are those of a checkout of mt)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UsageError(
            f"{path}: no such config file (relative to the current folder {Path.cwd()}; run from a "
            "checkout of mt, or name the configs with --configs, --transformer_config, --lstm_config)"
        )
    config = yaml.safe_load(path.read_text("utf-8"))
    model = config["model"]
    args = {k: v for k, v in model.get("init_args", {}).items() if k not in _FACTORIES}
    # RNNSeq2Seq's default cell is lstm (LSTMSeq2Seq is that class under its old name).
    arch: Arch = "transformer" if "Transformer" in model["class_path"] else args.get("cell", "lstm")
    max_tokens = int(config.get("data", {}).get("max_tokens", 4096))
    return ModelSpec(path.stem, arch, args, max_tokens, source=str(path))


SMOKE_SPECS = [
    ModelSpec(
        "transformer-tiny",
        "transformer",
        dict(d_model=64, n_heads=4, encoder_layers=2, decoder_layers=2, ffn_dim=128, dropout=0.1),
        max_tokens=512,
        source="--smoke",
    ),
    ModelSpec(
        "lstm-tiny",
        "lstm",
        dict(embed_dim=64, hidden_size=64, encoder_layers=1, decoder_layers=1, dropout=0.1,
             tie_output=True),
        max_tokens=512,
        source="--smoke",
    ),
]

LARGE_SPECS = [
    # Vaswani et al. 2017's base model.
    ModelSpec(
        "transformer-base",
        "transformer",
        dict(d_model=512, n_heads=8, encoder_layers=6, decoder_layers=6, ffn_dim=2048, dropout=0.1),
        max_tokens=8192,
        source="--large",
    ),
    # GNMT-like (Wu et al. 2016) at 4 + 4 layers: 1024 wide, additive attention, the previous
    # attentional vector fed to the next step (a per-step dependency, as GNMT's attention has).
    ModelSpec(
        "lstm-gnmt",
        "lstm",
        dict(embed_dim=1024, hidden_size=1024, encoder_layers=4, decoder_layers=4,
             attention="bahdanau", input_feeding=True, dropout=0.2, tie_output=True),
        max_tokens=8192,
        source="--large",
    ),
]


def model_specs(args: argparse.Namespace, device: torch.device) -> list[ModelSpec]:
    """The sizes to run: --configs; else tiny ones with --smoke (length: one per cell); else the
    job's default configs (length: the four small ones; decode/train: a Transformer and an
    LSTM, small ones on a CPU; + --large); then every recurrent model with input feeding off
    and on where ``args.input_feeding`` is ``both``."""
    if args.configs:
        specs = [spec_from_config(config) for config in args.configs]
    elif args.smoke:
        specs = list(SMOKE_SPECS)
        if args.subcommand == "length":  # every cell
            specs += [replace(SMOKE_SPECS[1], name=f"{cell}-tiny", arch=cell) for cell in ("gru", "rnn")]
    elif args.subcommand == "length":
        specs = [spec_from_config(config) for config in SMALL_CONFIGS]
    else:
        gpu = device.type == "cuda"
        transformer = args.transformer_config or (
            "configs/transformer.yaml" if gpu else "configs/transformer-small.yaml"
        )
        lstm = args.lstm_config or ("configs/lstm.yaml" if gpu else "configs/lstm-small.yaml")
        specs = [spec_from_config(transformer), spec_from_config(lstm)]
        if getattr(args, "large", False):
            specs += LARGE_SPECS
    if args.input_feeding != "both":
        return specs
    return [
        variant
        for spec in specs
        for variant in ([spec.with_input_feeding(False), spec.with_input_feeding(True)]
                        if spec.recurrent else [spec])
    ]  # fmt: skip


def marian_for(spec: ModelSpec, vocab_size: int) -> nn.Module:
    """A randomly initialised ``MarianMTModel`` of the size and vocabulary of a Transformer spec.

    Same width, depth, heads, feed-forward width and activation, one shared embedding matrix
    tied to the output, sinusoidal positions, sqrt(D)-scaled embeddings and our special ids
    (PAD 0 is also Marian's decoder start in its own models; here BOS starts decoding, as ours).
    Marian is post-norm (ours is pre-norm by default: two extra final LayerNorms, negligible).
    """
    from transformers import MarianConfig, MarianMTModel

    a = spec.init_args
    dropout = float(a.get("dropout", 0.1))
    config = MarianConfig(
        vocab_size=vocab_size,
        decoder_vocab_size=vocab_size,
        d_model=a.get("d_model", 512),
        encoder_layers=a.get("encoder_layers", 6),
        decoder_layers=a.get("decoder_layers", 6),
        encoder_attention_heads=a.get("n_heads", 8),
        decoder_attention_heads=a.get("n_heads", 8),
        encoder_ffn_dim=a.get("ffn_dim", 2048),
        decoder_ffn_dim=a.get("ffn_dim", 2048),
        activation_function=a.get("activation", "relu"),
        dropout=dropout,
        attention_dropout=float(a.get("attention_dropout", 0.0)),
        activation_dropout=0.0,
        max_position_embeddings=1024,
        scale_embedding=True,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        bos_token_id=BOS_ID,
        decoder_start_token_id=BOS_ID,
        forced_eos_token_id=None,
    )
    return MarianMTModel(config)


def num_parameters(model: nn.Module) -> int:
    """Trainable parameters, shared ones counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

