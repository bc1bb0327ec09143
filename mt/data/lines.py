"""Reading text line by line: the one UTF-8 policy of every reader of text files.

Lines are split on ``b"\\n"`` only (never on ``\\r``, U+2028 or other Unicode separators) and one
trailing ``b"\\r"`` is removed (CRLF files). A final line without newline counts as a line; a file
that ends with a newline has no extra empty line. Bytes that are not UTF-8 are an error naming the
file, the 1-based line and the bytes, unless the caller asks for replacement.

Callers: the corpus cache (:func:`mt.data.cache.iter_lines`), ``mt translate``
(:func:`mt.tools.translate.read_lines`), ``scripts/evaluate.py`` and ``mt compare``
(:func:`mt.eval.evaluate_cli.read_lines`). Kept free of torch and Lightning so that scoring starts fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Literal

__all__ = ["LineDecodeError", "decode_lines"]


class LineDecodeError(ValueError):
    """A line that is not valid UTF-8.

    Attributes:
        name: the file (or stream) name.
        line: the 1-based line number.
        detail: which bytes, where in the line, and why, e.g. ``byte ff at byte 5: invalid start
            byte``.
    """

    def __init__(self, name: str, line: int, detail: str) -> None:
        super().__init__(f"{name}:{line}: invalid UTF-8 ({detail})")
        self.name, self.line, self.detail = name, line, detail


def decode_lines(
    raw_lines: Iterable[bytes],
    name: str,
    errors: Literal["strict", "replace"] = "strict",
    warn: Callable[[str], None] | None = None,
) -> Iterator[str]:
    """Decode lines of bytes (a binary file or stream iterates so), lazily.

    Args:
        raw_lines: lines as bytes, each with or without its ``b"\\n"``.
        name: the file's name, for messages.
        errors: ``strict`` raises on invalid UTF-8; ``replace`` turns the bytes into U+FFFD and
            calls ``warn`` with a message naming the line.

    Raises:
        LineDecodeError: the first invalid line, with ``errors == "strict"``.
    """
    for number, raw in enumerate(raw_lines, start=1):
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as err:
            detail = (
                f"byte{'s' if err.end - err.start > 1 else ''} "
                f"{err.object[err.start : err.end].hex(' ')} at byte {err.start + 1}: {err.reason}"
            )
            if errors == "strict":
                raise LineDecodeError(name, number, detail) from None
            if warn is not None:
                warn(f"{name} line {number}: invalid UTF-8 ({detail}), replaced with U+FFFD")
            yield raw.decode("utf-8", errors="replace")
