"""Hooks against ``output_hidden_states``: states 0..L-1 exactly, and the last state before the final norm."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import koopscope.capture as cap
from tests.capture.models import tiny, token_ids, torch

TRANSFORMERS = ["gpt2", "llama", "bert", "gpt_neox", "qwen2", "mistral"]


def _oracle(model, ids, **kwargs):
    with torch.no_grad():
        return model(input_ids=ids, output_hidden_states=True, **kwargs).hidden_states


def _rows(hidden, states):
    seq, pos = np.array(states.token_index).T
    return hidden[seq, pos].float().numpy()  # (N, D)


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_states_match_hidden_states_and_last_is_before_final_norm(name):
    model, ids = tiny(name), token_ids()
    mask = torch.ones_like(ids)
    states = cap.capture(model, {"input_ids": ids, "attention_mask": mask}, max_tokens=None, batch_size=len(ids))
    hidden = _oracle(model, ids, attention_mask=mask)
    L = states.provenance["n_blocks"]
    assert L == 3 and len(states) == len(hidden) == L + 1 and states.layers == (0, 1, 2, 3)
    assert states.n_tokens == ids.numel() and states.dim == 32 and states.source_dtype == "float32"
    for i in range(L):  # exactly, not approximately
        assert_array_equal(states.states[i], _rows(hidden[i], states), err_msg=f"{name} state {i}")
    norm_path = states.provenance["final_norm"]
    if name == "bert":  # post-LN, no final norm: HF's last entry is the last block's output
        assert norm_path is None
        assert_array_equal(states.states[L], _rows(hidden[L], states))
        return
    norm = model.get_submodule(norm_path)
    with torch.no_grad():
        normed = norm(torch.as_tensor(np.array(states.states[L]))).numpy()
    assert_allclose(normed, _rows(hidden[L], states), rtol=1e-5, atol=1e-5)
    assert not np.allclose(states.states[L], _rows(hidden[L], states), atol=1e-3)  # HF's entry is after the norm


def test_last_state_is_the_last_blocks_output():
    # independent of the final-norm argument: our own hook on the last block
    model, ids = tiny("gpt2"), token_ids()
    seen = {}
    handle = model.transformer.h[-1].register_forward_hook(lambda m, a, out: seen.setdefault("out", out))
    try:
        with torch.no_grad():
            model(input_ids=ids)
    finally:
        handle.remove()
    states = cap.capture(model, ids, max_tokens=None)
    assert_array_equal(states.states[-1], _rows(seen["out"], states))


def test_mamba_states_line_up_with_the_blocks():
    # MambaModel.hidden_states has no embedding entry: [i] is the output of block i, [L] is after norm_f
    model, ids = tiny("mamba"), token_ids()
    states = cap.capture(model, ids, max_tokens=None, batch_size=len(ids))
    hidden = _oracle(model, ids)
    L = states.provenance["n_blocks"]
    assert len(hidden) == L + 1 == len(states) and states.provenance["adapter"] == "mamba"
    with torch.no_grad():
        embedded = model.backbone.embeddings(ids)
        normed = model.backbone.norm_f(torch.as_tensor(np.array(states.states[L]))).numpy()
    assert_array_equal(states.states[0], _rows(embedded, states))
    for i in range(L):
        assert_array_equal(states.states[i + 1], _rows(hidden[i], states), err_msg=f"state {i + 1}")
    assert_allclose(normed, _rows(hidden[L], states), rtol=1e-5, atol=1e-5)


def test_rwkv_states_line_up_and_eval_rescaling_is_undone():
    model, ids = tiny("rwkv"), token_ids()
    every = model.config.rescale_every
    states = cap.capture(model, ids, max_tokens=None, batch_size=len(ids))
    hidden = _oracle(model, ids)  # eval mode: [i] = output of block i, halved every `every` blocks
    L = states.provenance["n_blocks"]
    assert L == 4 and len(hidden) == L + 1 == len(states)
    assert "rescale_every=2" in states.provenance["rescale"]
    with torch.no_grad():
        embedded = model.rwkv.embeddings(ids)
    assert_array_equal(states.states[0], _rows(embedded, states))
    for i in range(L):  # powers of 2: exact
        assert_array_equal(states.states[i + 1], _rows(hidden[i], states) * 2.0 ** ((i + 1) // every))

    model.train()  # the training-mode scale, no rescaling (RWKV has no dropout)
    trained = cap.capture(model, ids, max_tokens=None, batch_size=len(ids), eval_mode=False)
    assert trained.provenance["mode"] == "train" and model.training
    hidden_train = _oracle(model, ids)
    for i in range(L):
        assert_array_equal(trained.states[i + 1], _rows(hidden_train[i], trained))
    for a, b in zip(states.states, trained.states, strict=True):
        assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert np.abs(trained.states[-1]).max() > 2 * np.abs(hidden[L - 1].numpy()).max()  # the halving was real
    model.eval()
    explicit = cap.capture(model, ids, max_tokens=None, blocks="rwkv.blocks")  # blocks= keeps the RWKV undo
    assert explicit.provenance["adapter"] == "blocks="
    for a, b in zip(explicit.states, states.states, strict=True):
        assert_array_equal(a, b)


def test_eval_mode_is_default_and_modes_are_restored():
    model, ids = tiny("gpt2"), token_ids()
    model.train()  # dropout 0.1 active: a train-mode capture would be random
    a = cap.capture(model, ids, max_tokens=None)
    b = cap.capture(model, ids, max_tokens=None)
    assert model.training and all(m.training for m in model.modules())
    assert a.provenance["mode"] == "eval"
    for x, y in zip(a.states, b.states, strict=True):
        assert_array_equal(x, y)


def test_bfloat16_model_gives_float32_states_and_records_the_source_dtype():
    model, ids = tiny("llama").to(torch.bfloat16), token_ids()
    states = cap.capture(model, ids, max_tokens=None)
    hidden = _oracle(model, ids)
    assert states.source_dtype == "bfloat16" and all(s.dtype == np.float32 for s in states.states)
    for i in range(3):
        assert_array_equal(states.states[i], _rows(hidden[i], states))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_cuda_capture_matches_cpu():
    ids = token_ids()
    expected = cap.capture(tiny("gpt2"), ids, max_tokens=20)
    states = cap.capture(tiny("gpt2"), ids, max_tokens=20, device="cuda")
    assert states.provenance["device"].startswith("cuda")
    assert_array_equal(states.token_index, expected.token_index)
    for a, b in zip(states.states, expected.states, strict=True):
        assert_allclose(a, b, rtol=1e-4, atol=1e-4)
