"""mt: LSTM+attention and Transformer machine translation on PyTorch Lightning.

The public classes, importable from the package::

    from mt import TransformerSeq2Seq, RNNSeq2Seq, LSTMSeq2Seq, TranslationDataModule, Translator

They are imported on first use (module ``__getattr__``), so that ``import mt`` and the ``mt``
command's help stay fast (the models pull in Lightning).
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers know it)

__version__ = "0.1.0"

#: public name -> the module that defines it
_PUBLIC = {
    "TransformerSeq2Seq": "mt.transformer",
    "RNNSeq2Seq": "mt.rnn",
    "LSTMSeq2Seq": "mt.lstm",
    "Seq2SeqModule": "mt.module",
    "TranslationDataModule": "mt.data",
    "Translator": "mt.translate",
}

__all__ = [
    "LSTMSeq2Seq",
    "RNNSeq2Seq",
    "Seq2SeqModule",
    "TransformerSeq2Seq",
    "TranslationDataModule",
    "Translator",
]

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from mt.data import TranslationDataModule
    from mt.lstm import LSTMSeq2Seq
    from mt.module import Seq2SeqModule
    from mt.rnn import RNNSeq2Seq
    from mt.transformer import TransformerSeq2Seq
    from mt.translate import Translator


def __getattr__(name: str) -> object:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'mt' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
