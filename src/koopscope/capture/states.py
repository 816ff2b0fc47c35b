"""The result of a capture: residual-stream states of the same N tokens at every depth."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from koopscope._backend import frozen_array
from koopscope.errors import DataError, ParameterError

__all__ = ["CONVENTION", "ResidualStates"]

#: DESIGN.md, "Residual-stream indexing"; written into every provenance record.
CONVENTION = ("resid: state 0 = embeddings output (input to block 0); state i = output of block i-1; "
              "last = before final norm")


@dataclass(frozen=True, eq=False)
class ResidualStates:
    """Residual-stream states of N sampled tokens, one (N, D) float32 array per kept state.

    Attributes
    ----------
    states : tuple of ndarray of shape (N, D), float32
        ``states[k]`` is state ``layers[k]``: state 0 is the input of block 0, state i the output of
        block i - 1, the last (state L) the output of the last block before any final norm. Row r of every
        state belongs to the same token, ``token_index[r]``. Read-only.
    layers : tuple of int
        The state indices kept, ascending (all of 0 .. L unless ``layers=`` was given).
    token_index : ndarray of shape (N, 2), int64
        (sequence, position) of each row; the position counts real tokens only (padding excluded).
    source_dtype : str
        dtype of the model's hidden states ("float32", "bfloat16", ...); the arrays are float32 whatever it is.
    provenance : dict
        JSON-serialisable record of the model, blocks, convention and sampling (see :func:`capture`).
    """

    states: tuple[np.ndarray, ...]
    layers: tuple[int, ...]
    token_index: np.ndarray
    source_dtype: str
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        states = tuple(np.asarray(s) for s in self.states)
        layers = tuple(int(i) for i in self.layers)
        if len(states) != len(layers) or not states:
            raise DataError(f"ResidualStates needs one array per kept layer; got {len(states)} array(s) for layers "
                            f"{list(layers)}.")
        if list(layers) != sorted(set(layers)) or layers[0] < 0:
            raise DataError(f"ResidualStates layers must be distinct non-negative state indices in ascending order; "
                            f"got {list(layers)}.")
        index = np.asarray(self.token_index)
        shape = states[0].shape
        for i, s in zip(layers, states, strict=True):
            if s.ndim != 2 or s.shape != shape or s.dtype != np.float32:
                raise DataError(f"State {i} of ResidualStates is a {s.dtype} array of shape {s.shape}; every state "
                                f"must be float32 of the same shape (N, D) = {shape}.")
        if index.shape != (shape[0], 2) or index.dtype.kind not in "iu":
            raise DataError(f"ResidualStates token_index must be an integer array of shape (N, 2) = ({shape[0]}, 2); "
                            f"got {index.dtype} {index.shape}.")
        object.__setattr__(self, "states", tuple(frozen_array(s, copy=False) for s in states))
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "token_index", frozen_array(index, copy=False))

    def __len__(self) -> int:
        """Number of states held (L + 1 for a full capture)."""
        return len(self.states)

    @property
    def n_tokens(self) -> int:
        """N, the tokens (rows) per state."""
        return int(self.states[0].shape[0])

    @property
    def dim(self) -> int:
        """D, the width of the residual stream."""
        return int(self.states[0].shape[1])

    @property
    def transitions(self) -> tuple[int, ...]:
        """The transitions i (state i -> state i + 1) that :meth:`pairs` can give."""
        kept = set(self.layers)
        return tuple(i for i in self.layers if i + 1 in kept)

    def state(self, i: int) -> np.ndarray:
        """State ``i`` (N, D), by state index (not by position in :attr:`states`)."""
        try:
            return self.states[self.layers.index(i)]
        except ValueError:
            raise ParameterError(f"State {i!r} was not captured; the kept states are {list(self.layers)}: pass "
                                 "layers=None to capture or keep all of them.") from None

    def pairs(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Snapshot pairs (X, Y) of transition ``i``: state i and state i + 1, both (N, D), row for row."""
        if i not in self.transitions:
            raise ParameterError(f"Transition {i!r} (state {i} -> {i + 1}) is not available; the kept states "
                                 f"{list(self.layers)} give transitions {list(self.transitions)}.")
        return self.state(i), self.state(i + 1)

    def __repr__(self) -> str:
        model = self.provenance.get("model_class", "?")
        return (f"ResidualStates(model={model}, layers={list(self.layers)}, n_tokens={self.n_tokens}, "
                f"dim={self.dim}, source_dtype={self.source_dtype!r})")
