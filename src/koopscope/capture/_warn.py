"""Warnings that point at the caller's line, not at the capture internals."""

from __future__ import annotations

import sys
import warnings

__all__ = ["warn"]


def warn(message: str) -> None:
    """``warnings.warn(message)`` (a UserWarning) attributed to the first frame outside koopscope.capture."""
    level, frame = 2, sys._getframe(1)  # stacklevel 2 is the frame that called warn()
    while frame is not None and frame.f_globals.get("__name__", "").startswith("koopscope.capture"):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, UserWarning, stacklevel=level)
