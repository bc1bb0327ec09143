"""Corpus scoring for mt: sacreBLEU BLEU/chrF, source-length buckets, bootstrap statistics.

This module is the project's only sacreBLEU call site. Everything that reports a BLEU or chrF
number goes through :func:`corpus_scores` (or the bucket/bootstrap helpers built on the same
metric objects), so every number carries the exact sacreBLEU signature it was computed with and
agrees with the ``sacrebleu`` command line on the same files.

Metrics are sacreBLEU's defaults: cased BLEU with the ``13a`` tokenizer and ``exp`` smoothing,
and chrF2 (character order 6, no word n-grams, beta 2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.metrics.base import Metric

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

# Upper bound on the number of (resample x sentence) index cells materialised at once during
# bootstrap resampling; bounds memory at ~8 bytes x this per array. Resamples are drawn in
# row-chunks, which yields the same index stream as one big draw (numpy Generator.choice with
# replacement draws row-major), so results do not depend on this value.
_MAX_INDEX_CELLS = 4_000_000


# --------------------------------------------------------------------------------------------
# Metric construction and the ONE place that touches sacreBLEU's private statistics API.
# --------------------------------------------------------------------------------------------


def _bleu() -> BLEU:
    """A fresh sacreBLEU BLEU metric with default settings (cased, 13a, exp smoothing)."""
    return BLEU()


def _chrf() -> CHRF:
    """A fresh sacreBLEU chrF metric with default settings (chrF2)."""
    return CHRF()


def _segment_stats(metric: Metric, hyps: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    """Per-sentence sufficient statistics of ``metric``, shape ``(len(hyps), k)``, int64.

    sacreBLEU 2.x has no public API for segment statistics. Its own significance tests
    (``sacrebleu/significance.py``: ``_bootstrap_resample``, ``_paired_bs_test``) use
    ``Metric._extract_corpus_statistics(hyps, [refs])`` for the per-segment statistics and
    ``Metric._compute_score_from_stats(summed)`` for a score from summed statistics; public
    ``corpus_score`` is exactly "extract, sum, compute". Both private methods are wrapped here
    and in :func:`_score_from_sums` only, so a future sacreBLEU change is a two-function fix;
    the tests pin the results to the public ``corpus_score`` and to the ``sacrebleu`` CLI.
    """
    stats = metric._extract_corpus_statistics(list(hyps), [list(refs)])
    return np.asarray(stats, dtype=np.int64).reshape(len(hyps), -1)


def _score_from_sums(metric: Metric, sums: np.ndarray | Sequence[int]) -> float:
    """Corpus score of ``metric`` from column sums of segment statistics (see above)."""
    return float(metric._compute_score_from_stats([int(x) for x in sums]).score)


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
# Bootstrap machinery
# --------------------------------------------------------------------------------------------


def _resampled_sums(
    stats: Sequence[np.ndarray], n_bootstrap: int, seed: int | None
) -> list[np.ndarray]:
    """Column sums of each statistics array over the same bootstrap resamples of sentences.

    Indices are drawn as sacreBLEU does (``default_rng(seed).choice(n, (B, n), replace=True)``),
    so with the same seed the resamples are sacreBLEU's. Instead of gathering ``stats[idx]``
    (a ``B x n x k`` array) each resample is turned into per-sentence multiplicities with one
    ``bincount`` and summed with a matrix product; integer sums are exact in float64.

    Returns:
        One int64 array of shape ``(n_bootstrap, k_i)`` per input array.
    """
    n = stats[0].shape[0]
    rng = np.random.default_rng(seed)
    floats = [s.astype(np.float64) for s in stats]
    out = [np.empty((n_bootstrap, s.shape[1]), dtype=np.int64) for s in stats]
    rows = max(1, _MAX_INDEX_CELLS // max(n, 1))
    done = 0
    while done < n_bootstrap:
        b = min(rows, n_bootstrap - done)
        idx = rng.choice(n, size=(b, n), replace=True)
        flat = (idx + (np.arange(b, dtype=np.int64) * n)[:, None]).ravel()
        counts = np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)
        for dst, src in zip(out, floats, strict=True):
            dst[done : done + b] = np.rint(counts @ src).astype(np.int64)
        done += b
    return out


def _scores_of_sums(metric: Metric, sums: np.ndarray) -> np.ndarray:
    """Score of every row of resampled statistic sums."""
    return np.array([_score_from_sums(metric, row) for row in sums], dtype=np.float64)


def _percentile_ci(samples: np.ndarray) -> tuple[float, float]:
    """95% interval of bootstrap samples: the empirical 2.5th and 97.5th percentiles.

    Uses sacreBLEU's order statistics (``sorted[B // 40]`` and ``sorted[B - 1 - B // 40]``),
    so ``(hi - lo) / 2`` equals the ``± ci`` sacreBLEU reports for the same resamples.
    """
    if samples.size == 0:
        return (math.nan, math.nan)
    s = np.sort(samples)
    k = s.size // 40
    return (float(s[k]), float(s[s.size - 1 - k]))


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
        bleu_ci: 95% bootstrap interval of BLEU (NaN pair if empty or no resampling).
        chrf_ci: 95% bootstrap interval of chrF, from the same resamples as ``bleu_ci``.
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
    """BLEU and chrF per source-length bucket, with bootstrap 95% intervals.

    Source length is ``len(src.split())``. With the default ``edges`` the buckets are 1-10,
    11-20, 21-30, 31-40, 41-50 and 51+ words (an edge is a bucket's inclusive upper bound);
    empty source lines count as length 0 and go in the first bucket. Every bucket is returned,
    in order; an empty one has ``n=0`` and NaN scores.

    Each bucket's point scores equal :func:`corpus_scores` on that bucket's sentences. The
    intervals come from ``n_bootstrap`` resamples (with replacement) of the bucket's sentences,
    using a fresh ``numpy.random.default_rng(seed)`` per bucket; BLEU and chrF are scored on
    the same resamples from per-sentence sufficient statistics computed once, so resampling
    costs one matrix product plus one cheap score evaluation per resample. ``n_bootstrap=0``
    skips resampling (NaN intervals).

    Raises:
        ValueError: on length mismatch between the three inputs or bad ``edges``.
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
        bleu_m, chrf_m = _bleu(), _chrf()
        bleu_stats = _segment_stats(bleu_m, b_hyps, b_refs)
        chrf_stats = _segment_stats(chrf_m, b_hyps, b_refs)
        bleu = _score_from_sums(bleu_m, bleu_stats.sum(axis=0))
        chrf = _score_from_sums(chrf_m, chrf_stats.sum(axis=0))
        bleu_ci, chrf_ci = nan_pair, nan_pair
        if n_bootstrap > 0:
            bleu_sums, chrf_sums = _resampled_sums([bleu_stats, chrf_stats], n_bootstrap, seed)
            bleu_ci = _percentile_ci(_scores_of_sums(bleu_m, bleu_sums))
            chrf_ci = _percentile_ci(_scores_of_sums(chrf_m, chrf_sums))
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
        ci_a: 95% bootstrap interval of A's BLEU.
        ci_b: 95% bootstrap interval of B's BLEU.
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
    """Paired bootstrap resampling test of BLEU (Koehn, 2004), with sacreBLEU's semantics.

    Both systems are scored on the *same* ``n_bootstrap`` resamples of sentence indices, drawn
    exactly as ``sacrebleu --paired-bs`` draws them (so with ``SACREBLEU_SEED`` equal to
    ``seed`` the resamples are identical). As in ``sacrebleu/significance.py``
    (``_paired_bs_test``, after Moses' ``bootstrap-hypothesis-difference-significance.pl``),
    the test statistic is the absolute score difference: with ``d_i = |B_i - A_i|`` over
    resamples and ``d = |B - A|`` on the full set, the resampled differences are centred
    (``d_i - mean(d_i)``, the null hypothesis of no difference) and
    ``p = (#{d_i - mean(d) > d} + 1) / (n_bootstrap + 1)``. A small p means the observed
    difference is unlikely under the null, whichever system is better. (A quirk inherited
    from sacreBLEU: for two identical systems every ``d_i`` is 0, so p is ``1/(B+1)``; the
    test is only meaningful for systems that differ.)

    Raises:
        ValueError: on length mismatch, empty input or ``n_bootstrap < 1``.
    """
    _check_parallel(hyps_a, refs)
    if len(hyps_b) != len(refs):
        raise ValueError(
            f"system B and references differ in length: "
            f"{len(hyps_b)} hypotheses vs {len(refs)} references"
        )
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")

    metric = _bleu()
    stats_a = _segment_stats(metric, hyps_a, refs)
    stats_b = _segment_stats(metric, hyps_b, refs)
    bleu_a = _score_from_sums(metric, stats_a.sum(axis=0))
    bleu_b = _score_from_sums(metric, stats_b.sum(axis=0))

    sums_a, sums_b = _resampled_sums([stats_a, stats_b], n_bootstrap, seed)
    res_a = _scores_of_sums(metric, sums_a)
    res_b = _scores_of_sums(metric, sums_b)

    observed = abs(bleu_b - bleu_a)
    sample_diffs = np.abs(res_b - res_a)
    centred = sample_diffs - sample_diffs.mean()
    p_value = (int(np.sum(centred > observed)) + 1) / (n_bootstrap + 1)

    return PairedResult(
        bleu_a=bleu_a,
        bleu_b=bleu_b,
        delta=bleu_b - bleu_a,
        p_value=float(p_value),
        ci_a=_percentile_ci(res_a),
        ci_b=_percentile_ci(res_b),
        mean_a=float(res_a.mean()),
        mean_b=float(res_b.mean()),
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
