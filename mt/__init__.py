"""mt: LSTM+attention and Transformer machine translation on PyTorch Lightning."""

__version__ = "0.1.0"
