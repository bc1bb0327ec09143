"""From parallel text files to padded, length-bucketed batches: the Lightning data module.

    {data_dir}/{split}.{lang}          raw UTF-8 text, one sentence per line
      -> Tokenizer                     one joint sentencepiece model, trained once and cached
                                       (mt.data.tokenizer)
      -> EncodedCorpus                 flat int32 token array + int64 offsets, memory-mapped from
                                       the cache, so workers share the OS page cache instead of RAM
                                       (mt.data.cache, which also describes the cache layout)
      -> TokenBudgetBatchSampler       batches of similar length under `max_tokens` (padding
                                       counted), shuffled per (seed, epoch), sharded over DDP ranks
                                       (mt.data.batching)
      -> Batch                         src, tgt_in, tgt_out, pad masks, raw references, line indices
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from mt.data.batching import Batch, ParallelDataset, TokenBudgetBatchSampler, collate
from mt.data.cache import (
    EncodedCorpus,
    _atomic_cache_entry,
    default_cache_dir,
    encode_corpus,
)
from mt.data.corpora import DataError, check_text_file, sha256_file
from mt.data.tokenizer import (
    Tokenizer,
    TokenizerError,
    tokenizer_cache_key,
    train_tokenizer,
)
from mt.options import require

# --------------------------------------------------------------------------------------------
# Lightning data module
# --------------------------------------------------------------------------------------------


class TranslationDataModule(L.LightningDataModule):
    """Parallel text files -> sentencepiece -> token-budget batches, for training and evaluation.

    Args:
        data_dir: folder with ``{split}.{lang}`` files (see scripts/download_data.py).
        src_lang: source language suffix, e.g. ``de``.
        tgt_lang: target language suffix, e.g. ``en``.
        train_split: training split name (the tokenizer is trained on it).
        val_split: validation split name; never filtered or truncated.
        test_split: test split name; never filtered or truncated.
        vocab_size: joint sentencepiece vocabulary size (linked to the model by the CLI).
        tokenizer_type: sentencepiece algorithm.
        max_tokens: token budget per training batch, padding counted.
        eval_max_tokens: token budget per evaluation batch (default: ``max_tokens``).
        max_len: training pairs with more subwords than this on either side are filtered out.
        max_len_ratio: training pairs whose longer side has more than this many times the
            subwords of the shorter side are filtered out.
        num_workers: data-loader worker processes.
        seed: seed of the batch order (per epoch); the tokenizer does not depend on it.
        pad_to_multiple: round padded lengths up to a multiple of this (8 helps torch.compile).
        cache_dir: where the tokenizer and encoded corpora are cached (default ``$MT_CACHE_DIR``
            or ``~/.cache/mt``).
    """

    def __init__(
        self,
        data_dir: str = "data/multi30k",
        src_lang: str = "de",
        tgt_lang: str = "en",
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "test_2016_flickr",
        vocab_size: int = 8000,
        tokenizer_type: Literal["unigram", "bpe"] = "unigram",
        max_tokens: int = 4096,
        eval_max_tokens: int | None = None,
        max_len: int = 256,
        max_len_ratio: float = 3.0,
        num_workers: int = 2,
        seed: int = 0,
        pad_to_multiple: int = 1,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        positive = {"max_tokens": max_tokens, "max_len": max_len, "pad_to_multiple": pad_to_multiple}
        if eval_max_tokens is not None:
            positive["eval_max_tokens"] = eval_max_tokens
        for key, value in positive.items():
            require(f"data.{key}", value, value >= 1, ">= 1")
        require("data.max_len_ratio", max_len_ratio, max_len_ratio >= 1, ">= 1")
        require("data.num_workers", num_workers, num_workers >= 0, ">= 0")
        if src_lang == tgt_lang:
            raise DataError(f"src_lang and tgt_lang are both {src_lang!r}")
        self.save_hyperparameters()
        self.data_dir = Path(data_dir)
        self.src_lang, self.tgt_lang = src_lang, tgt_lang
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        self.vocab_size, self.tokenizer_type = vocab_size, tokenizer_type
        self.max_tokens = max_tokens
        self.eval_max_tokens = eval_max_tokens or max_tokens
        self.max_len, self.max_len_ratio = max_len, max_len_ratio
        self.num_workers, self.seed, self.pad_to_multiple = num_workers, seed, pad_to_multiple
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.tokenizer: Tokenizer | None = None
        self.tokenizer_origin: str | None = None  # set by use_tokenizer
        self.datasets: dict[str, ParallelDataset] = {}
        self.train_indices: np.ndarray | None = None
        self._train_sampler: TokenBudgetBatchSampler | None = None
        self._sampler_state: dict[str, int] | None = None
        self._file_hashes: dict[Path, str] = {}

    # -- files ----------------------------------------------------------------------------

    def files(self, stage: str) -> tuple[Path, Path]:
        split = self.splits[stage]
        return (
            self.data_dir / f"{split}.{self.src_lang}",
            self.data_dir / f"{split}.{self.tgt_lang}",
        )

    def _check_split(self, stage: str) -> None:
        src, tgt = self.files(stage)
        for f in (src, tgt):
            if not f.is_file():
                have = sorted(p.name for p in self.data_dir.glob("*.*")) if self.data_dir.is_dir() else []
                raise DataError(
                    f"{f}: no such file (option data.{stage}_split={self.splits[stage]!r}, "
                    f"data.data_dir={str(self.data_dir)!r}; found: {', '.join(have) or 'nothing'}). "
                    "Get the corpus with `python scripts/download_data.py` or `make data`."
                )
        n_src, n_tgt = check_text_file(src), check_text_file(tgt)
        if n_src != n_tgt:
            raise DataError(f"{src} has {n_src} lines but {tgt} has {n_tgt}; they must be parallel")
        if stage == "train" and n_src == 0:
            raise DataError(f"the training set {src} is empty")

    def _hash(self, path: Path) -> str:
        if path not in self._file_hashes:
            self._file_hashes[path] = sha256_file(path)
        return self._file_hashes[path]

    # -- cache ------------------------------------------------------------------------------

    def _tokenizer_dir(self) -> Path:
        digests = [self._hash(f) for f in self.files("train")]
        key = tokenizer_cache_key(digests, self.vocab_size, self.tokenizer_type, 0.9995)
        return self.cache_dir / f"spm-{key}"

    def _corpus_dir(self, path: Path) -> Path:
        assert self.tokenizer is not None
        key = hashlib.sha256(f"{self._hash(path)}|{self.tokenizer.fingerprint}".encode())
        return self.cache_dir / f"corpus-{key.hexdigest()[:16]}"

    def _build_tokenizer(self) -> Tokenizer:
        def build(tmp: Path) -> None:
            try:
                tok = train_tokenizer(self.files("train"), self.vocab_size, self.tokenizer_type)
            except TokenizerError as err:
                raise DataError(f"{err} (option data.vocab_size)") from None
            (tmp / "spm.model").write_bytes(tok.model_proto)

        directory = _atomic_cache_entry(self._tokenizer_dir(), build)
        return Tokenizer.from_file(directory / "spm.model")

    def use_tokenizer(self, tokenizer: Tokenizer, origin: str) -> None:
        """Encode the data with ``tokenizer`` instead of training one on the training split.

        The CLI passes the tokenizer of a ``--ckpt_path`` checkpoint: a model reads the subwords
        it was trained with, whatever this machine's cache holds or a fresh training would give.

        Args:
            tokenizer: the sentencepiece model to encode every split with.
            origin: where it comes from, for messages (e.g. ``"the checkpoint runs/x/best.ckpt"``).
        """
        if self.tokenizer is not None and self.tokenizer.fingerprint != tokenizer.fingerprint:
            # set up with another tokenizer before: encode again
            self.datasets, self.train_indices, self._train_sampler = {}, None, None
        self.tokenizer, self.tokenizer_origin = tokenizer, origin

    def prepare_data(self) -> None:
        """Check the files, train the tokenizer (unless :meth:`use_tokenizer` gave one) and
        encode every split (once per machine; the results are cached, so other processes and
        later runs only load them)."""
        for stage in self.splits:
            self._check_split(stage)
        if self.tokenizer_origin is None:
            self.tokenizer = self._build_tokenizer()
        for stage in self.splits:
            for path in self.files(stage):
                _atomic_cache_entry(
                    self._corpus_dir(path), lambda tmp, p=path: encode_corpus(p, self.tokenizer, tmp)
                )

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is None:
            self.prepare_data()  # a no-op when cached; covers use without a Trainer
        assert self.tokenizer is not None
        if self.tokenizer.vocab_size != self.vocab_size:
            raise DataError(
                f"the tokenizer of {self.tokenizer_origin or self.files('train')[0].parent} has "
                f"{self.tokenizer.vocab_size} pieces, data.vocab_size is {self.vocab_size}"
            )
        for name in self.splits:
            if name not in self.datasets:
                src, tgt = (EncodedCorpus(self._corpus_dir(p)) for p in self.files(name))
                self.datasets[name] = ParallelDataset(src, tgt)
        if self.train_indices is None:
            self.train_indices = self._filter_train()

    def _filter_train(self) -> np.ndarray:
        ds = self.datasets["train"]
        s, t = ds.src.lengths, ds.tgt.lengths
        empty = (s == 0) | (t == 0)
        too_long = ~empty & ((s > self.max_len) | (t > self.max_len))
        ratio = np.maximum(s, t) / np.maximum(np.minimum(s, t), 1)
        bad_ratio = ~empty & ~too_long & (ratio > self.max_len_ratio)
        keep = ~(empty | too_long | bad_ratio)
        src_file = self.files("train")[0]
        rank_zero_info(
            f"[mt] training data {src_file.with_suffix('')}.{{{self.src_lang},{self.tgt_lang}}}: "
            f"{len(s)} pairs, kept {int(keep.sum())}, removed {int(empty.sum())} empty, "
            f"{int(too_long.sum())} longer than max_len={self.max_len}, {int(bad_ratio.sum())} "
            f"with length ratio > {self.max_len_ratio}"
        )
        if not keep.any():
            raise DataError(
                f"no training pairs left in {src_file} after filtering "
                f"(options data.max_len={self.max_len}, data.max_len_ratio={self.max_len_ratio})"
            )
        return np.flatnonzero(keep)

    # -- loaders ----------------------------------------------------------------------------

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def batch_sampler(self, stage: str) -> TokenBudgetBatchSampler:
        ds = self.datasets[stage]
        replicas, rank = self._world()
        train = stage == "train"
        return TokenBudgetBatchSampler(
            ds.src.lengths,
            ds.tgt.lengths,
            self.max_tokens if train else self.eval_max_tokens,
            indices=self.train_indices if train else None,
            shuffle=train,
            seed=self.seed,
            num_replicas=replicas,
            rank=rank,
            pad_to_multiple=self.pad_to_multiple,
        )

    # -- resume ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Where the training epoch stands, saved by Lightning in every checkpoint.

        ``position`` is the number of training batches the *trainer* has finished in the current
        epoch (the data loader's workers may have fetched more), counted as Lightning counts them
        when it restores its own loop progress: a checkpoint written at the end of a training batch
        (``ModelCheckpoint(every_n_train_steps=...)``) counts that batch as done. An epoch that is
        complete is saved as the start of the next one.
        """
        trainer = getattr(self, "trainer", None)
        if trainer is None or self._train_sampler is None:
            return {}
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        position = progress.completed
        if progress.ready == progress.started == progress.processed == progress.completed + 1:
            position += 1  # saved in on_train_batch_end: Lightning restores this batch as done
        epoch = trainer.current_epoch
        if position >= min(len(self._train_sampler), trainer.num_training_batches):
            epoch, position = epoch + 1, 0
        return {
            "train_sampler": {"epoch": epoch, "position": position, "seed": self.seed},
            "num_replicas": self._train_sampler.num_replicas,
            "batches_per_replica": len(self._train_sampler),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume: the next training loader starts at the saved epoch and position."""
        if "train_sampler" not in state_dict:
            return
        self._sampler_state = {
            **state_dict["train_sampler"],
            "num_replicas": state_dict["num_replicas"],
            "batches_per_replica": state_dict["batches_per_replica"],
        }

    def _restore_train_sampler(self, sampler: TokenBudgetBatchSampler) -> None:
        assert self._sampler_state is not None
        state, self._sampler_state = dict(self._sampler_state), None
        replicas = int(state.pop("num_replicas"))
        per_replica = int(state.pop("batches_per_replica"))
        if (replicas, per_replica) != (sampler.num_replicas, len(sampler)):
            # Another world size or batching: the batches are cut differently, so only an
            # approximate position in the epoch can be kept.
            done = state["position"] / max(per_replica, 1)
            state["position"] = min(round(done * len(sampler)), len(sampler))
            rank_zero_warn(
                f"[mt] resuming with {sampler.num_replicas} processes x {len(sampler)} batches per "
                f"epoch, saved with {replicas} x {per_replica}: the interrupted epoch goes on from "
                "about the same fraction, so a few sentences of it may be seen twice or not at all"
            )
        sampler.load_state_dict(state)

    def _loader(self, stage: str) -> DataLoader:
        sampler = self.batch_sampler(stage)
        if stage == "train":
            if self._sampler_state is not None:
                self._restore_train_sampler(sampler)
            self._train_sampler = sampler
        return DataLoader(
            self.datasets[stage],
            batch_sampler=sampler,
            collate_fn=_Collate(self.pad_to_multiple),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")

    def source_lines(self, stage: str) -> list[str]:
        src = self.datasets[stage].src
        return [src.text(i) for i in range(len(src))]


class _Collate:
    """Picklable collate function (workers may be spawned)."""

    def __init__(self, pad_to_multiple: int) -> None:
        self.pad_to_multiple = pad_to_multiple

    def __call__(self, items: Sequence[tuple[int, np.ndarray, np.ndarray, str]]) -> Batch:
        return collate(items, self.pad_to_multiple)
