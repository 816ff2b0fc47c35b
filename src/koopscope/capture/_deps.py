"""The optional dependency of capture: torch, imported when a capture runs, never at ``import koopscope``."""

from __future__ import annotations

from types import ModuleType

from koopscope.errors import MissingDependencyError

__all__ = ["INSTALL_LINE", "require_torch"]

INSTALL_LINE = 'pip install -c constraints.txt -e ".[transformers]"'


def require_torch(caller: str) -> ModuleType:
    """Import and return torch, or raise :class:`MissingDependencyError` with the install line."""
    try:
        import torch
    except ImportError:
        raise MissingDependencyError(f"{caller} needs torch, which is not installed; install the transformers extra "
                                     f"with `{INSTALL_LINE}`.") from None
    return torch
