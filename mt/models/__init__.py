"""The models: the Seq2SeqModule base (loss, steps, schedule, checkpoints), the Transformer, the
recurrent model (cell: lstm | gru | rnn) and the model-agnostic greedy/beam search."""
