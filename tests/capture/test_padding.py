"""Padding never enters the states; the sample is a pure function of the real tokens and the seed."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import koopscope.capture as cap
from tests.capture.models import tiny, token_ids, torch

LENGTHS = (5, 11, 8)


def _sequences():
    ids = token_ids(len(LENGTHS), max(LENGTHS), seed=1)
    return [ids[k, :n] for k, n in enumerate(LENGTHS)]


def _padded(side: str):
    seqs, T = _sequences(), max(LENGTHS)
    ids = torch.zeros(len(seqs), T, dtype=torch.long)
    mask = torch.zeros(len(seqs), T, dtype=torch.long)
    for k, s in enumerate(seqs):
        cols = slice(0, s.numel()) if side == "right" else slice(T - s.numel(), T)
        ids[k, cols], mask[k, cols] = s, 1
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("name", ["gpt2", "llama", "bert", "mamba", "rwkv"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_batch_gives_the_rows_of_the_unpadded_sequences(name, side):
    model = tiny(name)
    alone = cap.capture(model, _sequences(), max_tokens=15, seed=3, batch_size=1)  # each sequence unpadded
    padded = cap.capture(model, _padded(side), max_tokens=15, seed=3, batch_size=len(LENGTHS))
    assert_array_equal(padded.token_index, alone.token_index)
    assert (padded.token_index[:, 1] < np.array(LENGTHS)[padded.token_index[:, 0]]).all()
    assert padded.provenance["n_tokens_available"] == sum(LENGTHS)
    for i, (a, b) in enumerate(zip(alone.states, padded.states, strict=True)):
        assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=f"{name} state {i}")


def test_same_seed_same_rows_different_seed_different_rows():
    model, ids = tiny("gpt2"), token_ids(4, 16)
    a = cap.capture(model, ids, max_tokens=20, seed=7)
    b = cap.capture(model, ids, max_tokens=20, seed=7)
    c = cap.capture(model, ids, max_tokens=20, seed=8)
    assert_array_equal(a.token_index, b.token_index)
    for x, y in zip(a.states, b.states, strict=True):
        assert_array_equal(x, y)
    assert a.n_tokens == c.n_tokens == 20
    assert not np.array_equal(a.token_index, c.token_index)
    assert a.provenance["token_ids_sha256"] == c.provenance["token_ids_sha256"]


def test_batch_size_does_not_change_the_rows():
    model, ids = tiny("gpt2"), token_ids(5, 10)
    one = cap.capture(model, ids, max_tokens=30, batch_size=1)
    many = cap.capture(model, ids, max_tokens=30, batch_size=4)
    assert_array_equal(one.token_index, many.token_index)
    for x, y in zip(one.states, many.states, strict=True):
        assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_max_tokens_beyond_the_available_tokens_uses_all_and_warns():
    model, ids = tiny("gpt2"), token_ids(2, 6)
    with pytest.warns(UserWarning, match=r"max_tokens=100 is larger than the 12 tokens available.*all 12 are used"):
        states = cap.capture(model, ids, max_tokens=100)
    assert states.n_tokens == 12
    assert sorted(map(tuple, states.token_index.tolist())) == [(s, p) for s in range(2) for p in range(6)]


def test_sample_is_uniform_sorted_and_without_replacement():
    lengths = np.array([3, 0, 5, 2])
    index = cap.sample_tokens(lengths, 6, seed=0)
    assert index.shape == (6, 2) and index.dtype == np.int64
    assert len({tuple(r) for r in index.tolist()}) == 6
    assert (index[:, 1] < lengths[index[:, 0]]).all() and 1 not in index[:, 0]
    flat = index[:, 0] * 10 + index[:, 1]
    assert (np.diff(flat) > 0).all()
    counts = np.zeros(10)
    for seed in range(2000):  # every token equally likely: 6/10 each
        sample = cap.sample_tokens(lengths, 6, seed)
        counts[np.cumsum(np.r_[0, lengths])[sample[:, 0]] + sample[:, 1]] += 1
    assert_allclose(counts / 2000, 0.6, atol=0.05)
