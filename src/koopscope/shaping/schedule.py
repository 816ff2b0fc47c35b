"""When a step is shaped or monitored, which layer transitions it reads, and which token rows.

Every random choice is drawn from ``numpy.random.default_rng((seed, step, purpose))``, so a run is
reproducible, each step draws afresh, and nothing touches torch's global random state (the user's dropout and
data order are unaffected). On step s (counted from 0): the step is on when s % every == 0; the transitions are a
uniform random subset of ``ceil(layer_fraction · L)`` of the L blocks (RKSP: a random 50 % of the layers at each
KSS update); the rows are ``min(max_tokens, B · T)`` token positions drawn uniformly without replacement from
the (B, T) batch, sorted.

>>> s = Schedule(every=10, layer_fraction=0.5, max_tokens=4, seed=0)
>>> s.is_on(0), s.is_on(5), len(s.transitions(0, 6))
(True, False, 3)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["Schedule"]

_LAYERS, _TOKENS, _BASIS = 0, 1, 2  # purposes: independent streams per step


@dataclass(frozen=True)
class Schedule:
    """The sampling plan shared by :class:`~koopscope.shaping.SpectralShaping` and the monitor."""

    every: int
    layer_fraction: float
    max_tokens: int
    seed: int

    def is_on(self, step: int) -> bool:
        return step % self.every == 0

    def _rng(self, step: int, purpose: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, step, purpose))

    def transitions(self, step: int, n_blocks: int, first: int = 0) -> tuple[int, ...]:
        """The sorted transitions ℓ (state ℓ → ℓ + 1), ``first`` <= ℓ < ``n_blocks``, read on ``step``: all of them
        when ``layer_fraction`` is 1."""
        n = n_blocks - first
        k = min(n, max(1, math.ceil(self.layer_fraction * n - 1e-9)))
        if k == n:
            return tuple(range(first, n_blocks))
        return tuple(sorted(first + int(i) for i in self._rng(step, _LAYERS).choice(n, size=k, replace=False)))

    def basis_seed(self, step: int) -> int:
        """Seed of the randomized range finder on ``step``."""
        return int(self._rng(step, _BASIS).integers(2**62))

    def rows(self, step: int) -> Any:
        """``select(B, T, device) -> (b, t)``: the token rows of ``step``, as int64 tensors (n,) on ``device``."""

        def select(B: int, T: int, device: Any) -> tuple[Any, Any]:
            n = min(self.max_tokens, B * T)
            flat = np.sort(self._rng(step, _TOKENS).choice(B * T, size=n, replace=False))  # (n,)
            flat_t = torch.as_tensor(flat, dtype=torch.int64, device=device)
            return flat_t // T, flat_t % T  # batch row, position

        return select
