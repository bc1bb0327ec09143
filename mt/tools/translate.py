"""Translate text files with a checkpoint: one output line per input line, in input order, always.

``scripts/translate.py`` is a thin wrapper over :func:`main`. This module is the command: options,
file checks, reading, atomic output, the line-count check and the progress bar. The reusable part
is :class:`mt.tools.translator.Translator` (tokenize, split, batch, search, detokenize, input
order), with :class:`mt.tools.translator_ct2.CTranslate2Translator` as the CTranslate2 engine;
both stay importable from here. The file is read in chunks of ``--chunk-lines`` lines, so the
whole input never sits in memory.

Guarantees (each one is tested):

* exactly one output line per input line (``--nbest N``: N lines per input line), in input order;
  the numbers of input and output lines are compared at the end and a difference is an error;
* an empty or whitespace-only input line gives an empty output line without running the model;
* no silent truncation: a line longer than ``--max-input-tokens`` subwords (by default the
  ``data.max_len`` the checkpoint was trained with) is split, at sentence punctuation where
  possible, else between words, else between subwords; its pieces are translated alone and
  joined, nothing is dropped; every split line is reported on stderr with its line number and
  counted in the summary;
* input is decoded as strict UTF-8 (``--errors replace`` to replace and warn instead); lines are
  split on ``\\n`` only and a trailing ``\\r`` (CRLF) is removed;
* a batch that runs out of memory is retried in halves, down to single sentences;
* the output file is written atomically (a temporary file in its folder, renamed into place once
  every line is written and counted): a failed or killed run leaves an earlier output untouched;
  the output folder is checked, and the output compared with the input by device and inode
  (hard and symbolic links included), before the model is loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Literal, TextIO

from torch import nn

from mt.atomic import atomic_write
from mt.data.lines import LineDecodeError, decode_lines
from mt.tools.translator import (
    TranslateError,
    TranslateStats,
    TranslateUsageError,
    Translation,
    Translator,
    _stderr_warning,
    is_out_of_memory,
    resolve_device,
)
from mt.tools.translator_ct2 import CTranslate2Translator

__all__ = [
    "CTranslate2Translator",
    "TranslateError",
    "TranslateStats",
    "TranslateUsageError",
    "Translation",
    "Translator",
    "is_out_of_memory",
    "check_paths",
    "main",
    "open_output",
    "read_lines",
    "resolve_device",
]

ErrorMode = Literal["strict", "replace"]


def read_lines(
    stream: BinaryIO,
    name: str,
    errors: ErrorMode = "strict",
    warn: Callable[[str], None] | None = None,
) -> Iterator[str]:
    """Lines of a binary stream, decoded as UTF-8, lazily, by :func:`mt.data.lines.decode_lines`
    (split on ``b"\\n"`` only, one trailing ``b"\\r"`` removed).

    Raises:
        TranslateError: ``FILE line N: invalid UTF-8 (...)`` on an invalid byte when
            ``errors == "strict"``; with ``"replace"`` the bytes become U+FFFD and ``warn`` is
            called with the line number.
    """
    try:
        yield from decode_lines(stream, name, errors, warn)
    except LineDecodeError as err:
        raise TranslateUsageError(
            f"{name} line {err.line}: invalid UTF-8 ({err.detail}); "
            "use --errors replace to replace invalid bytes"
        ) from None


# ------------------------------------------------------------------------------------------ CLI

ModelLoader = Callable[[str, str], nn.Module]


def _load_checkpoint(path: str, map_location: str) -> nn.Module:
    try:
        from mt.models.module import CheckpointError, load_checkpoint
    except ImportError as err:
        raise TranslateError(
            f"cannot load checkpoints: mt.models.module is not available ({err})"
        ) from None
    try:
        return load_checkpoint(path, map_location=map_location)
    except CheckpointError as err:
        message = str(err)
        raise TranslateUsageError(message if path in message else f"{path}: {message}") from None


def main(argv: Sequence[str] | None = None, *, loader: ModelLoader | None = None) -> int:
    """Run ``mt translate`` (options: :func:`mt.commands.translate`); returns the exit status of
    :func:`run`; a bad command line is ``SystemExit(2)``.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).
        loader: ``(checkpoint_path, map_location) -> model with .tokenizer``; defaults to
            ``mt.models.module.load_checkpoint``. Tests pass their own.
    """
    from mt.commands import run_command

    return run_command("translate", argv, loader=loader)


def run(args: argparse.Namespace, loader: ModelLoader | None = None) -> int:
    """Translate as ``args`` (the options of :func:`mt.commands.translate`) say; the exit status:
    0; 2 for bad input (a missing input file or checkpoint, an unreadable checkpoint, invalid
    UTF-8, an unusable ``--output``); 1 for other errors (out of memory, a line-count mismatch);
    143 when stopped by SIGTERM (the output's temporary file removed, an earlier output
    untouched)."""
    try:
        with _sigterm_unwinds():
            return _run(args, loader or _load_checkpoint)
    except TranslateError as err:
        print(f"mt translate: error: {err}", file=sys.stderr, flush=True)
        return err.exit_status
    except _Terminated:
        print(
            "mt translate: error: stopped by SIGTERM before the translation was complete (an output file is "
            "not replaced)",
            file=sys.stderr,
        )
        return 128 + signal.SIGTERM


class _Terminated(BaseException):
    """Raised by the SIGTERM handler of :func:`main` (not an Exception: nothing swallows it)."""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into :class:`_Terminated` while translating, so that the output's temporary
    file is removed on the way out (the default action would kill the process and leave it)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def terminate(signum: int, frame: object) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace, loader: ModelLoader) -> int:
    # Check the cheap things before loading the model, and open the output only after it.
    check_paths(args.input, args.output)
    if getattr(args, "engine", "pytorch") == "ctranslate2":
        translator: Translator = _ctranslate2_translator(args)
    else:
        translator = _pytorch_translator(args, loader)

    with contextlib.ExitStack() as stack:
        if args.input == "-":
            in_stream, in_name = sys.stdin.buffer, "<stdin>"
        else:
            in_stream, in_name = stack.enter_context(open(args.input, "rb")), args.input
        out = stack.enter_context(open_output(args.output))
        lines = read_lines(in_stream, in_name, args.errors, warn=_stderr_warning)
        # A tqdm bar of sentences translated on stderr when it is a terminal; silent in a pipe,
        # in a file or with --quiet.
        bar = None if args.quiet or not sys.stderr.isatty() else sys.stderr
        stats = translator.translate_stream(lines, out, chunk_lines=args.chunk_lines, progress=bar)
        # Compared before the output is renamed into place: a short output never replaces a file.
        expected = stats.lines_in * args.nbest
        written = stats.lines_out
        if args.output != "-" and os.path.isfile(out.name):
            out.flush()
            written = _count_lines(out.name)
        if written != expected:
            raise TranslateError(
                f"line count mismatch: {stats.lines_in} input lines but {written} output lines "
                f"for {args.output if args.output != '-' else '<stdout>'} (expected {expected})"
            )
    if not args.quiet:
        print(stats.summary(), file=sys.stderr, flush=True)
    return 0


def _pytorch_translator(args: argparse.Namespace, loader: ModelLoader) -> Translator:
    """The translator of ``--checkpoint`` (mt's search on the PyTorch model)."""
    ckpt = Path(args.checkpoint)
    if not ckpt.is_file():
        what = "is a directory" if ckpt.is_dir() else "not found"
        raise TranslateUsageError(f"checkpoint {what}: {args.checkpoint}")
    device = resolve_device(args.device)
    model = loader(str(ckpt), "cpu")
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise TranslateUsageError(f"checkpoint {args.checkpoint} carries no tokenizer")
    return Translator(
        model,
        tokenizer,
        beam_size=args.beam_size,
        nbest=args.nbest,
        length_penalty=args.length_penalty,
        max_tokens=args.max_tokens,
        device=device,
        precision=args.precision,
        max_input_tokens=input_limit(args.max_input_tokens, model),
    )


def _ctranslate2_translator(args: argparse.Namespace) -> Translator:
    """The translator of ``--model`` (a folder written by ``mt export``) in CTranslate2."""
    return CTranslate2Translator(
        args.model,
        beam_size=args.beam_size,
        nbest=args.nbest,
        length_penalty=args.length_penalty,
        max_tokens=args.max_tokens,
        device=args.device,
        threads=args.threads,
        max_input_tokens=args.max_input_tokens,
    )


def input_limit(requested: int | None, model: nn.Module) -> int | None:
    """The ``max_input_tokens`` of a run: ``--max-input-tokens`` when given (0: no limit), else
    the longest input the model was trained on (``trained_max_len``, the checkpoint's
    ``data.max_len``; None when the model does not say)."""
    if requested is not None:
        return requested or None
    return getattr(model, "trained_max_len", None)


def check_paths(input: str, output: str) -> None:
    """Check ``--input`` and ``--output`` before anything is loaded.

    The input must be a file (``-``: stdin). The output (``-``: stdout) must be in an existing,
    writable folder and must not be the input file itself: compared by device and inode, so a hard
    link or a symbolic link to the input is caught as well as the same path.

    Raises:
        TranslateError: naming the path; an unusable output path is a usage error (exit 2).
    """
    if input != "-":
        in_path = Path(input)
        if not in_path.is_file():
            what = "is a directory" if in_path.is_dir() else "not found"
            raise TranslateUsageError(f"input file {what}: {input}")
    if output == "-":
        return
    target = Path(os.path.realpath(output))
    if target.is_dir():
        raise TranslateUsageError(f"--output is a directory: {output}")
    folder = target.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise TranslateUsageError(f"--output {output}: the folder {folder} {what}")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise TranslateUsageError(
            f"--output {output}: cannot write to the folder {folder} ({reason})"
        ) from None
    os.close(fd)
    os.unlink(probe)
    if not target.exists():
        return
    if input != "-":
        if os.path.samefile(input, target):
            raise TranslateUsageError(
                f"--output is the same file as --input (same device and inode): {output}"
            )
    elif _is_regular(sys.stdin) and os.path.samestat(os.fstat(sys.stdin.fileno()), target.stat()):
        raise TranslateUsageError(f"--output is the same file as the standard input: {output}")


def _is_regular(stream: TextIO) -> bool:
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False


@contextlib.contextmanager
def open_output(output: str) -> Iterator[TextIO]:
    """The output stream of a translation run: UTF-8 with ``\n`` line ends.

    ``-`` is stdout (flushed, never closed). A file is written atomically (:func:`atomic_write`):
    to a temporary file in its folder, renamed into place only when the ``with`` block succeeds,
    so a failed or killed run leaves an earlier output untouched. A symbolic link is followed (its
    target is replaced, the link kept). Something other than a regular file (``/dev/null``, a
    FIFO) is written in place.
    """
    if output == "-":
        out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n")
        try:
            yield out
        finally:
            out.flush()
            out.detach()  # never close the process's stdout
        return
    target = os.path.realpath(output)
    if os.path.exists(target) and not os.path.isfile(target):
        with open(target, "w", encoding="utf-8", newline="\n") as out:
            yield out
        return
    with atomic_write(target, "w", encoding="utf-8", newline="\n") as out:
        yield out


def _count_lines(path: str | os.PathLike) -> int:
    """Number of ``\\n`` in a file, read in blocks."""
    count = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            count += block.count(b"\n")
    return count
