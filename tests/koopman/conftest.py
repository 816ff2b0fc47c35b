"""Keep every Koopman-layer test on one thread: the suite shares 2 CPU cores."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
