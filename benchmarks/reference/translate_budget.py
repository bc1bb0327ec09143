r"""Whole-file translation time against the batch budget (#14): `mt translate --max_tokens M` at
beam 5, for a CTranslate2 export and for the PyTorch checkpoint it came from, each run a fresh
`mt` process pinned to one core (so the times include starting Python and loading the model).
Each round runs the budgets in ascending order, CTranslate2 before PyTorch at each; REPEATS rounds
(default 3); every run is written to OUT as JSON.

    python benchmarks/reference/translate_budget.py CHECKPOINT CT2_DIR SRC REF OUT [CORE] [REPEATS]

e.g. with the `make demo` checkpoint exported by `mt export --quantization int8`, on val:

    python benchmarks/reference/translate_budget.py runs/demo/transformer-small/checkpoints/best.ckpt \
        runs/ct2/int8 data/multi30k/val.de data/multi30k/val.en runs/ct2/budget.json 1 3
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sacrebleu

BUDGETS = [256, 512, 1024, 2048, 4096]


def main(checkpoint, ct2_dir, src, ref, out, core="1", repeats="3"):
    mt = shutil.which("mt") or str(Path(sys.executable).with_name("mt"))
    weights = json.loads((Path(ct2_dir) / "mt_export.json").read_text())["quantization"]
    engines = {
        f"ct2-{weights}": ["--engine", "ctranslate2", "--model", ct2_dir, "--threads", "1"],
        "pytorch": ["--checkpoint", checkpoint, "--device", "cpu"],
    }
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    refs = Path(ref).read_text(encoding="utf-8").splitlines()
    record = {"command": " ".join(sys.argv), "input": src, "beam": 5, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(int(repeats)):
            for budget in BUDGETS:
                for name, extra in engines.items():
                    hyp = Path(tmp) / f"{name}-{budget}.txt"
                    cmd = ["taskset", "-c", core, mt, "translate", "--input", src, "--output",
                           str(hyp), "--beam_size", "5", "--max_tokens", str(budget),
                           "--quiet", "true", *extra]  # fmt: skip
                    start = time.perf_counter()
                    subprocess.run(cmd, env=env, check=True)
                    seconds = time.perf_counter() - start
                    lines = hyp.read_text(encoding="utf-8").splitlines()
                    row = {"rep": rep, "max_tokens": budget, "engine": name, "seconds": seconds,
                           "bleu": sacrebleu.corpus_bleu(lines, [refs]).score}  # fmt: skip
                    record["runs"].append(row)
                    print(row, flush=True)
                    Path(out).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if not 6 <= len(sys.argv) <= 8:
        sys.exit(__doc__)
    main(*sys.argv[1:])
