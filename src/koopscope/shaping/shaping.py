"""``SpectralShaping``: the KSS regulariser on a model's own forward pass (RKSP, Kim et al. 2026, KSS).

    L_total = L_task + α · (1/|S|) Σ_{ℓ ∈ S} L_KSS(λ(Ã_ℓ))        (RKSP, KSS objective)

on every ``every``-th step, with S a random ``layer_fraction`` of the L layer transitions and Ã_ℓ the rank-r
whitened operator of transition ℓ (:func:`~koopscope.shaping.operator.whitened_operator`) fitted to up to
``max_tokens`` token states of the current micro-batch. Defaults: α = 0.15, every 10 steps, half the layers,
r = 32 (RKSP; DESIGN.md "Paper defaults"); N = 512 token states (the paper does not say how many KSS uses).

How it reads the states without a second forward pass: construction resolves the model's blocks with the
adapters of :func:`koopscope.capture` (or ``blocks=``) and attaches a :class:`~koopscope.capture.tap.Tap`, which
stays disarmed on off-steps. Before an on-step it is armed with that step's transitions and token rows; the
user's own forward pass then leaves those rows, with their autograd graph, in the tap; ``shaping(model)``
computes the penalty from them, clears them and arms for the next step. A step is one call of ``shaping()``,
so with gradient accumulation every micro-batch is a step (shape each micro-batch, and scale the penalty
like the task loss). Forward passes without gradients (evaluation) are ignored.

One departure from the paper, from benchmarks/kss (run 1), where the literal penalty raised divergence instead
of lowering it, and two options:

* **Transition 0 is not shaped** (``first_transition=False``). Its input is the embedding output, which
  GPT-2-style initialisation makes small (std 0.02); whitening by that input turns block 0's ordinary output
  scale into a radius of 30–1000, a penalty the size of 10⁶ and a gradient that by itself trips any divergence
  rule. The other transitions read residual streams of comparable scale on both sides.
* **A cap on each layer's loss** (``max_layer_loss=c``, off by default): L_ℓ enters as L_ℓ · min(1, c / L_ℓ) with
  the ratio detached, i.e. a loss above c contributes its gradient direction scaled to the value c, the way
  gradient clipping bounds an update. On the seeded divergence test of ``tests/shaping`` (8 seeds) a cap of 1
  leaves 3 of 8 runs stable and a cap of 10 5 of 8, against 7 of 8 uncapped: like the Huber tail of
  :class:`KSSConfig`, it weakens exactly the pull that prevents those divergences.
* **Only supported eigenvalues** (``residual_threshold=c``, off by default): the penalty acts on the eigenvalues
  whose ResDMD residual on the step's own pairs is at most c (:func:`~koopscope.shaping.operator.eigenvalue_residuals`,
  the residual ``ks.profile`` filters with at 0.1). At N = 512 states of a 64-wide stream most whitened eigenvalues
  can be spurious, with radii up to 10³ that jump between steps; filtered, the penalty no longer trips divergence
  rules with its own gradient (benchmarks/kss, run 4), though it did not lower the divergence rate there either.

Skipped steps (the penalty is 0 and the reason is logged to the ``koopscope.shaping`` logger and kept in
``shaping.last.skipped``): fewer than 2r token states in the batch; NaN or Inf in a state; a non-finite penalty.

>>> import torch, koopscope as ks
>>> net = torch.nn.Sequential(*[torch.nn.Linear(8, 8) for _ in range(4)])
>>> shaping = ks.shaping.SpectralShaping(net, rank=4, blocks=net)
>>> x = torch.randn(2, 16, 8)
>>> loss = net(x).pow(2).mean() + shaping(net)        # step 0 is an on-step
>>> loss.backward(); shaping.last.step, shaping.last.active, len(shaping.last.layers)
(0, True, 2)
>>> float(shaping(net))                                 # step 1: off (every=10), no work, no graph
0.0
>>> shaping.remove()
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from koopscope._validation import Interval, check_param, check_seed
from koopscope.capture.adapters import BlockList, resolve_blocks
from koopscope.capture.tap import Tap
from koopscope.dmd.whitened import WHITENING_EPS
from koopscope.errors import CaptureError, ParameterError
from koopscope.shaping.loss import KSSConfig, kss_loss, soft_near_unit_mass
from koopscope.shaping.operator import (
    MAX_CONDITION,
    eigenvalue_residuals,
    guarded_eigvals,
    operator_from,
    whitened_coordinates,
    whitened_operator,
)
from koopscope.shaping.schedule import Schedule

__all__ = ["ALPHA", "EVERY", "LAYER_FRACTION", "MAX_TOKENS", "RANK", "ShapingStep", "SpectralShaping"]

ALPHA = 0.15  # RKSP KSS: α swept over {0.01, ..., 0.20}, 0.15 recommended
EVERY = 10  # RKSP KSS: applied every 10-20 steps
LAYER_FRACTION = 0.5  # RKSP KSS: a random 50 % of the layers per update
RANK = 32  # RKSP App. D: randomized rank r = 32
MAX_TOKENS = 512  # [NF] in RKSP for KSS; koopscope: 16 token states per unknown row of a rank-32 operator

logger = logging.getLogger("koopscope.shaping")

_WIDTH_KEYS = ("hidden_size", "n_embd", "d_model", "dim")


@dataclass(frozen=True)
class ShapingStep:
    """What one call of :class:`SpectralShaping` did.

    ``layers`` maps each shaped transition ℓ to its KSS loss, the spectral radius of its whitened operator and
    its soft near-unit mass; ``penalty`` is α times their mean (None when nothing was shaped).
    """

    step: int
    active: bool
    penalty: float | None = None
    layers: dict[int, dict[str, float]] = field(default_factory=dict)
    skipped: str | None = None

    def metrics(self, prefix: str = "koopscope") -> dict[str, float]:
        """Slash-namespaced numbers for any logger: ``koopscope/kss_penalty``, ``koopscope/layer_03/kss_loss``, ..."""
        if not self.active:
            return {}
        out = {f"{prefix}/kss_penalty": float(self.penalty)}  # type: ignore[arg-type]
        for layer, values in self.layers.items():
            out.update({f"{prefix}/layer_{layer:02d}/{key}": value for key, value in values.items()})
        return out


def unwrap(model: Any) -> Any:
    """The module inside DistributedDataParallel / DataParallel / FSDP wrappers (``.module``), else ``model``."""
    while isinstance(model, torch.nn.Module) and type(model).__name__ in (
            "DistributedDataParallel", "DataParallel", "FullyShardedDataParallel") and hasattr(model, "module"):
        model = model.module
    return model


def configured_width(model: Any) -> int | None:
    """The residual-stream width from ``model.config`` (hidden_size, n_embd, d_model, dim), if it says."""
    config = getattr(model, "config", None)
    for key in _WIDTH_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _check_options(alpha: Any, every: Any, layer_fraction: Any, rank: Any, max_tokens: Any, eps: Any,
                   max_condition: Any, config: Any) -> None:
    caller = "SpectralShaping"
    check_param("alpha", alpha, Interval(float, 0.0, None), caller=caller, fix="RKSP recommends alpha=0.15")
    check_param("every", every, Interval(int, 1, None), caller=caller, fix="RKSP shapes every 10 steps (every=10)")
    check_param("layer_fraction", layer_fraction, Interval(float, 0.0, 1.0, closed="right"), caller=caller,
                fix="RKSP shapes half the layers (0.5)")
    check_param("rank", rank, Interval(int, 1, None), caller=caller, fix="RKSP uses rank=32")
    check_param("max_tokens", max_tokens, Interval(int, 2, None), caller=caller, fix="the default is 512")
    check_param("eps", eps, Interval(float, 0.0, None, closed="neither"), caller=caller, fix="RKSP uses eps=1e-5")
    check_param("max_condition", max_condition, Interval(float, 1.0, None), caller=caller, fix="the default is 1e3")
    check_param("config", config, KSSConfig, None, caller=caller, fix="build one with KSSConfig(gamma=..., ...)")
    if max_tokens < 2 * rank:
        raise ParameterError(f"The 'max_tokens' parameter of SpectralShaping is {max_tokens}, below 2 * rank = "
                             f"{2 * rank}, so no step could be shaped; pass max_tokens >= {2 * rank} or a lower rank.")


class SpectralShaping:
    """The KSS penalty of a model, computed from its own forward pass (module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        The model to shape: a Hugging Face model the adapters of :func:`koopscope.capture` know, any module with
        ``blocks=``, or either inside DistributedDataParallel / DataParallel / FSDP.
    alpha : float, default 0.15
        α, the weight of the penalty (RKSP). 0 turns shaping off (every call returns 0; nothing is captured).
    every : int, default 10
        Shape steps 0, every, 2·every, ... (a step is one call); the others return 0 and cost nothing.
    layer_fraction : float, default 0.5
        Share of the layer transitions shaped per on-step, drawn at random (at least one).
    rank : int, default 32
        r, the rank of each whitened operator; at most the residual-stream width.
    config : KSSConfig, optional
        T, τ_u, τ_l, γ, β of the penalty (:mod:`koopscope.shaping.loss`).
    max_tokens : int, default 512
        N, the token states sampled from the micro-batch; at least 2·rank.
    eps : float, default 1e-5
        Whitening ridge ε (RKSP App. D).
    first_transition : bool, default False
        Also shape transition 0 (embeddings → block 0); off by default (module docstring).
    max_layer_loss : float or None, default None
        c, a cap on each layer's KSS loss (module docstring); None is the paper's uncapped mean.
    max_condition : float, default 1e3
        K of the eigenvalue gradient guard (:mod:`koopscope.shaping.operator`).
    residual_threshold : float or None, default None
        Penalise only the eigenvalues whose ResDMD residual on the step's own pairs is at most this
        (:func:`~koopscope.shaping.operator.eigenvalue_residuals`; ``ks.profile`` filters at 0.1); None is the
        paper's penalty on all r eigenvalues (module docstring).
    blocks : nn.ModuleList, nn.Sequential or str, optional
        The blocks, overriding the adapter table (as in :func:`koopscope.capture`).
    seed : int, default 0
        Seeds the layers, tokens and randomized bases of every step (see :mod:`koopscope.shaping.schedule`).

    Attributes
    ----------
    step : int
        Calls so far; the next call is step ``step``.
    last : ShapingStep
        What the latest call did (``last.metrics()`` for a logger).
    """

    def __init__(self, model: Any, alpha: float = ALPHA, every: int = EVERY, layer_fraction: float = LAYER_FRACTION,
                 rank: int = RANK, *, config: KSSConfig | None = None, max_tokens: int = MAX_TOKENS,
                 eps: float = WHITENING_EPS, max_condition: float = MAX_CONDITION, blocks: Any = None,
                 first_transition: bool = False, max_layer_loss: float | None = None,
                 residual_threshold: float | None = None, seed: int = 0) -> None:
        _check_options(alpha, every, layer_fraction, rank, max_tokens, eps, max_condition, config)
        check_param("first_transition", first_transition, bool, caller="SpectralShaping", fix="pass True or False")
        check_param("max_layer_loss", max_layer_loss, Interval(float, 0.0, None, closed="neither"), None,
                    caller="SpectralShaping", fix="e.g. 10.0, or None for the paper's uncapped mean")
        check_param("residual_threshold", residual_threshold, Interval(float, 0.0, None, closed="neither"), None,
                    caller="SpectralShaping", fix="ks.profile filters at 0.1; None penalises every eigenvalue")
        seed = check_seed(seed, "SpectralShaping")
        self.residual_threshold = residual_threshold
        self.model = unwrap(model)
        self.blocks: BlockList = resolve_blocks(self.model, blocks, caller="SpectralShaping")
        self.first = 0 if first_transition else 1
        self.max_layer_loss = max_layer_loss
        if len(self.blocks) <= self.first:
            raise ParameterError(f"SpectralShaping has nothing to shape: the model has {len(self.blocks)} block and "
                                 "transition 0 is left out by default; pass first_transition=True.")
        width = configured_width(self.model)
        if width is not None:
            _check_width(rank, width)
        self.alpha, self.rank, self.eps, self.max_condition = float(alpha), rank, float(eps), float(max_condition)
        self.config = config or KSSConfig()
        self.schedule = Schedule(every, float(layer_fraction), max_tokens, seed)
        self.step = 0
        self.last = ShapingStep(step=-1, active=False)
        self.tap = Tap(self.blocks)
        self._transitions: tuple[int, ...] = ()
        if self.alpha > 0:
            self.tap.attach()
            self._arm()

    # -- lifecycle ----------------------------------------------------------------------------------
    def remove(self) -> None:
        """Remove the hooks; the object then returns 0 on every call."""
        self.tap.detach()
        self.alpha = 0.0

    def __enter__(self) -> SpectralShaping:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    @property
    def on_step(self) -> bool:
        """Whether the next call (and the forward pass before it) is shaped."""
        return self.alpha > 0 and self.schedule.is_on(self.step)

    @property
    def planned_transitions(self) -> tuple[int, ...]:
        """The transitions the next call reads if it is an on-step (its forward pass must run those blocks)."""
        return self.schedule.transitions(self.step, len(self.blocks), self.first)

    def _arm(self) -> None:
        if not self.on_step:
            self.tap.disarm()
            return
        self._transitions = self.planned_transitions
        wanted = {i for t in self._transitions for i in (t, t + 1)}
        self.tap.arm(wanted, self.schedule.rows(self.step), keep_graph=True)

    # -- the penalty --------------------------------------------------------------------------------
    def __call__(self, model: Any = None) -> torch.Tensor:
        """α · mean KSS loss over this step's layers (0 on off-steps); ``model`` is optional, for readability."""
        if model is not None:
            self._check_model(model)
        return self.loss()

    def loss(self) -> torch.Tensor:
        """The penalty of the current step from the states the tap kept; then advance to the next step."""
        step, on = self.step, self.on_step
        try:
            if not on:
                self.last = ShapingStep(step=step, active=False)
                return self._zero()
            return self._penalty(step)
        finally:
            self.step += 1
            self.tap.clear()
            if self.alpha > 0:
                self._arm()

    def _penalty(self, step: int) -> torch.Tensor:
        states = self.tap.states
        missing = sorted({i for t in self._transitions for i in (t, t + 1)} - set(states))
        if missing:
            raise CaptureError(f"SpectralShaping has no residual state {missing[0]} from the forward pass of step "
                               f"{step}; call shaping(model) after the model's forward pass of the same step, with "
                               "gradients enabled (not under torch.no_grad).")
        width = next(iter(states.values())).shape[1]
        _check_width(self.rank, width)
        reason = self._skip_reason(states)
        if reason is not None:
            return self._skip(step, reason)
        losses, radii, masses = [], [], []
        for i, t in enumerate(self._transitions):
            try:
                lam, kept = self._eigenvalues(states[t], states[t + 1], self.schedule.basis_seed(step) + i)
            except (torch.linalg.LinAlgError, np.linalg.LinAlgError) as err:  # did not converge
                return self._skip(step, f"the linear algebra of layer {t} failed ({str(err).splitlines()[0]})")
            loss = kss_loss(kept, self.config) if kept.numel() else lam.real.sum() * 0.0
            losses.append(_capped(loss, self.max_layer_loss))
            rho = lam.detach().abs()
            radii.append(rho.max())
            masses.append(soft_near_unit_mass(rho, self.config))
        per_layer = torch.stack(losses)  # (|S|,)
        penalty = self.alpha * per_layer.mean()
        values = torch.stack([per_layer.detach(), torch.stack(radii), torch.stack(masses)]).tolist()  # one sync
        if not all(map(_finite, values[0])):
            return self._skip(step, f"the KSS loss is not finite on layers {self._transitions}")
        layers = {t: {"kss_loss": values[0][k], "kss_spectral_radius": values[1][k],
                      "kss_soft_near_unit_mass": values[2][k]} for k, t in enumerate(self._transitions)}
        self.last = ShapingStep(step=step, active=True, penalty=self.alpha * sum(values[0]) / len(values[0]),
                                layers=layers)
        return penalty.to(torch.float32)

    def _eigenvalues(self, X: torch.Tensor, Y: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The eigenvalues (r,) complex128 of one transition's whitened operator, and those the penalty acts on: all,
        or those with a ResDMD residual within ``residual_threshold`` (which needs the whitened coordinates)."""
        if self.residual_threshold is None:
            lam = guarded_eigvals(whitened_operator(X, Y, self.rank, eps=self.eps, seed=seed), self.max_condition)
            return lam, lam
        psi_x, psi_y = whitened_coordinates(X, Y, self.rank, eps=self.eps, seed=seed)  # (N, r) float64
        lam = guarded_eigvals(operator_from(psi_x, psi_y), self.max_condition)
        return lam, lam[eigenvalue_residuals(lam, psi_x, psi_y) <= self.residual_threshold]

    def _skip_reason(self, states: dict[int, torch.Tensor]) -> str | None:
        n = next(iter(states.values())).shape[0]
        if n < 2 * self.rank:
            return (f"the micro-batch has {n} token states, fewer than 2 * rank = {2 * self.rank}; use larger batches "
                    "or a lower rank")
        finite = torch.stack([torch.isfinite(s).all() for s in states.values()])
        if not bool(finite.all()):
            bad = [i for i, ok in zip(states, finite.tolist(), strict=True) if not ok]
            return f"residual state {bad[0]} holds NaN or Inf values"
        return None

    def _skip(self, step: int, reason: str) -> torch.Tensor:
        logger.warning("SpectralShaping skipped step %d: %s.", step, reason)
        self.last = ShapingStep(step=step, active=False, skipped=reason)
        return self._zero()

    def _zero(self) -> torch.Tensor:
        device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        return torch.zeros((), dtype=torch.float32, device=device)

    def _check_model(self, model: Any) -> None:
        inner = unwrap(model)
        modules = inner.modules() if isinstance(inner, torch.nn.Module) else ()
        if inner is self.model or any(m is self.model for m in modules):
            return
        raise ParameterError(f"The model passed to SpectralShaping's call is a {type(model).__name__} that neither is "
                             f"nor contains the {type(self.model).__name__} it was built for; pass that model, or "
                             "call shaping() without arguments.")


def _capped(loss: torch.Tensor, cap: float | None) -> torch.Tensor:
    """loss · min(1, cap / loss), the ratio detached: the value is at most ``cap``, the gradient direction kept."""
    if cap is None:
        return loss
    return loss * torch.clamp(cap / loss.detach().clamp_min(1e-300), max=1.0)


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")


def _check_width(rank: int, width: int) -> None:
    if rank > width:
        raise ParameterError(f"The 'rank' parameter of SpectralShaping is {rank}, larger than the residual-stream "
                             f"width {width}; pass rank <= {width} (RKSP uses 32 on wider models).")
