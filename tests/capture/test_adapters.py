"""Block resolution: the table, the fallback, ``blocks=``, and what happens when a forward fails."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import koopscope.capture as cap
from koopscope.errors import CaptureError, ParameterError
from tests.capture.models import tiny, token_ids, torch

nn = torch.nn


class Block(nn.Module):
    def __init__(self, width: int, as_tuple: bool) -> None:
        super().__init__()
        self.linear, self.as_tuple = nn.Linear(width, width), as_tuple

    def forward(self, x):
        y = x + torch.tanh(self.linear(x))
        return (y, None) if self.as_tuple else y


class Toy(nn.Module):
    """A non-Hugging-Face model: no config, forward(ids), blocks returning a tuple or a bare tensor."""

    def __init__(self, as_tuple: bool, n_blocks: int = 3, width: int = 8) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(50, width)
        self.layers = nn.ModuleList(Block(width, as_tuple) for _ in range(n_blocks))
        self.head = nn.Linear(width, 50)
        self.n_run = n_blocks

    def forward(self, ids):
        x = self.embed(ids)
        for block in list(self.layers)[: self.n_run]:
            out = block(x)
            x = out[0] if isinstance(out, tuple) else out
        return self.head(x)


@pytest.mark.parametrize("as_tuple", [True, False])
@pytest.mark.parametrize("how", ["path", "module"])
def test_blocks_override_on_any_torch_module(as_tuple, how):
    model = Toy(as_tuple)
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    states = cap.capture(model, ids, max_tokens=None, blocks="layers" if how == "path" else model.layers)
    assert len(states) == 4 and states.provenance["adapter"] == "blocks="
    assert states.provenance["blocks_path"] == "layers"
    seq, pos = np.array(states.token_index).T
    with torch.no_grad():
        x = model.embed(ids)
        expected = [x]
        for block in model.layers:
            out = block(x)
            x = out[0] if as_tuple else out
            expected.append(x)
    for i, e in enumerate(expected):
        assert_array_equal(states.states[i], e[seq, pos].numpy())


def test_unknown_model_without_blocks_names_blocks():
    with pytest.raises(ParameterError, match=r"cannot find the block list of Toy .*pass blocks="):
        cap.capture(Toy(False), torch.zeros(1, 4, dtype=torch.long))


def test_blocks_that_are_not_part_of_the_model():
    with pytest.raises(ParameterError, match="is not a submodule of Toy"):
        cap.capture(Toy(False), torch.zeros(1, 4, dtype=torch.long), blocks="encoder.layers")
    with pytest.raises(ParameterError, match="not part of Toy"):
        cap.capture(Toy(False), torch.zeros(1, 4, dtype=torch.long), blocks=nn.ModuleList([nn.Linear(2, 2)]))
    with pytest.raises(ParameterError, match="nn.ModuleList or nn.Sequential"):
        cap.capture(Toy(False), torch.zeros(1, 4, dtype=torch.long), blocks="embed")


def test_fallback_finds_the_block_list_by_the_configured_layer_count():
    model, ids = tiny("opt"), token_ids()  # OPT is not in the table: model.decoder.layers
    states = cap.capture(model, ids, max_tokens=None, batch_size=len(ids))
    assert states.provenance["adapter"] == "fallback"
    assert states.provenance["blocks_path"] == "model.decoder.layers"
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
    seq, pos = np.array(states.token_index).T
    for i in range(3):
        assert_array_equal(states.states[i], hidden[i][seq, pos].numpy())


@pytest.mark.parametrize("name,path", [("gpt2", "transformer.h"), ("llama", "model.layers"), ("bert", "encoder.layer"),
                                       ("gpt_neox", "gpt_neox.layers"), ("mamba", "backbone.layers"),
                                       ("rwkv", "rwkv.blocks")])
def test_table_paths_from_head_and_base_classes(name, path):
    model = tiny(name)
    resolved = cap.resolve_blocks(model)
    assert resolved.path == path and resolved.adapter == cap.resolve_blocks(model.base_model).adapter
    assert len(resolved) == model.config.num_hidden_layers


def test_layers_subset_matches_the_full_capture_and_out_of_range_is_refused():
    model, ids = tiny("gpt2"), token_ids()
    full = cap.capture(model, ids, max_tokens=16)
    part = cap.capture(model, ids, max_tokens=16, layers=[2, 1, -1])
    assert part.layers == (1, 2, 3) and len(part) == 3 and part.transitions == (1, 2)
    for i in part.layers:
        assert_array_equal(part.state(i), full.state(i))
    X, Y = part.pairs(1)
    assert_array_equal(X, full.states[1]) and assert_array_equal(Y, full.states[2])
    early = cap.capture(model, ids, max_tokens=16, layers=[1])  # stops after block 0
    assert_array_equal(early.states[0], full.states[1])
    with pytest.raises(ParameterError, match=r"Transition 0 .* not available"):
        part.pairs(0)
    with pytest.raises(ParameterError, match=r"'layers' parameter of capture holds 4, outside the 4 states 0..3"):
        cap.capture(model, ids, layers=[0, 4])
    with pytest.raises(ParameterError, match=r"holds -5"):
        cap.capture(model, ids, layers=[-5])
    with pytest.raises(ParameterError, match="non-empty sequence"):
        cap.capture(model, ids, layers=[])


def _hook_state(blocks):
    return [(list(b._forward_hooks), list(b._forward_pre_hooks)) for b in blocks]


def test_forward_failure_removes_the_hooks_and_names_the_block():
    model, ids = tiny("gpt2"), token_ids()
    blocks = model.transformer.h
    assert _hook_state(blocks) == [([], [])] * 3  # a fresh model

    def boom(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    blocks[1].forward = boom
    with pytest.raises(CaptureError, match=r"failed inside block 1 of 3 \(transformer\.h\.1\) with RuntimeError: boom;"
                       ) as info:
        cap.capture(model, ids, max_tokens=None)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert _hook_state(blocks) == [([], [])] * 3


def test_forward_failure_keeps_hooks_registered_by_others():
    model, ids = tiny("llama"), token_ids()
    with torch.no_grad():
        model(input_ids=ids, output_hidden_states=True)  # transformers installs its own permanent hooks
    blocks = model.model.layers
    before = _hook_state(blocks)
    del blocks[2].mlp  # block 2 now fails with AttributeError
    with pytest.raises(CaptureError, match=r"inside block 2 of 3 \(model\.layers\.2\) with AttributeError"):
        cap.capture(model, ids, max_tokens=None)
    assert _hook_state(blocks) == before


def test_failure_before_the_blocks_and_a_block_that_never_runs():
    model = Toy(False)
    model.embed.forward = lambda ids: (_ for _ in ()).throw(ValueError("bad ids"))
    with pytest.raises(CaptureError, match=r"before block 0 .* ValueError: bad ids"):
        cap.capture(model, torch.zeros(1, 4, dtype=torch.long), blocks="layers", max_tokens=None)
    skipper = Toy(False)
    skipper.layers.append(Block(8, False))  # hooked, never called by forward (n_run stays 3)
    with pytest.raises(CaptureError, match=r"Block 3 \(layers\.3\) never ran .* state 4 was not captured"):
        cap.capture(skipper, torch.zeros(1, 4, dtype=torch.long), blocks="layers", max_tokens=None)


class Squash(nn.Module):
    def forward(self, x):
        return x[:, :2]


def test_block_output_of_the_wrong_shape():
    model = Toy(False)
    model.layers[1] = Squash()
    with pytest.raises(CaptureError, match=r"output of block 1 \(layers\.1\) is shape \(1, 2, 8\), not a tensor of "
                                           r"shape \(batch, length, width\) = \(1, 4, D\); pass blocks="):
        cap.capture(model, torch.zeros(1, 4, dtype=torch.long), blocks="layers", max_tokens=None)


def test_resolve_needs_a_torch_module():
    with pytest.raises(ParameterError, match=r"'model' parameter of capture must be a torch.nn.Module"):
        cap.capture("gpt2", [[1, 2, 3]])
