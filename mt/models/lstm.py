"""The LSTM model under the names that configs and checkpoints written before the ``cell``
option use (``class_path: mt.models.lstm.LSTMSeq2Seq``): :class:`mt.models.rnn.RNNSeq2Seq` with
``cell: lstm``, its default.
"""

from mt.models.rnn import Attention, AttentionType, BiRNNEncoder, RNNSeq2Seq, RNNState

__all__ = ["Attention", "AttentionType", "BiLSTMEncoder", "LSTMSeq2Seq", "LSTMState"]

BiLSTMEncoder = BiRNNEncoder
LSTMState = RNNState


class LSTMSeq2Seq(RNNSeq2Seq):
    """:class:`mt.models.rnn.RNNSeq2Seq` (``cell`` defaults to ``lstm``), under its former name."""
