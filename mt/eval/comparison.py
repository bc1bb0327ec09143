"""The typed results of ``mt compare``: what :func:`mt.eval.compare.compare` measures, what
:mod:`mt.eval.compare_report` formats and plots, and ``to_dict()`` for ``report.json``.

:class:`CompareReport` holds one :class:`ModelResult` per model (scores, buckets, stress set,
attention health, decoding speed, training logs) and one :class:`PairComparison` per pair of
models. Numbers are floats with NaN where there is none (an empty bucket, no resampling);
:meth:`CompareReport.to_dict` writes them as JSON ``null`` and tuples as lists, in the key order
``report.json`` has always had.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from mt.eval.evaluation import BucketScore, PairedResult, Scores

if TYPE_CHECKING:
    from mt.eval.attention import AttentionHealth

__all__ = [
    "THROUGHPUT_COLUMNS",
    "CompareReport",
    "CurvePoint",
    "DecodingSpeed",
    "ModelResult",
    "PairComparison",
    "StressResult",
    "TrainingLogs",
    "clean_json",
]

#: ThroughputMonitor columns averaged over the logged windows of a run's metrics.csv files.
THROUGHPUT_COLUMNS: tuple[str, ...] = (
    "train/tgt_tokens_per_sec",
    "train/src_tokens_per_sec",
    "train/tokens_per_sec",
    "train/padding_ratio",
    "train/step_time",
    "train/peak_mem_gb",
    "train/mfu",
)


def clean_json(value: Any) -> Any:
    """NaN/inf floats -> None and tuples -> lists, in place for dicts and lists."""
    if isinstance(value, dict):
        for k, v in value.items():
            value[k] = clean_json(v)
        return value
    if isinstance(value, list | tuple):
        items = [clean_json(v) for v in value]
        if isinstance(value, list):
            value[:] = items
            return value
        return items
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class StressResult:
    """Scores on the stress set of ``k`` consecutive sentences joined into one line."""

    k: int
    lines: int
    mean_src_words: float
    bleu: float
    chrf: float


@dataclass(frozen=True)
class DecodingSpeed:
    """The decoding speed of this comparison's translation of the test set, and its settings."""

    seconds: float
    sentences: int
    tgt_tokens: int
    sentences_per_sec: float
    tgt_tokens_per_sec: float
    beam_size: int
    max_tokens: int
    device: str


@dataclass(frozen=True)
class CurvePoint:
    """One validation of a run: its BLEU, with the wall-clock and target tokens seen (None when
    the run did not log them)."""

    step: int
    val_bleu: float
    wall_s: float | None
    tgt_tokens_seen: float | None


def _no_throughput() -> dict[str, float | None]:
    return {c: None for c in THROUGHPUT_COLUMNS}


@dataclass
class TrainingLogs:
    """What a run's ``metrics.csv`` files say (:func:`mt.eval.compare.read_training_logs`).

    Attributes:
        files: the files read, oldest first.
        curve: one point per validation step.
        throughput: each of :data:`THROUGHPUT_COLUMNS` averaged over its logged windows (None
            when never logged).
        throughput_n: the number of windows behind each mean.
        test_bleu: the last logged ``test/bleu``, None if none.
    """

    files: list[str] = field(default_factory=list)
    curve: list[CurvePoint] = field(default_factory=list)
    throughput: dict[str, float | None] = field(default_factory=_no_throughput)
    throughput_n: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(THROUGHPUT_COLUMNS, 0)
    )
    test_bleu: float | None = None

    def best_val_bleu(self) -> float | None:
        return max((c.val_bleu for c in self.curve), default=None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelResult:
    """Everything measured for one model; ``bleu_ci``/``chrf_ci`` are the whole test set's 95%
    bootstrap intervals, ``buckets`` the source-length buckets."""

    name: str
    checkpoint: str
    run_dir: str | None
    architecture: str
    num_parameters: int
    hypotheses: str
    scores: Scores
    bleu_ci: tuple[float, float]
    chrf_ci: tuple[float, float]
    buckets: list[BucketScore]
    stress: list[StressResult]
    attention_health: AttentionHealth | None
    decoding: DecodingSpeed
    training: TrainingLogs

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "checkpoint": self.checkpoint,
            "run_dir": self.run_dir,
            "architecture": self.architecture,
            "num_parameters": self.num_parameters,
            "hypotheses": self.hypotheses,
            "scores": self.scores.to_dict(),
            "bleu_ci": list(self.bleu_ci),
            "chrf_ci": list(self.chrf_ci),
            "buckets": [b.to_dict() for b in self.buckets],
            "stress": [asdict(s) for s in self.stress],
            "attention_health": None
            if self.attention_health is None
            else asdict(self.attention_health),
            "decoding": asdict(self.decoding),
            "training": self.training.to_dict(),
        }


@dataclass(frozen=True)
class PairComparison:
    """The paired bootstrap test of ``system`` against ``baseline`` (model names)."""

    baseline: str
    system: str
    result: PairedResult

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "system": self.system, **self.result.to_dict()}


@dataclass
class CompareReport:
    """A whole comparison: the settings, the models in command-line order, every pair, and the
    plot files written (names relative to the report's folder)."""

    src: str
    ref: str
    n_sentences: int
    beam_size: int
    length_penalty: float
    max_tokens: int
    bucket_edges: list[int]
    n_bootstrap: int
    seed: int
    stress_k: list[int]
    models: list[ModelResult]
    paired: list[PairComparison]
    plots: list[str] = field(default_factory=list)

    @property
    def signatures(self) -> dict[str, str]:
        """The sacreBLEU signatures of BLEU and chrF (the first model's: all share them)."""
        first = self.models[0].scores
        return {
            "bleu": f"BLEU|{first.bleu_signature}",
            "chrf": f"{first.chrf_name}|{first.chrf_signature}",
        }

    def to_dict(self) -> dict[str, Any]:
        """The report as ``report.json`` holds it (NaN as None, tuples as lists)."""
        return clean_json(
            {
                "src": self.src,
                "ref": self.ref,
                "n_sentences": self.n_sentences,
                "beam_size": self.beam_size,
                "length_penalty": self.length_penalty,
                "max_tokens": self.max_tokens,
                "bucket_edges": list(self.bucket_edges),
                "n_bootstrap": self.n_bootstrap,
                "seed": self.seed,
                "stress_k": list(self.stress_k),
                "signatures": self.signatures,
                "models": [m.to_dict() for m in self.models],
                "paired_bootstrap": [p.to_dict() for p in self.paired],
                "plots": list(self.plots),
            }
        )
