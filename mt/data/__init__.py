"""The data path: tokenizer, corpus cache, token-budget batcher, data module, corpora, synthetic tasks.

Before it became this package, ``mt.data`` was one module; the names it defined are still
importable from it, on first use (so ``import mt.data`` loads no torch):
``from mt.data import TranslationDataModule``, ``class_path: mt.data.TranslationDataModule``.
"""

from __future__ import annotations

from mt import _compat

#: a name of the former module ``mt.data`` -> the module that defines it now
_FORMER = {
    "iter_lines": "mt.data.datamodule",
    "EncodedCorpus": "mt.data.datamodule",
    "encode_corpus": "mt.data.datamodule",
    "default_cache_dir": "mt.data.datamodule",
    "Batch": "mt.data.datamodule",
    "pad_sequences": "mt.data.datamodule",
    "pad_sources": "mt.data.datamodule",
    "collate": "mt.data.datamodule",
    "ParallelDataset": "mt.data.datamodule",
    "TokenBudgetBatchSampler": "mt.data.datamodule",
    "cut_batches": "mt.data.datamodule",
    "decoding_batches": "mt.data.datamodule",
    "TranslationDataModule": "mt.data.datamodule",
}

__getattr__, __dir__ = _compat.lazy_exports(globals(), _FORMER)
