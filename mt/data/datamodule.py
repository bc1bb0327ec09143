"""From parallel text files to padded, length-bucketed batches.

    {data_dir}/{split}.{lang}          raw UTF-8 text, one sentence per line
      -> Tokenizer                     one joint sentencepiece model, trained once and cached
      -> EncodedCorpus                 flat int32 token array + int64 offsets, memory-mapped from
                                       the cache, so workers share the OS page cache instead of RAM
      -> TokenBudgetBatchSampler       batches of similar length under `max_tokens` (padding
                                       counted), shuffled per (seed, epoch), sharded over DDP ranks
      -> Batch                         src, tgt_in, tgt_out, pad masks, raw references, line indices

Cache layout (every entry is written to a temporary directory and renamed into place, so a killed
run never leaves a half-written entry)::

    {cache_dir}/spm-{key}/spm.model                      key: hash of training files + settings
    {cache_dir}/corpus-{key}/{tokens.bin,offsets.npy,text.bin,text_offsets.npy}
                                                         key: hash of the file + tokenizer
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from mt.data.corpora import DataError, check_text_file, sha256_file
from mt.data.lines import LineDecodeError, decode_lines
from mt.data.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    Tokenizer,
    TokenizerError,
    tokenizer_cache_key,
    train_tokenizer,
)
from mt.options import require

# --------------------------------------------------------------------------------------------
# Reading text
# --------------------------------------------------------------------------------------------


def iter_lines(path: str | os.PathLike) -> Iterator[str]:
    """Yield the lines of a UTF-8 file without their line ending ("\\n" or "\\r\\n"), as
    :func:`mt.data.lines.decode_lines` reads them.

    Raises:
        DataError: on the first line that is not valid UTF-8, naming the file and line number.
    """
    with open(path, "rb") as f:
        try:
            yield from decode_lines(f, str(path))
        except LineDecodeError as err:
            raise DataError(str(err)) from None


# --------------------------------------------------------------------------------------------
# Encoded, memory-mapped corpus
# --------------------------------------------------------------------------------------------


class EncodedCorpus:
    """One side of one split: subword ids and raw text of every line, memory-mapped.

    The arrays are opened lazily, so a corpus object pickles cheaply into data-loader workers and
    each worker maps the same files (no copy of the corpus per worker).
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def _load(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self._arrays is None:
            d = self.directory
            offsets = np.load(d / "offsets.npy", mmap_mode="r")
            text_offsets = np.load(d / "text_offsets.npy", mmap_mode="r")
            tokens = _map(d / "tokens.bin", np.int32)
            text = _map(d / "text.bin", np.uint8)
            self._arrays = (tokens, offsets, text, text_offsets)
        return self._arrays

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": self.directory, "_arrays": None}

    def __len__(self) -> int:
        return len(self._load()[1]) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Number of subword tokens of every line (without BOS/EOS)."""
        offsets = self._load()[1]
        return np.diff(offsets).astype(np.int64)

    def ids(self, i: int) -> np.ndarray:
        tokens, offsets, _, _ = self._load()
        return tokens[offsets[i] : offsets[i + 1]]

    def text(self, i: int) -> str:
        _, _, text, text_offsets = self._load()
        return bytes(text[text_offsets[i] : text_offsets[i + 1]]).decode("utf-8")


def _map(path: Path, dtype: type) -> np.ndarray:
    # np.memmap refuses empty files; an empty corpus side is legal (then it has no tokens).
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


def encode_corpus(
    path: str | os.PathLike, tokenizer: Tokenizer, out_dir: str | os.PathLike, chunk: int = 50_000
) -> None:
    """Encode a text file into ``out_dir`` (see EncodedCorpus). Memory stays O(chunk)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    offsets = [np.zeros(1, dtype=np.int64)]
    text_offsets = [np.zeros(1, dtype=np.int64)]
    n_tokens = n_bytes = 0
    with open(out_dir / "tokens.bin", "wb") as tok_f, open(out_dir / "text.bin", "wb") as txt_f:

        def flush(lines: list[str]) -> None:
            nonlocal n_tokens, n_bytes
            encoded = tokenizer.encode(lines)
            lengths = np.fromiter((len(x) for x in encoded), dtype=np.int64, count=len(encoded))
            flat = np.fromiter((t for x in encoded for t in x), dtype=np.int32, count=lengths.sum())
            flat.tofile(tok_f)
            offsets.append(n_tokens + np.cumsum(lengths))
            n_tokens += int(lengths.sum())
            raw = [s.encode("utf-8") for s in lines]
            txt_f.write(b"".join(raw))
            byte_lengths = np.fromiter((len(b) for b in raw), dtype=np.int64, count=len(raw))
            text_offsets.append(n_bytes + np.cumsum(byte_lengths))
            n_bytes += int(byte_lengths.sum())

        buffer: list[str] = []
        for line in iter_lines(path):
            buffer.append(line)
            if len(buffer) == chunk:
                flush(buffer)
                buffer = []
        if buffer:
            flush(buffer)
    np.save(out_dir / "offsets.npy", np.concatenate(offsets))
    np.save(out_dir / "text_offsets.npy", np.concatenate(text_offsets))


def _atomic_cache_entry(final: Path, build: Any) -> Path:
    """Run ``build(tmp_dir)`` and rename the result to ``final``, unless ``final`` exists."""
    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        build(tmp)
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished first; its entry is identical
            if not final.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------


@dataclass
class Batch:
    """A padded batch. Shapes: B sentences, S source length, T target length.

    ``src`` is the source ids followed by EOS; ``tgt_in`` is BOS followed by the target ids and
    ``tgt_out`` the target ids followed by EOS (so tgt_in[:, t + 1] == tgt_out[:, t]). Masks are True
    at padding. ``indices`` are the 0-based line numbers in the split's files and ``refs`` the raw
    target lines, exactly as read from the file (what BLEU is computed against).
    ``src_tokens``/``tgt_tokens`` are the non-padding counts, computed by ``collate`` on the host
    so that reading them never waits for a GPU (None: counted from the masks when asked).
    """

    src: Tensor  # (B, S) long
    src_pad_mask: Tensor  # (B, S) bool
    tgt_in: Tensor  # (B, T) long
    tgt_out: Tensor  # (B, T) long
    tgt_pad_mask: Tensor  # (B, T) bool
    indices: Tensor  # (B,) long
    refs: list[str]
    src_tokens: int | None = None
    tgt_tokens: int | None = None

    def __len__(self) -> int:
        return self.src.size(0)

    @property
    def n_src_tokens(self) -> int:
        """Non-padding source tokens (EOS included)."""
        if self.src_tokens is not None:
            return self.src_tokens
        return int((~self.src_pad_mask).sum())

    @property
    def n_tgt_tokens(self) -> int:
        """Non-padding target tokens that the loss is computed on (EOS included)."""
        if self.tgt_tokens is not None:
            return self.tgt_tokens
        return int((~self.tgt_pad_mask).sum())

    def _map(self, fn: Any) -> Batch:
        return Batch(
            src=fn(self.src),
            src_pad_mask=fn(self.src_pad_mask),
            tgt_in=fn(self.tgt_in),
            tgt_out=fn(self.tgt_out),
            tgt_pad_mask=fn(self.tgt_pad_mask),
            indices=fn(self.indices),
            refs=self.refs,
            src_tokens=self.src_tokens,
            tgt_tokens=self.tgt_tokens,
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        return self._map(lambda t: t.pin_memory())


def pad_sequences(seqs: Sequence[np.ndarray | list[int]], multiple: int = 1) -> Tensor:
    """Right-pad id sequences with PAD_ID to a (B, L) long tensor, L rounded up to ``multiple``."""
    length = max((len(s) for s in seqs), default=0)
    length = -(-length // multiple) * multiple
    out = np.full((len(seqs), length), PAD_ID, dtype=np.int64)
    for row, s in enumerate(seqs):
        out[row, : len(s)] = s
    return torch.from_numpy(out)


def pad_sources(seqs: Sequence[np.ndarray | Sequence[int]], multiple: int = 1) -> Tensor:
    """The (B, S) source tensor of id sequences (without EOS): each followed by EOS, then
    right-padded with PAD_ID (see :func:`pad_sequences`). Training, translation and benchmarks
    build their sources with it."""
    eos = np.array([EOS_ID])
    return pad_sequences([np.concatenate([np.asarray(s, dtype=np.int64), eos]) for s in seqs], multiple)


def collate(
    items: Sequence[tuple[int, np.ndarray, np.ndarray, str]], pad_to_multiple: int = 1
) -> Batch:
    """Build a Batch from ``(index, src_ids, tgt_ids, ref)`` items (ids without BOS/EOS)."""
    eos, bos = np.array([EOS_ID]), np.array([BOS_ID])
    src = pad_sources([s for _, s, _, _ in items], pad_to_multiple)
    tgt_in = pad_sequences([np.concatenate([bos, t]) for _, _, t, _ in items], pad_to_multiple)
    tgt_out = pad_sequences([np.concatenate([t, eos]) for _, _, t, _ in items], pad_to_multiple)
    return Batch(
        src=src,
        src_pad_mask=src == PAD_ID,
        tgt_in=tgt_in,
        tgt_out=tgt_out,
        tgt_pad_mask=tgt_out == PAD_ID,
        indices=torch.tensor([i for i, _, _, _ in items], dtype=torch.long),
        refs=[r for _, _, _, r in items],
        src_tokens=sum(len(s) + 1 for _, s, _, _ in items),  # + EOS
        tgt_tokens=sum(len(t) + 1 for _, _, t, _ in items),  # + EOS
    )


class ParallelDataset(Dataset):
    """Item ``i`` is line ``i`` of both sides: ``(i, src_ids, tgt_ids, raw_target_line)``."""

    def __init__(self, src: EncodedCorpus, tgt: EncodedCorpus) -> None:
        self.src, self.tgt = src, tgt

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray, np.ndarray, str]:
        return i, np.asarray(self.src.ids(i)), np.asarray(self.tgt.ids(i)), self.tgt.text(i)


# --------------------------------------------------------------------------------------------
# Token-budget batch sampler
# --------------------------------------------------------------------------------------------


class TokenBudgetBatchSampler(Sampler[list[int]]):
    """Batches of sentences of similar length whose padded size stays within ``max_tokens``.

    The cost of a batch is ``rows x longest sequence`` over source and target tensors (the
    source carries EOS, the target BOS/EOS), i.e. the padded size of the larger tensor, rounded up
    to ``pad_to_multiple``. A single sentence longer than the budget forms a batch of its own.

    Batches are cut once from the examples sorted by length (so their number never changes between
    epochs); with ``shuffle`` their order is permuted per ``(seed, epoch)``. For ``num_replicas``
    ranks the batch count is made divisible by splitting the largest batches in two, so every rank
    gets the same number of batches and every example is seen exactly once per epoch. Only when
    there are fewer examples than ranks are batches repeated (evaluation removes the duplicates by
    line index).

    Args:
        src_lengths / tgt_lengths: subword counts per example (without BOS/EOS), in line order.
        max_tokens: the token budget per batch, padding counted.
        indices: the examples to use (e.g. after length filtering); default all.
    """

    def __init__(
        self,
        src_lengths: np.ndarray,
        tgt_lengths: np.ndarray,
        max_tokens: int,
        indices: np.ndarray | None = None,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        pad_to_multiple: int = 1,
    ) -> None:
        if max_tokens <= 0:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.max_tokens, self.shuffle, self.seed = max_tokens, shuffle, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self._position = 0  # batches of the current epoch already yielded on this rank
        self._resume_at = 0  # where the next iteration starts (set by load_state_dict)
        if indices is None:
            indices = np.arange(len(src_lengths))
        indices = np.asarray(indices, dtype=np.int64)
        # Tensor lengths: source + EOS, target + BOS (tgt_in) or + EOS (tgt_out).
        src_len, tgt_len = np.asarray(src_lengths)[indices], np.asarray(tgt_lengths)[indices]
        size = np.maximum(src_len, tgt_len) + 1
        size = -(-size // pad_to_multiple) * pad_to_multiple
        # By padded size, then source and target length (so the smaller side of a batch pads
        # little too: 95% non-padding on Multi30k at 4096 tokens, 92.6% with size alone), then
        # line number. A stable, seed-independent order: the batches are the same every epoch.
        order = np.lexsort((indices, tgt_len, src_len, size))
        sorted_indices = indices[order]
        batches = [sorted_indices[cut] for cut in cut_batches(size[order], max_tokens)]
        self._batches = _balance(batches, num_replicas)

    @property
    def sampler(self) -> TokenBudgetBatchSampler:
        """The sampler itself: Lightning calls ``set_epoch`` on ``batch_sampler.sampler`` (not on
        the batch sampler) at the start of every epoch, which is what reshuffles the batches."""
        return self

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self._position, self._resume_at = epoch, 0, 0

    def _epoch_batches(self) -> list[np.ndarray]:
        batches = self._batches
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        return len(self._batches) // self.num_replicas

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._epoch_batches()
        # Only a restored state skips batches; an iteration abandoned early (e.g. limit_val_batches)
        # does not make the next one start in the middle.
        start, self._resume_at = self._resume_at, 0
        for i in range(start, len(batches)):
            self._position = i + 1
            yield batches[i].tolist()

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self._position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume: the next iteration yields the batches of ``epoch`` after ``position``."""
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"sampler state was saved with seed {state['seed']}, not {self.seed}")
        self.epoch, self._position = int(state["epoch"]), int(state["position"])
        self._resume_at = self._position


def cut_batches(sizes: Sequence[int] | np.ndarray, max_tokens: int) -> list[slice]:
    """The token-budget batcher: cut a sequence of padded sizes, in the order given (sorted by
    length, ascending or descending), into consecutive slices whose cost ``rows x largest size``
    stays within ``max_tokens``, greedily. A single size over the budget is a batch of its own.

    Training (:class:`TokenBudgetBatchSampler`) and decoding (:func:`decoding_batches`:
    ``mt translate``, ``mt compare``, ``scripts/evaluate.py``, ``mt benchmark decode``) batch with it.
    """
    if isinstance(sizes, np.ndarray):
        sizes = sizes.tolist()  # Python ints: a loop over numpy scalars is several times slower
    batches: list[slice] = []
    start, width = 0, 0  # the open batch starts at ``start``; ``width``: its largest size
    for end, size in enumerate(sizes):
        new_width = max(width, size)
        if end > start and (end + 1 - start) * new_width > max_tokens:
            batches.append(slice(start, end))
            start, new_width = end, size
        width = new_width
    if start < len(sizes):
        batches.append(slice(start, len(sizes)))
    return batches


def decoding_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Batches of the indices of sentences of ``lengths`` subwords (EOS not counted) for
    decoding: longest first (ties in input order), cut by :func:`cut_batches` at rows x longest
    source (EOS included) <= ``max_tokens``. Callers put each result back at its index, so
    outputs keep the input order; :func:`pad_sources` builds a batch's source tensor."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)
    return [order[cut] for cut in cut_batches([lengths[i] + 1 for i in order], max_tokens)]


def _balance(batches: list[np.ndarray], num_replicas: int) -> list[np.ndarray]:
    """Split the largest batches until their number is divisible by ``num_replicas``."""
    batches = list(batches)
    while len(batches) % num_replicas:
        largest = max(range(len(batches)), key=lambda i: len(batches[i]), default=None)
        if largest is None or len(batches[largest]) < 2:
            # Fewer examples than ranks: repeat batches (duplicates are dropped at evaluation).
            need = num_replicas - len(batches) % num_replicas
            batches += [batches[i % len(batches)] for i in range(need)] if batches else []
            break
        b = batches[largest]
        batches[largest : largest + 1] = [b[: len(b) // 2], b[len(b) // 2 :]]
    return batches


# --------------------------------------------------------------------------------------------
# Lightning data module
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    return Path(os.environ.get("MT_CACHE_DIR", Path.home() / ".cache" / "mt"))


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
