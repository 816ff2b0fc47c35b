"""``SpectralMonitor``: the RKSP profile of every layer, every k training steps, as a dict any logger takes.

The same machinery as :class:`~koopscope.shaping.SpectralShaping` with α = 0: a :class:`~koopscope.capture.tap.Tap`
on the model's blocks reads up to ``max_tokens`` token rows of every residual state from the user's own forward
pass (detached; no extra forward pass), and on every ``every``-th call of :meth:`SpectralMonitor.step` each
layer transition ℓ gets the features of :func:`koopscope.profile` on those states, computed the same way
(full-rank whitened DMD from the covariances by default, or randomized rank r): the near-unit mass M≈1, the
spectral radius ρ and the nonlinearity ratio η_nl (full rank only), under slash-namespaced keys::

    koopscope/layer_03/near_unit_mass   koopscope/layer_03/spectral_radius   koopscope/layer_03/eta_nl
    koopscope/mean/near_unit_mass       koopscope/max/spectral_radius        koopscope/alarms

``koopscope/alarms`` counts the layers whose ``alarm_metric`` is above ``alarm_threshold`` (default: M≈1 > 0.5,
RKSP App. J's "high risk"); each alarm is also logged as a warning on the ``koopscope.shaping`` logger, kept in
``monitor.alarms`` and passed to ``on_alarm``. With ``path`` every on-step appends one row to a JSONL or CSV file.
Off-steps return an empty dict. The states of the latest on-step stay in ``monitor.last_states`` ((N, D) float32
arrays, states 0..L), so ``ks.profile(monitor.last_states)`` reproduces the numbers.

>>> import torch, koopscope as ks
>>> net = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(2)])
>>> monitor = ks.shaping.SpectralMonitor(net, every=5, blocks=net)
>>> _ = net(torch.randn(4, 25, 4))
>>> sorted(monitor.step())[:3]
['koopscope/alarms', 'koopscope/layer_00/eta_nl', 'koopscope/layer_00/near_unit_mass']
>>> monitor.remove()
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from koopscope._linalg import eig_left_right
from koopscope._validation import Interval, Options, check_param, check_seed
from koopscope.capture.adapters import resolve_blocks
from koopscope.capture.tap import Tap
from koopscope.dmd.spectrum import RESIDUAL_THRESHOLD
from koopscope.dmd.whitened import WHITENING_EPS, whitened_galerkin, whitened_moments, whitened_sketch
from koopscope.errors import ParameterError
from koopscope.shaping.schedule import Schedule
from koopscope.shaping.shaping import unwrap
from koopscope.spectral.masses import SpectralBands, mass_partition
from koopscope.spectral.nonlinearity import nonlinearity_ratio

__all__ = ["ALARM_THRESHOLD", "Alarm", "METRICS", "SpectralMonitor", "layer_features"]

METRICS = ("near_unit_mass", "spectral_radius", "eta_nl")
ALARM_THRESHOLD = 0.5  # RKSP App. J: M≈1 > 0.5 is "high risk"
MONITOR_TOKENS = 2048  # RKSP: N = 2048 token states per transition, as ks.profile

logger = logging.getLogger("koopscope.shaping")


@dataclass(frozen=True)
class Alarm:
    """Layer ``layer``'s ``metric`` was ``value`` > ``threshold`` on step ``step``."""

    step: int
    layer: int
    metric: str
    value: float
    threshold: float


def layer_features(X: np.ndarray, Y: np.ndarray, *, rank: int | None = None, eps: float = WHITENING_EPS,
                   bands: SpectralBands | None = None, seed: int = 0) -> dict[str, float | None]:
    """M≈1, ρ and η_nl of the transition with pairs X, Y (N, D), computed as :func:`koopscope.profile` does.

    Full rank: the whitened Galerkin matrices from the moments, their operator's eigenvalues (the same LAPACK
    call as the profile's decomposition) and η_nl from the same matrices. Rank r: randomized whitened DMD, no η_nl.
    """
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)  # (N, D)
    if rank is None:
        N, D = X.shape
        _, _, Cxx, Cxy, Cyy = whitened_moments(X, Y, need_yy=True)  # (D, D) each
        wg = whitened_galerkin(Cxx, Cxy, Cyy, N=N, D=D, eps=eps)
        lam = eig_left_right(wg.operator, left=False, right=True)[0]  # (r,) as decompose() gets them
        eta: float | None = nonlinearity_ratio(wg.G, wg.A, wg.L, wg.operator)
    else:
        lam = whitened_sketch(X, Y, rank=rank, eps=eps, residual_threshold=RESIDUAL_THRESHOLD, seed=seed,
                              reason=f"SpectralMonitor: rank-{rank} randomized whitened DMD").eigenvalues
        eta = None
    return {"near_unit_mass": mass_partition(lam, bands)["near_unit_mass"],
            "spectral_radius": float(np.abs(lam).max()), "eta_nl": eta}


def _check_path(path: Any) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if p.suffix not in (".jsonl", ".csv"):
        raise ParameterError(f"The 'path' parameter of SpectralMonitor is {str(path)!r}, whose suffix is neither "
                             "'.jsonl' nor '.csv'; name the file e.g. 'spectra.jsonl' or 'spectra.csv'.")
    return p


class SpectralMonitor:
    """Per-layer M≈1, ρ and η_nl every ``every`` steps, from the training forward passes (module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        As for :class:`~koopscope.shaping.SpectralShaping` (DDP/FSDP wrappers are unwrapped).
    every : int, default 50
        Profile on steps 0, every, 2·every, ... (a step is one call of :meth:`step`).
    alarm_threshold : float, default 0.5
        A layer whose ``alarm_metric`` exceeds it raises an alarm.
    alarm_metric : {"near_unit_mass", "spectral_radius", "eta_nl"}, default "near_unit_mass"
    rank : int, optional
        None: full-rank whitened DMD (``ks.profile``'s default); r: randomized rank r (no η_nl).
    max_tokens : int, default 2048
        N, the token states sampled from the batch (RKSP).
    eps : float, default 1e-5
    bands : SpectralBands, optional
        The near-unit band (default 0.90 ≤ |λ| ≤ 1.05).
    path : str or Path, optional
        A ``.jsonl`` or ``.csv`` file; every on-step appends ``{"step": s, **metrics}``.
    on_alarm : callable, optional
        Called with each :class:`Alarm`.
    prefix : str, default "koopscope"
    blocks, seed
        As for :class:`~koopscope.shaping.SpectralShaping`.
    """

    def __init__(self, model: Any, every: int = 50, *, alarm_threshold: float = ALARM_THRESHOLD,
                 alarm_metric: str = "near_unit_mass", rank: int | None = None, max_tokens: int = MONITOR_TOKENS,
                 eps: float = WHITENING_EPS, bands: SpectralBands | None = None, path: Any = None,
                 on_alarm: Callable[[Alarm], Any] | None = None, prefix: str = "koopscope", blocks: Any = None,
                 seed: int = 0) -> None:
        caller = "SpectralMonitor"
        check_param("every", every, Interval(int, 1, None), caller=caller, fix="e.g. every=50")
        check_param("alarm_threshold", alarm_threshold, Interval(float, None, None), caller=caller,
                    fix="RKSP calls M≈1 > 0.5 high risk")
        check_param("alarm_metric", alarm_metric, Options(METRICS), caller=caller, fix="the default is near_unit_mass")
        check_param("rank", rank, Interval(int, 1, None), None, caller=caller, fix="None is full rank, as ks.profile")
        check_param("max_tokens", max_tokens, Interval(int, 2, None), caller=caller, fix="RKSP uses 2048")
        check_param("eps", eps, Interval(float, 0.0, None, closed="neither"), caller=caller, fix="RKSP uses 1e-5")
        check_param("prefix", prefix, str, caller=caller, fix="e.g. 'koopscope'")
        if alarm_metric == "eta_nl" and rank is not None:
            raise ParameterError(f"The 'alarm_metric' parameter of SpectralMonitor is 'eta_nl' with rank={rank}, but "
                                 "η_nl is only computed at full rank; pass rank=None or another alarm_metric.")
        self.model = unwrap(model)
        self.blocks = resolve_blocks(self.model, blocks, caller=caller)
        self.schedule = Schedule(every, 1.0, max_tokens, check_seed(seed, caller))
        self.alarm_threshold, self.alarm_metric = float(alarm_threshold), alarm_metric
        self.rank, self.eps, self.bands, self.prefix = rank, float(eps), bands, prefix
        self.path, self.on_alarm = _check_path(path), on_alarm
        self.step_count = 0
        self.alarms: list[Alarm] = []
        self.last: dict[str, float] = {}
        self.last_states: list[np.ndarray] = []
        self.skipped: str | None = None
        self.tap = Tap(self.blocks).attach()
        self._arm()

    def remove(self) -> None:
        """Remove the hooks."""
        self.tap.detach()

    def __enter__(self) -> SpectralMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    @property
    def on_step(self) -> bool:
        """Whether the next call of :meth:`step` profiles."""
        return self.schedule.is_on(self.step_count)

    def _arm(self) -> None:
        if self.on_step:
            self.tap.arm(set(range(len(self.blocks) + 1)), self.schedule.rows(self.step_count), keep_graph=False)
        else:
            self.tap.disarm()

    def __call__(self, model: Any = None) -> dict[str, float]:
        return self.step()

    def step(self) -> dict[str, float]:
        """Profile the latest forward pass on an on-step (else ``{}``), then advance; the dict is also ``last``."""
        step = self.step_count
        try:
            self.last = self._profile(step) if self.on_step else {}
            return self.last
        finally:
            self.step_count += 1
            self.tap.clear()
            self._arm()

    def _profile(self, step: int) -> dict[str, float]:
        n_states = len(self.blocks) + 1
        if len(self.tap.states) < n_states:
            return self._skip(step, "no forward pass of the model ran since the previous step")
        states = [self.tap.states[i].float().cpu().numpy() for i in range(n_states)]  # (N, D) float32 each
        bad = next((i for i, h in enumerate(states) if not np.isfinite(h).all()), None)
        if bad is not None:
            return self._skip(step, f"residual state {bad} holds NaN or Inf values")
        if states[0].shape[0] < 3:
            return self._skip(step, f"the batch has {states[0].shape[0]} token states, fewer than 3")
        self.last_states, self.skipped = states, None
        metrics = self._metrics(step, states)
        self._write(step, metrics)
        return metrics

    def _metrics(self, step: int, states: list[np.ndarray]) -> dict[str, float]:
        p = self.prefix
        out: dict[str, float] = {}
        per_layer = [layer_features(X, Y, rank=self.rank, eps=self.eps, bands=self.bands, seed=self.schedule.seed)
                     for X, Y in zip(states[:-1], states[1:], strict=True)]
        for layer, features in enumerate(per_layer):
            out.update({f"{p}/layer_{layer:02d}/{k}": v for k, v in features.items() if v is not None})
        out[f"{p}/mean/near_unit_mass"] = float(np.mean([f["near_unit_mass"] for f in per_layer]))
        out[f"{p}/max/spectral_radius"] = float(np.max([f["spectral_radius"] for f in per_layer]))
        alarms = [Alarm(step, layer, self.alarm_metric, float(f[self.alarm_metric]), self.alarm_threshold)
                  for layer, f in enumerate(per_layer) if f[self.alarm_metric] > self.alarm_threshold]
        out[f"{p}/alarms"] = float(len(alarms))
        for alarm in alarms:
            logger.warning("SpectralMonitor alarm at step %d: layer %d has %s = %.4g, above %.4g.", alarm.step,
                           alarm.layer, alarm.metric, alarm.value, alarm.threshold)
            self.alarms.append(alarm)
            if self.on_alarm is not None:
                self.on_alarm(alarm)
        return out

    def _skip(self, step: int, reason: str) -> dict[str, float]:
        logger.warning("SpectralMonitor skipped step %d: %s.", step, reason)
        self.skipped = reason
        return {}

    def _write(self, step: int, metrics: dict[str, float]) -> None:
        if self.path is None:
            return
        row = {"step": step, **metrics}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.suffix == ".jsonl":
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({k: _json_number(v) for k, v in row.items()}) + "\n")
            return
        new = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)


def _json_number(value: float) -> float | None:
    return value if isinstance(value, int) or math.isfinite(value) else None
