"""The machine-and-versions header every benchmark prints and writes into its JSON."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import sys
from typing import Any

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def version(dist: str) -> str:
    """Installed version of a distribution, read without importing it ("unknown" when absent)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def environment(*distributions: str) -> dict[str, Any]:
    """Command line, Python, platform, cores, load, thread settings and the versions of ``distributions``."""
    return {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        **{dist: version(dist) for dist in ("numpy", *distributions, "koopscope")},
        "thread_env": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
    }
