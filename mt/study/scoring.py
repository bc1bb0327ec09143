"""Scoring a finished study run on a split: BLEU/chrF, BLEU by source length, and on a synthetic
pair the accuracy of the sentence-final agreement marker by source length (claim 1).

The checkpoint is the run's ``best.ckpt`` (chosen on validation BLEU during the fit), else its
``last.ckpt``. Results are cached as ``{run}/eval-{split}.json`` beside the hypotheses
``{run}/eval-{split}.hyp``, so a report can be rebuilt without decoding again. The test split is
scored only for the runs behind the final numbers (:func:`mt.study.runner.final_runs`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mt.evaluate_cli import read_lines
from mt.evaluation import corpus_scores, length_buckets
from mt.study.spec import DataSet


def checkpoint_of(run_dir: Path) -> Path | None:
    for name in ("best.ckpt", "last.ckpt"):
        if (run_dir / "checkpoints" / name).is_file():
            return run_dir / "checkpoints" / name
    return None


def marker_accuracy(src: list[str], hyps: list[str], edges: list[int]) -> list[dict[str, Any]]:
    """Share of hypotheses ending in the agreement marker their first source word asks for
    (:func:`mt.synthetic.agreement_marker`), per source-length bucket (inclusive upper edges)."""
    from mt.synthetic import agreement_marker

    bounds = [*edges, None]
    rows: list[dict[str, Any]] = []
    lo = 1
    for hi in bounds:
        picked = [(s, h) for s, h in zip(src, hyps, strict=True)
                  if lo <= len(s.split()) and (hi is None or len(s.split()) <= hi)]  # fmt: skip
        right = sum(1 for s, h in picked if h.split()[-1:] == [agreement_marker(s.split()[0])])
        label = f"{lo}-{hi}" if hi is not None else f"{lo}+"
        rows.append({"label": label, "lo": lo, "hi": hi, "n": len(picked),
                     "accuracy": right / len(picked) if picked else None})  # fmt: skip
        lo = (hi or 0) + 1
    return [r for r in rows if r["n"]]


def score_run(run_dir: Path, data_dir: Path, data: DataSet, split: str, options: dict[str, Any]) -> dict[str, Any] | None:
    """Scores of a run on ``split`` ("val" or "test"), cached; None without a checkpoint."""
    cache = run_dir / f"eval-{split}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    ckpt = checkpoint_of(run_dir)
    if ckpt is None:
        return None
    from mt.module import load_checkpoint
    from mt.translate import Translator

    name = data.options[f"{split}_split"]
    src = read_lines(data_dir / f"{name}.{data.options['src_lang']}")
    refs = read_lines(data_dir / f"{name}.{data.options['tgt_lang']}")
    model = load_checkpoint(ckpt, map_location="cpu")
    translator = Translator(model, model.tokenizer, beam_size=options["beam_size"],
                            max_tokens=options["max_tokens"], device="auto")  # fmt: skip
    hyps = [nbest[0].text for nbest in translator.translate(src)]
    (run_dir / f"eval-{split}.hyp").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    scores = corpus_scores(hyps, refs)
    buckets = length_buckets(src, hyps, refs, options["bucket_edges"], n_bootstrap=options["n_bootstrap"])
    result = {
        "split": name, "checkpoint": str(ckpt), "bleu": scores.bleu, "chrf": scores.chrf,
        "signature": scores.to_dict().get("bleu_signature"), "sentences": len(src),
        "num_parameters": int(model.num_parameters()),
        "buckets": [b.to_dict() for b in buckets],
        "marker_accuracy": marker_accuracy(src, hyps, options["bucket_edges"]) if data.synthetic is not None else None,
    }  # fmt: skip
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, cache)
    return result
