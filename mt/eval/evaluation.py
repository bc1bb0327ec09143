"""Corpus scoring for mt: sacreBLEU BLEU/chrF, source-length buckets, bootstrap statistics.

This module is the project's only sacreBLEU call site. Everything that reports a BLEU or chrF
number goes through :func:`corpus_scores` (or the bucket/bootstrap helpers built on the same
metric objects), so every number carries the exact sacreBLEU signature it was computed with and
agrees with the ``sacrebleu`` command line on the same files.

Metrics are sacreBLEU's defaults: cased BLEU with the ``13a`` tokenizer and ``exp`` smoothing,
and chrF2 (character order 6, no word n-grams, beta 2). Bootstrap intervals and the paired
test are sacreBLEU's own (``sacrebleu.significance.PairedTest``, its public API); this module adds
only what sacreBLEU lacks: scores and intervals per source-length bucket.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.metrics.base import Metric
from sacrebleu.significance import PairedTest, Result

__all__ = [
    "BucketScore",
    "PairedResult",
    "Scores",
    "corpus_scores",
    "format_buckets_table",
    "format_scores",
    "length_buckets",
    "paired_bootstrap",
    "stress_set",
]

DEFAULT_EDGES: tuple[int, ...] = (10, 20, 30, 40, 50)
DEFAULT_N_BOOTSTRAP = 1000
DEFAULT_SEED = 12345


# --------------------------------------------------------------------------------------------
# Metric construction and sacreBLEU's bootstrap (public API only)
# --------------------------------------------------------------------------------------------


def _bleu() -> BLEU:
    """A fresh sacreBLEU BLEU metric with default settings (cased, 13a, exp smoothing)."""
    return BLEU()


def _chrf() -> CHRF:
    """A fresh sacreBLEU chrF metric with default settings (chrF2)."""
    return CHRF()


@contextmanager
def _sacrebleu_seed(seed: int | None) -> Iterator[None]:
    """Set ``SACREBLEU_SEED`` for the duration of a sacreBLEU bootstrap call, then restore it.

    The environment variable is sacreBLEU's only seed setting for its resampling (``None`` means
    an unseeded generator); it is read when the test object is built and when resamples are
    drawn, both inside this block. Not thread-safe, as sacreBLEU's own seeding is not.
    """
    old = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = "None" if seed is None else str(int(seed))
    try:
        yield
    finally:
        if old is None:
            del os.environ["SACREBLEU_SEED"]
        else:
            os.environ["SACREBLEU_SEED"] = old


def check_paired_seed(seed: int | None) -> None:
    """Reject seed 0 for a paired test: sacreBLEU's ``PairedTest`` seeds the baseline's resamples
    with 0 but treats 0 as "no seed" for the other systems', which would make results
    irreproducible. A single system (intervals only) is seeded with 0 as given."""
    if seed is not None and int(seed) == 0:
        raise ValueError("seed 0 is not reproducible with sacreBLEU's bootstrap; use another seed")


def _bootstrap(
    systems: Sequence[tuple[str, Sequence[str]]],
    refs: Sequence[str],
    metrics: dict[str, Metric],
    n_bootstrap: int,
    seed: int | None,
) -> dict[str, list[Result]]:
    """sacreBLEU's paired bootstrap (``PairedTest``, ``test_type="bs"``) of ``systems``.

    The first system is the baseline. Returns ``{metric name: [Result per system]}``, names as
    sacreBLEU gives them (``"BLEU"``, ``"chrF2"``). Each ``Result`` has the corpus ``score``, the
    bootstrap ``mean`` and the half-width ``ci`` of sacreBLEU's 95% interval (the 2.5th and
    97.5th percentiles of the resampled scores, ``B // 40`` from each end), and for every system
    after the first the paired-bootstrap ``p_value`` against the baseline. With a seed, every
    system and metric is scored on the same resamples (``default_rng(seed).choice(n, (B, n))``,
    as ``sacrebleu --paired-bs`` draws them). A single system gets its intervals only.

    Cost: sacreBLEU gathers the resampled per-sentence statistics at once in float32, about
    ``4 * n_bootstrap * len(refs) * k`` bytes per metric (k = 10 statistics for BLEU, 18 for
    chrF2): 72 MB for chrF on 1,000 sentences with 1,000 resamples.
    """
    if len(systems) > 1:
        check_paired_seed(seed)
    named = [(name, list(hyps)) for name, hyps in systems]
    with _sacrebleu_seed(seed):
        test = PairedTest(named, metrics, [list(refs)], test_type="bs", n_samples=n_bootstrap)
        _, results = test()
    # Every column but "System" (the names) holds one Result per system.
    return {
        name: [r for r in column if isinstance(r, Result)]
        for name, column in results.items()
        if name != "System"
    }


def _interval(result: Result) -> tuple[float, float]:
    """sacreBLEU's 95% interval of a bootstrap ``Result`` as ``(mean - ci, mean + ci)``; with no
    spread (one sentence, or resamples that all score the same) the point score itself.

    sacreBLEU's resampled scores come from float32 statistics, so without spread their mean can
    differ from the float64 point score in the 7th digit and ``(mean, mean)`` would not contain it.
    """
    assert result.mean is not None and result.ci is not None
    if result.ci == 0:
        return (float(result.score), float(result.score))
    return (float(result.mean - result.ci), float(result.mean + result.ci))


# --------------------------------------------------------------------------------------------
# Corpus scores
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    """Corpus-level BLEU and chrF of one system against one reference set.

    Attributes:
        bleu: BLEU score (0-100), full precision.
        chrf: chrF score (0-100), full precision.
        bleu_signature: sacreBLEU signature of the BLEU metric, as the CLI prints it.
        chrf_signature: sacreBLEU signature of the chrF metric, as the CLI prints it.
        n: number of sentences scored.
        bleu_detail: sacreBLEU's BLEU score string, e.g.
            ``"BLEU = 35.20 68.1/41.0/27.2/18.5 (BP = 1.000 ratio = ...)"``.
        bleu_verbose: the part of ``bleu_detail`` after the score (precisions, BP, lengths).
        chrf_name: sacreBLEU's name for the chrF variant (``"chrF2"``).
    """

    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    n: int
    bleu_detail: str
    bleu_verbose: str = ""
    chrf_name: str = "chrF2"

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-serialisable dict."""
        return asdict(self)


def _check_parallel(hyps: Sequence[str], refs: Sequence[str]) -> None:
    """Raise ``ValueError`` unless hypotheses and references are non-empty and equally long."""
    if len(hyps) != len(refs):
        raise ValueError(
            f"hypotheses and references differ in length: "
            f"{len(hyps)} hypotheses vs {len(refs)} references"
        )
    if len(hyps) == 0:
        raise ValueError("no sentences to score (0 hypotheses and 0 references)")


def corpus_scores(hyps: list[str], refs: list[str]) -> Scores:
    """Cased corpus BLEU (tokenizer 13a) and chrF2 of ``hyps`` against one reference each.

    Identical to ``sacrebleu REF -i HYP -m bleu chrf`` on the same lines: same scores and the
    same signatures.

    Raises:
        ValueError: if the two lists differ in length (the message names both counts) or are
            empty.
    """
    _check_parallel(hyps, refs)
    bleu_metric, chrf_metric = _bleu(), _chrf()
    bleu = bleu_metric.corpus_score(list(hyps), [list(refs)])
    chrf = chrf_metric.corpus_score(list(hyps), [list(refs)])
    detail = bleu.format()
    verbose = detail.split(" ", 3)[3] if detail.count(" ") >= 3 else ""
    return Scores(
        bleu=float(bleu.score),
        chrf=float(chrf.score),
        bleu_signature=str(bleu_metric.get_signature()),
        chrf_signature=str(chrf_metric.get_signature()),
        n=len(hyps),
        bleu_detail=detail,
        bleu_verbose=verbose,
        chrf_name=str(chrf.name),
    )


def format_scores(scores: Scores, width: int = 1) -> str:
    """The two score lines exactly as ``sacrebleu -m bleu chrf --format text -w WIDTH`` prints.

    Lines are right-aligned on the ``=`` as sacreBLEU does, e.g.::

          BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 48.3 84.6/...
        chrF2|nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0 = 64.2
    """
    left_bleu = f"BLEU|{scores.bleu_signature}"
    left_chrf = f"{scores.chrf_name}|{scores.chrf_signature}"
    w = max(len(left_bleu), len(left_chrf))
    bleu_line = f"{left_bleu:>{w}} = {scores.bleu:.{width}f}"
    if scores.bleu_verbose:
        bleu_line += f" {scores.bleu_verbose}"
    chrf_line = f"{left_chrf:>{w}} = {scores.chrf:.{width}f}"
    return f"{bleu_line}\n{chrf_line}"


# --------------------------------------------------------------------------------------------
# Source-length buckets
# --------------------------------------------------------------------------------------------


def _nan_to_none(value: Any) -> Any:
    """Map float NaN (also inside tuples) to ``None`` for valid JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, tuple):
        return [_nan_to_none(v) for v in value]
    return value


@dataclass(frozen=True)
class BucketScore:
    """Scores of the sentences whose source length (whitespace words) falls in one bucket.

    Attributes:
        label: e.g. ``"1-10"`` or ``"51+"``.
        lo: smallest source length in the bucket (1 for the first bucket, which also holds
            empty source lines).
        hi: largest source length, ``None`` for the open-ended last bucket.
        n: number of sentences (0 for an empty bucket, whose scores are NaN).
        bleu: corpus BLEU of the bucket's sentences.
        chrf: corpus chrF of the bucket's sentences.
        bleu_ci: sacreBLEU's 95% bootstrap interval of BLEU, ``(mean - ci, mean + ci)`` (NaN
            pair if empty or no resampling).
        chrf_ci: 95% bootstrap interval of chrF, from the same resamples as ``bleu_ci`` when seeded.
    """

    label: str
    lo: int
    hi: int | None
    n: int
    bleu: float
    chrf: float
    bleu_ci: tuple[float, float]
    chrf_ci: tuple[float, float] = (math.nan, math.nan)

    def to_dict(self) -> dict[str, Any]:
        """Fields as a JSON-ready dict; NaN becomes ``None`` and tuples become lists."""
        return {k: _nan_to_none(v) for k, v in asdict(self).items()}


def _bucket_bounds(edges: Sequence[int]) -> list[tuple[str, int, int | None]]:
    """``(label, lo, hi)`` for each bucket defined by inclusive upper ``edges``."""
    edges = [int(e) for e in edges]
    if any(e < 1 for e in edges) or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise ValueError(f"bucket edges must be strictly increasing positive integers: {edges}")
    bounds: list[tuple[str, int, int | None]] = []
    lo = 1
    for e in edges:
        bounds.append((f"{lo}-{e}", lo, e))
        lo = e + 1
    bounds.append((f"{lo}+", lo, None))
    return bounds


def length_buckets(
    src_lines: Sequence[str],
    hyps: Sequence[str],
    refs: Sequence[str],
    edges: Sequence[int] = DEFAULT_EDGES,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int | None = DEFAULT_SEED,
) -> list[BucketScore]:
    """BLEU and chrF per source-length bucket, with sacreBLEU's bootstrap 95% intervals.

    Source length is ``len(src.split())``. With the default ``edges`` the buckets are 1-10,
    11-20, 21-30, 31-40, 41-50 and 51+ words (an edge is a bucket's inclusive upper bound);
    empty source lines count as length 0 and go in the first bucket. Every bucket is returned,
    in order; an empty one has ``n=0`` and NaN scores.

    Each bucket's point scores equal :func:`corpus_scores` on that bucket's sentences. The
    intervals are sacreBLEU's own (:func:`_bootstrap`: ``n_bootstrap`` resamples of the bucket's
    sentences drawn from ``seed``, BLEU and chrF on the same resamples), reported as
    ``(mean - ci, mean + ci)`` around the bootstrap mean, which is how ``sacrebleu
    --confidence`` prints them (``μ = mean ± ci``). What sacreBLEU lacks, and this function
    adds, is only the split into length buckets. ``n_bootstrap=0`` skips resampling (NaN
    intervals).

    Raises:
        ValueError: on length mismatch between the three inputs, bad ``edges`` or seed 0.
    """
    if not len(src_lines) == len(hyps) == len(refs):
        raise ValueError(
            f"source, hypotheses and references differ in length: {len(src_lines)} source, "
            f"{len(hyps)} hypotheses, {len(refs)} references"
        )
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    bounds = _bucket_bounds(edges)
    uppers = np.array([hi for _, _, hi in bounds[:-1]], dtype=np.int64)
    lengths = np.array([len(s.split()) for s in src_lines], dtype=np.int64)
    # side="left": a length equal to an edge belongs to the bucket that edge closes.
    which = np.searchsorted(uppers, lengths, side="left")

    nan_pair = (math.nan, math.nan)
    out: list[BucketScore] = []
    for b, (label, lo, hi) in enumerate(bounds):
        members = np.flatnonzero(which == b)
        if members.size == 0:
            out.append(BucketScore(label, lo, hi, 0, math.nan, math.nan, nan_pair, nan_pair))
            continue
        b_hyps = [hyps[i] for i in members]
        b_refs = [refs[i] for i in members]
        if n_bootstrap == 0:
            scores = corpus_scores(b_hyps, b_refs)
            bleu, chrf, bleu_ci, chrf_ci = scores.bleu, scores.chrf, nan_pair, nan_pair
        else:
            metrics = {"BLEU": _bleu(), "chrF": _chrf()}
            (bleu_r,), (chrf_r,) = _bootstrap(
                [("", b_hyps)], b_refs, metrics, n_bootstrap, seed
            ).values()
            bleu, chrf = float(bleu_r.score), float(chrf_r.score)
            bleu_ci, chrf_ci = _interval(bleu_r), _interval(chrf_r)
        out.append(BucketScore(label, lo, hi, int(members.size), bleu, chrf, bleu_ci, chrf_ci))
    return out


def format_buckets_table(buckets: Sequence[BucketScore]) -> str:
    """Markdown table of bucket scores: bucket, n, BLEU [95% CI], chrF."""

    def num(x: float) -> str:
        return "n/a" if math.isnan(x) else f"{x:.1f}"

    lines = ["| bucket | n | BLEU [95% CI] | chrF |", "|---|---:|---|---:|"]
    for b in buckets:
        bleu = num(b.bleu)
        if not math.isnan(b.bleu) and not any(math.isnan(c) for c in b.bleu_ci):
            bleu += f" [{b.bleu_ci[0]:.1f}, {b.bleu_ci[1]:.1f}]"
        lines.append(f"| {b.label} | {b.n} | {bleu} | {num(b.chrf)} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Paired bootstrap significance
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedResult:
    """Paired bootstrap comparison of system B against baseline system A (BLEU).

    Attributes:
        bleu_a: corpus BLEU of A (the baseline).
        bleu_b: corpus BLEU of B.
        delta: ``bleu_b - bleu_a``.
        p_value: sacreBLEU's paired-bootstrap p-value for the observed difference.
        ci_a: sacreBLEU's 95% bootstrap interval of A's BLEU, ``(mean_a - ci, mean_a + ci)``.
        ci_b: the same for B.
        mean_a: mean of A's resampled BLEU scores.
        mean_b: mean of B's resampled BLEU scores.
        n_bootstrap: number of resamples.
        seed: RNG seed used for the resample indices.
    """

    bleu_a: float
    bleu_b: float
    delta: float
    p_value: float
    ci_a: tuple[float, float]
    ci_b: tuple[float, float]
    mean_a: float
    mean_b: float
    n_bootstrap: int
    seed: int | None

    def to_dict(self) -> dict[str, Any]:
        """Fields as a JSON-ready dict (tuples become lists)."""
        return {k: _nan_to_none(v) for k, v in asdict(self).items()}


def paired_bootstrap(
    hyps_a: Sequence[str],
    hyps_b: Sequence[str],
    refs: Sequence[str],
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int | None = DEFAULT_SEED,
) -> PairedResult:
    """sacreBLEU's paired bootstrap resampling test of BLEU (Koehn, 2004), B against A.

    This is ``sacrebleu.significance.PairedTest`` with ``test_type="bs"``, i.e. ``sacrebleu
    REF -i A B --paired-bs`` with ``SACREBLEU_SEED=seed``: both systems are scored on the same
    ``n_bootstrap`` resamples of sentence indices; the statistic is the absolute BLEU difference,
    the resampled differences are centred (the null hypothesis of no difference) and
    ``p = (#{|B_i - A_i| - mean > |B - A|} + 1) / (n_bootstrap + 1)``. A small p means the
    observed difference is unlikely under the null, whichever system is better. (A quirk of
    sacreBLEU's test: for two identical systems p is ``1/(B+1)``; the test is only meaningful
    for systems that differ.) The intervals are sacreBLEU's ``mean ± ci`` of each system's
    resampled BLEU, given as ``(mean - ci, mean + ci)``.

    Raises:
        ValueError: on length mismatch, empty input, ``n_bootstrap < 1`` or seed 0.
    """
    _check_parallel(hyps_a, refs)
    if len(hyps_b) != len(refs):
        raise ValueError(
            f"system B and references differ in length: "
            f"{len(hyps_b)} hypotheses vs {len(refs)} references"
        )
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")

    results = _bootstrap([("A", hyps_a), ("B", hyps_b)], refs, {"BLEU": _bleu()}, n_bootstrap, seed)
    a, b = results["BLEU"]
    assert b.p_value is not None and a.mean is not None and b.mean is not None
    return PairedResult(
        bleu_a=float(a.score),
        bleu_b=float(b.score),
        delta=float(b.score - a.score),
        p_value=float(b.p_value),
        ci_a=_interval(a),
        ci_b=_interval(b),
        mean_a=float(a.mean),
        mean_b=float(b.mean),
        n_bootstrap=n_bootstrap,
        seed=seed,
    )


# --------------------------------------------------------------------------------------------
# Stress sets
# --------------------------------------------------------------------------------------------


def stress_set(src_lines: list[str], ref_lines: list[str], k: int) -> tuple[list[str], list[str]]:
    """Join every ``k`` consecutive sentences into one, on both sides, for length stress tests.

    Groups are ``0..k-1``, ``k..2k-1``, ...; the last, possibly partial, group is kept, so the
    result has ``ceil(n / k)`` lines. Sentences are joined with a single space. ``k=1`` returns
    (copies of) the inputs unchanged.

    Raises:
        ValueError: if ``k < 1`` or the two sides differ in length.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(src_lines) != len(ref_lines):
        raise ValueError(
            f"source and references differ in length: "
            f"{len(src_lines)} source vs {len(ref_lines)} references"
        )
    if k == 1:
        return list(src_lines), list(ref_lines)

    def join(lines: list[str]) -> list[str]:
        return [" ".join(lines[i : i + k]) for i in range(0, len(lines), k)]

    return join(src_lines), join(ref_lines)
