"""The six claims, the effect that tests each, its 95% interval and the verdict.

Intervals:

* a difference of means over seeds (BLEU, tokens/s, accuracy, loss gap): Welch's t-interval of
  ``mean(A) - mean(B)`` (unequal variances, Welch-Satterthwaite degrees of freedom; each side
  needs at least 2 finished runs);
* a difference of proportions (the share of diverged runs): Newcombe's hybrid score interval
  built from the two Wilson intervals (it behaves at 0/3 and 3/3, where the Wald interval does not).

Verdict rule (:func:`verdict`): *supported* when the interval of the effect excludes 0 on the
claimed side, *contradicted* when it excludes 0 on the other side, *inconclusive at this scale*
otherwise or with fewer than 2 runs a side. A claim of equality ("a GRU matches an LSTM") is
tested against a margin instead: *supported* when the whole interval lies within +-margin,
*contradicted* when it lies wholly outside it, *inconclusive* otherwise.

Each ``records`` item is one experiment as :func:`mt.study.report.collect` builds it:
``{"name", "architecture", "data", "synthetic", "fraction", "claims", "runs": [...]}``, each run
``{"seed", "lr", "final", "status", "summary" (the marker), "test" (scores or None)}``, plus,
where the study file asks for them, ``"gradients"``, ``"stress"`` and ``"ood"``
(:mod:`mt.study.scoring`).

Claim 1's gradient scalar (:func:`gradient_decay`) is the factor by which the mean gradient norm
``|| d loss_i / d e_j ||`` shrinks per position of source distance ``|i - j|``, fitted as
``exp(slope)`` of log-norm against distance (:func:`mt.eval.gradients.decay_per_position`): 1 means the
loss depends on far source tokens as much as on near ones, 0.5 that the dependence halves with
every position. "LSTM/GRU keep long-range information" predicts a larger factor than the RNN's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

#: 0.975 quantiles of Student's t for 1..30 degrees of freedom.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip
Z975 = 1.959964
GRU_LSTM_MARGIN = 1.0  # BLEU points within which "a GRU matches an LSTM" counts as supported

RULE = (
    "Verdict rule: **supported** when the 95% interval of the effect excludes 0 on the claimed "
    "side, **contradicted** when it excludes 0 on the other side, **inconclusive at this scale** "
    "otherwise (or with fewer than 2 finished runs a side). For the equality claim (GRU matches "
    f"LSTM) the interval is tested against +-{GRU_LSTM_MARGIN:g} BLEU: supported when it lies "
    "within, contradicted when it lies wholly outside. Intervals over seeds are Welch t-intervals "
    "of the difference of means; for diverged-run shares, Newcombe's score interval. Claim 1's "
    "gradient figure is the factor by which the mean gradient norm of a target token's loss with "
    "respect to a source embedding shrinks per position of distance (exp of the slope of log-norm; "
    "1 is flat): keeping long-range information predicts a larger factor than the plain RNN's."
)

STATEMENTS = {
    1: "A plain RNN loses long-range dependencies (vanishing gradients); LSTM and GRU keep them.",
    2: "Plain RNNs train less stably: they diverge or hit exploding gradients more often.",
    3: "Cost rises RNN < GRU < LSTM, and a GRU matches an LSTM's quality.",
    4: "Transformers train faster, since they process all positions in parallel.",
    5: "Transformers translate long sentences better.",
    6: "LSTMs overfit when data is scarce; Transformers need more data.",
}


def t975(df: float) -> float:
    """The 0.975 quantile of Student's t (table, linear between whole degrees of freedom)."""
    if not math.isfinite(df) or df > 30:
        return Z975 + 2.4 / df if math.isfinite(df) else Z975
    df = max(df, 1.0)
    lo = int(df)
    if lo >= 30:
        return T975[-1]
    frac = df - lo
    return T975[lo - 1] * (1 - frac) + T975[lo] * frac


def _mean_var(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    return m, sum((x - m) ** 2 for x in xs) / (len(xs) - 1)


def mean_interval(xs: list[float]) -> tuple[float, float, float] | None:
    """``(mean, lo, hi)``: the t-interval of one mean (None below 2 values)."""
    if len(xs) < 2:
        return None
    m, v = _mean_var(xs)
    half = t975(len(xs) - 1) * math.sqrt(v / len(xs))
    return m, m - half, m + half


def welch(a: list[float], b: list[float]) -> tuple[float, float, float] | None:
    """``(mean(a) - mean(b), lo, hi)``: Welch's 95% t-interval (None below 2 values a side)."""
    if len(a) < 2 or len(b) < 2:
        return None
    (ma, va), (mb, vb) = _mean_var(a), _mean_var(b)
    sa, sb = va / len(a), vb / len(b)
    se = math.sqrt(sa + sb)
    if se == 0:
        return ma - mb, ma - mb, ma - mb
    df = (sa + sb) ** 2 / (sa**2 / (len(a) - 1) + sb**2 / (len(b) - 1))
    return ma - mb, ma - mb - t975(df) * se, ma - mb + t975(df) * se


def wilson(k: int, n: int) -> tuple[float, float]:
    centre = (k + Z975**2 / 2) / (n + Z975**2)
    half = Z975 * math.sqrt(k * (n - k) / n + Z975**2 / 4) / (n + Z975**2)
    return centre - half, centre + half


def newcombe(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float, float] | None:
    """``(p1 - p2, lo, hi)``: Newcombe's hybrid score interval (None with an empty side)."""
    if n1 < 1 or n2 < 1:
        return None
    p1, p2 = k1 / n1, k2 / n2
    (l1, u1), (l2, u2) = wilson(k1, n1), wilson(k2, n2)
    d = p1 - p2
    return d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def verdict(interval: tuple[float, float, float] | None, direction: int, margin: float | None = None) -> str:
    """The verdict of an effect (rule in the module docstring); ``direction`` +1 or -1."""
    if interval is None:
        return "inconclusive at this scale"
    _, lo, hi = interval
    if margin is not None:
        if -margin <= lo and hi <= margin:
            return "supported"
        return "contradicted" if lo > margin or hi < -margin else "inconclusive at this scale"
    if (lo > 0 and direction > 0) or (hi < 0 and direction < 0):
        return "supported"
    if (lo > 0 and direction < 0) or (hi < 0 and direction > 0):
        return "contradicted"
    return "inconclusive at this scale"


# --------------------------------------------------------------------------------------------
# Values per run
# --------------------------------------------------------------------------------------------


def finished(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs behind an experiment's numbers that finished (diverged ones are counted apart)."""
    return [r for r in record["runs"] if r["final"] and r["status"] == "finished"]


def values(record: dict[str, Any], get: Callable[[dict[str, Any]], float | None]) -> list[float]:
    out = []
    for run in finished(record):
        try:
            value = get(run)
        except (KeyError, IndexError, TypeError):
            value = None
        if value is not None and math.isfinite(value):
            out.append(float(value))
    return out


def test_bleu(run: dict[str, Any]) -> float | None:
    return run["test"]["bleu"] if run.get("test") else None


def longest_bucket(run: dict[str, Any], key: str = "buckets", field: str = "bleu") -> float | None:
    rows = [b for b in (run["test"] or {}).get(key) or [] if b.get("n")]
    return rows[-1][field] if rows else None


def gradient_decay(run: dict[str, Any]) -> float | None:
    """Claim 1's gradient scalar of a run: its decay factor per position (module docstring)."""
    return (run.get("gradients") or {}).get("decay_per_position")


def stress_bleu(k: int) -> Callable[[dict[str, Any]], float | None]:
    """BLEU of a run on the concatenation stress set with ``k`` sentences joined."""
    return lambda run: next((r["bleu"] for r in (run.get("stress") or {}).get("by_k") or [] if r["k"] == k), None)


def ood_bleu(run: dict[str, Any]) -> float | None:
    """BLEU of a run on the out-of-domain set."""
    return (run.get("ood") or {}).get("bleu")


def stress_ks(records: list[dict[str, Any]]) -> list[int]:
    """Every k of the stress sets in these records, in order."""
    return sorted({r["k"] for rec in records for run in finished(rec) for r in (run.get("stress") or {}).get("by_k") or []})


def ood_label(records: list[dict[str, Any]]) -> str | None:
    """The name of the out-of-domain set these records were scored on (None: none)."""
    return next((run["ood"].get("set") for rec in records for run in finished(rec) if run.get("ood")), None)


def loss_gap(run: dict[str, Any]) -> float | None:
    s = run["summary"]
    return s["val_loss"] - s["train_nll"] if s.get("val_loss") is not None and s.get("train_nll") is not None else None


def summary(key: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda run: run["summary"].get(key)


def spike_ratio(run: dict[str, Any]) -> float | None:
    s = run["summary"]
    if not s.get("grad_norm_max") or not s.get("grad_norm_median"):
        return None
    return s["grad_norm_max"] / s["grad_norm_median"]


# --------------------------------------------------------------------------------------------
# Rows of the claims table
# --------------------------------------------------------------------------------------------


def _pairs(records: list[dict[str, Any]], claim: int, arch_a: str, arch_b: str, fraction: str = "max",
           synthetic: bool | None = None) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:  # fmt: skip
    """Experiments of ``claim``, architecture A against B, on the same data set and fraction
    (the largest, or the smallest, that both have)."""
    tagged = [r for r in records if claim in r["claims"]]
    for data in sorted({r["data"] for r in tagged}):
        side = {arch: [r for r in tagged if r["data"] == data and r["architecture"] == arch] for arch in (arch_a, arch_b)}
        common = {r["fraction"] for r in side[arch_a]} & {r["fraction"] for r in side[arch_b]}
        if not common:
            continue
        pick = max(common) if fraction == "max" else min(common)
        a = next(r for r in side[arch_a] if r["fraction"] == pick)
        b = next(r for r in side[arch_b] if r["fraction"] == pick)
        if synthetic is None or a["synthetic"] == synthetic:
            yield a, b


def _row(claim: int, effect: str, a: dict[str, Any], b: dict[str, Any], xs: list[float], ys: list[float],
         direction: int, unit: str, margin: float | None = None) -> dict[str, Any]:  # fmt: skip
    interval = welch(xs, ys)
    where = f"{a['data']}" + (f", {a['fraction']:.0%} of the training data" if a["fraction"] < 1 else "")
    return {
        "claim": claim, "effect": effect, "experiment": f"{a['name']} vs {b['name']} ({where})",
        "a": a["name"], "b": b["name"], "n_a": len(xs), "n_b": len(ys), "unit": unit,
        "values_a": xs, "values_b": ys,
        "estimate": None if interval is None else list(interval), "method": "Welch t over seeds",
        "direction": direction, "margin": margin, "verdict": verdict(interval, direction, margin),
    }  # fmt: skip


def claim_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every row of the claims table that this study's experiments can fill."""
    rows: list[dict[str, Any]] = []
    for keeper in ("lstm", "gru"):
        for a, b in _pairs(records, 1, keeper, "rnn", synthetic=True):
            get = lambda run: 100 * longest_bucket(run, "marker_accuracy", "accuracy")  # noqa: E731
            rows.append(_row(1, f"agreement-marker accuracy on the longest sources, {keeper} - rnn",
                             a, b, values(a, get), values(b, get), +1, "% points"))  # fmt: skip
        for a, b in _pairs(records, 1, keeper, "rnn", synthetic=True):
            xs, ys = values(a, gradient_decay), values(b, gradient_decay)
            if xs or ys:
                rows.append(_row(1, f"gradient-norm decay factor per position of source distance, {keeper} - rnn",
                                 a, b, xs, ys, +1, "factor/position"))  # fmt: skip
    for other in ("lstm", "gru"):
        for a, b in _pairs(records, 2, "rnn", other):
            runs_a, runs_b = a["runs"], b["runs"]
            k1, k2 = (sum(r["status"] == "diverged" for r in rs) for rs in (runs_a, runs_b))
            interval = newcombe(k1, len(runs_a), k2, len(runs_b))
            rows.append({
                "claim": 2, "effect": f"share of diverged runs (all seeds and learning rates), rnn - {other}",
                "experiment": f"{a['name']} vs {b['name']} ({a['data']})", "a": a["name"], "b": b["name"],
                "n_a": len(runs_a), "n_b": len(runs_b), "unit": "share", "values_a": [k1], "values_b": [k2],
                "estimate": None if interval is None else list(interval), "method": "Newcombe score interval",
                "direction": +1, "margin": None, "verdict": verdict(interval, +1),
            })  # fmt: skip
    tps = summary("tgt_tokens_per_sec")
    for cheap, dear in (("gru", "lstm"), ("rnn", "gru")):
        for a, b in _pairs(records, 3, cheap, dear):
            rows.append(_row(3, f"training target tokens/s, {cheap} - {dear}", a, b, values(a, tps), values(b, tps),
                             +1, "tokens/s"))  # fmt: skip
    for a, b in _pairs(records, 3, "gru", "lstm"):
        rows.append(_row(3, "test BLEU at equal wall-clock, gru - lstm (equal within the margin)", a, b,
                         values(a, test_bleu), values(b, test_bleu), 0, "BLEU", GRU_LSTM_MARGIN))  # fmt: skip
    for a, b in _pairs(records, 4, "transformer", "lstm"):
        rows.append(_row(4, "training target tokens/s, transformer - lstm", a, b, values(a, tps), values(b, tps),
                         +1, "tokens/s"))  # fmt: skip
        best = summary("best_val_bleu")
        rows.append(_row(4, "best validation BLEU within the same wall-clock budget, transformer - lstm", a, b,
                         values(a, best), values(b, best), +1, "BLEU"))  # fmt: skip
    for a, b in _pairs(records, 5, "transformer", "lstm"):
        rows.append(_row(5, "test BLEU on the longest source-length bucket, transformer - lstm", a, b,
                         values(a, longest_bucket), values(b, longest_bucket), +1, "BLEU"))  # fmt: skip
        rows += [r for r in long_input_rows([a, b]) if r["k"] is None or r["k"] == max(stress_ks([a, b]))]
    for a, b in _pairs(records, 6, "lstm", "transformer", fraction="min"):
        if a["fraction"] >= 1:
            continue
        rows.append(_row(6, "test BLEU with the least data, lstm - transformer", a, b,
                         values(a, test_bleu), values(b, test_bleu), +1, "BLEU"))  # fmt: skip
        rows.append(_row(6, "validation - training loss gap with the least data, lstm - transformer", a, b,
                         values(a, loss_gap), values(b, loss_gap), +1, "nats/token"))  # fmt: skip
    return rows


def long_input_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Claim 5 on long input: the stress set for every k and the out-of-domain set,
    transformer - lstm (each row has ``k``: None for the out-of-domain set)."""
    rows = []
    for a, b in _pairs(records, 5, "transformer", "lstm"):
        for k in stress_ks([a, b]):
            get = stress_bleu(k)
            joined = "one sentence per line" if k == 1 else f"{k} consecutive sentences joined"
            rows.append({**_row(5, f"test BLEU with {joined} (stress set), transformer - lstm", a, b,
                                values(a, get), values(b, get), +1, "BLEU"), "k": k})  # fmt: skip
        xs, ys = values(a, ood_bleu), values(b, ood_bleu)
        if xs or ys:
            rows.append({**_row(5, f"BLEU on {ood_label([a, b])} (out of domain), transformer - lstm", a, b,
                                xs, ys, +1, "BLEU"), "k": None})  # fmt: skip
    return rows


def gradient_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Claim 2's gradient figures, where the runs logged ``train/grad_norm``/``train/clipped``."""
    rows = []
    for a, b in _pairs(records, 2, "rnn", "lstm"):
        for name, get in (("gradient-norm spike (max / median)", spike_ratio),
                          ("share of clipped steps", summary("clipped_fraction"))):  # fmt: skip
            xs, ys = values(a, get), values(b, get)
            if xs or ys:
                rows.append(_row(2, f"{name}, rnn - lstm", a, b, xs, ys, +1, ""))
    return rows
