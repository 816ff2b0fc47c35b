r"""The Koopman layer (lifting φ, operator K, inverse lifting ψ) and the wrapper that puts one beside a block.

**KoopmanLayer** (the "ResNet-BK" design, ``shared/reference/systems_to_build.md`` §2), for states x in R^d:

    φ = Linear(d → k) → Tanh → Linear(k → k),    K ∈ R^{k×k} = I + 0.01·N(0, 1) (seeded),
    ψ = Linear(k → k) → Tanh → Linear(k → d),

with k = ``koopman_dim`` (d = 64, k = 256 gives 230,208 parameters: 82,432 in φ, 65,536 in K, 82,240 in ψ).
Rows are states, so K acts on a row z as z K^T. The two modes of a bare layer:

* ``"koopman"``: ψ(K φ(x)), the prediction of the next state, one step of the lifted linear dynamics;
* ``"standard"``: ψ(φ(x)), the same path with zero steps (K⁰ = I), i.e. the lifting's reconstruction of x.

**KoopmanBlock** wraps a standard block h ↦ block(h) of a residual stream (a pre-LN transformer block). Its
mode says which of the two computes the next state:

* ``"standard"``: block(h), the wrapped block unchanged;
* ``"koopman"``:  h + ψ(K φ(LN h)), a pre-LN residual branch in place of the block: the wrapper's own LayerNorm
  (learned affine) normalises the state, the Koopman layer predicts the block's update, the residual adds it.

The observable the operator advances is the lifting of the normalised state, g(h) = φ(LN h): the lifted pairs
of the block are (g(h), g(block(h))), the targets of :func:`~koopscope.koopman.loss.koopman_loss` and the rows
of the streaming DMD buffer. With ``record`` set (by :class:`~koopscope.koopman.HybridKoopmanTrainer`), each
forward stores those terms in ``terms``; in Koopman mode the wrapped block still runs, without gradient, as the
teacher of the prediction loss. The Koopman terms see the block's input and output detached: they train the
Koopman layer, not the block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
from torch import nn

from koopscope._validation import Interval, Options, check_param, check_seed
from koopscope.dmd.spectrum import Spectrum
from koopscope.errors import DataError
from koopscope.fingerprint.document import KoopmanFingerprint
from koopscope.koopman.loss import koopman_loss, prediction_loss
from koopscope.koopman.spectrum import operator_fingerprint, operator_spectrum
from koopscope.koopman.update import PairBuffer, StreamingUpdate, UpdateResult, streaming_update

__all__ = ["MODES", "KoopmanBlock", "KoopmanLayer", "KoopmanTerms", "koopman_blocks", "koopman_mode", "recording"]

MODES = ("standard", "koopman")
K_INIT_SCALE = 0.01  # design: K = I + 0.01 · randn


def check_mode(mode: object, caller: str) -> str:
    check_param("mode", mode, Options(MODES), caller=caller,
                fix="'standard' runs the standard path, 'koopman' the lifted operator")
    return str(mode)


def check_states(x: object, d_model: int, caller: str) -> torch.Tensor:
    """A floating tensor of shape (batch, seq, d_model) or (N, d_model), or a one-sentence :class:`DataError`."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        what = type(x).__name__ if not isinstance(x, torch.Tensor) else f"a {x.dtype} tensor"
        raise DataError(f"x passed to {caller} must be a floating-point torch tensor of shape (batch, seq, "
                        f"{d_model}); got {what}: convert it with torch.as_tensor(x, dtype=torch.float32).")
    if x.dim() not in (2, 3) or x.shape[-1] != d_model:
        raise DataError(f"x passed to {caller} must have shape (batch, seq, {d_model}) or (N, {d_model}); got "
                        f"{tuple(x.shape)}: the last dimension must be d_model = {d_model}.")
    return x


class KoopmanLayer(nn.Module):
    """Lifting φ, learnable operator K and inverse lifting ψ (see the module docstring).

    Parameters
    ----------
    d_model : int >= 1
        State dimension d.
    koopman_dim : int >= 1
        Lifted dimension k.
    seed : int, default=0
        Seeds the initial weights (φ, ψ: PyTorch's default Linear init; K = I + 0.01·randn) without touching
        torch's global random state.
    capacity : int >= 1, default=100
        Rows of the buffer of lifted pairs (:class:`~koopscope.koopman.update.PairBuffer`).
    update : StreamingUpdate, optional
        Constants of the streaming DMD update (α = 0.1, rcond = 1e-3, ...).

    Attributes
    ----------
    phi, psi : nn.Sequential
    K : nn.Parameter of shape (k, k)
        The operator used by the forward pass; :meth:`update_operator` writes into it under ``no_grad``.
    buffer : PairBuffer
    last_update : UpdateResult or None

    >>> layer = KoopmanLayer(8, 16)
    >>> layer(torch.zeros(2, 5, 8), mode="koopman").shape
    torch.Size([2, 5, 8])
    """

    def __init__(self, d_model: int, koopman_dim: int, *, seed: int = 0, capacity: int = 100,
                 update: StreamingUpdate | None = None) -> None:
        super().__init__()
        caller = "KoopmanLayer"
        check_param("d_model", d_model, Interval(int, 1, None), caller=caller, fix="pass the state width d")
        check_param("koopman_dim", koopman_dim, Interval(int, 1, None), caller=caller,
                    fix="pass the lifted dimension k, e.g. 256 (the design's reference)")
        seed = check_seed(seed, caller)
        check_param("update", update, StreamingUpdate, None, caller=caller,
                    fix="pass koopscope.koopman.StreamingUpdate(...) or None for the defaults")
        self.d_model, self.koopman_dim = int(d_model), int(koopman_dim)
        d, k = self.d_model, self.koopman_dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.phi = nn.Sequential(nn.Linear(d, k), nn.Tanh(), nn.Linear(k, k))
            self.K = nn.Parameter(torch.eye(k) + K_INIT_SCALE * torch.randn(k, k))  # (k, k)
            self.psi = nn.Sequential(nn.Linear(k, k), nn.Tanh(), nn.Linear(k, d))
        self.buffer = PairBuffer(k, capacity)
        self.update_config = update if update is not None else StreamingUpdate()
        self.last_update: UpdateResult | None = None

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, koopman_dim={self.koopman_dim}, buffer={self.buffer!r}"

    def lift(self, x: torch.Tensor) -> torch.Tensor:
        """φ(x): (..., d) → (..., k)."""
        return self.phi(x)

    def advance(self, z: torch.Tensor) -> torch.Tensor:
        """One step of the lifted dynamics, K z for every row: (..., k) → (..., k)."""
        return z @ self.K.T

    def unlift(self, z: torch.Tensor) -> torch.Tensor:
        """ψ(z): (..., k) → (..., d)."""
        return self.psi(z)

    def forward(self, x: torch.Tensor, mode: str = "standard") -> torch.Tensor:
        """ψ(K φ(x)) in ``"koopman"`` mode, ψ(φ(x)) in ``"standard"`` mode; x of shape (batch, seq, d) or (N, d)."""
        mode = check_mode(mode, "KoopmanLayer.forward")
        z = self.lift(check_states(x, self.d_model, "KoopmanLayer.forward"))
        return self.unlift(self.advance(z) if mode == "koopman" else z)

    # -- the operator ------------------------------------------------------------------------------------------
    def observe(self, phi_x: Any, phi_y: Any) -> str | None:
        """Buffer lifted pairs (n, k) (or (..., k)); returns the reason if they were refused (NaN/Inf)."""
        return self.buffer.push(phi_x, phi_y)

    def update_operator(self) -> UpdateResult:
        """One streaming DMD update of K from the buffer (EMA blend, or a logged skip that keeps K)."""
        self.last_update = streaming_update(self.K, self.buffer, self.update_config)
        return self.last_update

    def spectrum(self) -> Spectrum:
        """The eigendecomposition of the current K, with ResDMD residuals on the buffered pairs when there are any."""
        return operator_spectrum(self.K, *self.buffer.pairs()) if len(self.buffer) else operator_spectrum(self.K)

    def fingerprint(self, *, name: str = "KoopmanLayer", n_boot: int = 0, level: float = 0.95,
                    seed: int = 0) -> KoopmanFingerprint:
        """The ``kind="trajectory"`` fingerprint of K on the buffered lifted pairs (see
        :func:`~koopscope.koopman.spectrum.operator_fingerprint`); ``fp.to_html(path)`` renders it."""
        X, Y = self.buffer.pairs()
        return operator_fingerprint(self.K, X, Y, name=name, n_boot=n_boot, level=level, seed=seed)


class KoopmanTerms(NamedTuple):
    """The Koopman training terms of one block forward (scalars with gradient; lifted pairs detached)."""

    linearity: torch.Tensor  # koopman_loss(φ(LN h), φ(LN h'), K)
    prediction: torch.Tensor  # prediction_loss(h + ψ(K φ(LN h)), h')
    phi_x: torch.Tensor  # (..., k) lifted block inputs, detached
    phi_y: torch.Tensor  # (..., k) lifted block outputs, detached

    @property
    def total(self) -> torch.Tensor:
        return self.linearity + self.prediction


class KoopmanBlock(nn.Module):
    """A standard block with a Koopman layer beside it; ``mode`` picks which one computes the next state.

    Parameters
    ----------
    block : nn.Module
        Maps a state (batch, seq, d_model) to the next state of the same shape (e.g. a pre-LN transformer block).
    d_model, koopman_dim, seed, capacity, update
        As in :class:`KoopmanLayer`.
    mode : {"standard", "koopman"}, default="standard"
        The default mode of :meth:`forward` (an attribute, so a parent model that calls ``block(h)`` can be
        switched with :func:`koopman_mode`).

    Attributes
    ----------
    block, norm (LayerNorm(d_model)), koopman (KoopmanLayer), mode, record (bool), terms (KoopmanTerms or None)
    """

    def __init__(self, block: nn.Module, d_model: int, koopman_dim: int, *, seed: int = 0, capacity: int = 100,
                 update: StreamingUpdate | None = None, mode: str = "standard") -> None:
        super().__init__()
        check_param("block", block, nn.Module, caller="KoopmanBlock", fix="pass the torch module to wrap")
        self.block = block
        self.koopman = KoopmanLayer(d_model, koopman_dim, seed=seed, capacity=capacity, update=update)
        self.norm = nn.LayerNorm(d_model)
        self.mode = check_mode(mode, "KoopmanBlock")
        self.record = False
        self.terms: KoopmanTerms | None = None

    @property
    def d_model(self) -> int:
        return self.koopman.d_model

    def forward(self, h: torch.Tensor, *args: Any, mode: str | None = None, **kwargs: Any) -> torch.Tensor:
        """The next state (batch, seq, d_model): block(h) or h + ψ(K φ(LN h)); extra arguments go to the block."""
        mode = check_mode(self.mode if mode is None else mode, "KoopmanBlock.forward")
        check_states(h, self.d_model, "KoopmanBlock.forward")
        if mode == "standard":
            out = self.block(h, *args, **kwargs)
            if self.record:
                self.terms = self.koopman_terms(h, out)
            return out
        out = h + self.koopman(self.norm(h), mode="koopman")
        if self.record:
            with torch.no_grad():
                teacher = self.block(h, *args, **kwargs)
            self.terms = self.koopman_terms(h, teacher)
        return out

    def koopman_terms(self, h: torch.Tensor, h_next: torch.Tensor) -> KoopmanTerms:
        """Linearity and prediction losses of the pair (h, h_next) (both detached), and the lifted pair."""
        h, h_next = h.detach(), h_next.detach()
        layer = self.koopman
        phi_x, phi_y = layer.lift(self.norm(h)), layer.lift(self.norm(h_next))  # (..., k)
        predicted = h + layer.unlift(layer.advance(phi_x))  # (..., d)
        return KoopmanTerms(koopman_loss(phi_x, phi_y, layer.K), prediction_loss(predicted, h_next),
                            phi_x.detach(), phi_y.detach())


def koopman_blocks(model: nn.Module) -> list[KoopmanBlock]:
    """Every :class:`KoopmanBlock` inside ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, KoopmanBlock)]


@contextmanager
def koopman_mode(model: nn.Module, mode: str) -> Iterator[None]:
    """Run every KoopmanBlock of ``model`` in ``mode`` inside the ``with`` block; their modes are restored after."""
    mode = check_mode(mode, "koopman_mode")
    blocks = koopman_blocks(model)
    before = [b.mode for b in blocks]
    for b in blocks:
        b.mode = mode
    try:
        yield
    finally:
        for b, m in zip(blocks, before, strict=True):
            b.mode = m


@contextmanager
def recording(model: nn.Module, on: bool = True) -> Iterator[list[KoopmanBlock]]:
    """Let every KoopmanBlock store its :class:`KoopmanTerms` in ``terms`` during the ``with`` block.

    Yields the blocks; on exit recording stops (their last ``terms`` stay readable until the next recording).
    """
    blocks = koopman_blocks(model)
    for b in blocks:
        b.record, b.terms = on, None
    try:
        yield blocks
    finally:
        for b in blocks:
            b.record = False
