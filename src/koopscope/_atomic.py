"""Atomic file output: write a temporary sibling, flush it to disk, then rename it over the target.

A reader (or a crash) never sees a half-written file: the target either keeps its old content or holds the
new content in full. The temporary file lives in the target's directory so the final ``os.replace`` is a
rename within one filesystem.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from koopscope.errors import ParameterError

__all__ = ["check_output_path", "write_bytes", "write_text"]


def check_output_path(path: str | os.PathLike[str], argument: str = "output path") -> Path:
    """``path`` as a Path, or ParameterError (one sentence) when its directory is missing or it is a directory.

    Call it before a long computation so that a bad output path fails at once.
    """
    target = Path(path)
    parent = target.parent
    if not parent.is_dir():
        raise ParameterError(f"The {argument} {str(target)!r} is in a directory that does not exist "
                             f"({str(parent)!r}); create the directory first or choose another path.")
    if target.is_dir():
        raise ParameterError(f"The {argument} {str(target)!r} is a directory, expected a file path; "
                             "give a file name inside it.")
    return target


def write_bytes(path: str | os.PathLike[str], data: bytes, *, argument: str = "output path") -> Path:
    """Write ``data`` to ``path`` atomically and return the path.

    ``argument`` names the path in the error raised when its directory does not exist.
    """
    target = check_output_path(path, argument)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_text(path: str | os.PathLike[str], text: str, *, argument: str = "output path") -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically and return the path."""
    return write_bytes(path, text.encode("utf-8"), argument=argument)
