"""A small GPT-style decoder in plain torch, with six normalisation schemes and two initialisations.

The residual stream is ``h_0 = wte[x] + wpe[t]``; block ℓ maps ``h_ℓ`` to ``h_{ℓ+1}`` (``model.blocks[ℓ]``, so
``ks.capture(model, tokens, blocks=model.blocks)`` reads exactly the L + 1 states); then a final norm and an
untied linear head. Each block is an attention sublayer then an MLP sublayer (width 4·d, GELU), placed by the
scheme (``n`` is the norm, ``f`` the sublayer, ``L`` the number of blocks):

==========  =====================================================  ================================================
scheme      one sublayer step                                      reference
==========  =====================================================  ================================================
pre_ln      h ← h + f(LN(h)); final LN                             GPT-2 (Radford et al. 2019)
post_ln     h ← LN(h + f(h)); no final norm                        Vaswani et al. 2017
rmsnorm     h ← h + f(RMSNorm(h)); final RMSNorm                   Zhang & Sennrich 2019 (pre-norm, LLaMA)
deepnorm    h ← LN(α·h + f(h)), α = (2L)^{1/4}; no final norm      Wang et al. 2022, DeepNet (decoder-only α, β)
subln       h ← h + f(LN(h)) with an extra LN inside f: before     Wang et al. 2022, Magneto / Foundation
            the attention output projection and before the MLP's   Transformers (Sub-LN); final LN
            second linear layer
none        h ← h + f(h); no norm anywhere                         —
==========  =====================================================  ================================================

Initialisation (``init``), applied to every scheme:

- ``"gpt2"``: every Linear and Embedding weight ~ N(0, 0.02²), biases 0 (GPT-2 / nanoGPT), and the two residual
  output projections (attention ``proj``, MLP ``proj``) scaled by 1/√(2L).
- ``"pytorch"``: PyTorch's own defaults (Linear: U(±1/√fan_in) weights and biases; Embedding: N(0, 1)).

The two schemes that define their own depth-dependent initialisation keep it under both inits, replacing GPT-2's
1/√(2L) rule (stacking both would count depth twice): DeepNorm multiplies the value projection, the attention
output projection and both MLP weights by β = (8L)^{-1/4}; SubLN (Magneto) multiplies the same weights by
γ = √(log 2L). Norm layers start at weight 1, bias 0. The LM head is untied from ``wte`` so that a N(0, 1)
embedding (PyTorch init) does not start the loss in the hundreds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["NORMS", "INITS", "ModelConfig", "GPT", "build_model"]

NORMS = ("pre_ln", "post_ln", "rmsnorm", "deepnorm", "subln", "none")
INITS = ("gpt2", "pytorch")
GPT2_STD = 0.02  # GPT-2 / nanoGPT weight std


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one sweep model (the associative-recall task fixes vocab 256 and length 64)."""

    norm: str
    width: int
    depth: int
    init: str = "gpt2"
    n_head: int = 4
    vocab: int = 256  # RKSP Table 11: vocabulary 256
    seq_len: int = 64  # RKSP Table 11: sequence 64
    mlp_ratio: int = 4  # GPT-2

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm={self.norm!r} is not one of {NORMS}")
        if self.init not in INITS:
            raise ValueError(f"init={self.init!r} is not one of {INITS}")
        if self.width % self.n_head:
            raise ValueError(f"width={self.width} is not a multiple of n_head={self.n_head}")
        if self.depth < 1:
            raise ValueError(f"depth={self.depth} must be at least 1")


def deepnorm_alpha(depth: int) -> float:
    """DeepNet residual scale for a decoder-only model of ``depth`` blocks: α = (2L)^{1/4}."""
    return (2.0 * depth) ** 0.25


def deepnorm_beta(depth: int) -> float:
    """DeepNet init gain for a decoder-only model: β = (8L)^{-1/4}."""
    return (8.0 * depth) ** -0.25


def subln_gamma(depth: int) -> float:
    """Magneto (Sub-LN) init gain for a decoder-only model: γ = √(log 2L)."""
    return math.sqrt(math.log(2.0 * depth))


def _norm(kind: str, dim: int) -> nn.Module:
    """The norm layer of a scheme: RMSNorm for ``rmsnorm``, LayerNorm otherwise (``none`` never calls this)."""
    return nn.RMSNorm(dim) if kind == "rmsnorm" else nn.LayerNorm(dim)


class Attention(nn.Module):
    """Causal multi-head self-attention; ``sub_norm`` (SubLN) acts on the heads' output before ``proj``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.width
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.sub_norm = nn.LayerNorm(d) if cfg.norm == "subln" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape  # batch, length, width
        q, k, v = self.qkv(x).split(C, dim=2)  # (B, T, C) each
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, H, T, C/H)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, C/H)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.proj(self.sub_norm(y))

    def forward_last(self, x: torch.Tensor) -> torch.Tensor:
        """The output at the last position only (B, 1, C): keys and values of every position, one query."""
        B, T, C = x.shape
        W, b = self.qkv.weight, self.qkv.bias  # (3C, C), (3C,)
        q = F.linear(x[:, -1:], W[:C], b[:C])  # (B, 1, C)
        k, v = F.linear(x, W[C:], b[C:]).split(C, dim=2)  # (B, T, C) each
        q, k, v = (t.view(B, -1, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v)  # (B, H, 1, C/H): the last query sees every key
        return self.proj(self.sub_norm(y.transpose(1, 2).reshape(B, 1, C)))


class MLP(nn.Module):
    """Two-layer GELU MLP; ``sub_norm`` (SubLN) acts on the hidden layer before ``proj``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        hidden = cfg.mlp_ratio * cfg.width
        self.fc = nn.Linear(cfg.width, hidden)
        self.proj = nn.Linear(hidden, cfg.width)
        self.sub_norm = nn.LayerNorm(hidden) if cfg.norm == "subln" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.sub_norm(F.gelu(self.fc(x))))


class Block(nn.Module):
    """One residual block h_ℓ → h_{ℓ+1}: attention then MLP, each placed by the normalisation scheme."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm = cfg.norm
        self.attn, self.mlp = Attention(cfg), MLP(cfg)
        has_norm = cfg.norm != "none"
        self.n1 = _norm(cfg.norm, cfg.width) if has_norm else nn.Identity()
        self.n2 = _norm(cfg.norm, cfg.width) if has_norm else nn.Identity()
        self.alpha = deepnorm_alpha(cfg.depth) if cfg.norm == "deepnorm" else 1.0

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.norm in ("post_ln", "deepnorm"):  # post-norm: normalise the sum (α = 1 for Post-LN)
            h = self.n1(self.alpha * h + self.attn(h))
            return self.n2(self.alpha * h + self.mlp(h))
        h = h + self.attn(self.n1(h))  # pre-norm (n = Identity for "none")
        return h + self.mlp(self.n2(h))

    def forward_last(self, h: torch.Tensor) -> torch.Tensor:
        """The block's output at the last position only (B, 1, C), the same numbers as ``forward(h)[:, -1:]``."""
        last = h[:, -1:]  # (B, 1, C)
        if self.norm in ("post_ln", "deepnorm"):
            last = self.n1(self.alpha * last + self.attn.forward_last(h))
            return self.n2(self.alpha * last + self.mlp(last))
        last = last + self.attn.forward_last(self.n1(h))
        return last + self.mlp(self.n2(last))


class GPT(nn.Module):
    """Token + position embeddings, ``blocks`` (an ``nn.ModuleList``), a final norm and an untied LM head."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab, cfg.width)
        self.wpe = nn.Embedding(cfg.seq_len, cfg.width)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        final = cfg.norm in ("pre_ln", "rmsnorm", "subln")  # post-norm schemes already end on a norm
        self.norm_f = _norm(cfg.norm, cfg.width) if final else nn.Identity()
        self.head = nn.Linear(cfg.width, cfg.vocab, bias=False)
        initialise(self, cfg)

    def forward(self, idx: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Logits (B, T, V); with ``last_only``, (B, V) at the last position, skipping the last block's work at the
        other positions (the associative-recall loss reads only the last position)."""
        T = idx.shape[1]
        h = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))  # (B, T, C): state h_0
        last = len(self.blocks) - 1 if last_only else len(self.blocks)
        for block in self.blocks[:last]:
            h = block(h)
        if last_only:
            h = self.blocks[-1].forward_last(h)[:, 0]  # (B, C)
        return self.head(self.norm_f(h))


def _sublayer_weights(block: Block) -> tuple[torch.Tensor, ...]:
    """The weights DeepNorm's β and Magneto's γ scale: value rows of ``qkv``, both projections, the MLP ``fc``."""
    d = block.attn.proj.in_features
    value = block.attn.qkv.weight[2 * d:]  # (d, d) view: the value projection
    return value, block.attn.proj.weight, block.mlp.fc.weight, block.mlp.proj.weight


@torch.no_grad()
def initialise(model: GPT, cfg: ModelConfig) -> None:
    """Apply ``cfg.init`` and the scheme's own depth rule (see the module docstring)."""
    if cfg.init == "gpt2":
        for module in model.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, 0.0, GPT2_STD)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
    if cfg.norm == "deepnorm":
        gain = deepnorm_beta(cfg.depth)
    elif cfg.norm == "subln":
        gain = subln_gamma(cfg.depth)
    else:
        gain = None
    for block in model.blocks:
        if gain is not None:
            for weight in _sublayer_weights(block):
                weight.mul_(gain)
        elif cfg.init == "gpt2":
            for weight in (block.attn.proj.weight, block.mlp.proj.weight):
                weight.mul_(1.0 / math.sqrt(2.0 * cfg.depth))


def build_model(cfg: ModelConfig, seed: int) -> GPT:
    """The model of ``cfg`` with weights drawn from ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return GPT(cfg)
