"""From a trained checkpoint to production: CTranslate2 export and checkpoint averaging.

**Export** (``mt export``). :class:`TransformerConverter` describes a ``TransformerSeq2Seq`` with
CTranslate2's model specification (``ctranslate2.specs.TransformerSpec``), the way CTranslate2's
own converters describe OpenNMT or Marian models, and CTranslate2 writes the folder (``model.bin``,
vocabularies, ``config.json``). What has to be matched by hand, because mt's Transformer is not
any of theirs:

* positions: mt's sinusoids put the sines in the first half of the features and the cosines in
  the second, with ``w_i = 10000 ** (-2i / D)``, from position 0 for the source and for BOS;
  CTranslate2's built-in sinusoids use another frequency formula, so the table is written
  into the model (``max_positions`` rows, computed by mt's own ``sinusoidal_positions``);
* embeddings are scaled by sqrt(D) before the positions are added (``scale_embeddings``);
* layer norms: pre-norm with a final LayerNorm after each stack, or post-norm without one;
  epsilon 1e-5 (PyTorch's; CTranslate2's default differs) in ``config.json``;
* the fused projections keep mt's layout: self-attention ``[q; k; v]`` in one (3D, D) matrix,
  cross-attention ``q`` then ``[k; v]``, the order CTranslate2 expects;
* the output projection (tied or not) has no bias in mt; the export gives it one that is 0
  everywhere except -inf at PAD and BOS, which mt's search never generates either. Greedy
  choices are the same; a step's log-probabilities are renormalised over the allowed tokens
  (mt's search keeps PAD/BOS's share in the normaliser), a difference of log(1 - p(PAD) -
  p(BOS)) per step, negligible in a trained model;
* the source gets EOS appended by CTranslate2 (``add_source_eos``), as mt's data path does; the
  decoder starts from BOS (``<s>``) and stops at EOS (``</s>``), the ids of ``mt.data.tokenizer``.

The folder also holds the checkpoint's sentencepiece model (``sentencepiece.model``) and
``mt_export.json`` (what was exported, with what), so it translates on its own: ``mt translate
--engine ctranslate2 --model DIR``. It is written to a temporary folder beside ``--out`` and
renamed into place when complete.

**Averaging** (``mt average``): the element-wise mean of the parameters of checkpoints of one
model (same class, hyperparameters and tokenizer), written as an ordinary mt checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from mt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer

try:  # the `export` extra (make install installs it); averaging works without it
    import ctranslate2
    from ctranslate2.converters import Converter
    from ctranslate2.specs import common_spec, transformer_spec
except ImportError:
    ctranslate2 = None
    Converter = object

__all__ = [
    "EXPORT_INFO",
    "ExportError",
    "Quantization",
    "TransformerConverter",
    "export_ctranslate2",
    "supported_quantizations",
]

#: Weight types ``--quantization`` accepts (CTranslate2's names); ``none`` keeps float32.
Quantization = Literal[
    "none", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16"
]
#: The file of an exported folder that says what it holds (read by ``mt translate``).
EXPORT_INFO = "mt_export.json"
SENTENCEPIECE_FILE = "sentencepiece.model"
#: Rows of the position table written into the model: the longest source or output it can handle.
DEFAULT_MAX_POSITIONS = 1024
LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default, which mt's layers use


class ExportError(ValueError):
    """Bad input for ``mt export``/``mt average`` (exit status 2): the message is one line that
    names the option or file at fault."""


CT2_MISSING = "ctranslate2 is not installed: pip install -e '.[export]' (make install does)"


def supported_quantizations() -> set[str]:
    """The weight types CTranslate2 can run on this machine (CPU, and CUDA when it has a GPU)."""
    if ctranslate2 is None:
        raise ExportError(CT2_MISSING)
    types = set(ctranslate2.get_supported_compute_types("cpu"))
    if ctranslate2.get_cuda_device_count() > 0:
        types |= set(ctranslate2.get_supported_compute_types("cuda"))
    return types


def _array(tensor: torch.Tensor) -> np.ndarray:
    """A float32 copy of a tensor: CTranslate2 quantizes the arrays of a spec in place, which
    must not reach the model's own parameters."""
    return tensor.detach().to(device="cpu", dtype=torch.float32).numpy().copy()


class TransformerConverter(Converter):
    """A CTranslate2 converter of a ``TransformerSeq2Seq``: ``_load`` describes it as a
    ``TransformerSpec`` with every weight set; CTranslate2's ``convert(output_dir,
    quantization=...)`` then validates, quantizes and saves it.

    Args:
        model: the Transformer, with its tokenizer.
        max_positions: rows of the position table (the longest sequence the export can read or
            write).

    Raises:
        ExportError: not a Transformer (CTranslate2 has no recurrent models), or ctranslate2 is
            not installed.
    """

    def __init__(self, model: Any, max_positions: int = DEFAULT_MAX_POSITIONS) -> None:
        from mt.models.transformer import TransformerSeq2Seq

        if not isinstance(model, TransformerSeq2Seq):
            raise ExportError(
                f"CTranslate2 export needs a Transformer; this checkpoint holds a "
                f"{type(model).__name__} (CTranslate2 has no recurrent encoder-decoder models)"
            )
        if ctranslate2 is None:
            raise ExportError(CT2_MISSING)
        if model.tokenizer is None or model.tokenizer.vocab_size != model.vocab_size:
            raise ExportError("the checkpoint's tokenizer does not match its vocabulary size")
        self.model = model.eval()
        self.max_positions = max_positions

    def _load(self) -> Any:
        return self.spec()

    def spec(self) -> Any:
        """The ``TransformerSpec`` with every weight set."""
        m = self.model
        pre_norm = m.hparams.get("norm", "pre") == "pre"
        activation = {"relu": common_spec.Activation.RELU, "gelu": common_spec.Activation.GELU}
        spec = transformer_spec.TransformerSpec.from_config(
            (len(m.encoder), len(m.decoder)),
            m.n_heads,
            pre_norm=pre_norm,
            activation=activation[m.hparams.get("activation", "relu")],
        )
        self._set_vocabulary(spec)
        positions = self._positions()
        self._set_encoder(spec.encoder, positions, pre_norm)
        self._set_decoder(spec.decoder, positions, pre_norm)
        return spec

    def _set_vocabulary(self, spec: Any) -> None:
        tokenizer: Tokenizer = self.model.tokenizer
        pieces = [tokenizer.id_to_piece(i) for i in range(tokenizer.vocab_size)]
        spec.register_source_vocabulary(pieces)
        spec.register_target_vocabulary(pieces)
        config = spec.config
        config.unk_token, config.bos_token = pieces[UNK_ID], pieces[BOS_ID]
        config.eos_token, config.decoder_start_token = pieces[EOS_ID], pieces[BOS_ID]
        config.add_source_eos = True
        config.layer_norm_epsilon = LAYER_NORM_EPS

    def _positions(self) -> np.ndarray:
        from mt.models.transformer import sinusoidal_positions

        table = sinusoidal_positions(0, self.max_positions, self.model.d_model, torch.device("cpu"))
        return table.numpy()  # (max_positions, D)

    def _set_encoder(self, spec: Any, positions: np.ndarray, pre_norm: bool) -> None:
        m = self.model
        spec.embeddings[0].weight = _array(m.src_embed.weight)
        spec.position_encodings.encodings = positions
        if pre_norm:
            _set_norm(spec.layer_norm, m.encoder_norm)
        for layer_spec, layer in zip(spec.layer, m.encoder, strict=True):
            _set_linear(layer_spec.self_attention.linear[0], layer.self_attn.qkv)
            _set_linear(layer_spec.self_attention.linear[1], layer.self_attn.out)
            _set_norm(layer_spec.self_attention.layer_norm, layer.norm1)
            _set_ffn(layer_spec.ffn, layer.ffn, layer.norm2)

    def _set_decoder(self, spec: Any, positions: np.ndarray, pre_norm: bool) -> None:
        m = self.model
        spec.embeddings.weight = _array(m.tgt_embed.weight)
        spec.position_encodings.encodings = positions
        if pre_norm:
            _set_norm(spec.layer_norm, m.decoder_norm)
        output = m.tgt_embed.weight if m.output_proj is None else m.output_proj.weight
        spec.projection.weight = _array(output)
        bias = np.zeros(output.size(0), dtype=np.float32)
        bias[[PAD_ID, BOS_ID]] = -np.inf  # never generated (see the module docstring)
        spec.projection.bias = bias
        for layer_spec, layer in zip(spec.layer, m.decoder, strict=True):
            _set_linear(layer_spec.self_attention.linear[0], layer.self_attn.qkv)
            _set_linear(layer_spec.self_attention.linear[1], layer.self_attn.out)
            _set_norm(layer_spec.self_attention.layer_norm, layer.norm1)
            _set_linear(layer_spec.attention.linear[0], layer.cross_attn.q)
            _set_linear(layer_spec.attention.linear[1], layer.cross_attn.kv)
            _set_linear(layer_spec.attention.linear[2], layer.cross_attn.out)
            _set_norm(layer_spec.attention.layer_norm, layer.norm2)
            _set_ffn(layer_spec.ffn, layer.ffn, layer.norm3)


def _set_linear(spec: Any, linear: torch.nn.Linear) -> None:
    spec.weight = _array(linear.weight)  # (out, in), the layout of both
    if linear.bias is not None:
        spec.bias = _array(linear.bias)


def _set_norm(spec: Any, norm: torch.nn.LayerNorm) -> None:
    spec.gamma, spec.beta = _array(norm.weight), _array(norm.bias)


def _set_ffn(spec: Any, ffn: Any, norm: torch.nn.LayerNorm) -> None:
    _set_linear(spec.linear_0, ffn.up)
    _set_linear(spec.linear_1, ffn.down)
    _set_norm(spec.layer_norm, norm)


# -- writing a folder atomically ----------------------------------------------------------------


def check_output_folder(out: Path, force: bool) -> None:
    """Refuse an ``--out`` that is a file, or a folder that is not empty, unless ``force``."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"--out {out} exists and is not empty; pass --force to replace it")
    if not out.parent.is_dir():
        raise ExportError(f"--out {out}: the folder {out.parent} does not exist")


@contextmanager
def atomic_folder(out: Path) -> Iterator[Path]:
    """A temporary folder beside ``out``, renamed to ``out`` when the block succeeds (an earlier
    ``out`` is replaced only then); removed on failure."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old = None
    try:
        yield tmp
        if out.exists():
            old = out.parent / f"{tmp.name}.old"
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def export_ctranslate2(
    model: Any,
    out: str | os.PathLike,
    quantization: Quantization = "none",
    force: bool = False,
    source: str = "",
    max_positions: int = DEFAULT_MAX_POSITIONS,
) -> Path:
    """Write ``model`` as a CTranslate2 folder ``out`` that translates on its own.

    Args:
        model: a ``TransformerSeq2Seq`` with its tokenizer (as ``load_checkpoint`` returns it).
        out: the folder to write.
        quantization: weight type, ``none`` = float32.
        force: replace a non-empty ``out``.
        source: where the model came from (recorded in ``mt_export.json``).
        max_positions: rows of the position table.

    Raises:
        ExportError: a recurrent model, a quantization this machine cannot run, an unusable
            ``out``.
    """
    out = Path(out)
    converter = TransformerConverter(model, max_positions)
    if quantization != "none" and quantization not in supported_quantizations():
        raise ExportError(
            f"--quantization {quantization} is not supported by CTranslate2 on this machine "
            f"(supported: {', '.join(sorted(supported_quantizations()))}, none)"
        )
    check_output_folder(out, force)
    with atomic_folder(out) as tmp:
        model_dir = tmp / "model"
        converter.convert(
            str(model_dir), quantization=None if quantization == "none" else quantization
        )
        for item in model_dir.iterdir():
            os.replace(item, tmp / item.name)
        model_dir.rmdir()
        (tmp / SENTENCEPIECE_FILE).write_bytes(model.tokenizer.model_proto)
        info = {
            "format": "ctranslate2",
            "source": source,
            "mt_class": f"{type(model).__module__}.{type(model).__qualname__}",
            "hyper_parameters": _plain(dict(model.hparams)),
            "quantization": quantization,
            "max_positions": max_positions,
            "trained_max_len": getattr(model, "trained_max_len", None),
            "tokenizer": SENTENCEPIECE_FILE,
        }
        (tmp / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return out


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameters as JSON values (anything else as its string)."""
    return {k: v if isinstance(v, (bool, int, float, str, type(None))) else str(v)
            for k, v in values.items()}  # fmt: skip


def load_export_info(model_dir: str | os.PathLike) -> dict[str, Any]:
    """``mt_export.json`` of an exported folder.

    Raises:
        ExportError: not a folder written by ``mt export``.
    """
    path = Path(model_dir) / EXPORT_INFO
    if not Path(model_dir).is_dir():
        raise ExportError(f"--model {model_dir} is not a folder")
    if not path.is_file():
        raise ExportError(f"--model {model_dir} was not written by mt export (no {EXPORT_INFO})")
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as err:
        raise ExportError(f"{path}: unreadable ({err})") from None


# -- checkpoint averaging -----------------------------------------------------------------------

#: Entries of a training checkpoint that an averaged one keeps (the optimizer, scheduler and loop
#: states belong to one point of a training run: an average is not a point to resume from).
_KEPT_ENTRIES = ("hyper_parameters", "datamodule_hyper_parameters", "mt_tokenizer", "mt_class",
                 "pytorch-lightning_version", "epoch", "global_step")  # fmt: skip


def last_checkpoints(run_dir: str | os.PathLike, n: int) -> list[Path]:
    """The ``n`` checkpoints of a run folder with the highest ``global_step``, oldest first.

    Files holding the same step (``last.ckpt`` beside the file it copies) count once.

    Raises:
        ExportError: fewer than ``n`` distinct checkpoints.
    """
    from mt.models.module import CheckpointError, read_checkpoint
    from mt.runs import checkpoints_in

    by_step: dict[int, Path] = {}
    for path in checkpoints_in(Path(run_dir)):
        try:
            step = read_checkpoint(path, mmap=True).get("global_step")
        except (CheckpointError, AttributeError):
            continue
        if isinstance(step, int):
            by_step.setdefault(step, path)
    if len(by_step) < n:
        raise ExportError(
            f"--last {n}: {run_dir} holds {len(by_step)} checkpoints of distinct steps; keep more "
            "checkpoints while training (see the README, Export and averaging)"
        )
    return [by_step[step] for step in sorted(by_step)[-n:]]


def _read_for_average(path: Path) -> dict[str, Any]:
    from mt.models.module import CheckpointError, read_checkpoint

    if not path.is_file():
        raise ExportError(f"--checkpoints: no such file: {path}")
    try:
        ckpt = read_checkpoint(path)
    except CheckpointError as err:
        raise ExportError(str(err)) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "mt_class" not in ckpt:
        raise ExportError(f"{path}: not an mt checkpoint (no model class or weights in it)")
    return ckpt


def _same_model(first: dict[str, Any], other: dict[str, Any], path: Path, first_path: Path) -> None:
    """Refuse to average checkpoints of different models (one line naming what differs)."""
    hparams = [{k: v for k, v in c.get("hyper_parameters", {}).items() if not k.startswith("_")}
               for c in (first, other)]  # fmt: skip
    if first["mt_class"] != other["mt_class"]:
        what = f"model classes {first['mt_class']} vs {other['mt_class']}"
    elif hparams[0] != hparams[1]:
        keys = sorted(k for k in hparams[0].keys() | hparams[1].keys()
                      if hparams[0].get(k) != hparams[1].get(k))  # fmt: skip
        what = "hyperparameters " + ", ".join(
            f"{k}={hparams[0].get(k)!r} vs {hparams[1].get(k)!r}" for k in keys
        )
    elif first.get("mt_tokenizer") != other.get("mt_tokenizer"):
        what = "sentencepiece models"
    elif first["state_dict"].keys() != other["state_dict"].keys():
        what = "parameter names"
    else:
        return
    raise ExportError(f"cannot average {first_path} and {path}: different {what}")


def average_state_dicts(state_dicts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of floating-point tensors (summed in float64, stored in their own
    dtype); other tensors (integer buffers) are taken from the first and must be equal."""
    averaged = {}
    for name, first in state_dicts[0].items():
        tensors = [sd[name] for sd in state_dicts]
        if first.is_floating_point():
            total = torch.stack([t.to(torch.float64) for t in tensors]).mean(dim=0)
            averaged[name] = total.to(first.dtype)
        elif all(torch.equal(first, t) for t in tensors[1:]):
            averaged[name] = first.clone()
        else:
            raise ExportError(f"cannot average the non-float tensor {name}: it differs")
    return averaged


def average_checkpoints(
    paths: list[str | os.PathLike], out: str | os.PathLike, force: bool = False
) -> Path:
    """Write the parameter average of ``paths`` to ``out`` as an ordinary mt checkpoint.

    The result keeps the first checkpoint's hyperparameters, tokenizer and metadata and lists the
    averaged files under ``mt_averaged_from``; it holds no optimizer or loop state.

    Raises:
        ExportError: fewer than two files, an unreadable file, checkpoints of different models,
            an existing ``out`` without ``force``.
    """
    from mt.atomic import atomic_write

    out = Path(out)
    files = [Path(p) for p in paths]
    if len(files) < 2:
        raise ExportError("--checkpoints: give at least two checkpoints to average")
    if out.exists() and not force:
        raise ExportError(f"--out {out} exists; pass --force to replace it")
    if not out.parent.is_dir():
        raise ExportError(f"--out {out}: the folder {out.parent} does not exist")
    first = _read_for_average(files[0])
    state_dicts = [first["state_dict"]]
    for path in files[1:]:
        ckpt = _read_for_average(path)
        _same_model(first, ckpt, path, files[0])
        state_dicts.append(ckpt["state_dict"])
    averaged = {k: first[k] for k in _KEPT_ENTRIES if k in first}
    averaged["state_dict"] = average_state_dicts(state_dicts)
    averaged["mt_averaged_from"] = [str(p) for p in files]
    with atomic_write(out, "wb") as f:
        torch.save(averaged, f)
    return out
