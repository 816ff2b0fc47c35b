"""Tiny seeded models for the shaping tests: a no-normalisation residual MLP stack and a tiny GPT-2."""

from __future__ import annotations

import math
from typing import Any

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

VOCAB = 32


class MLPBlock(nn.Module):
    """h ← h + proj(gelu(fc(h))): a residual MLP sublayer with no normalisation anywhere."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d, 4 * d)
        self.proj = nn.Linear(4 * d, d)

    def forward(self, h: Any) -> Any:
        return h + self.proj(F.gelu(self.fc(h)))


class ResidualMLP(nn.Module):
    """Token embedding + learned positions, L no-norm residual MLP blocks, a linear head (GPT-2 initialisation:
    N(0, 0.02²) weights, zero biases, residual projections scaled by 1/√(2L))."""

    def __init__(self, d: int = 32, L: int = 8, T: int = 16, vocab: int = VOCAB) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(T, d))
        self.blocks = nn.ModuleList(MLPBlock(d) for _ in range(L))
        self.head = nn.Linear(d, vocab)
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)
            elif "bias" in name:
                nn.init.zeros_(p)
        for block in self.blocks:
            nn.init.normal_(block.proj.weight, std=0.02 / math.sqrt(2 * L))

    def forward(self, x: Any) -> Any:
        h = self.emb(x) + self.pos[: x.shape[1]]  # (B, T, d)
        for block in self.blocks:
            h = block(h)
        return self.head(h)  # (B, T, vocab)


def residual_mlp(seed: int = 0, **kwargs: Any) -> ResidualMLP:
    torch.manual_seed(seed)
    return ResidualMLP(**kwargs)


def map_batch(g: Any, B: int = 16, T: int = 16, vocab: int = VOCAB) -> tuple[Any, Any]:
    """Random tokens x (B, T) and the per-token targets (7x + 3) mod vocab."""
    x = torch.randint(0, vocab, (B, T), generator=g)
    return x, (7 * x + 3) % vocab


def tiny_gpt2(seed: int = 0, n_layer: int = 3, width: int = 32, head: bool = False) -> Any:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=n_layer, n_embd=width, n_head=4, vocab_size=64, n_positions=64,
                                     bos_token_id=None, eos_token_id=None)
    torch.manual_seed(seed)
    cls = transformers.GPT2LMHeadModel if head else transformers.GPT2Model
    return cls(config)
