"""Which token positions are kept, decided before any forward pass, and how they are split into batches.

N = min(max_tokens, available) positions are drawn uniformly without replacement from all real tokens
with ``numpy.random.default_rng(seed)``, then sorted by (sequence, position). The same positions are
gathered from every state, so row k of state i and row k of state i + 1 belong to the same token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from koopscope.capture._warn import warn

__all__ = ["Batch", "plan_batches", "sample_tokens"]


def sample_tokens(lengths: np.ndarray, max_tokens: int | None, seed: int) -> np.ndarray:
    """(N, 2) int64 (sequence, position) of the sampled tokens, sorted; warns when max_tokens > available.

    >>> sample_tokens(np.array([2, 1]), None, 0).tolist()
    [[0, 0], [0, 1], [1, 0]]
    """
    lengths = np.asarray(lengths, dtype=np.int64)  # (S,)
    available = int(lengths.sum())
    if max_tokens is None or max_tokens >= available:
        if max_tokens is not None and max_tokens > available:
            warn(f"max_tokens={max_tokens} is larger than the {available} tokens available in the inputs; "
                          f"all {available} are used.")
        flat = np.arange(available, dtype=np.int64)  # (N,)
    else:
        rng = np.random.default_rng(seed)
        flat = np.sort(rng.choice(available, size=max_tokens, replace=False)).astype(np.int64)  # (N,)
    ends = np.cumsum(lengths)  # (S,)
    seq = np.searchsorted(ends, flat, side="right")  # (N,)
    pos = flat - (ends[seq] - lengths[seq])  # (N,)
    return np.stack([seq, pos], axis=1)  # (N, 2)


@dataclass(frozen=True, eq=False)
class Batch:
    """One forward pass: the sequences it runs and the sampled rows it contributes.

    ``rows`` is the slice of the sorted token index that this batch fills; ``local`` and ``positions``
    (both (n,)) address those tokens inside the batch's (B, T) hidden states.
    """

    index: int
    sequences: np.ndarray  # (B,) sequence ids
    rows: slice
    local: np.ndarray  # (n,) row within the batch
    positions: np.ndarray  # (n,) position within the sequence


def plan_batches(token_index: np.ndarray, batch_size: int) -> tuple[Batch, ...]:
    """Consecutive groups of ``batch_size`` sequences that hold at least one sampled token.

    >>> [b.sequences.tolist() for b in plan_batches(np.array([[0, 1], [2, 0], [2, 3], [5, 0]]), 2)]
    [[0, 2], [5]]
    """
    seqs = np.unique(token_index[:, 0])  # sequences with a sampled token, ascending
    batches = []
    for k, start in enumerate(range(0, seqs.size, batch_size)):
        chosen = seqs[start:start + batch_size]  # (B,)
        lo = int(np.searchsorted(token_index[:, 0], chosen[0], side="left"))
        hi = int(np.searchsorted(token_index[:, 0], chosen[-1], side="right"))
        local = np.searchsorted(chosen, token_index[lo:hi, 0])  # (n,)
        batches.append(Batch(k, chosen, slice(lo, hi), local.astype(np.int64), token_index[lo:hi, 1].copy()))
    return tuple(batches)
