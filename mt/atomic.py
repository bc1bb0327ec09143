"""Atomic file writes: a reader sees the old file or the complete new one, never a partial file.

:func:`atomic_write` writes to a temporary file *in the destination's folder* (so the final step is
a rename within one filesystem, which is atomic), fsyncs it, renames it over the destination only
when the ``with`` block ends without an exception, and fsyncs the folder so that the rename
survives a crash. On an exception the temporary file is removed and the destination is untouched;
a process killed outright (SIGKILL, power loss) leaves the destination untouched too, and a hidden
``.NAME.*.tmp`` file that marks the write as incomplete.

The new file gets the permissions an ordinary ``open(path, "w")`` would give it: those of the file
it replaces, or ``0o666`` minus the umask for a new file (``tempfile.mkstemp`` alone would make
every such file ``0o600``). Checkpoints (``mt.cluster``) and translation output (``mt.tools.translate``)
are written through it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "fsync_dir", "new_file_mode"]


def _umask() -> int:
    """The process's umask: read from /proc on Linux; elsewhere set and restored at once (the
    only portable way to read it; another thread creating a file in between would get 0o022)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode(path: str | os.PathLike) -> int:
    """Permission bits for a file written to ``path``: those of the regular file already there,
    else ``0o666`` minus the process's umask (what ``open(path, "w")`` gives)."""
    try:
        st = os.stat(path)
    except OSError:
        return 0o666 & ~_umask()
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else 0o666 & ~_umask()


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a rename inside ``directory`` durable (best effort: not every OS or filesystem can)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "wb", **open_kwargs: Any
) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; rename it to ``path`` when the block succeeds.

    Args:
        path: the destination; its folder must exist. A symbolic link is replaced, not followed:
            pass ``os.path.realpath(path)`` to write to the link's target.
        mode: ``"wb"`` or ``"w"`` (text).
        open_kwargs: passed to :func:`open` (``encoding``, ``newline``, ...).

    Yields:
        The open temporary file; its ``name`` is the temporary path (e.g. to count what was
        written before the rename).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write opens files for writing only ('w' or 'wb'), got {mode!r}")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, new_file_mode(path))
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
