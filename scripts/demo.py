#!/usr/bin/env python
"""The main job, end to end, on a CPU in minutes (`make demo`).

1. Multi30k de-en into data/multi30k (download, or copy from MT_DATA_MIRROR).
2. Train transformer-small and lstm-small for a fixed wall-clock budget each (`mt fit`).
3. Test each best checkpoint on test_2016_flickr (`mt test`): cased sacreBLEU with its signature.
4. Translate a sample file with each checkpoint (scripts/translate.py).
5. Write a comparison report of the two models (scripts/compare.py), when it is available.

Everything goes under runs/demo/ (one run folder per model, runs/demo/{model}, replaced on every
demo); each step prints the command it runs.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("transformer-small", "lstm-small")


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def overlay(out_dir: Path) -> Path:
    """A config layered over configs/{name}.yaml: the demo's W&B project (outputs go to the run
    folder that ``--run_dir`` names)."""
    path = out_dir / "demo-overlay.yaml"
    path.write_text(
        """trainer:
  logger:
    - class_path: mt.cli.WandbLogger
      init_args:
        project: mt-demo
    - class_path: lightning.pytorch.loggers.CSVLogger
""",
        encoding="utf-8",
    )
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per model")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    parser.add_argument("--sample-lines", type=int, default=20, help="lines of the sample file")
    args = parser.parse_args(argv)

    py = sys.executable
    data = ROOT / "data" / "multi30k"
    run([py, "scripts/download_data.py", "--corpus", "multi30k", "--out", str(ROOT / "data"),
         "--splits", "train,val,test_2016_flickr", "--langs", "de,en"])

    out = (ROOT / args.out).resolve()
    sample = out / "sample.de"
    out.mkdir(parents=True, exist_ok=True)
    with open(data / "test_2016_flickr.de", encoding="utf-8") as f:
        sample.write_text("".join(itertools.islice(f, args.sample_lines)), encoding="utf-8")

    seconds = max(10, int(args.minutes * 60))
    max_time = f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    checkpoints = []
    for name in MODELS:
        model_dir = out / name
        shutil.rmtree(model_dir, ignore_errors=True)
        model_dir.mkdir(parents=True)
        configs = ["--config", f"configs/{name}.yaml", "--config", str(overlay(out))]
        data_args = ["--data.data_dir", str(data)]
        start = time.time()
        run([py, "-m", "mt", "fit", *configs, *data_args, "--run_dir", str(model_dir),
             "--trainer.max_time", max_time])
        print(f"[demo] {name}: trained for {time.time() - start:.0f}s", flush=True)
        best = model_dir / "checkpoints" / "best.ckpt"
        # Tests in the checkpoint's run folder, logging under test/version_N beside the fit's logs.
        run([py, "-m", "mt", "test", *configs, *data_args, "--ckpt_path", str(best)])
        translation = model_dir / "sample.en"
        run([py, "scripts/translate.py", "--checkpoint", str(best), "--input", str(sample),
             "--output", str(translation), "--beam-size", "5"])
        checkpoints.append(best)

    report = out / "report"
    if (ROOT / "scripts" / "compare.py").exists():
        run([py, "scripts/compare.py", "--checkpoints", *map(str, checkpoints),
             "--src", str(data / "test_2016_flickr.de"), "--ref", str(data / "test_2016_flickr.en"),
             "--out", str(report)])
    print("\n[demo] done. Outputs:")
    for name, ckpt in zip(MODELS, checkpoints, strict=True):
        print(f"  {name}: checkpoint {ckpt.relative_to(ROOT)}, sample translation "
              f"{(ckpt.parent.parent / 'sample.en').relative_to(ROOT)}")
    if report.exists():
        print(f"  comparison report: {(report / 'report.md').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
