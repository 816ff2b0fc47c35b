r"""A small causal language model whose blocks can carry Koopman layers (the design's reference configuration).

Token and position embeddings (N(0, 0.02²)), ``n_layers`` pre-LN blocks

    h ← h + Attn(LN₁ h),    h ← h + MLP(LN₂ h),    MLP = Linear(d → 4d) → GELU → Linear(4d → d)

with causal multi-head self-attention, a final LayerNorm and a head tied to the token embedding (logits
= LN_f(h) E^T). The blocks listed in ``koopman_layers`` are wrapped in :class:`~koopscope.koopman.KoopmanBlock`;
``forward(tokens, mode="koopman")`` replaces each wrapped block by its Koopman branch h + ψ(K φ(LN h)), and
``mode=None`` (default) lets every wrapper use its own ``mode`` attribute. The reference configuration is
d_model 64, 4 layers, sequence 128, k = 256 (``systems_to_build.md`` §2).

>>> import torch
>>> lm = KoopmanLanguageModel(vocab_size=11, d_model=16, n_layers=2, n_heads=2, koopman_dim=8, max_len=6)
>>> lm(torch.zeros(3, 6, dtype=torch.long)).shape, lm(torch.zeros(3, 6, dtype=torch.long), mode="koopman").shape
(torch.Size([3, 6, 11]), torch.Size([3, 6, 11]))
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from koopscope._validation import Interval, check_param, check_seed
from koopscope.errors import DataError, ParameterError
from koopscope.koopman.layer import KoopmanBlock, check_mode
from koopscope.koopman.update import StreamingUpdate

__all__ = ["CausalBlock", "KoopmanLanguageModel", "next_token_loss"]

EMBEDDING_STD = 0.02  # GPT-2's initialisation of the embeddings


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention (batch, seq, d) → (batch, seq, d)."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape  # batch, sequence, width
        q, k, v = self.qkv(x).split(C, dim=2)  # (B, T, C) each
        heads = [t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v)]  # (B, H, T, C/H)
        y = F.scaled_dot_product_attention(*heads, is_causal=True)  # (B, H, T, C/H)
        return self.out(y.transpose(1, 2).reshape(B, T, C))


class CausalBlock(nn.Module):
    """The pre-LN transformer block h + Attn(LN₁ h), then + MLP(LN₂ ·)."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attn(self.ln1(h))
        return h + self.mlp(self.ln2(h))


def _koopman_layers(layers: Iterable[int] | None, n_layers: int) -> tuple[int, ...]:
    if layers is None:
        return tuple(range(n_layers))
    try:
        chosen = tuple(layers)
    except TypeError:
        chosen = (layers,)  # type: ignore[assignment]
    ok = all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_layers for i in chosen)
    if not ok or len(set(chosen)) != len(chosen):
        raise ParameterError(f"The 'koopman_layers' parameter of KoopmanLanguageModel must list distinct block "
                             f"indices in [0, {n_layers}); got {layers!r}: pass e.g. (1, 2), () for none, or None for "
                             "every block.")
    return tuple(sorted(chosen))


class KoopmanLanguageModel(nn.Module):
    """A causal LM of ``n_layers`` pre-LN blocks, those in ``koopman_layers`` wrapped with Koopman layers.

    Parameters
    ----------
    vocab_size : int >= 1
    d_model : int >= 1, default=64
    n_layers : int >= 1, default=4
    n_heads : int >= 1, default=4
        Must divide d_model.
    koopman_dim : int >= 1, default=256
    max_len : int >= 1, default=128
        Longest input sequence (size of the position embedding).
    koopman_layers : iterable of int, optional
        Block indices to wrap; None (default) wraps every block, ``()`` none (the plain baseline).
    seed : int, default=0
        Seeds every initial weight (torch's global random state is left alone); wrapper i uses seed + 1 + i.
    capacity, update
        Passed to each :class:`~koopscope.koopman.KoopmanLayer`.
    """

    def __init__(self, vocab_size: int, d_model: int = 64, n_layers: int = 4, n_heads: int = 4,
                 koopman_dim: int = 256, max_len: int = 128, koopman_layers: Iterable[int] | None = None, *,
                 seed: int = 0, capacity: int = 100, update: StreamingUpdate | None = None) -> None:
        super().__init__()
        caller = "KoopmanLanguageModel"
        for name, value in (("vocab_size", vocab_size), ("d_model", d_model), ("n_layers", n_layers),
                            ("n_heads", n_heads), ("max_len", max_len)):
            check_param(name, value, Interval(int, 1, None), caller=caller, fix="a positive int")
        if d_model % n_heads:
            divisor = max(h for h in (1, 2, 4, 8) if d_model % h == 0)
            raise ParameterError(f"The 'n_heads' parameter of {caller} must divide d_model={d_model}; got "
                                 f"{n_heads}: choose a divisor such as {divisor}.")
        seed = check_seed(seed, caller)
        self.koopman_layers = _koopman_layers(koopman_layers, n_layers)
        self.vocab_size, self.d_model, self.max_len = vocab_size, d_model, max_len
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.tok = nn.Embedding(vocab_size, d_model)
            self.pos = nn.Embedding(max_len, d_model)
            for emb in (self.tok, self.pos):
                nn.init.normal_(emb.weight, std=EMBEDDING_STD)
            blocks: list[nn.Module] = [CausalBlock(d_model, n_heads) for _ in range(n_layers)]
            self.norm = nn.LayerNorm(d_model)
        for i in self.koopman_layers:
            blocks[i] = KoopmanBlock(blocks[i], d_model, koopman_dim, seed=seed + 1 + i, capacity=capacity,
                                     update=update)
        self.blocks = nn.ModuleList(blocks)

    def forward(self, tokens: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        """Logits (batch, seq, vocab_size) of token ids (batch, seq) with seq <= max_len."""
        if mode is not None:
            check_mode(mode, "KoopmanLanguageModel.forward")
        self._check_tokens(tokens)
        T = tokens.shape[1]
        h = self.tok(tokens) + self.pos(torch.arange(T, device=tokens.device))  # (B, T, d)
        for block in self.blocks:
            h = block(h, mode=mode) if isinstance(block, KoopmanBlock) else block(h)
        return self.norm(h) @ self.tok.weight.T  # (B, T, V), tied head

    def _check_tokens(self, tokens: Any) -> None:
        caller = "KoopmanLanguageModel.forward"
        if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.long or tokens.dim() != 2:
            got = (f"a {tokens.dtype} tensor of shape {tuple(tokens.shape)}" if isinstance(tokens, torch.Tensor)
                   else type(tokens).__name__)
            raise DataError(f"tokens passed to {caller} must be an int64 tensor of shape (batch, seq); got {got}: "
                            "convert with torch.as_tensor(ids, dtype=torch.long).")
        if not 1 <= tokens.shape[1] <= self.max_len:
            raise DataError(f"tokens passed to {caller} have sequence length {tokens.shape[1]}; the model takes 1 "
                            f"to max_len = {self.max_len} positions: split the input into shorter windows.")


def next_token_loss(model: nn.Module, batch: Any) -> torch.Tensor:
    """Mean cross-entropy of next-token prediction.

    ``batch`` is either token ids (batch, seq + 1), read as inputs ``batch[:, :-1]`` and targets ``batch[:, 1:]``,
    or a pair ``(inputs, targets)`` of (batch, seq) ids. ``model(inputs)`` must return logits (batch, seq, vocab).
    """
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        inputs, targets = batch
    elif isinstance(batch, torch.Tensor) and batch.dim() == 2 and batch.shape[1] >= 2:
        inputs, targets = batch[:, :-1], batch[:, 1:]
    else:
        shape = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
        raise DataError(f"batch passed to next_token_loss must be token ids (batch, seq + 1) with seq + 1 >= 2 or a "
                        f"pair (inputs, targets); got {shape}: pass a loss_fn for other batch formats.")
    logits = model(inputs)  # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
