"""The data path: tokenizer, corpus cache, token-budget batcher, data module, corpora, synthetic tasks.

Before it became this package, ``mt.data`` was one module; the names it defined are still
importable from it, on first use (so ``import mt.data`` loads no torch):
``from mt.data import TranslationDataModule``, ``class_path: mt.data.TranslationDataModule``.
"""

from __future__ import annotations

from mt import _compat

#: a name of the former module ``mt.data`` -> the module that defines it now
_FORMER = {
    "iter_lines": "mt.data.cache",
    "EncodedCorpus": "mt.data.cache",
    "encode_corpus": "mt.data.cache",
    "default_cache_dir": "mt.data.cache",
    "Batch": "mt.data.batching",
    "pad_sequences": "mt.data.batching",
    "pad_sources": "mt.data.batching",
    "collate": "mt.data.batching",
    "ParallelDataset": "mt.data.batching",
    "TokenBudgetBatchSampler": "mt.data.batching",
    "cut_batches": "mt.data.batching",
    "decoding_batches": "mt.data.batching",
    "TranslationDataModule": "mt.data.datamodule",
}

__getattr__, __dir__ = _compat.lazy_exports(globals(), _FORMER)
