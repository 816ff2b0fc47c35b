"""One assertion for the exact-error tests: the call fails with exactly this error type and sentence."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


def refused(error: type[Exception], message: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Assert that ``fn(*args, **kwargs)`` raises ``error`` (not a subclass) whose text is exactly ``message``."""
    with pytest.raises(error) as err:
        fn(*args, **kwargs)
    assert type(err.value) is error
    assert str(err.value) == message
