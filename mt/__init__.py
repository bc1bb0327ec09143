"""mt: LSTM+attention and Transformer machine translation on PyTorch Lightning.

The public classes, importable from the package::

    from mt import TransformerSeq2Seq, RNNSeq2Seq, LSTMSeq2Seq, TranslationDataModule, Translator

They are imported on first use (module ``__getattr__``), so that ``import mt`` and the ``mt``
command's help stay fast (the models pull in Lightning). The module paths from before the
subpackages (``mt.rnn``, ``mt.module``, ...) still import: see :mod:`mt._compat`.
"""

from __future__ import annotations

from mt import _compat

_compat.install()

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers know it)

__version__ = "0.1.0"

#: public name -> the module that defines it
_PUBLIC = {
    "TransformerSeq2Seq": "mt.models.transformer",
    "RNNSeq2Seq": "mt.models.rnn",
    "LSTMSeq2Seq": "mt.models.lstm",
    "Seq2SeqModule": "mt.models.module",
    "TranslationDataModule": "mt.data.datamodule",
    "Translator": "mt.tools.translator",
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
    from mt.data.datamodule import TranslationDataModule
    from mt.models.lstm import LSTMSeq2Seq
    from mt.models.module import Seq2SeqModule
    from mt.models.rnn import RNNSeq2Seq
    from mt.models.transformer import TransformerSeq2Seq
    from mt.tools.translator import Translator


__getattr__, __dir__ = _compat.lazy_exports(globals(), _PUBLIC)
