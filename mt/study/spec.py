"""The study file: what to train, on which data, for how long, with which seeds, for which claim.

A study file (``configs/study/{smoke,cpu,gpu}.yaml``) is YAML with these keys::

    name: cpu                        # W&B group of every run; default output runs/study/{name}
    out: runs/study/cpu              # optional
    eval: {beam_size: 1, bucket_edges: [10, 20, 30], n_bootstrap: 200,
           gradient_flow: {sentences: 64, batch_size: 16},            # claim 1, optional
           stress: {k: [1, 2, 4], max_sentences: 400},                # claim 5, optional
           out_of_domain: {corpus: iwslt17, split: tst2017, max_sentences: 200}}  # claim 5, optional
    data:                            # named data sets
      multi30k: {data_dir: data/multi30k, test_split: test_2016_flickr}
      syn: {synthetic: {train_size: 4000, train_lengths: [4, 12]}, vocab_size: 200}
    defaults: {seeds: [1, 2, 3], budget: {max_time: "00:00:04:00"}, overrides: {...}}
    experiments:
      - name: lstm                   # unique; the run folders are {out}/runs/{name}/...
        config: configs/lstm-small.yaml
        data: multi30k               # a name under data:
        fraction: 0.1                # of the training split (learning curves); default 1
        cell: gru                    # recurrent configs only: lstm | gru | rnn
        lr: [0.001, 0.002]           # learning-rate trials (chosen on validation), or one value
        budget: {max_steps: 300}     # max_steps, max_time (DD:HH:MM:SS) and/or max_epochs
        seeds: [1, 2, 3]
        overrides: {data.max_tokens: 1024}   # any other `mt fit` option, by its dotted key
        claims: [3, 5]               # which claims (1-6, mt/study/claims.py) this run feeds

The optional ``eval`` probes run at report time on the final runs' checkpoints (so
``--report_only`` adds them to a study whose training is done; each is cached per run):
``gradient_flow`` measures the gradient norm against source distance (:mod:`mt.eval.gradients`) of
the claim-1 experiments on ``sentences`` test pairs spread over the test split; ``stress`` decodes
the claim-5 experiments' test split with every ``k`` consecutive sentences joined (the first
``max_sentences`` sentences, :func:`mt.eval.evaluation.stress_set`); ``out_of_domain`` decodes the first
``max_sentences`` lines of a corpus fetched by :mod:`mt.data.corpora` (``corpus: iwslt17``, ``split``
tst2016 or tst2017, honouring ``MT_DATA_MIRROR``) or of a folder of ``{split}.{lang}`` files
(``data_dir``, with ``src_lang``/``tgt_lang``, default de/en), for the claim-5 experiments whose
data has the same languages.

Experiment keys left out come from ``defaults``. A data set is a folder of ``{split}.{lang}``
files (``data_dir``) or a synthetic pair (``synthetic``: the options of
:class:`mt.data.synthetic.SyntheticSpec`), generated under ``{out}/data/{name}`` on first use.

:func:`load_study` checks everything that can be checked before training (unknown keys, a
missing config or data split, an unknown architecture or cell, seeds < 1, unequal learning-rate
trials among the architectures one claim compares) and raises :class:`StudyError` with one line
naming the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CELLS = ("lstm", "gru", "rnn")
#: Model classes of the shipped configs and the architecture each is (``None``: its ``cell``).
ARCHITECTURES: dict[str, str | None] = {
    "TransformerSeq2Seq": "transformer",
    "RNNSeq2Seq": None,
    "LSTMSeq2Seq": None,
}
CLAIM_IDS = (1, 2, 3, 4, 5, 6)
TOP_KEYS = {"name", "out", "eval", "data", "defaults", "experiments"}
EVAL_KEYS = {"beam_size", "bucket_edges", "n_bootstrap", "max_tokens", "gradient_flow", "stress",
             "out_of_domain"}  # fmt: skip
GRADIENT_KEYS = {"sentences", "batch_size"}
STRESS_KEYS = {"k", "max_sentences"}
OOD_KEYS = {"corpus", "split", "data_dir", "src_lang", "tgt_lang", "max_sentences"}
OOD_CORPORA = ("iwslt17",)
DATA_KEYS = {"data_dir", "synthetic", "src_lang", "tgt_lang", "train_split", "val_split",
             "test_split", "vocab_size", "tokenizer_type"}  # fmt: skip
SYNTHETIC_KEYS = {"train_size", "val_size", "test_per_band", "train_lengths", "val_lengths",
                  "test_bands", "seed"}  # fmt: skip
DEFAULT_KEYS = {"config", "data", "fraction", "cell", "lr", "budget", "seeds", "overrides", "claims"}
EXPERIMENT_KEYS = {"name", *DEFAULT_KEYS}
BUDGET_KEYS = {"max_steps", "max_time", "max_epochs"}
OVERRIDE_ROOTS = {"trainer", "model", "data", "seed_everything"}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_TIME = re.compile(r"\d{2}:\d{2}:\d{2}:\d{2}")


class StudyError(ValueError):
    """A study file that cannot run: the message is one line naming the key."""


@dataclass(frozen=True)
class DataSet:
    """A named corpus: a folder of ``{split}.{lang}`` files, or a synthetic pair to generate."""

    name: str
    data_dir: Path
    synthetic: dict[str, Any] | None
    options: dict[str, Any]  # data.* options for mt fit (languages, splits, vocabulary)

    def split_file(self, split: str, lang_key: str) -> Path:
        """``{data_dir}/{split option}.{lang option}``, e.g. ``test_split`` + ``src_lang``."""
        return self.data_dir / f"{self.options[split]}.{self.options[lang_key]}"


@dataclass(frozen=True)
class Experiment:
    """One experiment of the study: a config trained with the same settings over seeds."""

    name: str
    config: Path
    architecture: str  # transformer | lstm | gru | rnn
    data: DataSet
    fraction: float
    cell: str | None
    lrs: tuple[float | None, ...]  # None: the config's own learning rate
    budget: dict[str, Any]
    seeds: tuple[int, ...]
    overrides: dict[str, Any]
    claims: tuple[int, ...]


@dataclass(frozen=True)
class Study:
    """A loaded, checked study file."""

    name: str
    path: Path
    out: Path
    eval: dict[str, Any]
    data: dict[str, DataSet]
    experiments: tuple[Experiment, ...] = field(default_factory=tuple)

    def experiment(self, name: str) -> Experiment:
        return next(e for e in self.experiments if e.name == name)


def _mapping(value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StudyError(f"{key}: expected a mapping, got {value!r}")
    return value


def _known(mapping: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in mapping:
        if key not in allowed:
            prefix = f"{where}." if where else ""
            raise StudyError(f"{prefix}{key}: unknown key (known: {', '.join(sorted(allowed))})")


def _model_class(config: Path) -> tuple[str | None, dict[str, Any]]:
    """``(model class name, init_args)`` of a config layered over its folder's base.yaml."""
    model: dict[str, Any] = {}
    for path in (config.parent / "base.yaml", config):
        if path.is_file():
            text = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            if isinstance(text, dict) and isinstance(text.get("model"), dict):
                model = text["model"]
    class_path = model.get("class_path")
    return (str(class_path).rsplit(".", 1)[-1] if class_path else None), model.get("init_args") or {}


def _positive_int(value: Any, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise StudyError(f"{key}: an integer >= 1, got {value!r}")
    return value


def _load_probes(evaluation: dict[str, Any]) -> None:
    """Check (and fill the defaults of) the optional probes under ``eval`` in place."""
    if evaluation.get("gradient_flow") is not None:
        grad = {"sentences": 64, "batch_size": 16, **_mapping(evaluation["gradient_flow"], "eval.gradient_flow")}
        _known(grad, GRADIENT_KEYS, "eval.gradient_flow")
        for key in GRADIENT_KEYS:
            _positive_int(grad[key], f"eval.gradient_flow.{key}")
        evaluation["gradient_flow"] = grad
    if evaluation.get("stress") is not None:
        stress = {"k": [1, 2, 4], "max_sentences": None, **_mapping(evaluation["stress"], "eval.stress")}
        _known(stress, STRESS_KEYS, "eval.stress")
        ks = stress["k"] if isinstance(stress["k"], list) else [stress["k"]]
        if not ks or len(set(map(str, ks))) != len(ks):
            raise StudyError(f"eval.stress.k: distinct integers >= 1, got {stress['k']!r}")
        stress["k"] = sorted(_positive_int(k, "eval.stress.k") for k in ks)
        if stress["max_sentences"] is not None:
            _positive_int(stress["max_sentences"], "eval.stress.max_sentences")
        evaluation["stress"] = stress
    if evaluation.get("out_of_domain") is not None:
        ood = {"src_lang": "de", "tgt_lang": "en", "max_sentences": None,
               **_mapping(evaluation["out_of_domain"], "eval.out_of_domain")}  # fmt: skip
        _known(ood, OOD_KEYS, "eval.out_of_domain")
        if ("corpus" in ood) == ("data_dir" in ood):
            raise StudyError("eval.out_of_domain: give exactly one of corpus or data_dir")
        if "split" not in ood:
            raise StudyError("eval.out_of_domain.split: missing (e.g. tst2017)")
        if ood["max_sentences"] is not None:
            _positive_int(ood["max_sentences"], "eval.out_of_domain.max_sentences")
        if "corpus" in ood:
            from mt.data.corpora import IWSLT17_LANGPAIR, IWSLT17_SACREBLEU

            if ood["corpus"] not in OOD_CORPORA:
                raise StudyError(f"eval.out_of_domain.corpus: unknown corpus {ood['corpus']!r} "
                                 f"(known: {', '.join(OOD_CORPORA)})")  # fmt: skip
            if ood["split"] not in IWSLT17_SACREBLEU:
                raise StudyError(f"eval.out_of_domain.split: {ood['split']!r} is not an IWSLT17 test set "
                                 f"(known: {', '.join(IWSLT17_SACREBLEU)})")  # fmt: skip
            ood["src_lang"], ood["tgt_lang"] = IWSLT17_LANGPAIR.split("-")
        else:
            for lang in ("src_lang", "tgt_lang"):
                path = Path(str(ood["data_dir"])) / f"{ood['split']}.{ood[lang]}"
                if not path.is_file():
                    raise StudyError(f"eval.out_of_domain.data_dir: no such file {path}")
        evaluation["out_of_domain"] = ood


def _load_data(name: str, raw: Any, out: Path) -> DataSet:
    where = f"data.{name}"
    raw = _mapping(raw, where)
    _known(raw, DATA_KEYS, where)
    if ("data_dir" in raw) == ("synthetic" in raw):
        raise StudyError(f"{where}: give exactly one of data_dir or synthetic")
    options = {k: v for k, v in raw.items() if k not in ("data_dir", "synthetic")}
    synthetic = None
    if "synthetic" in raw:
        synthetic = _mapping(raw["synthetic"], f"{where}.synthetic")
        _known(synthetic, SYNTHETIC_KEYS, f"{where}.synthetic")
        from mt.data.synthetic import SyntheticSpec, parse_bands

        spec = dict(synthetic)
        for key in ("train_lengths", "val_lengths"):
            if key in spec:
                spec[key] = tuple(spec[key])
        try:
            if "test_bands" in spec:
                spec["test_bands"] = parse_bands([str(b) for b in spec["test_bands"]])
            SyntheticSpec(**spec)
        except (TypeError, ValueError) as err:
            raise StudyError(f"{where}.synthetic: {err}") from None
        data_dir = out / "data" / name
        options = {"src_lang": "src", "tgt_lang": "tgt", "test_split": "test", **options}
    else:
        data_dir = Path(str(raw["data_dir"]))
    options = {"src_lang": "de", "tgt_lang": "en", "train_split": "train", "val_split": "val",
               "test_split": "test_2016_flickr", **options}  # fmt: skip
    data = DataSet(name, data_dir, synthetic, options)
    if synthetic is None:
        for split in ("train_split", "val_split", "test_split"):
            for lang in ("src_lang", "tgt_lang"):
                if not data.split_file(split, lang).is_file():
                    raise StudyError(
                        f"{where}.{split}: no such file {data.split_file(split, lang)} "
                        "(get the corpus with `mt download`, or fix data_dir)"
                    )
    return data


def _seeds(value: Any, where: str) -> tuple[int, ...]:
    seeds = value if isinstance(value, list) else [value]
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise StudyError(f"{where}.seeds: a list of integers, got {value!r}")
    if len(set(seeds)) != len(seeds) or min(seeds) < 1:
        raise StudyError(f"{where}.seeds: distinct integers >= 1, got {value!r}")
    return tuple(seeds)


def _lrs(value: Any, where: str) -> tuple[float | None, ...]:
    if value is None:
        return (None,)
    lrs = value if isinstance(value, list) else [value]
    if not lrs or not all(isinstance(x, int | float) and not isinstance(x, bool) and x > 0 for x in lrs):
        raise StudyError(f"{where}.lr: a positive number or a list of them, got {value!r}")
    return tuple(float(x) for x in lrs)


def _budget(value: Any, where: str) -> dict[str, Any]:
    budget = _mapping(value, f"{where}.budget")
    _known(budget, BUDGET_KEYS, f"{where}.budget")
    if not budget:
        raise StudyError(f"{where}.budget: give max_steps, max_time or max_epochs")
    for key in ("max_steps", "max_epochs"):
        if key in budget and not (isinstance(budget[key], int) and budget[key] >= 1):
            raise StudyError(f"{where}.budget.{key}: an integer >= 1, got {budget[key]!r}")
    if "max_time" in budget and not MAX_TIME.fullmatch(str(budget["max_time"])):
        raise StudyError(f"{where}.budget.max_time: DD:HH:MM:SS, got {budget['max_time']!r}")
    return budget


def _experiment(raw: Any, index: int, defaults: dict[str, Any], data: dict[str, DataSet]) -> Experiment:
    where = f"experiments[{index}]"
    raw = _mapping(raw, where)
    _known(raw, EXPERIMENT_KEYS, where)
    merged = {**defaults, **raw}
    name = str(raw.get("name", ""))
    if not NAME.fullmatch(name):
        raise StudyError(f"{where}.name: a name of letters, digits, '-', '_' or '.', got {name!r}")
    where = f"experiments[{index}] ({name})"
    for key in ("config", "data", "budget", "seeds", "claims"):
        if key not in merged:
            raise StudyError(f"{where}.{key}: missing (here or under defaults)")
    config = Path(str(merged["config"]))  # relative to the working directory, as for mt fit
    if not config.is_file():
        raise StudyError(f"{where}.config: no such file {merged['config']}")
    class_name, init_args = _model_class(config)
    if class_name not in ARCHITECTURES:
        raise StudyError(
            f"{where}.config: unknown architecture {class_name!r} in {config} "
            f"(model.class_path; known: {', '.join(ARCHITECTURES)})"
        )
    cell = merged.get("cell")
    if cell is not None and ARCHITECTURES[class_name] is not None:
        raise StudyError(f"{where}.cell: {config} is a {class_name}, which has no cell")
    if cell is not None and cell not in CELLS:
        raise StudyError(f"{where}.cell: unknown architecture {cell!r} (known: {', '.join(CELLS)})")
    architecture = ARCHITECTURES[class_name] or cell or init_args.get("cell") or "lstm"
    if str(merged["data"]) not in data:
        raise StudyError(f"{where}.data: unknown data set {merged['data']!r} (known: {', '.join(data) or 'none'})")
    fraction = merged.get("fraction", 1.0)
    if not isinstance(fraction, int | float) or not 0 < fraction <= 1:
        raise StudyError(f"{where}.fraction: a number in (0, 1], got {fraction!r}")
    # Overrides add to the defaults' (an experiment's own value of a key wins).
    overrides = {**_mapping(defaults.get("overrides"), "defaults.overrides"),
                 **_mapping(raw.get("overrides"), f"{where}.overrides")}  # fmt: skip
    for key in overrides:
        if str(key).split(".")[0] not in OVERRIDE_ROOTS:
            raise StudyError(f"{where}.overrides.{key}: not an mt fit option (trainer.*, model.*, data.*)")
    claims = merged["claims"] if isinstance(merged["claims"], list) else [merged["claims"]]
    if not claims or any(c not in CLAIM_IDS for c in claims):
        raise StudyError(f"{where}.claims: claim numbers among {list(CLAIM_IDS)}, got {merged['claims']!r}")
    return Experiment(
        name=name, config=config, architecture=architecture, data=data[str(merged["data"])],
        fraction=float(fraction), cell=cell, lrs=_lrs(merged.get("lr"), where),
        budget=_budget(merged["budget"], where), seeds=_seeds(merged["seeds"], where),
        overrides=dict(overrides), claims=tuple(claims),
    )  # fmt: skip


def _check_fair_tuning(experiments: tuple[Experiment, ...]) -> None:
    """The architectures one claim compares get the same number of learning-rate trials."""
    for claim in CLAIM_IDS:
        trials = {e.name: len(e.lrs) for e in experiments if claim in e.claims}
        if len(set(trials.values())) > 1:
            listing = ", ".join(f"{name} {n}" for name, n in trials.items())
            raise StudyError(
                f"experiments.lr: claim {claim} compares experiments with unequal learning-rate "
                f"trials ({listing}); give each the same number"
            )


def load_study(path: str | Path, out: str | Path | None = None) -> Study:
    """Read and check a study file (see the module docstring); ``out`` overrides its ``out``.

    Raises:
        StudyError: one line naming the key at fault.
    """
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"--config: no such study file {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise StudyError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    raw = _mapping(raw, str(path))
    _known(raw, TOP_KEYS, "")
    name = str(raw.get("name") or path.stem)
    if not NAME.fullmatch(name):
        raise StudyError(f"name: letters, digits, '-', '_' or '.', got {name!r}")
    out_dir = Path(str(out or raw.get("out") or f"runs/study/{name}"))
    evaluation = {"beam_size": 1, "bucket_edges": [10, 20, 30, 40, 50], "n_bootstrap": 200,
                  "max_tokens": 4096, **_mapping(raw.get("eval"), "eval")}  # fmt: skip
    _known(evaluation, EVAL_KEYS, "eval")
    _load_probes(evaluation)
    data = {str(k): _load_data(str(k), v, out_dir) for k, v in _mapping(raw.get("data"), "data").items()}
    defaults = _mapping(raw.get("defaults"), "defaults")
    _known(defaults, DEFAULT_KEYS, "defaults")
    items = raw.get("experiments")
    if not isinstance(items, list) or not items:
        raise StudyError("experiments: a non-empty list of experiments")
    experiments = tuple(_experiment(e, i, defaults, data) for i, e in enumerate(items))
    names = [e.name for e in experiments]
    if dup := sorted({n for n in names if names.count(n) > 1}):
        raise StudyError(f"experiments: the name {dup[0]!r} is used twice")
    _check_fair_tuning(experiments)
    return Study(name, path, out_dir, evaluation, data, experiments)
