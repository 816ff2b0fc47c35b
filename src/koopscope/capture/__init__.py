"""Residual-stream capture: forward hooks on a model's blocks, N sampled tokens, L + 1 states.

``koopscope.capture`` is both this package and a function: ``ks.capture(model, inputs)`` calls
:func:`capture` (the package module is callable), and ``ks.capture.random_tokens`` and the other names below
are its helpers. Importing it does not import torch; a capture does, and fails with the install line when
torch is missing.

>>> import koopscope.capture as cap
>>> batch = cap.random_tokens(n_sequences=2, length=8, vocab_size=100, seed=0)
>>> batch.input_ids.shape, batch.n_tokens
((2, 8), 16)
"""

from __future__ import annotations

import sys
import types
from typing import Any

from koopscope.capture.adapters import ADAPTERS, Adapter, BlockList, resolve_blocks
from koopscope.capture.inputs import TokenBatch, as_token_batch, random_tokens, read_prompts
from koopscope.capture.runner import MAX_TOKENS, CaptureChunk, CaptureRun, capture, prepare
from koopscope.capture.sampling import sample_tokens
from koopscope.capture.states import CONVENTION, ResidualStates

__all__ = [
    "ADAPTERS", "Adapter", "BlockList", "CONVENTION", "CaptureChunk", "CaptureRun", "MAX_TOKENS", "ResidualStates",
    "TokenBatch", "as_token_batch", "capture", "prepare", "random_tokens", "read_prompts", "resolve_blocks",
    "sample_tokens",
]


class _CallableModule(types.ModuleType):
    """Lets ``koopscope.capture(model, inputs)`` call :func:`capture` while the package stays a package."""

    def __call__(self, model: Any, inputs: object, **options: Any) -> ResidualStates:
        return capture(model, inputs, **options)

    __call__.__doc__ = capture.__doc__


sys.modules[__name__].__class__ = _CallableModule
