"""``SpectralAuditor``: a scikit-learn estimator that fits a DMD kernel to one trajectory (T, D).

Rows are snapshots. ``fit(X)`` runs :func:`koopscope.dmd.fit` on the trajectory (the kernel forms the pairs
X[:-1], X[1:]; ``kernel="auto"`` selects one exactly as ``koopscope.dmd.fit(X)`` does) and keeps the
:class:`~koopscope.dmd.Spectrum` as ``spectrum_``. ``fingerprint()`` turns it into a
:class:`~koopscope.KoopmanFingerprint`.

Every kernel is read through its Koopman mode decomposition: mode coordinates a_j(x) (Koopman eigenfunctions)
and unit-norm state-coordinate modes w_j with

    x ≈ c + Re Σ_j a_j(x) w_j,   and n steps later   x_n = c + Re Σ_j λ_j^n a_j(x) w_j,

where c = 0 except for ``whitened``. How each kernel's spectrum gives a(x) and w:

* ``exact``, ``tls``, ``randomized``: a(x) = x E with E (D, k) = ``spectrum.eigenfunctions`` (left eigenvectors of
  the fitted operator A) and w = (Φ M⁻¹)ᵀ with Φ = ``spectrum.modes`` and M = Eᵀ Φ, so that
  Σ_j λ_j^n a_j(x) w_j = A^n x exactly (A = Φ Λ M⁻¹ Eᵀ, exact or projected modes alike).
* ``whitened``: the spectrum lives in ZCA-whitened coordinates x̃ = W (x − x̄) with W = (C_xx + εI)^{-1/2}
  (:mod:`koopscope.dmd.whitened`; rebuilt here from the fitted pairs). The kernel fits the affine map
  y = ȳ + A (x − x̄) with A = W⁻¹ Â W, so E = W E_zca, Φ = W⁻¹ Φ_zca, c = x̄, and n steps of the affine map add
  the drift δ = ȳ − x̄: x_n = x̄ + A^n (x − x̄) + Σ_{i<n} A^i δ.
* ``edmd``: a(x) = ψ(x) Ξ with ψ = ``spectrum.options["dictionary"]`` and Ξ = ``spectrum.eigenfunctions``; the
  modes are the kernel's Koopman modes of the state (x ≈ Σ_j φ_j(x) v_j), rescaled to unit norm.
* ``hankel``: the operator acts on delay windows h = [x_t, ..., x_{t+d-1}]. A single snapshot determines its
  window only when the state is fully observed, so the map x ↦ h is learned at fit by least squares on the
  trajectory's windows (h ≈ x C, C of shape (D, d·D); exact for linear dynamics of the observed state), then
  a(x) = x C E_h and w reads the current-time block of the window expansion h ≈ Σ_j φ_j(h) u_j,
  u = Ξ_h⁺ (the projected readout). For a partially observed system (a scalar sum of sinusoids, the case
  hankel exists for) predictions from one snapshot are only the best linear estimate from that snapshot.

Each mode is scaled to unit norm with its largest entry real and positive (a_j absorbs the scale), so that
``transform`` is comparable across kernels and deterministic.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from koopscope._backend import backend_of, is_torch
from koopscope._validation import Interval, Options, check_finite, check_pairs, check_param, check_seed
from koopscope.dmd import VARIANTS, select
from koopscope.dmd import fit as dmd_fit
from koopscope.dmd.hankel import delay_embed
from koopscope.dmd.spectrum import RESIDUAL_THRESHOLD, Spectrum
from koopscope.errors import DataError, MissingDependencyError, NotFittedError, ParameterError
from koopscope.fingerprint import KoopmanFingerprint, from_trajectory

INSTALL_LINE = 'pip install "koopscope[sklearn]"'

try:
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.exceptions import NotFittedError as SklearnNotFittedError
    from sklearn.metrics import r2_score
    from sklearn.utils.validation import validate_data
except ImportError:
    raise MissingDependencyError("SpectralAuditor (koopscope.auditor) needs scikit-learn >= 1.6, which is not "
                                 f"installed; install it with `{INSTALL_LINE}`.") from None

__all__ = ["AuditorNotFittedError", "INSTALL_LINE", "SpectralAuditor"]

EDMD_AUTO_CENTERS = 64  # the edmd kernel's default n_centers, capped at the number of pairs under kernel="auto"
_RESERVED_OPTIONS = ("method", "rank", "seed", "residual_threshold", "reason")


class AuditorNotFittedError(NotFittedError, SklearnNotFittedError):
    """A :class:`SpectralAuditor` was used before ``fit``: koopscope's and scikit-learn's NotFittedError at once."""


class _NonNumericError(DataError, TypeError):
    """An object array holds an entry that is not a number (a TypeError, as numpy and scikit-learn raise)."""


# --- input validation -------------------------------------------------------------------------------------------


def _as_array(X: object, caller: str) -> np.ndarray:
    """``X`` as a numpy array (a torch tensor copied to the CPU), refusing sparse matrices and converting object
    arrays of numbers to float64."""
    if is_torch(X):
        X = backend_of(X).to_numpy(X)
    if sp.issparse(X):
        raise DataError(f"X passed to {caller} is a sparse {type(X).__name__}; DMD needs dense snapshots: convert "
                        "it with X.toarray().")
    try:
        arr = np.asarray(X)
    except (TypeError, ValueError):  # ragged rows and the like
        raise DataError(f"X passed to {caller} could not be read as a numeric array (ragged rows or non-numeric "
                        "entries); pass a (T, D) array with one snapshot per row.") from None
    if arr.dtype.kind == "O":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise _NonNumericError(f"X passed to {caller} has dtype object and an entry that is not a number "
                                   f"({exc}); pass a numeric (T, D) array.") from None
    return arr


def _check_dtype(arr: np.ndarray, caller: str) -> None:
    kind = arr.dtype.kind
    if kind == "c":
        raise DataError(f"Complex data not supported: X passed to {caller} has dtype {arr.dtype}, but koopscope's "
                        "kernels take real snapshots; stack the real and imaginary parts as features, e.g. "
                        "np.hstack([X.real, X.imag]).")
    if kind == "b":
        raise DataError(f"X passed to {caller} has boolean dtype, but DMD needs real-valued snapshots; cast it with "
                        "X.astype(float) if the 0/1 values are meant as numbers.")
    if kind not in "fiu":
        raise DataError(f"X passed to {caller} has dtype {arr.dtype}; expected a real numeric array of shape (T, D).")


def _check_shape(arr: np.ndarray, caller: str, min_rows: int, why: str) -> None:
    if arr.ndim == 1:
        raise DataError(f"X passed to {caller} is a 1-D array of shape {arr.shape} but must be 2-D with one snapshot "
                        "per row (T, D): Reshape your data with X.reshape(1, -1) for one snapshot or "
                        "X.reshape(-1, 1) for a scalar series.")
    if arr.ndim != 2:
        raise DataError(f"X passed to {caller} is a {arr.ndim}-D array of shape {arr.shape} but must be 2-D with one "
                        "snapshot per row (T, D); for a batch of trajectories fit one auditor per trajectory.")
    n, D = arr.shape
    if D == 0:
        raise DataError(f"X passed to {caller} has 0 feature(s) (shape={arr.shape}) while a minimum of 1 is "
                        "required; each snapshot needs at least one feature.")
    if n < min_rows:
        raise DataError(f"X passed to {caller} has {n} sample(s) (shape={arr.shape}) while a minimum of {min_rows} "
                        f"is required{why}.")


# --- the readout: Koopman mode decomposition of each kernel's spectrum ------------------------------------------


@dataclass(frozen=True, eq=False)
class _Readout:
    """x ≈ center + Re Σ_j a_j(x) w_j with a(x) = lift(x − center) @ coefficients; a step multiplies a_j by λ_j."""

    eigenvalues: np.ndarray  # (k,) complex
    coefficients: np.ndarray  # (n, k) complex: eigenfunction coefficients on the lifted state
    modes: np.ndarray  # (k, D) complex, unit-norm rows (largest entry real positive)
    lift: Callable[[np.ndarray], np.ndarray] | None = None  # edmd dictionary ψ (N, D) -> (N, n); None: identity
    center: np.ndarray | None = None  # (D,) whitened: x̄
    drift: np.ndarray | None = None  # (D,) whitened: ȳ − x̄, added by every step of the affine map

    def coordinates(self, X: np.ndarray) -> np.ndarray:
        """Complex mode coordinates a(X) (N, k) of snapshot rows X (N, D)."""
        U = X if self.center is None else X - self.center  # (N, D)
        F = U if self.lift is None else self.lift(U)  # (N, n)
        return F @ self.coefficients  # (N, k)

    def advance(self, X: np.ndarray, n_steps: int) -> np.ndarray:
        """The real states (N, D) n_steps after the rows of X (N, D) under the fitted operator."""
        lam_n = self.eigenvalues**n_steps  # (k,)
        out = (self.coordinates(X) * lam_n) @ self.modes  # (N, D)
        if self.drift is not None:  # Σ_{i<n} A^i δ = δ + Σ_j (Σ_{i=1}^{n-1} λ_j^i) a_j(δ) w_j
            tail = (self.drift @ self.coefficients) * _geometric_tail(self.eigenvalues, n_steps)  # (k,)
            out = out + self.drift + tail @ self.modes
        out = out.real
        return out if self.center is None else out + self.center


def _geometric_tail(lam: np.ndarray, n: int) -> np.ndarray:
    """Σ_{i=1}^{n-1} λ^i for each eigenvalue (k,); a first-order expansion where |1 − λ| < 1e-8."""
    near = np.abs(1.0 - lam) < 1e-8
    safe = np.where(near, 0.5, lam)  # (k,) away from the pole at λ = 1
    closed = safe * (1.0 - safe ** (n - 1)) / (1.0 - safe)
    return np.where(near, (n - 1) + (lam - 1.0) * (n * (n - 1) / 2), closed)


def _oblique_modes(E: np.ndarray, Phi: np.ndarray) -> np.ndarray:
    """Modes W (k, D) with A^n x = Σ_j λ_j^n (x · E_j) W_j for A = Φ Λ M⁻¹ Eᵀ, M = Eᵀ Φ (block-diagonal)."""
    M = E.T @ Phi  # (k, k)
    return np.linalg.lstsq(M.T, Phi.T, rcond=None)[0]  # (k, D) = M⁻ᵀ Φᵀ


def _normalise(coefficients: np.ndarray, modes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm modes (k, D) with the largest entry real positive; the coefficients (n, k) absorb the scale."""
    norms = np.linalg.norm(modes, axis=1)  # (k,)
    lead = modes[np.arange(modes.shape[0]), np.argmax(np.abs(modes), axis=1)]  # (k,)
    scale = np.where(norms > 0, norms * np.exp(1j * np.angle(lead)), 1.0)  # (k,) a mode near zero is kept
    return coefficients * scale, modes / scale[:, None]


def _whitening(X: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The ZCA map W = (C_xx + εI)^{-1/2} and its inverse (D, D) on the numerical support of C_xx, as
    :func:`koopscope.dmd.whitened.whitened` builds them from the pre-snapshots X (N, D)."""
    N, D = X.shape
    Xc = X - X.mean(axis=0)  # (N, D)
    s, U = np.linalg.eigh(Xc.T @ Xc / (N - 1))  # (D,), (D, D) ascending
    keep = s > max(N, D) * np.finfo(np.float64).eps * max(s[-1], 0.0)
    s, U = s[keep], U[:, keep]  # (r,), (D, r)
    root = np.sqrt(s + eps)  # (r,)
    return (U / root) @ U.T, (U * root) @ U.T


def _readout(spec: Spectrum, traj: np.ndarray) -> _Readout:
    """The readout of ``spec`` fitted on the trajectory ``traj`` (T, D); see the module docstring."""
    lam, E, Phi = spec.eigenvalues, spec.eigenfunctions, spec.modes
    lift = center = drift = None
    if spec.method == "edmd":
        coefficients, modes = E, Phi.T  # (n, k), (k, D): x ≈ Σ_j φ_j(x) v_j already
        lift = spec.options["dictionary"]
    elif spec.method == "hankel":
        d, D = int(spec.options["delays"]), traj.shape[1]
        H = delay_embed(traj, d)  # (T - d + 1, d D) windows
        C = np.linalg.lstsq(traj[: H.shape[0]], H, rcond=None)[0]  # (D, d D): window ≈ x C
        coefficients, modes = C @ E, np.linalg.pinv(E)[:, :D]  # (D, k), (k, D) current-time block of Ξ⁺
    elif spec.method == "whitened":
        X, Y = traj[:-1], traj[1:]  # (N, D)
        W, W_inv = _whitening(X, float(spec.options["eps"]))
        center, drift = X.mean(axis=0), Y.mean(axis=0) - X.mean(axis=0)  # (D,)
        coefficients = W @ E  # (D, k): a_j(x) = (W E_zca)_j · (x − x̄)
        modes = _oblique_modes(coefficients, W_inv @ Phi)
    else:  # exact, tls, randomized: state coordinates
        coefficients, modes = E, _oblique_modes(E, Phi)
    coefficients, modes = _normalise(np.asarray(coefficients, dtype=np.complex128), modes)
    return _Readout(lam, coefficients, modes, lift, center, drift)


def _filtered(spec: Spectrum, threshold: float) -> Spectrum:
    """The spectrum without its spurious eigenpairs, refusing to leave none."""
    kept = spec.filtered(threshold)
    if kept.eigenvalues.size == 0:
        raise DataError(f"The filter_spurious option removed all {spec.eigenvalues.size} eigenvalues of the "
                        f"{spec.method} fit (every ResDMD residual is above {threshold:g}), so no trustworthy dynamics "
                        "remain; raise residual_threshold, lower the rank, or set filter_spurious=False.")
    return kept


def _pair_starts(lam: np.ndarray) -> np.ndarray:
    """Mask (k,): True at the first (positive imaginary) member of each complex-conjugate pair."""
    starts = np.zeros(lam.shape, dtype=bool)
    tol = 1e-10 * np.maximum(1.0, np.abs(lam[:-1]))
    starts[:-1] = (lam[:-1].imag > 0) & (np.abs(lam[1:] - lam[:-1].conj()) <= tol)
    return starts


def _real_columns(Z: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Real (N, k) view of complex coordinates Z (N, k): a pair (j, j+1) gives Re Z_j, Im Z_j; others Re Z_j."""
    out = Z.real.copy()  # (N, k)
    j = np.flatnonzero(starts)
    out[:, j + 1] = Z[:, j].imag
    return out


def _column_names(starts: np.ndarray) -> list[str]:
    names = [f"mode{j}" for j in range(starts.size)]
    for j in np.flatnonzero(starts):
        names[j], names[j + 1] = f"mode{j}_re", f"mode{j}_im"
    return names


# --- the estimator --------------------------------------------------------------------------------------------


class SpectralAuditor(TransformerMixin, BaseEstimator):
    """Fit a DMD kernel to one trajectory and read its Koopman spectrum, predictions and mode coordinates.

    Parameters
    ----------
    kernel : str, default="auto"
        ``"auto"`` (the rules of :func:`koopscope.dmd.select`, as ``koopscope.dmd.fit(X)`` applies them) or a
        name in :data:`koopscope.dmd.VARIANTS`: ``"exact"``, ``"hankel"``, ``"tls"``, ``"randomized"``, ``"edmd"``,
        ``"whitened"``.
    rank : None, int or str, default=None
        The kernel's ``rank`` (None: its default, the numerical rank for most kernels).
    seed : int, default=0
        Seeds the kernel selection, randomized SVDs, RBF centres, and the fingerprint's bootstrap.
    n_boot : int, default=200
        Bootstrap replicates drawn by :meth:`fingerprint` (0: no interval).
    level : float, default=0.95
        Confidence level of the fingerprint's bootstrap intervals.
    residual_threshold : float, default=0.1
        ResDMD residual above which an eigenvalue is flagged spurious (Colbrook & Townsend 2024).
    filter_spurious : bool, default=False
        Drop the flagged eigenpairs (:meth:`Spectrum.filtered`) before predicting, transforming and
        fingerprinting.
    kernel_options : dict, optional
        Further keyword arguments of the kernel, e.g. ``{"delays": 4}`` for hankel, ``{"dictionary": "poly"}``
        for edmd, ``{"orientation": "rows"}`` to accept D > 10 T. With ``kernel="auto"`` give only options every
        candidate kernel accepts. Under ``"auto"`` an edmd fit uses at most N RBF centres (N pairs).

    Attributes
    ----------
    spectrum_ : Spectrum
        The fitted spectrum (filtered when ``filter_spurious``).
    kernel_, reason_ : str
        The kernel that was run and why (``kernel="auto"`` records the selection rule).
    rank_ : int
        Retained rank of the fit.
    eigenvalues_ : ndarray of shape (k,), complex128
        Discrete-time eigenvalues, descending modulus, conjugate pairs adjacent.
    modes_ : ndarray of shape (n_features_in_, k), complex128
        Unit-norm Koopman modes in the input coordinates: x ≈ c + Re Σ_j a_j(x) modes_[:, j] with a_j(x) the
        complex mode coordinates that :meth:`transform` lays out as real columns (c = 0 except for whitened).
        For whitened they are in the raw coordinates (``spectrum_.modes`` are ZCA-whitened), for hankel the
        current-time block, for edmd the Koopman modes of the state; their scale differs from
        ``spectrum_.modes``.
    residuals_ : ndarray of shape (k,) or None
        ResDMD residual of each eigenpair.
    n_spurious_ : int
        Eigenvalues with a residual above ``residual_threshold``.
    spectral_radius_ : float
        max |λ|.
    n_features_in_ : int
        D, the number of features seen in fit.
    feature_names_in_ : ndarray of str
        Column names of a DataFrame passed to fit (only then).

    Notes
    -----
    ``predict(X, n_steps)`` maps each row to the state n steps later, ``transform(X)`` to its mode coordinates
    and ``score(X)`` rates one-step predictions along a trajectory; how each kernel supports them is described in
    :mod:`koopscope.auditor`. The fitted pairs are kept by reference (not copied) for :meth:`fingerprint`.

    Examples
    --------
    >>> import numpy as np, koopscope as ks
    >>> A = np.array([[0.9, -0.2], [0.2, 0.9]])  # a damped rotation, |λ| = 0.922
    >>> traj = np.empty((40, 2)); traj[0] = [1.0, 0.0]
    >>> for t in range(39): traj[t + 1] = A @ traj[t]
    >>> aud = ks.SpectralAuditor(kernel="exact").fit(traj)
    >>> np.round(aud.eigenvalues_, 6)
    array([0.9+0.2j, 0.9-0.2j])
    >>> np.allclose(aud.predict(traj[:5], n_steps=3), traj[3:8])
    True
    >>> aud.get_feature_names_out().tolist()
    ['mode0_re', 'mode0_im']
    >>> round(aud.score(traj), 6)
    1.0
    >>> aud.fingerprint(n_boot=10).kind
    'trajectory'
    """

    def __init__(self, kernel: str = "auto", rank: int | str | None = None, *, seed: int = 0, n_boot: int = 200,
                 level: float = 0.95, residual_threshold: float = RESIDUAL_THRESHOLD, filter_spurious: bool = False,
                 kernel_options: Mapping[str, Any] | None = None) -> None:
        self.kernel = kernel
        self.rank = rank
        self.seed = seed
        self.n_boot = n_boot
        self.level = level
        self.residual_threshold = residual_threshold
        self.filter_spurious = filter_spurious
        self.kernel_options = kernel_options

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.requires_fit = True
        tags.non_deterministic = False  # every random choice is seeded
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        tags.target_tags.required = False  # y is ignored: the targets are the trajectory's next rows
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags

    # --- parameters and data ------------------------------------------------------------------------------------

    def _check_params(self) -> dict[str, Any]:
        """Validate the hyper-parameters (sklearn: in fit, not __init__); return the kernel options."""
        caller = "SpectralAuditor"
        check_param("kernel", self.kernel, Options(("auto", *VARIANTS)), caller=caller,
                    fix="see koopscope.dmd.VARIANTS for the kernels")
        check_seed(self.seed, caller)
        check_param("n_boot", self.n_boot, Interval(int, 0, None), caller=caller, fix="the default is 200")
        check_param("level", self.level, Interval(float, 0.0, 1.0, closed="neither"), caller=caller,
                    fix="give a confidence level such as 0.95")
        check_param("residual_threshold", self.residual_threshold, Interval(float, 0.0, None, closed="neither"),
                    caller=caller, fix="the default is 0.1")
        check_param("filter_spurious", self.filter_spurious, bool, caller=caller, fix="pass True or False")
        check_param("kernel_options", self.kernel_options, Mapping, None, caller=caller,
                    fix="pass a dict of keyword arguments for the kernel, e.g. {'delays': 4}")
        options = dict(self.kernel_options or {})
        for key in options:
            if key in _RESERVED_OPTIONS:
                raise ParameterError(f"The 'kernel_options' parameter of SpectralAuditor has the key {key!r}, which "
                                     f"the auditor sets itself; pass {key} as a SpectralAuditor parameter instead.")
        if "modes" in options and options["modes"] is None:
            raise ParameterError("The 'kernel_options' parameter of SpectralAuditor has modes=None, but predict and "
                                 "transform need the modes; drop the 'modes' key or pass 'exact' or 'projected'.")
        return options

    def _validate_X(self, X: object, caller: str, *, min_rows: int = 1, why: str = "", reset: bool) -> np.ndarray:
        """float64 snapshot rows (n, D), with the messages scikit-learn's checks look for, in koopscope's style."""
        if not reset:  # feature names first, as scikit-learn orders it (a renamed DataFrame is refused by name)
            validate_data(self, X, reset=False, skip_check_array=True, ensure_2d=False)
        arr = _as_array(X, caller)
        _check_dtype(arr, caller)
        _check_shape(arr, caller, min_rows, why or "; pass at least one snapshot row")
        if not reset and arr.shape[1] != self.n_features_in_:
            raise DataError(f"X has {arr.shape[1]} features, but SpectralAuditor is expecting {self.n_features_in_} "
                            f"features as input; pass snapshots with {self.n_features_in_} columns to {caller}.")
        arr = arr.astype(np.float64, copy=False)
        check_finite("X", arr, caller)
        return arr

    def _require_fitted(self, method: str) -> None:
        if not hasattr(self, "spectrum_"):
            raise AuditorNotFittedError(f"This SpectralAuditor is not fitted yet, so {method} has no operator to "
                                        "use; call fit(X) with a trajectory X of shape (T, D) first.")

    # --- fitting ------------------------------------------------------------------------------------------------

    def _fit_spectrum(self, traj: np.ndarray, options: dict[str, Any]) -> Spectrum:
        """The kernel's spectrum of the trajectory (T, D); under "auto" the selection of koopscope.dmd.fit."""
        kernel = self.kernel
        options = {**options, "rank": self.rank, "seed": self.seed, "residual_threshold": self.residual_threshold}
        if kernel == "auto":
            kernel, options["reason"] = select(traj, seed=self.seed, orientation=options.get("orientation", "check"))
            if kernel == "edmd":  # the edmd default of 64 centres needs N >= 64 pairs
                options.setdefault("n_centers", min(EDMD_AUTO_CENTERS, traj.shape[0] - 1))
        params = inspect.signature(VARIANTS[kernel]).parameters.values()
        unknown = sorted(set(options) - {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY})
        if unknown:
            raise ParameterError(f"The 'kernel_options' parameter of SpectralAuditor has the key(s) {unknown}, which "
                                 f"the {kernel} kernel does not accept; use only its options, see "
                                 f"help(koopscope.dmd.{kernel}).")
        return dmd_fit(traj, None, method=kernel, **options)

    def fit(self, X: Any, y: Any = None) -> SpectralAuditor:
        """Fit the kernel to the trajectory X (T, D), rows being snapshots; ``y`` is ignored.

        Parameters
        ----------
        X : array_like of shape (T, D)
            One trajectory, T >= 3 snapshots (2 pairs); numpy array, DataFrame, nested lists or torch tensor
            (copied to the CPU).
        y : None
            Ignored; the targets are the next rows of X.

        Returns
        -------
        self
        """
        options = self._check_params()
        caller = "SpectralAuditor.fit"
        traj = self._validate_X(X, caller, min_rows=3, reset=True, why=(
            ", since a trajectory of T snapshot rows gives T - 1 pairs and DMD fits at least 2; pass a longer "
            "trajectory"))
        pairs = check_pairs(traj, None, caller=caller, orientation=options.get("orientation", "check"))
        spec = self._fit_spectrum(traj, options)
        if self.filter_spurious:
            spec = _filtered(spec, self.residual_threshold)
        readout = _readout(spec, traj)
        validate_data(self, X, reset=True, skip_check_array=True)  # n_features_in_, feature_names_in_
        self._X, self._Y = pairs  # (N, D) views of the trajectory, for fingerprint()
        self._readout = readout
        self._pair_starts = _pair_starts(spec.eigenvalues)
        self.spectrum_ = spec
        self.kernel_, self.reason_, self.rank_ = spec.method, spec.reason, int(spec.rank)
        self.eigenvalues_ = spec.eigenvalues
        self.modes_ = readout.modes.T.copy()  # (D, k)
        self.residuals_ = spec.residuals
        self.n_spurious_ = spec.n_spurious
        self.spectral_radius_ = spec.spectral_radius
        return self

    # --- using the operator ---------------------------------------------------------------------------------------

    def predict(self, X: Any, n_steps: int = 1) -> np.ndarray:
        """The state ``n_steps`` ahead of each row of X under the fitted operator.

        Parameters
        ----------
        X : array_like of shape (n, D)
            Snapshots, one per row (not necessarily consecutive).
        n_steps : int >= 1, default=1
            Number of steps of the discrete-time map.

        Returns
        -------
        ndarray of shape (n, D), float64
            x_n = c + Re Σ_j λ_j^n a_j(x) w_j for each row x (see :mod:`koopscope.auditor` per kernel).
        """
        self._require_fitted("predict")
        check_param("n_steps", n_steps, Interval(int, 1, None), caller="SpectralAuditor.predict",
                    fix="give the number of steps ahead, e.g. 1")
        X = self._validate_X(X, "SpectralAuditor.predict", reset=False)
        return self._readout.advance(X, int(n_steps))

    def transform(self, X: Any) -> np.ndarray:
        """Real mode coordinates of each row of X, one column per eigenvalue.

        Column j belongs to eigenvalue j of ``eigenvalues_`` (descending modulus). For a complex-conjugate pair
        (j, j+1) column j is Re a_j(x) and column j+1 is Im a_j(x), a_j being the coordinate of the member with
        positive imaginary part (a_{j+1} = conj(a_j)); a real eigenvalue gives its real coordinate a_j(x).
        One step of the operator multiplies a_j by λ_j. See :meth:`get_feature_names_out` for the names.

        Parameters
        ----------
        X : array_like of shape (n, D)

        Returns
        -------
        ndarray of shape (n, k), float64
        """
        self._require_fitted("transform")
        X = self._validate_X(X, "SpectralAuditor.transform", reset=False)
        return _real_columns(self._readout.coordinates(X), self._pair_starts)

    def score(self, X: Any, y: Any = None) -> float:
        """R² of the one-step predictions along the trajectory X: ``predict(X[:-1])`` against ``X[1:]``.

        The R² is variance-weighted over the D coordinates, 1 − Σ‖x_{t+1} − x̂_{t+1}‖² / Σ‖x_{t+1} − x̄‖²
        (``sklearn.metrics.r2_score(..., multioutput="variance_weighted")``), so a near-constant coordinate
        cannot dominate it. ``y`` is ignored.

        Parameters
        ----------
        X : array_like of shape (T, D), T >= 2
        y : None
            Ignored.

        Returns
        -------
        float
        """
        self._require_fitted("score")
        traj = self._validate_X(X, "SpectralAuditor.score", min_rows=2, reset=False, why=(
            ", since scoring compares each snapshot's prediction with the next one; pass at least 2 consecutive "
            "snapshots"))
        return float(r2_score(traj[1:], self._readout.advance(traj[:-1], 1), multioutput="variance_weighted"))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the :meth:`transform` columns: ``mode{j}`` for a real eigenvalue j, ``mode{j}_re`` and
        ``mode{j}_im`` for the conjugate pair (j, j+1).

        Parameters
        ----------
        input_features : array_like of str, optional
            Checked against the features seen in fit (the output names do not depend on them).

        Returns
        -------
        ndarray of str objects, shape (k,)
        """
        self._require_fitted("get_feature_names_out")
        if input_features is not None:
            names = np.asarray(input_features, dtype=object)
            if names.shape != (self.n_features_in_,):
                raise ParameterError(f"input_features should have length equal to n_features_in_ = "
                                     f"{self.n_features_in_}, the number of features seen in fit; got "
                                     f"{names.size}: pass one name per column.")
            fitted = getattr(self, "feature_names_in_", None)
            if fitted is not None and not np.array_equal(names, fitted):
                raise ParameterError(f"input_features is not equal to feature_names_in_ ({list(names)} against "
                                     f"{list(fitted)}, the columns seen in fit); pass those names or None.")
        return np.asarray(_column_names(self._pair_starts), dtype=object)

    def fingerprint(self, *, name: str | None = None, source: Mapping[str, Any] | None = None,
                    n_boot: int | None = None, seed: int | None = None) -> KoopmanFingerprint:
        """The ``kind="trajectory"`` :class:`~koopscope.KoopmanFingerprint` of the fitted spectrum.

        Parameters
        ----------
        name : str, optional
            What was audited (default ``source["source"]`` or ``"trajectory"``).
        source : mapping, optional
            Provenance fields (``model_id``, ``revision``, ``source``, ...), see
            :func:`koopscope.fingerprint.from_trajectory`.
        n_boot, seed : int, optional
            Override the estimator's ``n_boot`` and ``seed`` for the bootstrap intervals.

        Returns
        -------
        KoopmanFingerprint
        """
        self._require_fitted("fingerprint")
        return from_trajectory(self.spectrum_, self._X, self._Y, name=name, source=source,
                               n_boot=self.n_boot if n_boot is None else n_boot, level=self.level,
                               seed=self.seed if seed is None else seed)

