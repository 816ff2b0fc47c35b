"""``ks.profile``: the RKSP profile of a model (Kim et al. 2026, Algorithm 1) with trust flags and a verdict.

For every layer transition ℓ → ℓ+1 of the captured residual stream, :func:`koopscope.profile.layer.layer_profile`
fits the whitened operator and computes its features; :class:`Profile` aggregates them over depth (mean, max,
min, std, and the mean over the early, middle and late thirds), states a risk, flags what the data cannot
support, and writes itself as a ``kind="model"`` :class:`~koopscope.KoopmanFingerprint`.

Risk. Uncalibrated, ``Profile.risk`` is the layer-mean near-unit mass M≈1 (RKSP §2.4: the score behind the
paper's AUROC; higher is riskier). With ``calibration=`` (a :class:`koopscope.gate.Calibrator`, or anything
with ``predict_proba(features, lr=None)``) it is that calibration's probability of divergence.

Trust flags (``Profile.flags``; the fingerprint carries them and the gate abstains on warnings):

* ``small_update`` (warning): the block moves the residual stream by less than :data:`SMALL_UPDATE` of its
  norm (‖h_{ℓ+1} − h_ℓ‖ / ‖h_ℓ‖). Then h_{ℓ+1} ≈ h_ℓ and Â ≈ I by construction: its eigenvalues crowd at 1
  and M≈1 ≈ 1 whatever the layer's stability, so the spectrum says how small the update is, not whether
  training will diverge. A model with zero-initialised residual branches (update exactly 0) is the limit.
* the fingerprint's spectrum flags (:func:`koopscope.fingerprint.build.spectrum_flags`): ``few_pairs`` when
  N < 2·D tokens per transition (with the N required), ``dominant_spurious``, ``spurious_majority``.

Non-finite states are an error (:class:`~koopscope.errors.DataError` naming the state), never a flag.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from koopscope._validation import Interval, check_finite, check_param, check_seed
from koopscope.dmd.spectrum import RESIDUAL_THRESHOLD
from koopscope.dmd.whitened import WHITENING_EPS
from koopscope.errors import DataError, ParameterError
from koopscope.fingerprint import KoopmanFingerprint, from_layers
from koopscope.fingerprint.build import spectrum_flags
from koopscope.profile.layer import FEATURES, LayerProfile, layer_profile
from koopscope.spectral.masses import SpectralBands

__all__ = ["SMALL_UPDATE", "Profile", "profile"]

#: Relative update ‖h_{ℓ+1} − h_ℓ‖ / ‖h_ℓ‖ below which Â ≈ I by construction (see benchmarks/divergence: no-norm
#: GPT-2-initialised blocks move the stream by 1–3 %, normalised ones by 30–60 %).
SMALL_UPDATE: Final = 0.05

#: The statistics of a feature over depth.
AGGREGATES: Final = ("mean", "max", "min", "std", "early", "middle", "late")


def aggregate(values: Sequence[float | None]) -> dict[str, float | None]:
    """Mean, max, min, std (population) and the means of the early / middle / late thirds of the finite values.

    Thirds follow ``np.array_split`` over the layers in order (so with L = 4 they hold 2, 1, 1 layers);
    an empty third, or a feature with no finite value, gives None.

    >>> aggregate([0.1, 0.2, 0.3])["late"]
    0.3
    """
    x = np.array([np.nan if v is None else float(v) for v in values])
    finite = x[np.isfinite(x)]
    out: dict[str, float | None] = dict.fromkeys(AGGREGATES)
    if finite.size:
        out.update(mean=float(finite.mean()), max=float(finite.max()), min=float(finite.min()),
                   std=float(finite.std()))
    for name, part in zip(("early", "middle", "late"), np.array_split(x, 3), strict=True):
        ok = part[np.isfinite(part)]
        out[name] = float(ok.mean()) if ok.size else None
    return out


def _small_update_flags(layers: Sequence[LayerProfile], threshold: float) -> list[dict[str, Any]]:
    flags = []
    for lp in layers:
        if lp.relative_update < threshold:
            flags.append({"code": "small_update", "severity": "warning", "layer": lp.index, "message": (
                f"transition {lp.index}: the block moves the residual stream by {100 * lp.relative_update:.3g} % of "
                f"its norm (< {100 * threshold:g} %), so its operator is close to the identity by construction and "
                "its near-unit mass reflects the small update, not the layer's stability")})
    return flags


@dataclass(frozen=True, eq=False)
class Profile:
    """The RKSP profile: per-layer features, their aggregates over depth, the risk, trust flags, provenance.

    Attributes
    ----------
    layers : tuple of LayerProfile
        One per transition ℓ → ℓ+1, in order.
    summary : dict
        Feature name → {"mean", "max", "min", "std", "early", "middle", "late"} over the layers.
    risk : float
        Layer-mean near-unit mass, or the calibration's probability of divergence.
    calibrated : bool
    flags : list of dict
        Trust flags, ``{"code", "severity", "message", "layer"}``.
    provenance : dict
        The capture's provenance record (model, revision, prompt and token-id hashes, ...).
    config : dict
        The settings used (rank, eps, kreiss_dim, seed, small-update threshold, lr).
    """

    layers: tuple[LayerProfile, ...]
    summary: dict[str, dict[str, float | None]]
    risk: float
    calibrated: bool
    flags: list[dict[str, Any]]
    provenance: dict[str, Any]
    config: dict[str, Any]
    pairs: tuple[tuple[np.ndarray, np.ndarray], ...] = field(repr=False, default=())

    @property
    def trusted(self) -> bool:
        """False when any flag is a warning or an error (a gate on this profile abstains)."""
        return not any(f["severity"] in ("warning", "error") for f in self.flags)

    @property
    def verdict(self) -> str:
        """One paragraph: the risk, and what the spectrum can and cannot tell here."""
        what = "probability of divergence (calibrated)" if self.calibrated else "layer-mean near-unit mass M≈1"
        text = f"risk {self.risk:.3g} ({what}); spectral radius {self.summary['spectral_radius']['max']:.4g} (max)"
        small = sorted({f["layer"] for f in self.flags if f["code"] == "small_update"})
        if small:
            text += (f". Transitions {small} barely move the residual stream (relative update < "
                     f"{100 * self.config['small_update']:g} %): their operators are ≈ I by construction, so M≈1 "
                     "there measures how small the update is, not stability; the spectrum cannot rank divergence "
                     "risk for them (initialise or normalise so that blocks contribute, or use a learning-rate-aware "
                     "calibration)")
        other = sorted({f["code"] for f in self.flags if f["code"] != "small_update"
                        and f["severity"] in ("warning", "error")})
        if other:
            text += f". Other trust flags: {', '.join(other)}"
        return text + ("." if self.trusted else ". Verdict: abstain (the data cannot support a decision).")

    def table(self) -> str:
        """A per-layer text table of the main features."""
        head = f"{'layer':>5} {'M≈1':>6} {'M>1':>6} {'ρ':>8} {'κ(V)':>9} {'𝒦':>8} {'η_nl':>7} {'update':>8} {'spur':>5}"
        rows = [head]
        for lp in self.layers:
            f = {name: getattr(lp, name) for name in FEATURES}
            rows.append(f"{lp.index:>5} {f['near_unit_mass']:>6.3f} {f['expansive_mass']:>6.3f} "
                        f"{f['spectral_radius']:>8.4g} {_fmt(f['kappa'], 9)} {_fmt(f['kreiss'], 8)} "
                        f"{_fmt(f['eta_nl'], 7)} {100 * lp.relative_update:>7.3g}% {lp.n_spurious:>5}")
        return "\n".join(rows)

    def fingerprint(self, *, name: str | None = None, n_boot: int = 200, level: float = 0.95,
                    seed: int | None = None) -> KoopmanFingerprint:
        """The ``kind="model"`` fingerprint: per-layer spectra and features, bootstrap intervals, flags, risk."""
        if not self.pairs:
            raise DataError("This Profile holds no snapshot pairs (it was rebuilt without them), so its fingerprint's "
                            "bootstrap cannot run; profile the model or states again.")
        layers = [(lp.spectrum, X, Y) for lp, (X, Y) in zip(self.layers, self.pairs, strict=True)]
        extras = [{k: v for k, v in lp.features.items() if k not in ("n_spurious",)} for lp in self.layers]
        own = [f for f in self.flags if f["code"] == "small_update"]
        return from_layers(layers, name=name, source=self.provenance, indices=[lp.index for lp in self.layers],
                           layer_features=extras, flags=own, risk=self.risk if self.calibrated else None,
                           n_boot=n_boot, level=level, seed=self.config["seed"] if seed is None else seed)


def _fmt(value: float | None, width: int) -> str:
    if value is None:
        return f"{'—':>{width}}"
    if not math.isfinite(value):
        return f"{'inf':>{width}}"
    return f"{value:>{width}.4g}"


def _states_of(model_or_states: Any, inputs: Any, capture_options: dict[str, Any]
               ) -> tuple[list[np.ndarray], tuple[int, ...], dict[str, Any]]:
    from koopscope.capture.states import ResidualStates

    if isinstance(model_or_states, ResidualStates):
        return list(model_or_states.states), model_or_states.layers, dict(model_or_states.provenance)
    if isinstance(model_or_states, (list, tuple)) and all(isinstance(s, np.ndarray) for s in model_or_states):
        return list(model_or_states), tuple(range(len(model_or_states))), {}
    if inputs is None:
        raise ParameterError("inputs=None passed to profile with a model; give the token ids, texts or a prompts "
                             "file to run it on (or pass ResidualStates from koopscope.capture).")
    from koopscope.capture import capture

    states = capture(model_or_states, inputs, **capture_options)
    return list(states.states), states.layers, dict(states.provenance)


def _float64(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The pairs in float64, one at a time, each state converted once (the target of one transition is the source
    of the next), with at most two converted states alive at a time."""
    previous: tuple[np.ndarray, np.ndarray] | None = None
    for X, Y in pairs:
        X64 = previous[1] if previous is not None and previous[0] is X else np.asarray(X, dtype=np.float64)
        previous = (Y, np.asarray(Y, dtype=np.float64))
        yield X64, previous[1]


def profile(model_or_states: Any, inputs: Any = None, *, rank: int | None = None, eps: float = WHITENING_EPS,
            bands: SpectralBands | None = None, residual_threshold: float = RESIDUAL_THRESHOLD,
            kreiss_dim: int = 16, small_update: float = SMALL_UPDATE, calibration: Any = None,
            lr: float | None = None, seed: int = 0, max_tokens: int = 2048, source: dict[str, Any] | None = None,
            **capture_options: Any) -> Profile:
    """The RKSP profile of a model's residual stream, one whitened operator per layer transition.

    Parameters
    ----------
    model_or_states : torch model, ResidualStates, or list of (N, D) arrays
        A model is captured with :func:`koopscope.capture` on ``inputs`` (``max_tokens``, ``seed`` and
        ``capture_options`` such as ``tokenizer``, ``batch_size``, ``device``, ``blocks`` are passed on); a
        list of arrays is read as states 0, 1, ... of the same N tokens.
    rank : int, optional
        None: full-rank whitened DMD (covariance algebra). r: rank-r randomized whitened DMD (RKSP App. D: 32).
    eps : float, default=1e-5
        Whitening ridge ε (RKSP App. D).
    bands : SpectralBands, optional
        Mass-partition band edges (default 0.90 ≤ |λ| ≤ 1.05 near-unit, > 1.05 expansive, < 0.80 contractive).
    residual_threshold : float, default=0.1
        ResDMD residual above which an eigenvalue is spurious (and left out of the filtered masses).
    kreiss_dim : int, default=16
        The Kreiss constant is computed on the dominant invariant subspace of this dimension (exact when it is
        at least the operator's dimension; see :mod:`koopscope.spectral.nonnormality`).
    small_update : float, default=0.05
        The relative-update threshold of the ``small_update`` trust flag.
    calibration : Calibrator, optional
        Turns the profile's features (and ``lr``) into a probability of divergence: ``Profile.risk``.
    lr : float, optional
        The learning rate, for a calibration that takes it.
    seed : int, default=0
        Token sampling (capture), randomized rank-r fits, and the fingerprint's bootstrap.
    source : dict, optional
        Provenance fields (model id, revision, ...) merged over the capture's record.

    >>> import numpy as np, koopscope as ks
    >>> rng = np.random.default_rng(0)
    >>> h0 = rng.standard_normal((400, 8))
    >>> states = [h0, h0 @ (0.5 * np.eye(8)), h0 @ (0.5 * np.eye(8)) @ (0.97 * np.eye(8))]
    >>> prof = ks.profile(states)
    >>> [round(lp.spectral_radius, 6) for lp in prof.layers], prof.risk
    ([0.5, 0.97], 0.5)
    """
    check_param("rank", rank, Interval(int, 1, None), None, caller="profile",
                fix="None is full rank; RKSP's randomized default is rank=32")
    check_param("kreiss_dim", kreiss_dim, Interval(int, 1, None), caller="profile", fix="the default is 16")
    check_param("small_update", small_update, Interval(float, 0.0, None), caller="profile", fix="the default is 0.05")
    check_param("lr", lr, Interval(float, 0.0, None, closed="neither"), None, caller="profile",
                fix="give the learning rate as a positive number, e.g. 3e-4")
    seed = check_seed(seed, "profile")
    states, layers, provenance = _states_of(model_or_states, inputs,
                                            {"max_tokens": max_tokens, "seed": seed, **capture_options})
    for index, h in zip(layers, states, strict=True):
        if h.ndim != 2 or h.shape != states[0].shape:
            raise DataError(f"State {index} passed to profile has shape {h.shape}, expected {states[0].shape} like "
                            "state 0; every state must hold the same N tokens of width D.")
        check_finite(f"State {index}", h, "profile")
    provenance.update(source or {})
    transitions = [k for k in range(len(layers) - 1) if layers[k + 1] == layers[k] + 1]
    if not transitions:
        raise DataError(f"The states passed to profile are {list(layers)}, with no two consecutive; a profile needs "
                        "state i and state i + 1 for at least one block.")
    pairs = tuple((states[k], states[k + 1]) for k in transitions)
    profiles = tuple(layer_profile(X, Y, layers[k], rank=rank, eps=eps, bands=bands,
                                   residual_threshold=residual_threshold, kreiss_dim=kreiss_dim, seed=seed)
                     for k, (X, Y) in zip(transitions, _float64(pairs), strict=True))
    summary = {name: aggregate([lp.features[name] for lp in profiles]) for name in FEATURES}
    flags = []
    for lp in profiles:
        flags += spectrum_flags(lp.spectrum, lp.n_pairs, lp.dim, layer=lp.index)
    flags += _small_update_flags(profiles, small_update)
    risk, calibrated = float(summary["near_unit_mass"]["mean"]), False
    if calibration is not None:
        features = {name: stats["mean"] for name, stats in summary.items()} | {"risk": risk}
        risk, calibrated = float(calibration.predict_proba(features, lr=lr)), True
    config = {"rank": rank, "eps": eps, "kreiss_dim": kreiss_dim, "small_update": small_update, "seed": seed,
              "lr": lr, "residual_threshold": residual_threshold}
    return Profile(profiles, summary, risk, calibrated, flags, provenance, config, pairs)
