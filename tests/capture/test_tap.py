"""Tap: the graph-keeping hooks behind koopscope.shaping read the same states as capture, with their graph."""

from __future__ import annotations

import pytest

import koopscope.capture as cap
from koopscope.capture.tap import Tap
from tests.capture.models import tiny, token_ids

torch = pytest.importorskip("torch")


def rows(b, t):
    return lambda B, T, device: (torch.tensor(b, device=device), torch.tensor(t, device=device))


@pytest.mark.parametrize("name", ["gpt2", "llama", "rwkv"])
def test_rows_match_capture_and_hidden_states_and_keep_the_graph(name: str) -> None:
    model = tiny(name)  # eval mode (no dropout), gradients on; RWKV's eval-mode rescaling is undone as in capture
    blocks = cap.resolve_blocks(model)
    L = len(blocks)
    ids = token_ids(n_sequences=2, length=10)
    b, t = [0, 1, 1], [3, 0, 9]
    with Tap(blocks) as tap:
        tap.arm(set(range(L + 1)), rows(b, t))
        out = model(input_ids=ids, output_hidden_states=True, use_cache=False)
        assert sorted(tap.states) == list(range(L + 1)) and tap.shape == (2, 10)
        reference = cap.capture(model, ids, max_tokens=None)
        flat = [bb * 10 + tt for bb, tt in zip(b, t, strict=True)]
        for i in range(L + 1):
            kept = tap.states[i]
            assert kept.requires_grad and kept.grad_fn is not None
            torch.testing.assert_close(kept.detach(), torch.as_tensor(reference.states[i][flat]))
            if i < L and name != "rwkv":  # hidden_states[L] is after the final norm; RWKV has no embedding entry
                torch.testing.assert_close(kept, out.hidden_states[i][b, t])
    assert not tap.attached and tap.states == {}


def test_forwards_without_gradients_are_ignored_when_keeping_the_graph() -> None:
    model = tiny("gpt2")
    tap = Tap(cap.resolve_blocks(model)).attach()
    tap.arm({0, 3}, rows([0], [1]))
    model(input_ids=token_ids(1, 4))
    kept = tap.states[3]
    with torch.no_grad():
        model(input_ids=token_ids(1, 4, seed=1))
    assert tap.states[3] is kept
    tap.disarm()
    model(input_ids=token_ids(1, 4))
    assert tap.states == {}
    tap.detach()


def test_detached_rows_for_monitoring() -> None:
    model = tiny("gpt2")
    with Tap(cap.resolve_blocks(model)) as tap:
        tap.arm({2}, rows([0, 0], [1, 2]), keep_graph=False)
        with torch.no_grad():
            model(input_ids=token_ids(1, 4))
        assert tuple(tap.states[2].shape) == (2, 32) and not tap.states[2].requires_grad
