"""The koopscope error hierarchy.

Every error koopscope raises on purpose is a :class:`KoopscopeError`. Its message is one sentence that
names the argument, the value it got, what was expected and how to fix it. The command line maps these
errors to exit code 2 (usage or input error) and prints the sentence without a traceback.
"""

from __future__ import annotations

__all__ = [
    "KoopscopeError",
    "ParameterError",
    "DataError",
    "NotFittedError",
    "MissingDependencyError",
    "NumericalError",
    "CaptureError",
    "StoreError",
    "HubError",
]


class KoopscopeError(Exception):
    """Root of every error koopscope raises deliberately."""


class ParameterError(KoopscopeError, ValueError):
    """A keyword argument has a value outside its documented domain."""


class DataError(KoopscopeError, ValueError):
    """An input array cannot support the computation (shape, dtype, NaN/Inf, degenerate content)."""


class NotFittedError(KoopscopeError, ValueError, AttributeError):
    """A stateful object was used before ``fit`` / ``update``."""


class MissingDependencyError(KoopscopeError, ImportError):
    """An optional extra is needed; the message gives the exact ``pip install`` line."""


class NumericalError(KoopscopeError, ArithmeticError):
    """A decomposition failed or produced non-finite numbers on finite input."""


class CaptureError(KoopscopeError, RuntimeError):
    """A model's forward pass failed during capture; the message names the block."""


class StoreError(KoopscopeError, ValueError):
    """A trajectory store is corrupt, foreign, or belongs to a different extraction."""


class HubError(KoopscopeError, RuntimeError):
    """The Hugging Face Hub cannot be reached, refuses the token, or rejects the commit (exit code 2)."""
