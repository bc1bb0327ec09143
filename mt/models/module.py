"""Seq2SeqModule: what the LSTM and the Transformer share.

Loss, training/validation/test/predict steps, optimizer with a per-step learning-rate schedule,
validation BLEU through the one decoding path (`mt.models.search`) and the one sacreBLEU call site
(`mt.eval.evaluation`), and self-contained checkpoints (they carry the sentencepiece model).

A subclass implements the model interface that search relies on:

    encode(src, src_pad_mask) -> State                 # (B, S), (B, S) True at padding
    decode(tgt_in, state) -> logits                    # (B, T) -> (B, T, V), teacher forcing
    decode_step(prev_tokens, state) -> (log_probs, State)   # (B,) -> (B, V), one step
    State.index_select(indices, group) -> State        # reorder / expand rows for beam search

Decoding is a chain: ``decode_step`` and ``index_select`` may consume the state they are given
and reuse its buffers (the Transformer does), and the log-probabilities a step returns are valid
until the next step. `mt.models.search` uses every state and every result once, in order.
"""

from __future__ import annotations

import importlib
import math
import os
import pickle
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from mt.data.batching import Batch
from mt.data.tokenizer import PAD_ID, Tokenizer, describe_difference
from mt.models.loss import smoothed_cross_entropy
from mt.models.search import DEFAULT_SEARCH, search
from mt.models.search import DecoderState as State
from mt.options import require

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], Optimizer]
SchedulerFactory = Callable[[Optimizer], LRScheduler]


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing, truncated or not an mt checkpoint."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: the run stops rather than train on garbage."""


class WarmupLR(LambdaLR):
    """Linear warm-up over ``warmup_steps`` optimizer steps, then inverse square root decay
    (Vaswani et al. 2017) or a constant rate. Stepped once per optimizer step.

    Args:
        optimizer: the optimizer whose learning rate (its ``lr``) is the peak rate.
        warmup_steps: steps of linear warm-up from ~0 to the peak.
        decay: ``inverse_sqrt`` (lr * sqrt(warmup / step) after warm-up) or ``none``.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int = 4000,
        decay: Literal["inverse_sqrt", "none"] = "inverse_sqrt",
    ) -> None:
        self.warmup_steps, self.decay = max(1, warmup_steps), decay
        super().__init__(optimizer, self._factor)

    def _factor(self, step: int) -> float:
        step += 1  # LambdaLR calls with 0 before the first optimizer step
        if step < self.warmup_steps:
            return step / self.warmup_steps
        return math.sqrt(self.warmup_steps / step) if self.decay == "inverse_sqrt" else 1.0


def adamw(params: Iterable[torch.nn.Parameter]) -> Optimizer:
    """AdamW(lr=5e-4, betas=(0.9, 0.98), weight_decay=1e-4): the default optimizer."""
    return torch.optim.AdamW(params, lr=5e-4, betas=(0.9, 0.98), weight_decay=1e-4)


class Seq2SeqModule(L.LightningModule):
    """Base class of the encoder-decoder models (not used on its own).

    Args:
        vocab_size: size of the joint subword vocabulary (linked from the data module).
        label_smoothing: label smoothing of the training loss (0 = plain cross-entropy).
        optimizer: optimizer factory, e.g. ``class_path: torch.optim.AdamW`` in YAML.
        lr_scheduler: learning-rate schedule factory, stepped every optimizer step.
        beam_size: beam size of validation/test/predict decoding (1 = greedy).
        length_penalty: GNMT length penalty alpha of beam search (0 = none).
        max_len_a: hypotheses are at most ``max_len_a * source_length + max_len_b`` tokens.
        max_len_b: see ``max_len_a``.
        compile: run the teacher-forced forward pass through ``torch.compile`` (pair it with
            ``data.pad_to_multiple: 8`` so that few distinct shapes trigger recompilation).
    """

    # Constructor arguments added after checkpoints were first written, with the value that
    # rebuilds those older checkpoints as they were trained (``load_checkpoint`` uses them when a
    # checkpoint's hyperparameters lack the argument).
    checkpoint_defaults: dict[str, Any] = {}

    def __init__(
        self,
        vocab_size: int,
        label_smoothing: float = 0.1,
        optimizer: OptimizerFactory = adamw,
        lr_scheduler: SchedulerFactory | None = None,
        beam_size: int = 1,
        length_penalty: float = DEFAULT_SEARCH.length_penalty,
        max_len_a: float = DEFAULT_SEARCH.max_len_a,
        max_len_b: int = DEFAULT_SEARCH.max_len_b,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if type(self) is Seq2SeqModule:
            raise TypeError(
                "Seq2SeqModule is abstract: use mt.RNNSeq2Seq (or mt.LSTMSeq2Seq) or mt.TransformerSeq2Seq"
            )
        key = "model.init_args."
        require(key + "label_smoothing", label_smoothing, 0 <= label_smoothing < 1, "in [0, 1)")
        require(key + "beam_size", beam_size, beam_size >= 1, ">= 1")
        require(key + "length_penalty", length_penalty, length_penalty >= 0, ">= 0")
        require(key + "max_len_a", max_len_a, max_len_a >= 0, ">= 0")
        require(key + "max_len_b", max_len_b, max_len_b >= 0, ">= 0")
        # The factories are code, not data: they stay out of the checkpoint so that checkpoints
        # load with torch.load(weights_only=True). A resumed run gets them from its config again.
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.vocab_size = vocab_size
        self.label_smoothing = label_smoothing
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.beam_size, self.length_penalty = beam_size, length_penalty
        self.max_len_a, self.max_len_b = max_len_a, max_len_b
        self.use_compile = compile  # not `self.compile`: that is nn.Module.compile()
        self.tokenizer: Tokenizer | None = None
        # The longest source (subwords) training used: the data module's max_len, read from the
        # checkpoint by load_checkpoint; translation splits longer lines (None: unknown).
        self.trained_max_len: int | None = None
        self._eval_outputs: list[tuple[int, str, str]] = []

    # -- the model interface (implemented by subclasses) ------------------------------------

    def encode(self, src: Tensor, src_pad_mask: Tensor) -> State:
        raise NotImplementedError

    def decode(self, tgt_in: Tensor, state: State) -> Tensor:
        raise NotImplementedError

    def decode_step(self, prev_tokens: Tensor, state: State) -> tuple[Tensor, State]:
        raise NotImplementedError

    def configure_model(self) -> None:
        if self.use_compile and not hasattr(self, "_compiled"):
            # Only the training/teacher-forcing path; step-wise decoding stays eager.
            self.forward = torch.compile(self.forward, dynamic=True)  # type: ignore[method-assign]
            self._compiled = True

    def forward(self, src: Tensor, src_pad_mask: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced logits (B, T, V)."""
        return self.decode(tgt_in, self.encode(src, src_pad_mask))

    # -- training ---------------------------------------------------------------------------

    def _loss(self, batch: Batch, label_smoothing: float) -> tuple[Tensor, Tensor, int]:
        """(smoothed loss, nll) summed over non-padding target tokens, and their count.

        Both in float32 whatever the logits' dtype (``mt.models.loss``: the values of a float32
        log-softmax, without its (tokens, V) tensors).
        """
        logits = self(batch.src, batch.src_pad_mask, batch.tgt_in)  # (B, T, V)
        loss, nll = smoothed_cross_entropy(
            logits.flatten(0, 1), batch.tgt_out.flatten(), label_smoothing, PAD_ID
        )
        return loss, nll, batch.n_tgt_tokens

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss, nll, n_tokens = self._loss(batch, self.label_smoothing)
        # Per-token mean over this batch (batches differ in token count, not in weight per token
        # within a batch; the same convention as fairseq's per-token loss).
        loss = loss / n_tokens
        # One device sync per step: a NaN/inf loss stops the run before its gradients reach the
        # weights (a silent NaN run would otherwise train on for hours).
        if not torch.isfinite(loss.detach()):
            raise NonFiniteLossError(
                f"non-finite training loss ({float(loss.detach()):g}) at global step "
                f"{self.global_step} (batch {batch_idx} of epoch {self.current_epoch}): "
                "lower the learning rate, clip gradients (--trainer.gradient_clip_val) or check the data"
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        self.log("train/nll", nll.detach() / n_tokens, batch_size=len(batch))
        return loss

    def configure_gradient_clipping(
        self,
        optimizer: Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Log the global gradient norm before clipping and whether this step clipped it, then
        clip as the trainer's ``gradient_clip_val``/``gradient_clip_algorithm`` say (once).

        Lightning calls this once per optimizer step, after backward (and after unscaling under
        16-bit mixed precision), whatever the clipping settings. Logged per step:

        * ``train/grad_norm``: the L2 norm of all gradients together, before clipping;
        * ``train/clipped``: 1.0 when norm clipping scaled the gradients down (norm above
          ``gradient_clip_val``), else 0.0; its mean over steps is the fraction of clipped steps.
          Always 0.0 without norm clipping (no threshold, or ``gradient_clip_algorithm: value``).

        Loggers write step values every ``log_every_n_steps`` steps only, so once per epoch
        ``train/clipped_fraction`` gives the share of all of the epoch's optimizer steps that
        clipped.
        """
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads)
        by_norm = bool(gradient_clip_val) and gradient_clip_algorithm in (None, "norm")
        clipped = (norm > gradient_clip_val).float() if by_norm else torch.zeros((), device=norm.device)
        # Lightning's own clipping (a no-op without gradient_clip_val), which knows the precision
        # plugin (e.g. refuses a fused optimizer under 16-bit loss scaling); it reduces the
        # gradients once more, a small cost next to the backward pass.
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
        self.log("train/grad_norm", norm, on_step=True, on_epoch=False)
        self.log("train/clipped", clipped, on_step=True, on_epoch=False)
        # Loggers see step values every log_every_n_steps only: the exact share of every step.
        self.log("train/clipped_fraction", clipped, on_step=False, on_epoch=True, batch_size=1)

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=len(batch))

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- evaluation -------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        tokenizer = getattr(datamodule, "tokenizer", None)
        if tokenizer is not None:
            if tokenizer.vocab_size != self.vocab_size:
                raise ValueError(
                    f"the data's tokenizer has {tokenizer.vocab_size} pieces but the model was "
                    f"built for vocab_size={self.vocab_size}"
                )
            if self.tokenizer is not None and self.tokenizer.fingerprint != tokenizer.fingerprint:
                raise CheckpointError(_tokenizer_mismatch(self.tokenizer, tokenizer))
            self.tokenizer = tokenizer

    @torch.no_grad()
    def generate(self, src: Tensor, src_pad_mask: Tensor) -> list[list[int]]:
        """Best hypothesis of every row with the module's search settings."""
        nbests = search(
            self,
            src,
            src_pad_mask,
            beam_size=self.beam_size,
            length_penalty=self.length_penalty,
            nbest=1,
            max_len_a=self.max_len_a,
            max_len_b=self.max_len_b,
        )
        return [nbest[0].tokens for nbest in nbests]

    def _eval_step(self, batch: Batch, split: str) -> None:
        loss, nll, n_tokens = self._loss(batch, 0.0)
        self._eval_sums[0] += nll.detach()
        self._eval_sums[1] += n_tokens
        if self.tokenizer is None:
            raise RuntimeError("no tokenizer: fit/validate through a TranslationDataModule")
        hyps = self.tokenizer.decode(self.generate(batch.src, batch.src_pad_mask))
        for i, hyp, ref in zip(batch.indices.tolist(), hyps, batch.refs, strict=True):
            self._eval_outputs.append((i, hyp, ref))

    def _eval_start(self) -> None:
        self._eval_outputs = []
        self._eval_sums = torch.zeros(2, dtype=torch.float64, device=self.device)

    def _eval_end(self, split: str) -> None:
        from mt.eval.evaluation import corpus_scores

        sums = self.trainer.strategy.reduce(self._eval_sums, reduce_op="sum")
        nll = float(sums[0] / sums[1].clamp(min=1))
        rows = gather_unique(self._eval_outputs)
        hyps, refs = [h for _, h, _ in rows], [r for _, _, r in rows]
        scores = corpus_scores(hyps, refs)
        self.log(f"{split}/loss", nll, sync_dist=False, rank_zero_only=False)
        self.log(f"{split}/ppl", math.exp(min(nll, 50.0)))
        self.log(f"{split}/bleu", scores.bleu, prog_bar=True)
        self.log(f"{split}/chrf", scores.chrf)
        self.last_eval = {
            "split": split,
            "scores": scores,
            "indices": [i for i, _, _ in rows],  # line numbers in the split's files
            "hyps": hyps,
            "refs": refs,
        }
        # One line per evaluation (not the sanity check), so a log ends with its last score.
        if not self.trainer.sanity_checking and self.trainer.is_global_zero:
            where = f"  [step {self.trainer.global_step}]" if split == "val" else ""
            self.print(f"[mt] {split}: {scores.bleu_detail}  ({scores.bleu_signature}){where}")
        self._eval_outputs = []

    def on_validation_epoch_start(self) -> None:
        self._eval_start()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def on_test_epoch_start(self) -> None:
        self._eval_start()

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    def predict_step(self, batch: Batch, batch_idx: int) -> list[tuple[int, str]]:
        assert self.tokenizer is not None, "no tokenizer"
        hyps = self.tokenizer.decode(self.generate(batch.src, batch.src_pad_mask))
        return list(zip(batch.indices.tolist(), hyps, strict=True))

    # -- checkpoints ------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizer is not None:
            checkpoint["mt_tokenizer"] = self.tokenizer.model_proto
        checkpoint["mt_class"] = f"{type(self).__module__}.{type(self).__qualname__}"

    def option_applies(self, name: str) -> bool:
        """Whether the option ``name`` changes what this model computes (an option that does not,
        such as a score scale of an attention without that score, needs no match on resume)."""
        return True

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A checkpoint from before an option existed was trained with its old behaviour; a model
        # built from a newer config (``mt fit --ckpt_path``) must not silently change it.
        saved_hparams = checkpoint.get("hyper_parameters", {})
        changed = {
            name: old
            for name, old in self.checkpoint_defaults.items()
            if name not in saved_hparams
            and self.hparams.get(name, old) != old
            and self.option_applies(name)
        }
        if changed:  # one message naming every such option, so that one rerun suffices
            raise CheckpointError(
                "the checkpoint was trained before the model option(s) "
                + ", ".join(repr(n) for n in changed)
                + " existed, i.e. with "
                + ", ".join(f"{n}={v}" for n, v in changed.items())
                + "; this model has "
                + ", ".join(f"{n}={self.hparams.get(n)}" for n in changed)
                + ": set "
                + " ".join(f"--model.init_args.{n} {str(v).lower()}" for n, v in changed.items())
            )
        if "mt_tokenizer" not in checkpoint:
            return
        saved = Tokenizer(checkpoint["mt_tokenizer"])
        # Lightning runs setup() (which takes the data module's tokenizer) before it restores a
        # --ckpt_path checkpoint: the two must be the same sentencepiece model.
        if self.tokenizer is not None and self.tokenizer.fingerprint != saved.fingerprint:
            raise CheckpointError(_tokenizer_mismatch(saved, self.tokenizer))
        self.tokenizer = saved

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls, checkpoint_path: str | os.PathLike, map_location: Any = None, **kwargs: Any
    ) -> Seq2SeqModule:
        """Load a checkpoint with ``load_checkpoint`` (the architecture is read from the file).

        On a subclass the file must hold that class. Keyword arguments (Lightning's overrides of
        saved hyperparameters, ``strict``, ...) take Lightning's own path instead.
        """
        if kwargs:
            return super().load_from_checkpoint(
                checkpoint_path, map_location=map_location, **kwargs
            )
        model = load_checkpoint(checkpoint_path, map_location or "cpu")
        if not isinstance(model, cls):
            raise CheckpointError(
                f"{checkpoint_path}: holds a {type(model).__name__}, not a {cls.__name__}"
            )
        return model


def _tokenizer_mismatch(model_tokenizer: Tokenizer, data_tokenizer: Tokenizer) -> str:
    return (
        "the model's sentencepiece model differs from the one the data module encoded the data "
        f"with ({describe_difference(model_tokenizer, data_tokenizer)}): the model would read "
        "the wrong subwords. Give the data module the model's tokenizer "
        "(TranslationDataModule.use_tokenizer; `mt` does so for --ckpt_path) or train a new model"
    )


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)``: no pickled code runs and nothing is imported.

    Args:
        path: the checkpoint file.
        map_location: as for ``torch.load``.
        mmap: memory-map the tensors instead of reading them (to look at the metadata only).

    Raises:
        CheckpointError: one line naming the file: unreadable (truncated, corrupt), or holding
            pickled Python objects (a full pickle rather than weights), which mt refuses to load.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # zip errors, unpickling errors, EOF
        raise unreadable_checkpoint(path, err) from None


def unreadable_checkpoint(path: str | os.PathLike, err: Exception) -> CheckpointError:
    """The one-line error for a checkpoint that ``torch.load`` could not read: truncated or
    corrupt, or holding pickled Python objects (refused; torch's own message advises
    ``weights_only=False``, i.e. running whatever the file holds, which mt never does)."""
    if isinstance(err, pickle.UnpicklingError):
        detail = str(err).rpartition("WeightsUnpickler error:")[2].strip().split(". ")[0]
        return CheckpointError(
            f"{path}: refusing to load: the checkpoint holds pickled Python objects, not only "
            f"weights and plain values ({detail or type(err).__name__}); mt loads only "
            "weights-only checkpoints, such as those its training writes"
        )
    return CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})")


def check_checkpoint_model(path: str | os.PathLike, config_class_path: str | None) -> None:
    """Refuse a checkpoint whose model class is not mt's, or not the config's, before the class
    it names is imported (LightningCLI imports ``hyper_parameters["_class_path"]`` of a
    ``--ckpt_path`` checkpoint and builds that model, whatever the config says).

    Args:
        path: the checkpoint file (read weights-only, tensors memory-mapped).
        config_class_path: the configured model's class path (``model.class_path``), or None.

    Raises:
        CheckpointError: one line naming the file and the class.
    """
    ckpt = read_checkpoint(path, mmap=True)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not an mt checkpoint (not a dictionary)")
    hparams = ckpt.get("hyper_parameters") or {}
    named = [n for n in (hparams.get("_class_path"), ckpt.get("mt_class")) if n is not None]
    for name in named:
        if not (isinstance(name, str) and name.startswith("mt.")):
            raise CheckpointError(
                f"{path}: refusing to load the model class {name!r} it names: only classes "
                "from mt (mt.*) are loaded"
            )
    if named and config_class_path:
        held, configured = named[0].rpartition(".")[2], config_class_path.rpartition(".")[2]
        if held != configured:
            raise CheckpointError(
                f"{path} holds a {held} model but the config's model is {configured}: pass the "
                "config the checkpoint was trained with"
            )


def checkpoint_tokenizer(path: str | os.PathLike) -> Tokenizer | None:
    """The sentencepiece model a checkpoint carries (None if it carries none); the weights are
    memory-mapped, not read.

    Raises:
        CheckpointError: the file is not a readable weights-only checkpoint.
    """
    ckpt = read_checkpoint(path, mmap=True)
    proto = ckpt.get("mt_tokenizer") if isinstance(ckpt, dict) else None
    return Tokenizer(proto) if proto is not None else None


def gather_unique(rows: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
    """All ranks' ``(line index, hypothesis, reference)`` rows, one per index, in file order.

    Under DDP the samplers may repeat examples to even out the ranks; the line index removes them.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gathered: list[list[tuple[int, str, str]]] = [[] for _ in range(torch.distributed.get_world_size())]
        torch.distributed.all_gather_object(gathered, rows)
        rows = [r for part in gathered for r in part]
    return sorted({r[0]: r for r in rows}.values())


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Seq2SeqModule:
    """Rebuild the model a checkpoint was saved from, with its tokenizer; no config needed.

    The file is read with ``weights_only=True``: no pickled code is executed.

    Raises:
        CheckpointError: the file is missing, truncated/corrupt, or not an mt checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    ckpt = read_checkpoint(path, map_location)
    if not isinstance(ckpt, dict) or "mt_class" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: not an mt checkpoint (no model class or weights in it)")
    module_name, _, class_name = ckpt["mt_class"].rpartition(".")
    if not module_name.startswith("mt."):
        raise CheckpointError(f"{path}: refusing to load model class {ckpt['mt_class']!r}")
    model_cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(model_cls, type) and issubclass(model_cls, Seq2SeqModule)):
        raise CheckpointError(f"{path}: {ckpt['mt_class']} is not a Seq2SeqModule")
    # LightningCLI adds bookkeeping entries such as "_class_path": not constructor arguments.
    hparams = {k: v for k, v in ckpt.get("hyper_parameters", {}).items() if not k.startswith("_")}
    model = model_cls(**{**model_cls.checkpoint_defaults, **hparams})
    model.load_state_dict(ckpt["state_dict"])
    model.on_load_checkpoint(ckpt)
    model.trained_max_len = (ckpt.get("datamodule_hyper_parameters") or {}).get("max_len")
    if model.tokenizer is None:
        raise CheckpointError(f"{path}: the checkpoint carries no sentencepiece model")
    return model.eval()
