"""Command line for ``scripts/evaluate.py``: score translation files with sacreBLEU.

Scoring mode (available now)::

    python scripts/evaluate.py --hyp HYP --ref REF [--src SRC] [--json OUT]
                               [--bucket-edges 10 20 30 40 50]

prints the BLEU and chrF lines exactly as ``sacrebleu REF -i HYP -m bleu chrf`` prints them
(with signatures); with ``--src`` it adds a table of scores per source-length bucket with
bootstrap 95% intervals; ``--json`` writes everything to a file.

Translate-then-score mode::

    python scripts/evaluate.py --checkpoint CKPT --src SRC --ref REF [--beam-size 5]
                               [--max-tokens 4096] [--device auto] [--save-hyp OUT]

translates ``SRC`` with the checkpoint (:class:`mt.tools.translate.Translator`, the same decoding path
as ``scripts/translate.py``), then scores the translations exactly like ``--hyp`` input, bucket
table included (``--src`` is given).

Files are read as sacreBLEU's CLI reads them: UTF-8, split on ``"\\n"`` only, and each line
``rstrip()``-ed (so ``"\\r\\n"`` endings and trailing blanks are dropped, leading whitespace
kept). Unlike sacreBLEU, invalid UTF-8 is reported with the file name and 1-based line number.
Bad input ends the program with exit status 2 and one line ``mt evaluate: error: ...`` on stderr.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mt.data.lines import LineDecodeError, decode_lines
from mt.eval.evaluation import (
    corpus_scores,
    format_buckets_table,
    format_scores,
    length_buckets,
)


class InputError(Exception):
    """Bad user input (unreadable file, invalid UTF-8, mismatched line counts, ...)."""


def read_lines(path: str | Path) -> list[str]:
    """Read a text file the way the ``sacrebleu`` CLI does, but strictly.

    The file (optionally gzip-compressed, by ``.gz`` suffix) is decoded as UTF-8 line by line
    (:func:`mt.data.lines.decode_lines`), lines are split on ``"\\n"`` only (no other Unicode line
    breaks) and each line is ``rstrip()``-ed, exactly as ``sacrebleu`` does (``line.rstrip()`` after opening with
    ``newline="\\n"``). A final line without a trailing newline is kept; a byte-order mark is
    not removed (sacreBLEU keeps it too).

    Raises:
        InputError: if the file cannot be read or a line is not valid UTF-8 (the message
            names the file and the 1-based line number).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    try:
        return [line.rstrip() for line in decode_lines(io.BytesIO(data), str(path))]
    except LineDecodeError as err:
        raise InputError(str(err)) from None


def translate_with_checkpoint(args: argparse.Namespace) -> list[str]:
    """Translate-then-score mode: one hypothesis per line of ``args.src``, in order.

    Loads ``args.checkpoint`` with :func:`mt.models.module.load_checkpoint` (the checkpoint carries
    its tokenizer) and translates with :class:`mt.tools.translate.Translator` at ``args.beam_size``,
    ``args.length_penalty`` and ``args.max_tokens``, the same decoding as
    ``scripts/translate.py``; an empty source line gives an empty hypothesis. With
    ``args.save_hyp`` the translations are also written there. :func:`run` then scores them
    exactly like ``--hyp`` input.

    Raises:
        InputError: unreadable or non-mt checkpoint, bad decoding options, unwritable output.
    """
    from mt.models.module import CheckpointError, load_checkpoint
    from mt.tools.translate import Translator, resolve_device

    if args.beam_size < 1 or args.max_tokens < 1:
        raise InputError("--beam-size and --max-tokens must be >= 1")
    src = read_lines(args.src)
    try:
        model = load_checkpoint(args.checkpoint, map_location="cpu")
    except CheckpointError as exc:
        raise InputError(" ".join(str(exc).split())) from None  # one line
    try:
        device = resolve_device(args.device)
    except (RuntimeError, ValueError) as exc:
        raise InputError(str(exc)) from None
    assert model.tokenizer is not None  # load_checkpoint guarantees it
    translator = Translator(
        model,
        model.tokenizer,
        beam_size=args.beam_size,
        length_penalty=args.length_penalty,
        max_tokens=args.max_tokens,
        device=device,
    )
    hyps = [nbest[0].text for nbest in translator.translate(src)]
    if args.save_hyp is not None:
        try:
            args.save_hyp.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write {args.save_hyp}: {exc}") from None
    return hyps


def _check_counts(name_a: str, a: Sequence[str], name_b: str, b: Sequence[str]) -> None:
    """Raise ``InputError`` naming both files and their line counts if they differ."""
    if len(a) != len(b):
        raise InputError(
            f"line counts differ: {name_a} has {len(a)} lines, {name_b} has {len(b)} lines"
        )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Score per ``args``, print the report to stdout and return it as a dict."""
    if args.ref is None:
        raise InputError("--ref is required")
    refs = read_lines(args.ref)
    src = read_lines(args.src) if args.src is not None else None

    if args.checkpoint is not None:
        if src is None:
            raise InputError("--checkpoint needs --src to translate")
        hyps = translate_with_checkpoint(args)
        hyp_name = f"translations of {args.src} by {args.checkpoint}"
    elif args.hyp is not None:
        hyps = read_lines(args.hyp)
        hyp_name = str(args.hyp)
    else:
        raise InputError("give --hyp (or --checkpoint) to score")

    _check_counts(hyp_name, hyps, str(args.ref), refs)
    if src is not None:
        _check_counts(str(args.src), src, str(args.ref), refs)
    if not refs:
        raise InputError(f"no lines to score in {args.ref}")

    try:
        scores = corpus_scores(hyps, refs)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    print(format_scores(scores))

    result: dict[str, Any] = {
        "hyp": hyp_name,
        "ref": str(args.ref),
        "src": None if args.src is None else str(args.src),
        "checkpoint": None if args.checkpoint is None else str(args.checkpoint),
        "beam_size": None if args.checkpoint is None else args.beam_size,
        **scores.to_dict(),
    }
    if src is not None:
        try:
            buckets = length_buckets(
                src, hyps, refs, args.bucket_edges, n_bootstrap=args.n_bootstrap, seed=args.seed
            )
        except ValueError as exc:
            raise InputError(str(exc)) from None
        print()
        print(f"Scores by source length (words; 95% CI from {args.n_bootstrap} resamples):")
        print(format_buckets_table(buckets))
        result["bucket_edges"] = list(args.bucket_edges)
        result["n_bootstrap"] = args.n_bootstrap
        result["seed"] = args.seed
        result["buckets"] = [b.to_dict() for b in buckets]

    if args.json is not None:
        try:
            args.json.write_text(
                json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )
        except OSError as exc:
            raise InputError(f"cannot write {args.json}: {exc}") from None
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mt evaluate`` (options: :func:`mt.commands.evaluate`); returns the exit status (0 ok,
    2 bad input); a bad command line is ``SystemExit(2)``."""
    from mt.commands import run_command

    return run_command("evaluate", argv)
