"""CTranslate2 beam-5 speed of transformer-small (random weights, timed as `mt benchmark decode`
times it) in this process's CTranslate2 environment, e.g. CT2_USE_MKL=1 or CT2_FORCE_CPU_ISA=AVX2
(#14). Arguments: sentences, then optionally the batch budget (default 4096) and the systems to
time (ct2-float32, ct2-int8; default both).

    CT2_USE_MKL=1 OMP_NUM_THREADS=1 python benchmarks/reference/ct2_backend.py 200
    CT2_FORCE_CPU_ISA=AVX2 OMP_NUM_THREADS=1 python benchmarks/reference/ct2_backend.py 400 512 ct2-int8
"""
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

from mt.models.search import DEFAULT_SEARCH
from mt.tools.benchmark.decode import (
    _load_split_sources,
    ct2_search,
    decode_batches,
    export_for_decode,
    time_decoding,
)
from mt.tools.benchmark.specs import spec_from_config

torch.set_num_threads(1)
args = SimpleNamespace(data_dir="data/multi30k", vocab_size=8000, seed=1, sentences=int(sys.argv[1]))
sources, tok = _load_split_sources(args)
folder = Path("/tmp/ct2env")
folder.mkdir(parents=True, exist_ok=True)
if not (folder / "ct2-int8").exists():
    torch.manual_seed(1)
    model = spec_from_config("configs/transformer-small.yaml").build(tok.vocab_size).eval()
    print(export_for_decode(model, tok, folder))
budget = int(sys.argv[2]) if len(sys.argv) > 2 else 4096
batches = decode_batches(sources, budget, DEFAULT_SEARCH.max_len_a, DEFAULT_SEARCH.max_len_b)
res = {}
for name in sys.argv[3:] or sorted(p.name for p in folder.iterdir()):
    run = ct2_search(folder / name, tok, 5, torch.device("cpu"), 1)
    speeds = [time_decoding(run, batches, torch.device("cpu"))[0]["sentences_per_s"] for _ in range(2)]
    res[name] = speeds
env = {k: os.environ.get(k) for k in ("CT2_USE_MKL", "CT2_FORCE_CPU_ISA")}
print(json.dumps({**env, "max_tokens": budget, "beam5_sentences_per_s": res}))
