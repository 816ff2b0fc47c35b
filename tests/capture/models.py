"""Tiny random models for the capture tests: built from configs, seeded, in eval mode, no download."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB = 100
CONTEXT = 64
WIDTH = 32


def _common() -> dict[str, Any]:
    return {"vocab_size": VOCAB, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}


def _configs() -> dict[str, tuple[Any, Any]]:
    tf = transformers
    decoder = dict(num_hidden_layers=3, hidden_size=WIDTH, num_attention_heads=2, intermediate_size=64,
                   max_position_embeddings=CONTEXT, **_common())
    return {
        "gpt2": (tf.GPT2LMHeadModel, tf.GPT2Config(n_layer=3, n_embd=WIDTH, n_head=2, n_positions=CONTEXT,
                                                   **_common())),
        "llama": (tf.LlamaForCausalLM, tf.LlamaConfig(num_key_value_heads=1, **decoder)),
        "bert": (tf.BertModel, tf.BertConfig(**decoder)),
        "gpt_neox": (tf.GPTNeoXForCausalLM, tf.GPTNeoXConfig(**decoder)),
        "qwen2": (tf.Qwen2ForCausalLM, tf.Qwen2Config(num_key_value_heads=1, **decoder)),
        "mistral": (tf.MistralForCausalLM, tf.MistralConfig(num_key_value_heads=1, **decoder)),
        "mamba": (tf.MambaForCausalLM, tf.MambaConfig(num_hidden_layers=3, hidden_size=WIDTH, state_size=4, expand=2,
                                                      conv_kernel=4, **_common())),
        # rescale_every=2 so that 4 blocks cross two rescaling points; a tiny LayerNorm eps keeps LN(x / 2)
        # equal to LN(x) to float precision, so eval and train mode agree to ~1e-6.
        "rwkv": (tf.RwkvForCausalLM, tf.RwkvConfig(num_hidden_layers=4, hidden_size=WIDTH, attention_hidden_size=WIDTH,
                                                   intermediate_size=64, context_length=CONTEXT, rescale_every=2,
                                                   layer_norm_epsilon=1e-12, **_common())),
        "opt": (tf.OPTForCausalLM, tf.OPTConfig(num_hidden_layers=3, hidden_size=WIDTH, num_attention_heads=2,
                                                ffn_dim=64, max_position_embeddings=CONTEXT, word_embed_proj_dim=WIDTH,
                                                **_common())),
    }


def tiny(name: str, seed: int = 0) -> Any:
    """The tiny random model ``name`` in eval mode."""
    cls, config = _configs()[name]
    torch.manual_seed(seed)
    return cls(config).eval()


def token_ids(n_sequences: int = 3, length: int = 12, seed: int = 0) -> Any:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, VOCAB, (n_sequences, length), generator=g)
