"""The optional dependency of capture: torch, imported when a capture runs, never at ``import koopscope``."""

from __future__ import annotations

import importlib
from types import ModuleType

from koopscope.errors import MissingDependencyError

__all__ = ["INSTALL_LINE", "require_torch", "require_transformers"]

INSTALL_LINE = 'pip install -c constraints.txt -e ".[transformers]"'


def _require(name: str, caller: str) -> ModuleType:
    """Import and return the module ``name``, or raise :class:`MissingDependencyError` with the install line."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise MissingDependencyError(f"{caller} needs {name}, which is not installed; install the transformers extra "
                                     f"with `{INSTALL_LINE}`.") from None


def require_torch(caller: str) -> ModuleType:
    """torch, imported when a capture runs."""
    return _require("torch", caller)


def require_transformers(caller: str) -> ModuleType:
    """transformers, imported when a model is loaded by name or path."""
    return _require("transformers", caller)
