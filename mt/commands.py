"""`mt translate|evaluate|compare|benchmark|download|synthetic|gradients|export|average|study`:
the jobs beside training, typed.

jsonargparse builds each command's parser from its function's signature and docstring: the
options, their types, defaults, allowed values (``Literal``) and ``--help``. ``mt --help`` lists
them beside ``fit|validate|test|predict``; ``scripts/translate.py`` and the other scripts are
aliases of the same functions, so existing command lines keep working:

* dashed option names (``--beam-size``) are the underscored ones (``--beam_size``);
* a flag given alone (``--quiet``) is ``--quiet true``;
* a list option takes its values one by one (``--checkpoints a b``) or as one list (``[a,b]``).

Every job fails the same way: one line ``mt {command}: error: ...`` on stderr. Bad input, i.e.
a bad command line (an unknown option, a wrong type, a value outside the allowed ones, options
that do not go together) or a missing or malformed input file, exits with status 2
(:data:`BAD_INPUT`); a job raises :class:`UsageError` for it and :func:`run_command` prints it.
Other failures (the network, a full disk) raise :class:`JobError`: the same line, exit status 1.
(``mt translate`` prints its errors in :func:`mt.tools.translate.run`, in the same shape.)

Why one module of about 700 lines: nine of the ten commands are a typed signature whose docstring
is the command's ``--help`` (a third of the lines are those docstrings) and a short body that hands
the options to the module doing the work, and the rest is the parsing they share; kept together,
every command's options are read and kept consistent in one place, and ``mt --help`` needs no
torch. ``mt benchmark``'s four jobs, which share options of their own, have their signatures in
:mod:`mt.tools.benchmark.cli`.
"""

from __future__ import annotations

import argparse
import inspect
import json as jsonlib
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from jsonargparse import ArgumentError, ArgumentParser

from mt.tools.benchmark.cli import BENCHMARK_HELP, BENCHMARKS, run_benchmark

Device = Literal["auto", "cpu", "cuda"]
#: Exit status of bad input (a missing or malformed file, a bad checkpoint), as for a bad command
#: line; 1 is left for failures that are not the input's fault.
BAD_INPUT = 2


class JobError(Exception):
    """A job cannot go on: :func:`run_command` prints ``mt {command}: error: <message>`` (on one
    line) and returns :attr:`exit_status`."""

    exit_status = 1


class UsageError(JobError, ValueError):
    """Bad input: option values that parse but do not go together (``--nbest`` above
    ``--beam_size``), or a missing or malformed input file; exit status :data:`BAD_INPUT`."""

    exit_status = BAD_INPUT


# --------------------------------------------------------------------------------------------
# The commands
# --------------------------------------------------------------------------------------------


def translate(
    checkpoint: str | None = None,
    input: str = "-",
    output: str = "-",
    beam_size: int = 5,
    nbest: int = 1,
    length_penalty: float = 1.0,
    max_tokens: int = 4096,
    device: Device = "auto",
    precision: Literal["32", "bf16", "16"] = "32",
    max_input_tokens: int | None = None,
    errors: Literal["strict", "replace"] = "strict",
    chunk_lines: int = 10_000,
    quiet: bool = False,
    engine: Literal["pytorch", "ctranslate2"] = "pytorch",
    model: str | None = None,
    threads: int = 0,
    *,
    loader: Callable[[str, str], Any] | None = None,
) -> int:
    """Translate a text file with a checkpoint: one output line per input line, in input order.

    With --nbest N > 1: N lines per input line, best first, formatted
    ``INDEX ||| SCORE ||| TRANSLATION`` (INDEX the 0-based input line, SCORE the
    length-normalised log-probability). Empty input lines give empty translations. A line longer
    than the model was trained on is split and its pieces' translations joined, never shortened
    (see max_input_tokens); the input and output line counts are compared at the end (a difference is an error, exit 1). The output is written to a temporary
    file in its folder and renamed into place only when complete: a failed or killed run leaves
    an earlier output untouched; an unusable --output (missing or unwritable folder, the input
    file itself, also through a link) is an error before the model loads (exit 2). A progress bar
    on a terminal.

    With --engine ctranslate2 --model DIR, the search runs in CTranslate2 on a folder written
    by mt export (same lines, splitting, n-best and output; see mt.tools.translate.CTranslate2Translator
    for how its search differs).

    Args:
        checkpoint: checkpoint file written by training (--engine pytorch).
        input: input text file, or - for stdin.
        output: output file, or - for stdout.
        beam_size: beam size; 1 = greedy.
        nbest: translations per input line (<= beam size).
        length_penalty: GNMT length penalty alpha; 0 ranks by raw log-probability.
        max_tokens: batch budget in source subwords, padding counted (sentences x longest).
        device: where to run.
        precision: 32, or bf16/16 autocast on the device.
        max_input_tokens: split lines longer than this many subwords into pieces of at most
            this many, at sentence punctuation where possible, else between words, else between
            subwords; the pieces are translated separately and joined with a space, and each
            split line is reported on stderr with its line number and counted in the summary.
            Default: the data.max_len the checkpoint was trained with; 0: every line whole.
        errors: invalid UTF-8 in the input: strict = an error naming the line, replace = replace
            with U+FFFD and warn.
        chunk_lines: lines read and translated at a time; bounds memory.
        quiet: no progress bar and no summary (warnings still shown). The bar is shown only
            when stderr is a terminal.
        engine: pytorch (mt's search on --checkpoint) or ctranslate2 (CTranslate2 on --model).
        model: folder written by mt export (--engine ctranslate2).
        threads: CTranslate2 intra-op threads (0: its default; --engine ctranslate2).
        loader: ``(checkpoint, map_location) -> model`` (tests pass their own).
    """
    from mt.tools import translate as tr

    if beam_size < 1:
        raise UsageError("--beam_size must be >= 1")
    if not 1 <= nbest <= beam_size:
        raise UsageError("--nbest must be between 1 and --beam_size")
    if max_tokens < 1 or chunk_lines < 1:
        raise UsageError("--max_tokens and --chunk_lines must be >= 1")
    if max_input_tokens is not None and max_input_tokens < 0:
        raise UsageError("--max_input_tokens must be >= 0 (0: no limit)")
    if engine == "pytorch" and (checkpoint is None or model is not None):
        raise UsageError("--engine pytorch translates a --checkpoint (--model is for ctranslate2)")
    if engine == "ctranslate2" and (model is None or checkpoint is not None):
        raise UsageError(
            "--engine ctranslate2 translates a --model folder written by mt export, not a "
            "--checkpoint"
        )
    if engine == "ctranslate2" and precision != "32":
        raise UsageError("--precision applies to --engine pytorch; a CTranslate2 model runs "
                         "the weight type it was exported with (mt export --quantization)")
    if threads < 0:
        raise UsageError("--threads must be >= 0 (0: CTranslate2's default)")
    args = argparse.Namespace(**_options(locals(), skip=("tr", "loader")))
    return tr.run(args, loader)


def evaluate(
    ref: Path | None = None,
    hyp: Path | None = None,
    src: Path | None = None,
    checkpoint: Path | None = None,
    bucket_edges: list[int] | None = None,
    n_bootstrap: int | None = None,
    seed: int | None = None,
    beam_size: int = 5,
    length_penalty: float = 1.0,
    max_tokens: int = 4096,
    device: Device = "auto",
    json: Path | None = None,
    save_hyp: Path | None = None,
) -> int:
    """Score translations with sacreBLEU (BLEU, chrF) and per-source-length buckets.

    Scores --hyp against --ref, or translates --src with --checkpoint first. With --src, a
    table of BLEU/chrF by source length in words with bootstrap confidence intervals.

    Args:
        ref: reference translations, one per line.
        hyp: system output, one sentence per line.
        src: source sentences; enables the source-length bucket table (and is what
            --checkpoint translates).
        checkpoint: model checkpoint to translate --src with, instead of --hyp.
        bucket_edges: inclusive upper bounds of the source-length buckets (default: 10 20 30
            40 50).
        n_bootstrap: bootstrap resamples for the confidence intervals (default: 1000).
        seed: bootstrap seed (default: 12345).
        beam_size: beam size for --checkpoint; 1 = greedy.
        length_penalty: GNMT length penalty alpha for --checkpoint.
        max_tokens: decoding batch budget in source subwords, padding counted.
        device: where --checkpoint runs.
        json: also write all results to this file.
        save_hyp: also write the translations of --checkpoint to this file.
    """
    from mt.eval import evaluate_cli

    args = argparse.Namespace(**_with_bucket_defaults(_options(locals(), skip=("evaluate_cli",))))
    try:
        evaluate_cli.run(args)
    except evaluate_cli.InputError as err:
        raise UsageError(str(err)) from err
    return 0


def compare(
    checkpoints: list[str],
    src: Path,
    ref: Path,
    out: Path,
    names: list[str] | None = None,
    beam_size: int = 5,
    length_penalty: float = 1.0,
    max_tokens: int = 4096,
    device: Device = "auto",
    stress_k: list[int] | None = None,
    bucket_edges: list[int] | None = None,
    n_bootstrap: int | None = None,
    seed: int | None = None,
    no_plots: bool = False,
) -> int:
    """Compare trained models on one test set: BLEU/chrF with signatures, length buckets with
    intervals, stress sets, paired bootstrap, training logs, plots (report.md, report.json).

    Args:
        checkpoints: checkpoint files or run folders (RUN/checkpoints/best.ckpt).
        src: source sentences, one per line.
        ref: references, one per line.
        out: output folder of the report.
        names: model names (default: the run folders' names).
        beam_size: beam size; 1 = greedy.
        length_penalty: GNMT length penalty alpha.
        max_tokens: decoding batch budget in source subwords, padding counted.
        device: where the models run.
        stress_k: stress sets: K consecutive sentences joined (default: 1 2 4 8).
        bucket_edges: inclusive upper bounds of the source-length buckets (default: 10 20 30
            40 50).
        n_bootstrap: bootstrap resamples for the confidence intervals (default: 1000).
        seed: bootstrap seed (default: 12345).
        no_plots: skip the PNG plots.
    """
    from mt.eval import compare as cmp

    options = _with_bucket_defaults(_options(locals(), skip=("cmp",)))
    try:
        report = cmp.compare(
            options.pop("checkpoints"), options.pop("src"), options.pop("ref"), options.pop("out"),
            stress_k=options.pop("stress_k") or [1, 2, 4, 8], plots=not options.pop("no_plots"),
            **options,
        )  # fmt: skip
    except cmp.InputError as err:
        raise UsageError(str(err)) from err
    for m in report["models"]:
        s = m["scores"]
        print(
            f"{m['name']}: BLEU {s['bleu']:.2f}  chrF {s['chrf']:.2f}  ({m['architecture']}, "
            f"{m['num_parameters']} parameters)"
        )
    print(f"{report['signatures']['bleu']}\nreport: {Path(out) / 'report.md'}")
    return 0


def download(
    corpus: Literal["multi30k", "iwslt17", "all"] | None = None,
    out: Path = Path("data"),
    mirror: str | None = None,
    splits: str | None = None,
    langs: str | None = None,
    sacrebleu_test_set: str | None = None,
    langpair: str = "de-en",
    timeout: float = 60.0,
) -> int:
    """Fetch corpora into {out}/{corpus}/{split}.{lang} and verify them (see data/README.md).

    Args:
        corpus: corpus to fetch (default: all, or none when --sacrebleu_test_set is given).
        out: output root.
        mirror: copy from MIRROR/{corpus}/{split}.{lang} instead of downloading (default:
            $MT_DATA_MIRROR; '' forces downloading).
        splits: comma list of splits (e.g. train,val,test_2016_flickr).
        langs: comma list of Multi30k languages (en,de,fr,cs).
        sacrebleu_test_set: also fetch a sacreBLEU test set, e.g. wmt14, into
            {out}/NAME-{langpair}/test.*.
        langpair: language pair for --sacrebleu_test_set.
        timeout: network timeout, seconds.
    """
    from mt.data import corpora

    split_list, lang_list = _comma_list(splits), _comma_list(langs)
    try:
        if mirror is None:
            mirror_dir = corpora.mirror_from_env()
        else:
            mirror_dir = Path(mirror) if mirror.strip() else None
        if corpus is None and sacrebleu_test_set is None:
            corpus = "all"
        if (split_list or lang_list) and corpus == "all":
            raise corpora.DataError("--splits/--langs need a single --corpus (multi30k or iwslt17)")
        if lang_list and corpus == "iwslt17":
            raise corpora.DataError("--langs applies to multi30k only (iwslt17 is de-en)")
        if mirror_dir is not None:
            print(f"using mirror {mirror_dir}", flush=True)
        report = corpora.FetchReport()
        common = {"mirror": mirror_dir, "timeout": timeout}
        if corpus in ("multi30k", "all"):
            report.extend(corpora.fetch_multi30k(out, splits=split_list, langs=lang_list, **common))
        if corpus in ("iwslt17", "all"):
            report.extend(corpora.fetch_iwslt17(out, splits=split_list, **common))
        if sacrebleu_test_set is not None:
            report.extend(
                corpora.fetch_sacrebleu_test_set(sacrebleu_test_set, langpair, out, **common)
            )
    except corpora.DataError as err:
        raise UsageError(str(err)) from err
    except OSError as err:  # what the library did not anticipate (network, disk)
        raise JobError(str(err)) from err
    except KeyboardInterrupt:
        raise JobError("interrupted (no partial files were left in place)") from None
    print(f"done: {report.summary()} -> {os.fspath(out)}")
    return 0


def gradients(
    input: Path,
    reference: Path,
    out: Path,
    checkpoint: list[str] | None = None,
    config: list[str] | None = None,
    at_init: bool = False,
    sentences: int = 64,
    batch_size: int = 16,
    seed: int = 0,
    device: Device = "cpu",
    threads: int | None = 1,
) -> int:
    """Gradient flow: the norm of the gradient of each target token's loss with respect to the
    source embedding at each position, averaged per distance |i - j| (definition: mt/eval/gradients.py).

    Writes OUT/gradients.json (per distance and per signed offset i - j: mean norm and number of
    pairs, for every model) and OUT/gradients.png (log scale, one curve per model). A missing
    file or an unusable checkpoint or config exits 2 with one line naming it.

    Args:
        input: source sentences, one per line.
        reference: their target sentences (teacher forcing), line by line.
        out: output folder.
        checkpoint: trained checkpoints to measure.
        config: mt fit configs whose models are measured at initialisation (their data section
            gives the tokenizer, trained or read from the cache as mt fit does).
        at_init: also measure each checkpoint's architecture freshly initialised (same
            hyperparameters and tokenizer, seed --seed).
        sentences: the first N line pairs.
        batch_size: sentence pairs per batch.
        seed: seed of the initialisations.
        device: where the models run.
        threads: torch intra-op threads (default 1; None: torch's).
    """
    import torch

    from mt.eval import gradients as gr

    if sentences < 1 or batch_size < 1:
        raise UsageError("--sentences and --batch_size must be >= 1")
    if threads:
        torch.set_num_threads(threads)
    try:
        gr.run(checkpoint or [], config or [], input, reference, out, at_init=at_init,
               sentences=sentences, batch_size=batch_size, seed=seed, device=device)  # fmt: skip
    except gr.GradientInputError as err:
        raise UsageError(str(err)) from err
    return 0


def synthetic(
    out: Path = Path("data/synthetic"),
    seed: int = 0,
    train_size: int = 20_000,
    val_size: int = 500,
    test_per_band: int = 200,
    train_lengths: tuple[int, int] = (4, 12),
    val_lengths: tuple[int, int] = (4, 60),
    test_bands: tuple[str, ...] = ("4-12", "13-20", "21-30", "31-40", "41-50", "51-60"),
) -> int:
    """Write the synthetic length-generalisation corpus (grammar: mt/data/synthetic.py).

    Writes {out}/{train,val,test,test_len{a}-{b}}.{src,tgt}, the layout that
    configs/synthetic-*.yaml read.

    Args:
        out: output folder.
        seed: seed of the sentence sampler.
        train_size: training pairs.
        val_size: validation pairs.
        test_per_band: test pairs per length band.
        train_lengths: MIN MAX source words of the training sentences.
        val_lengths: MIN MAX source words of the validation sentences.
        test_bands: test length bands in source words, LO-HI each.
    """
    from mt.data.synthetic import SyntheticSpec, parse_bands, write_corpus

    try:
        spec = SyntheticSpec(
            train_size=train_size, val_size=val_size, test_per_band=test_per_band,
            train_lengths=tuple(train_lengths), val_lengths=tuple(val_lengths),
            test_bands=parse_bands(test_bands), seed=seed,
        )  # fmt: skip
        counts = write_corpus(out, spec)
    except ValueError as err:
        raise UsageError(str(err)) from err
    except OSError as err:
        raise JobError(str(err)) from err
    for name, n in counts.items():
        print(f"{out}/{name}.{{src,tgt}}: {n} lines")
    return 0


def export(
    checkpoint: str,
    out: str,
    format: Literal["ctranslate2"] = "ctranslate2",
    quantization: Literal[
        "none", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16",
        "bfloat16",
    ] = "none",
    force: bool = False,
) -> int:
    """Export a Transformer checkpoint for CTranslate2: a folder that translates on its own
    (mt translate --engine ctranslate2 --model OUT), with the checkpoint's sentencepiece model.

    Written to a temporary folder beside OUT and renamed into place when complete. Bad input
    (a recurrent model, which CTranslate2 cannot run; a quantization this machine cannot run; a
    non-empty OUT without --force; a missing or unreadable checkpoint) is one line and exit 2.

    Args:
        checkpoint: checkpoint file written by training (or mt average).
        out: the folder to write.
        format: the export format.
        quantization: weight type; none keeps float32.
        force: replace OUT when it exists and is not empty.
    """
    from mt.models.module import CheckpointError, load_checkpoint
    from mt.tools.export import ExportError, export_ctranslate2

    try:
        model = load_checkpoint(checkpoint)
        path = export_ctranslate2(model, out, quantization, force, source=checkpoint)
    except (ExportError, CheckpointError) as err:
        raise UsageError(str(err)) from err
    print(f"exported {checkpoint} ({format}, weights {quantization}) -> {path}")
    return 0


def average(
    out: str,
    checkpoints: list[str] | None = None,
    last: int | None = None,
    run_dir: str | None = None,
    force: bool = False,
) -> int:
    """Average the parameters of checkpoints of one model into an ordinary mt checkpoint (it
    loads, translates, tests and exports as any other).

    Checkpoints of different model classes, hyperparameters or tokenizers are refused (exit 2);
    OUT is written atomically and never replaced without --force.

    Args:
        out: the averaged checkpoint to write.
        checkpoints: the checkpoint files to average.
        last: average the N checkpoints of --run_dir with the highest training steps.
        run_dir: the run folder for --last.
        force: replace OUT when it exists.
    """
    from mt.tools.export import ExportError, average_checkpoints, last_checkpoints

    if (checkpoints is None) == (last is None):
        raise UsageError("give either --checkpoints FILE... or --last N --run_dir DIR")
    if last is not None and (run_dir is None or last < 2):
        raise UsageError("--last N needs N >= 2 and --run_dir DIR")
    try:
        files = checkpoints if checkpoints is not None else last_checkpoints(run_dir, last)
        path = average_checkpoints(list(files), out, force)
    except ExportError as err:
        raise UsageError(str(err)) from err
    print(f"averaged {len(files)} checkpoints -> {path}")
    return 0


def study(
    config: Path,
    out: Path | None = None,
    only: str | None = None,
    index: int | None = None,
    dry_run: bool = False,
    report_only: bool = False,
    no_plots: bool = False,
) -> int:
    """Run the claims study of a study file, then write its report (report.md, report.json, plots).

    Every experiment x seed is an `mt fit` in its own run folder under {out}/runs; a run with its
    marker (study.json) is skipped, any other resumes from its checkpoint (--ckpt_path
    last_or_new), so the study can be finished in several sittings or spread over a job array
    (--index $SLURM_ARRAY_TASK_ID runs one experiment). The study file is checked before any
    training: a bad key is one line naming it, exit 2. See configs/study/ and mt/study/.

    Args:
        config: the study file (configs/study/smoke.yaml, cpu.yaml, gpu.yaml).
        out: output folder (default: the file's out, else runs/study/{name}).
        only: comma list of experiment names to run; no report then (--report_only writes it).
        index: run only the experiment at this 0-based position (a job-array task id); no
            report then.
        dry_run: print the runs and their mt fit command lines, train nothing.
        report_only: write the report from the runs done, train nothing.
        no_plots: skip the PNG plots.
    """
    from mt.study.report import pending_runs, write_report
    from mt.study.runner import BadInput, run_study
    from mt.study.spec import StudyError, load_study

    try:
        spec = load_study(config, out)
        names = _comma_list(only) or []
        known = [e.name for e in spec.experiments]
        if unknown := [n for n in names if n not in known]:
            raise StudyError(f"--only: unknown experiment {unknown[0]!r} (known: {', '.join(known)})")
        if index is not None:
            if not 0 <= index < len(known):
                raise StudyError(f"--index: {index} is not in 0..{len(known) - 1}")
            names.append(known[index])
        status = 0 if report_only else run_study(spec, names or None, dry_run=dry_run)
    except (StudyError, BadInput) as err:
        raise UsageError(str(err)) from err
    if dry_run:
        return 0
    if names and not report_only:
        print(f"[study] {pending_runs(spec)} run(s) of the study still to do; "
              f"`mt study --config {config} --report_only` writes the report of those done")  # fmt: skip
        return status
    command = f"mt study --config {config}" + (f" --out {out}" if out else "")
    write_report(spec, command, plots=not no_plots)
    print(f"[study] report: {spec.out / 'report.md'}")
    return status


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------

#: ``mt {name}``: the typed function behind it (``benchmark`` has the jobs of ``BENCHMARKS``, whose
#: typed functions are in :mod:`mt.tools.benchmark.cli`).
COMMANDS: dict[str, Callable[..., Any]] = {
    "translate": translate,
    "evaluate": evaluate,
    "compare": compare,
    "benchmark": run_benchmark,
    "download": download,
    "synthetic": synthetic,
    "gradients": gradients,
    "export": export,
    "average": average,
    "study": study,
}
#: Parameters that are not options (passed by callers in Python).
_NOT_OPTIONS = {"loader"}


def _options(values: dict[str, Any], skip: Sequence[str] = ()) -> dict[str, Any]:
    """A function's ``locals()`` reduced to its options."""
    return {k: v for k, v in values.items() if k not in {*skip, *_NOT_OPTIONS}}


def _with_bucket_defaults(options: dict[str, Any]) -> dict[str, Any]:
    """Fill ``bucket_edges``/``n_bootstrap``/``seed`` left at None with mt.eval.evaluation's defaults."""
    from mt.eval.evaluation import DEFAULT_EDGES, DEFAULT_N_BOOTSTRAP, DEFAULT_SEED

    defaults = {"bucket_edges": list(DEFAULT_EDGES), "n_bootstrap": DEFAULT_N_BOOTSTRAP,
                "seed": DEFAULT_SEED}  # fmt: skip
    return {k: (defaults[k] if v is None and k in defaults else v) for k, v in options.items()}


def _comma_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()] or None


def _kind(annotation: Any) -> str:
    """``"bool"``, ``"int_list"``/``"list"`` (a list or tuple of ints / of anything else) or ``""``
    for a parameter's type."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _kind(inner[0]) if len(inner) == 1 else ""
    if annotation is bool:
        return "bool"
    if typing.get_origin(annotation) in (list, tuple):
        return "int_list" if args and args[0] is int else "list"
    return ""


def parser_for(fns: Sequence[Callable[..., Any]], prog: str) -> ArgumentParser:
    """The jsonargparse parser of typed functions' options (help from the last's docstring)."""
    description = inspect.cleandoc(fns[-1].__doc__ or "").split("\nArgs:")[0].strip()
    parser = ArgumentParser(prog=prog, description=description, exit_on_error=False)
    for fn in fns:
        parser.add_function_arguments(fn, skip=_NOT_OPTIONS, as_group=False)
    return parser


def command_parsers(jobs: bool = True) -> dict[str, ArgumentParser]:
    """One parser per extra command, by name; ``mt benchmark``'s jobs are its subcommands
    (without ``jobs``, :func:`add_benchmark_jobs` adds them once the parser has its place under
    another: jsonargparse adds levels of subcommands top-down)."""
    parsers = {}
    for name, fn in COMMANDS.items():
        if name == "benchmark":
            parsers[name] = ArgumentParser(
                prog="mt benchmark", description=BENCHMARK_HELP, exit_on_error=False
            )
            if jobs:
                add_benchmark_jobs(parsers[name])
        else:
            parsers[name] = parser_for([fn], f"mt {name}")
    return parsers


def add_benchmark_jobs(parser: ArgumentParser) -> None:
    """``data``, ``decode``, ``train``, ``length`` as subcommands of ``mt benchmark``'s parser."""
    jobs = parser.add_subcommands(dest="job")
    for job, fns in BENCHMARKS.items():
        jobs.add_subcommand(job, parser_for(fns, f"mt benchmark {job}"), help=_first_line(fns[-1]))




def _first_line(fn: Callable[..., Any]) -> str:
    return (fn.__doc__ or "").strip().splitlines()[0]


def normalize(argv: Sequence[str], fns: Sequence[Callable[..., Any]]) -> list[str]:
    """The scripts' spellings of the options of ``fns`` in jsonargparse's (see the module
    docstring)."""
    kinds = {}
    for fn in fns:
        hints = typing.get_type_hints(fn)
        kinds.update({name: _kind(hints.get(name)) for name in inspect.signature(fn).parameters})
    out: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        token = items[i]
        i += 1
        name, eq, value = token[2:].partition("=")
        key = name.replace("-", "_")
        if not token.startswith("--") or key not in kinds or key in _NOT_OPTIONS:
            out.append(token)  # a value, or an unknown option that jsonargparse then names
            continue
        kind, values = kinds[key], [value] if eq else []
        while not eq and i < len(items) and not items[i].startswith("--"):
            values.append(items[i])
            i += 1
            if not kind.endswith("list"):
                break
        if kind == "bool" and not values:
            values = ["true"]
        elif kind.endswith("list") and not (len(values) == 1 and values[0].startswith("[")):
            values = [jsonlib.dumps([int(v) for v in values] if kind == "int_list" else values)]
        out.extend([f"--{key}", *values])
    return out


def one_line(message: str) -> str:
    """A parser's (often multi-line) error message as one line, without the lines that only
    repeat what was given or list the types a value was tried against."""
    noise = ("Subtypes:", "Errors:", "Given value type:", "Given value: NestedArg",
             "Does not validate against any of the Union", "- Expected a <class 'NoneType'>")  # fmt: skip
    lines = [line.strip() for line in str(message).splitlines()]
    kept = [line for line in lines if line and not line.startswith(noise)]
    return " ".join(kept or lines)


def run_command(name: str, argv: Sequence[str] | None = None, **extra: Any) -> int:
    """Parse ``argv`` for ``mt {name}`` and run it; returns the exit status.

    A bad command line is one line ``mt {name}: error: ...`` and ``SystemExit(2)`` (argparse's
    way); a :class:`JobError` raised by the job (a :class:`UsageError`: bad input) is the same
    line and its exit status is returned. ``extra`` goes to the function unparsed (``loader``
    of :func:`translate`).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = f"mt {name}"
    job = argv[0] if name == "benchmark" and argv and argv[0] in BENCHMARKS else None
    if job:
        tokens = [job, *normalize(argv[1:], BENCHMARKS[job])]
    else:
        tokens = normalize(argv, [COMMANDS[name]]) if name != "benchmark" else argv
    try:
        config = command_parsers()[name].parse_args(tokens)
        if name == "benchmark":
            return run_benchmark(config.job, config[config.job].as_dict(), argv[1:])
        return COMMANDS[name](**config.as_dict(), **extra)
    except ArgumentError as err:
        print(f"{prog}: error: {one_line(str(err))}", file=sys.stderr)
        raise SystemExit(BAD_INPUT) from None
    except JobError as err:
        print(f"{prog}: error: {one_line(str(err))}", file=sys.stderr)
        return err.exit_status


def main(argv: Sequence[str] | None = None) -> int:
    """The ``mt`` executable: the jobs here without loading Lightning (``mt translate --help``
    answers at once), ``fit|validate|test|predict`` and ``mt --help`` through :func:`mt.cli.main`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        return run_command(args[0], args[1:])
    from mt.cli import main as cli_main

    return cli_main(None if argv is None else args)
