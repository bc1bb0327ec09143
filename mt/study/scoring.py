"""Scoring a finished study run on a split: BLEU/chrF, BLEU by source length, and on a synthetic
pair the accuracy of the sentence-final agreement marker by source length (claim 1).

The checkpoint is the run's ``best.ckpt`` (chosen on validation BLEU during the fit), else its
``last.ckpt``. Results are cached as ``{run}/eval-{split}.json`` beside the hypotheses
``{run}/eval-{split}.hyp``, so a report can be rebuilt without decoding again. The test split is
scored only for the runs behind the final numbers (:func:`mt.study.runner.final_runs`).

The optional probes of the study file's ``eval`` (:mod:`mt.study.spec`) are computed here too, from
the same checkpoint, each cached in its own file with the settings it was computed with (other
settings: computed again; the same: read back)::

    {run}/eval-gradients.json   gradient norm against source distance (claim 1, mt.eval.gradients)
    {run}/eval-stress.json      BLEU of the test split with k consecutive sentences joined (claim 5)
    {run}/eval-ood.json         BLEU on an out-of-domain set, e.g. IWSLT17 tst2017 (claim 5)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mt.eval.evaluate_cli import read_lines
from mt.eval.evaluation import corpus_scores, length_buckets
from mt.study.spec import DataSet


def checkpoint_of(run_dir: Path) -> Path | None:
    for name in ("best.ckpt", "last.ckpt"):
        if (run_dir / "checkpoints" / name).is_file():
            return run_dir / "checkpoints" / name
    return None


def checkpoint_id(ckpt: Path) -> str:
    """The checkpoint's name, size and modification time: what a cached score or probe was
    computed from. The name alone would keep the scores of a deleted and retrained run; a content
    digest would read every checkpoint in full at every report (GBs at the gpu scale)."""
    stat = ckpt.stat()
    return f"{ckpt.name}:{stat.st_size}:{stat.st_mtime_ns}"


def marker_accuracy(src: list[str], hyps: list[str], edges: list[int]) -> list[dict[str, Any]]:
    """Share of hypotheses ending in the agreement marker their first source word asks for
    (:func:`mt.data.synthetic.agreement_marker`), per source-length bucket (inclusive upper edges)."""
    from mt.data.synthetic import agreement_marker

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
    ckpt = checkpoint_of(run_dir)
    key = None if ckpt is None else {
        "checkpoint": checkpoint_id(ckpt),
        **{k: options[k] for k in ("beam_size", "max_tokens", "bucket_edges", "n_bootstrap")},
    }  # fmt: skip
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if key is None or cached.get("key") == key:
            return cached
        # Written before the key existed: still valid unless the checkpoint is newer.
        if "key" not in cached and ckpt is not None and ckpt.stat().st_mtime <= cache.stat().st_mtime:
            return cached
    if ckpt is None:
        return None
    from mt.models.module import load_checkpoint

    name = data.options[f"{split}_split"]
    src = read_lines(data_dir / f"{name}.{data.options['src_lang']}")
    refs = read_lines(data_dir / f"{name}.{data.options['tgt_lang']}")
    model = load_checkpoint(ckpt, map_location="cpu")
    hyps = _translate(model, src, options)
    (run_dir / f"eval-{split}.hyp").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    scores = corpus_scores(hyps, refs)
    buckets = length_buckets(src, hyps, refs, options["bucket_edges"], n_bootstrap=options["n_bootstrap"])
    result = {
        "split": name, "checkpoint": str(ckpt), "key": key, "bleu": scores.bleu, "chrf": scores.chrf,
        "signature": scores.to_dict().get("bleu_signature"), "sentences": len(src),
        "num_parameters": int(model.num_parameters()),
        "buckets": [b.to_dict() for b in buckets],
        "marker_accuracy": marker_accuracy(src, hyps, options["bucket_edges"]) if data.synthetic is not None else None,
    }  # fmt: skip
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, cache)
    return result


def _translate(model: Any, src: list[str], options: dict[str, Any]) -> list[str]:
    from mt.tools.translate import Translator

    translator = Translator(model, model.tokenizer, beam_size=options["beam_size"],
                            max_tokens=options["max_tokens"], device="auto")  # fmt: skip
    return [nbest[0].text for nbest in translator.translate(src)]


def _cached(path: Path, settings: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``path``'s content when it was computed with ``settings``; else ``compute()``, written there
    with its settings and the seconds it took."""
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("settings") == settings:
            return cached
    start = time.monotonic()
    result = {"settings": settings, **compute()}
    result["seconds"] = round(time.monotonic() - start, 2)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
    return result


def spread(n: int, k: int) -> list[int]:
    """``k`` line indices spread evenly over ``n`` lines (all of them when ``k >= n``): a test
    split written band by band (short sentences first) is sampled over every band."""
    if k >= n:
        return list(range(n))
    return sorted({i * n // k for i in range(k)})


def gradient_flow_run(run_dir: Path, data_dir: Path, data: DataSet, settings: dict[str, Any]) -> dict[str, Any] | None:
    """Gradient norm against source distance (:mod:`mt.eval.gradients`) of the run's checkpoint on
    ``settings["sentences"]`` test pairs spread over the test split; cached as
    ``eval-gradients.json``. ``decay_per_position`` is the factor by which the mean norm shrinks
    per position of distance (:func:`mt.eval.gradients.decay_per_position`, distances with at least
    :data:`mt.eval.gradients.MIN_PAIRS_PLOTTED` pairs)."""
    ckpt = checkpoint_of(run_dir)
    if ckpt is None:
        return None
    name = data.options["test_split"]
    key = {**settings, "split": name, "checkpoint": checkpoint_id(ckpt)}

    def compute() -> dict[str, Any]:
        from mt.eval.gradients import (
            MIN_PAIRS_PLOTTED,
            decay_per_position,
            measure,
            sentence_batches,
        )
        from mt.models.module import load_checkpoint

        src = read_lines(data_dir / f"{name}.{data.options['src_lang']}")
        tgt = read_lines(data_dir / f"{name}.{data.options['tgt_lang']}")
        picked = spread(len(src), settings["sentences"])
        model = load_checkpoint(ckpt, map_location="cpu")
        batches = sentence_batches(model.tokenizer, [src[i] for i in picked], [tgt[i] for i in picked],
                                   settings["batch_size"])  # fmt: skip
        flow = measure(model, batches)
        rows = flow.by_distance()
        return {"sentences": len(picked), "min_pairs": MIN_PAIRS_PLOTTED,
                "decay_per_position": decay_per_position(rows, MIN_PAIRS_PLOTTED), "by_distance": rows}  # fmt: skip

    return _cached(run_dir / "eval-gradients.json", key, compute)


def stress_run(run_dir: Path, data_dir: Path, data: DataSet, settings: dict[str, Any],
               options: dict[str, Any]) -> dict[str, Any] | None:  # fmt: skip
    """BLEU of the test split's first ``max_sentences`` sentences with every ``k`` consecutive
    ones joined (:func:`mt.eval.evaluation.stress_set`), for each ``k``; cached as ``eval-stress.json``."""
    ckpt = checkpoint_of(run_dir)
    if ckpt is None:
        return None
    name = data.options["test_split"]
    key = {**settings, "split": name, "checkpoint": checkpoint_id(ckpt), "beam_size": options["beam_size"]}

    def compute() -> dict[str, Any]:
        from mt.eval.evaluation import stress_set
        from mt.models.module import load_checkpoint

        cap = settings["max_sentences"]
        src = read_lines(data_dir / f"{name}.{data.options['src_lang']}")[:cap]
        refs = read_lines(data_dir / f"{name}.{data.options['tgt_lang']}")[:cap]
        model = load_checkpoint(ckpt, map_location="cpu")
        rows = []
        for k in settings["k"]:
            joined_src, joined_refs = stress_set(src, refs, k)
            scores = corpus_scores(_translate(model, joined_src, options), joined_refs)
            words = sum(len(s.split()) for s in joined_src) / len(joined_src)
            rows.append({"k": k, "lines": len(joined_src), "mean_source_words": words,
                         "bleu": scores.bleu, "chrf": scores.chrf})  # fmt: skip
        return {"sentences": len(src), "by_k": rows}

    return _cached(run_dir / "eval-stress.json", key, compute)


def ood_run(run_dir: Path, src_file: Path, ref_file: Path, label: str, settings: dict[str, Any],
            options: dict[str, Any]) -> dict[str, Any] | None:  # fmt: skip
    """BLEU/chrF on the first ``max_sentences`` lines of an out-of-domain pair of files (hypotheses
    beside, ``eval-ood.hyp``); cached as ``eval-ood.json``."""
    ckpt = checkpoint_of(run_dir)
    if ckpt is None:
        return None
    key = {**settings, "set": label, "checkpoint": checkpoint_id(ckpt), "beam_size": options["beam_size"]}

    def compute() -> dict[str, Any]:
        from mt.models.module import load_checkpoint

        cap = settings["max_sentences"]
        src, refs = read_lines(src_file)[:cap], read_lines(ref_file)[:cap]
        hyps = _translate(load_checkpoint(ckpt, map_location="cpu"), src, options)
        (run_dir / "eval-ood.hyp").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
        scores = corpus_scores(hyps, refs)
        return {"set": label, "sentences": len(src), "mean_source_words": sum(len(s.split()) for s in src) / len(src),
                "bleu": scores.bleu, "chrf": scores.chrf, "signature": scores.to_dict().get("bleu_signature")}  # fmt: skip

    return _cached(run_dir / "eval-ood.json", key, compute)
