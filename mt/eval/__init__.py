"""Evaluation and reporting: sacreBLEU scoring with length buckets and intervals, the comparison
report, W&B callbacks, throughput (FLOPs, MFU) and gradient-flow measurements."""
