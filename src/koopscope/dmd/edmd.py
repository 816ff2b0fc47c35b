"""Extended DMD (Williams, Kevrekidis & Rowley 2015): exact DMD of lifted snapshots.

A dictionary ψ: R^D → R^n lifts each snapshot to n observables, Ψ_X = ψ(X), Ψ_Y = ψ(Y) of shape
(N, n), and EDMD is exact DMD of the lifted pairs (no centring): the least-squares Koopman matrix
K = G⁺ A with G = Ψ_X^T Ψ_X / N and A = Ψ_X^T Ψ_Y / N, here computed in the POD basis of Ψ_X by the
shared projected pipeline (:func:`koopscope.dmd.exact.fit_projected`), with the ResDMD residual of
every eigenpair (Colbrook & Townsend 2024). Its left eigenvectors are the coefficients ξ_j of the
Koopman eigenfunctions in the dictionary, φ_j(x) = ψ(x) · ξ_j, stored as ``spec.eigenfunctions``
(n, k).

Two dictionaries are built in:

- ``"rbf"``: the constant 1, the state coordinates x_1..x_D, then m Gaussians
  exp(-||x - c_i||² / (2σ²)) on centres c_i. The constant and linear functions are included so
  that linear dynamics are represented exactly (eigenvalue 1 of the constant, the DMD eigenvalues of
  the linear coordinates) and so that the state lies in the dictionary's span, which is what Koopman
  modes of the state need. Centres are k-means centroids of the rows of X (``"kmeans"``, k-means++
  seeding) or rows of X sampled without replacement (``"sample"``); both are seeded. The default
  bandwidth σ is the median heuristic: the median Euclidean distance between the rows of X and the
  centres.
- ``"poly"``: all monomials of total degree ≤ ``degree`` in the D coordinates, the constant first,
  by increasing total degree, and within a degree in the order of
  ``itertools.combinations_with_replacement(range(D), d)`` (for D = 2, degree 2: 1, x1, x2, x1²,
  x1 x2, x2²). There are C(D + degree, degree) of them; more than 5000 is refused.

Koopman modes of the state replace the dictionary-coordinate modes of the pipeline: regressing the
state on the dictionary, X ≈ Ψ_X B with B = Ψ_X⁺ X (n, D), and writing ψ = Φ Ξ⁺ with Ξ (n, k) the
eigenfunction coefficients, gives x ≈ Σ_j φ_j(x) v_j with modes V = (Ξ⁺ B)^T (D, k). These modes
are not rescaled to unit norm: their scale is tied to the eigenfunctions' (unit-norm coefficient
vectors ξ_j), and an eigenfunction that does not contribute to the state gets a mode near zero. The
amplitudes are the eigenfunctions at the first snapshot, b_j = φ_j(x_0), so that
x_0 ≈ Σ_j b_j v_j.

EDMD runs on numpy: torch tensors are copied to the CPU as float64 arrays.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
import scipy.cluster.vq as vq
from scipy.spatial.distance import cdist

from koopscope._backend import Array, backend_of
from koopscope._validation import (
    Interval,
    Options,
    check_pairs,
    check_param,
    check_rank,
    check_seed,
)
from koopscope.dmd.exact import check_common, fit_projected
from koopscope.dmd.pod import check_solver_options
from koopscope.dmd.spectrum import RESIDUAL_THRESHOLD, Spectrum
from koopscope.errors import DataError, ParameterError

__all__ = [
    "MAX_MONOMIALS",
    "Dictionary",
    "edmd",
    "edmd_dictionary",
    "koopman_modes",
    "median_bandwidth",
    "monomial_exponents",
    "poly_dictionary",
    "rbf_dictionary",
    "select_centers",
]

MAX_MONOMIALS = 5000  # largest polynomial dictionary built (a 5000 x 5000 Gram matrix is 200 MB)


# --- dictionaries -----------------------------------------------------------------------------


def monomial_exponents(n_inputs: int, degree: int) -> list[tuple[int, ...]]:
    """The monomials of total degree ≤ ``degree`` in ``n_inputs`` variables, as index tuples.

    ``()`` is the constant; ``(0, 0, 1)`` is x_0² x_1. Ordered by total degree, then as
    ``itertools.combinations_with_replacement`` lists them.
    """
    return [c for d in range(degree + 1)
            for c in itertools.combinations_with_replacement(range(n_inputs), d)]


def poly_dictionary(X: np.ndarray, degree: int) -> np.ndarray:
    """Monomials of total degree ≤ ``degree`` of the rows of X (N, D): (N, C(D + degree, degree)).

    Columns follow :func:`monomial_exponents`, the constant first; each monomial is its prefix
    monomial times one coordinate, so the whole dictionary costs one product per column.
    """
    N, D = X.shape
    columns: dict[tuple[int, ...], np.ndarray] = {(): np.ones(N)}
    for combo in monomial_exponents(D, degree)[1:]:
        columns[combo] = columns[combo[:-1]] * X[:, combo[-1]]  # (N,) prefix times a variable
    return np.column_stack(list(columns.values()))  # (N, n); dicts keep insertion order


def rbf_dictionary(X: np.ndarray, centers: np.ndarray, bandwidth: float) -> np.ndarray:
    """[1, x, exp(-||x - c_i||² / (2σ²))] on the rows of X (N, D), centres (m, D); (N, 1 + D + m).

    The Gaussians follow the constant and the D state coordinates.
    """
    sq = cdist(X, centers, "sqeuclidean")  # (N, m)
    gauss = np.exp(-sq / (2.0 * bandwidth**2))  # (N, m)
    return np.hstack([np.ones((X.shape[0], 1)), X, gauss])  # (N, 1 + D + m)


def median_bandwidth(X: np.ndarray, centers: np.ndarray) -> float:
    """Median heuristic σ: the median Euclidean distance between the rows of X (N, D) and centres.

    Computed over all N x m row-centre pairs (a sampled centre contributes its zero self-distance).
    """
    return float(np.median(cdist(X, centers)))  # median over the (N, m) distances


def select_centers(X: np.ndarray, n_centers: int, how: str, seed: int) -> np.ndarray:
    """``n_centers`` RBF centres (m, D) from the rows of X: k-means centroids or sampled rows.

    ``"kmeans"`` runs :func:`scipy.cluster.vq.kmeans2` with k-means++ seeding from
    ``numpy.random.default_rng(seed)``; a cluster that empties keeps its previous centroid.
    ``"sample"`` takes distinct rows chosen with ``default_rng(seed).choice(N, m, replace=False)``.
    """
    rng = np.random.default_rng(seed)
    if how == "sample":
        return X[np.sort(rng.choice(X.shape[0], size=n_centers, replace=False))]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="One of the clusters is empty")
        # `seed=` takes a Generator on every supported SciPy (>= 1.11); `rng=` only exists from 1.15
        centroids, _ = vq.kmeans2(X, n_centers, minit="++", seed=rng)
    return np.asarray(centroids, dtype=np.float64)  # (m, D)


@dataclass(frozen=True, eq=False)
class Dictionary:
    """What is needed to evaluate the EDMD dictionary ψ on new points: ``psi(X) -> (N, n)``.

    Attributes
    ----------
    kind : {"rbf", "poly"}
    n_inputs : int
        D, the state dimension the dictionary expects.
    centers : ndarray of shape (m, D) or None
        RBF centres (``"rbf"`` only).
    bandwidth : float or None
        RBF width σ (``"rbf"`` only).
    degree : int or None
        Largest total degree (``"poly"`` only).

    Examples
    --------
    Evaluate the Koopman eigenfunctions of a fitted spectrum on new points X (N, D):

    >>> psi = spec.options["dictionary"]  # doctest: +SKIP
    >>> phi = psi(X) @ spec.eigenfunctions  # (N, k)  # doctest: +SKIP
    """

    kind: str
    n_inputs: int
    centers: np.ndarray | None = None
    bandwidth: float | None = None
    degree: int | None = None

    def __post_init__(self) -> None:
        if self.centers is not None:
            centers = np.array(self.centers, dtype=np.float64, copy=True)
            centers.setflags(write=False)
            object.__setattr__(self, "centers", centers)

    @property
    def size(self) -> int:
        """n, the number of dictionary functions."""
        if self.kind == "poly":
            return math.comb(self.n_inputs + self.degree, self.degree)  # type: ignore[operator]
        return 1 + self.n_inputs + self.centers.shape[0]  # type: ignore[union-attr]

    def __call__(self, X: Array) -> np.ndarray:
        """ψ on the rows of X (N, D), a numpy array or torch tensor; returns (N, n) float64."""
        Xn = np.asarray(backend_of(X).to_numpy(X), dtype=np.float64)
        if Xn.ndim != 2 or Xn.shape[1] != self.n_inputs:
            raise DataError(f"X passed to the EDMD dictionary has shape {Xn.shape}; expected "
                            f"(N, {self.n_inputs}) with one snapshot per row: reshape a single "
                            "point with x.reshape(1, -1).")
        if self.kind == "poly":
            return poly_dictionary(Xn, self.degree)  # type: ignore[arg-type]
        return rbf_dictionary(Xn, self.centers, self.bandwidth)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        if self.kind == "poly":
            detail = f"degree={self.degree}"
        else:
            detail = f"n_centers={self.centers.shape[0]}, bandwidth={self.bandwidth:.6g}"  # type: ignore[union-attr]
        return (f"Dictionary(kind={self.kind!r}, n_inputs={self.n_inputs}, {detail}, "
                f"size={self.size})")


def _check_dictionary_options(dictionary: object, n_centers: object, centers: object,
                              bandwidth: object, degree: object, caller: str) -> None:
    check_param("dictionary", dictionary, Options(("rbf", "poly")), caller=caller,
                fix="'rbf' is Gaussians with the constant and linear functions, 'poly' monomials")
    check_param("n_centers", n_centers, Interval(int, 1, None), caller=caller,
                fix="give the number of Gaussian centres, e.g. 64")
    check_param("centers", centers, Options(("kmeans", "sample")), caller=caller,
                fix="'kmeans' places centres by k-means, 'sample' on random snapshots")
    check_param("bandwidth", bandwidth, Interval(float, 0.0, None, closed="neither"), None,
                caller=caller, fix="None uses the median distance between the data and the centres")
    check_param("degree", degree, Interval(int, 1, None), caller=caller,
                fix="give the largest total degree of the monomials, e.g. 3")


def _build_dictionary(X: np.ndarray, dictionary: str, n_centers: int, centers: str,
                      bandwidth: float | None, degree: int, seed: int, caller: str) -> Dictionary:
    """The dictionary for the rows of X (N, D), after the options have been validated."""
    N, D = X.shape
    if dictionary == "poly":
        n = math.comb(D + degree, degree)
        if n > MAX_MONOMIALS:
            raise ParameterError(f"The 'degree' parameter of {caller} is {degree}, which gives "
                                 f"C(D + degree, degree) = {n} monomials for D = {D} state "
                                 f"coordinates, more than the limit of {MAX_MONOMIALS}: lower the "
                                 "degree or use dictionary='rbf'.")
        return Dictionary("poly", D, degree=degree)
    if n_centers > N:
        raise ParameterError(f"The 'n_centers' parameter of {caller} is {n_centers}, more than "
                             f"the N = {N} snapshots the centres are chosen from; lower n_centers "
                             "to at most N or pass more snapshots.")
    C = select_centers(X, n_centers, centers, seed)  # (m, D)
    sigma = median_bandwidth(X, C) if bandwidth is None else float(bandwidth)
    if not (math.isfinite(sigma) and sigma > 0.0):
        raise DataError(f"The median-heuristic bandwidth of {caller} is {sigma!r} because most "
                        "snapshots coincide with the centres; pass bandwidth explicitly, e.g. "
                        "bandwidth=1.0.")
    return Dictionary("rbf", D, centers=C, bandwidth=sigma)


def edmd_dictionary(X: Array, *, dictionary: str = "rbf", n_centers: int = 64,
                    centers: str = "kmeans", bandwidth: float | None = None, degree: int = 3,
                    seed: int = 0) -> Dictionary:
    """Build the EDMD dictionary that :func:`edmd` would use for the snapshots X (N, D).

    Parameters are those of :func:`edmd`; RBF centres and the median bandwidth come from the rows of
    X. Returns a :class:`Dictionary`, callable on new points.
    """
    _check_dictionary_options(dictionary, n_centers, centers, bandwidth, degree, "edmd_dictionary")
    seed = check_seed(seed, "edmd_dictionary")
    Xn = np.asarray(backend_of(X).to_numpy(X), dtype=np.float64)
    if Xn.ndim != 2:
        raise DataError(f"X passed to edmd_dictionary must be a 2-D array of shape (N, D); got "
                        f"shape {Xn.shape}: for a scalar series pass X.reshape(-1, 1).")
    return _build_dictionary(Xn, dictionary, n_centers, centers, bandwidth, degree, seed,
                             "edmd_dictionary")


# --- Koopman modes ----------------------------------------------------------------------------


def koopman_modes(psi_x: np.ndarray, X: np.ndarray, eigenfunctions: np.ndarray) -> np.ndarray:
    """Koopman modes V (D, k) of the state with x ≈ Σ_j φ_j(x) v_j, φ_j(x) = ψ(x) · ξ_j.

    ``psi_x`` is Ψ_X (N, n), ``X`` the states (N, D), ``eigenfunctions`` Ξ (n, k). With B = Ψ_X⁺ X
    (the state regressed on the dictionary), V = (Ξ⁺ B)^T; Ξ⁺ = Ξ^{-1} when k = n.
    """
    B = np.linalg.lstsq(psi_x, X, rcond=None)[0]  # (n, D): X ≈ Ψ_X B
    W = np.linalg.lstsq(eigenfunctions, B.astype(np.complex128), rcond=None)[0]  # (k, D): Ξ W ≈ B
    return W.T  # (D, k)


# --- the kernel -------------------------------------------------------------------------------


def edmd(X: Array, Y: Array | None = None, *, dictionary: str = "rbf", n_centers: int = 64,
         centers: str = "kmeans", bandwidth: float | None = None, degree: int = 3,
         rank: int | str | None = None, energy: float | None = None, residuals: bool = True,
         holdout: float | None = None, residual_threshold: float = RESIDUAL_THRESHOLD,
         svd: str = "auto", seed: int = 0, oversampling: int = 10, power_iterations: int = 2,
         orientation: str = "check", reason: str = "method='edmd' requested") -> Spectrum:
    """Extended DMD of a trajectory X (T, D) or of pairs X, Y (N, D) in an RBF or poly dictionary.

    Parameters
    ----------
    dictionary : {"rbf", "poly"}, default="rbf"
        ``"rbf"``: [1, x, m Gaussians]; ``"poly"``: all monomials of total degree ≤ ``degree``
        (see the module docstring for the order).
    n_centers : int, default=64
        m, the number of Gaussian centres (``"rbf"``); at most the number of pairs N.
    centers : {"kmeans", "sample"}, default="kmeans"
        k-means centroids of the rows of X, or rows of X sampled without replacement (seeded).
    bandwidth : float > 0, optional
        Gaussian width σ; None takes the median distance between the rows of X and the centres.
    degree : int >= 1, default=3
        Largest total degree of the monomials (``"poly"``).
    rank, energy, residuals, holdout, residual_threshold, svd, oversampling, power_iterations
        As for :func:`koopscope.dmd.exact`, applied to the lifted snapshots Ψ_X, Ψ_Y (N, n).
    seed : int, default=0
        Seeds the centres, the holdout split and the randomized SVD.

    Returns
    -------
    Spectrum
        ``eigenfunctions`` (n, k) holds the coefficients ξ_j with φ_j(x) = ψ(x) · ξ_j (unit-norm
        columns); ``modes`` (D, k) the Koopman modes of the state, x ≈ Σ_j φ_j(x) v_j (not unit
        norm); ``amplitudes`` φ_j(x_0) at the first snapshot; ``options["dictionary"]`` the
        :class:`Dictionary` ψ; ``singular_values`` those of Ψ_X; ``rank`` the retained POD rank
        of Ψ_X.

    Examples
    --------
    >>> import numpy as np
    >>> from koopscope.dmd.edmd import edmd
    >>> X = np.random.default_rng(0).uniform(-1, 1, (500, 2)); J = np.array([[0.9, -0.1], [0, 0.8]])
    >>> spec = edmd(X, X @ J.T, dictionary="poly", degree=2)
    >>> spec.eigenvalues.real.round(10)
    array([1.  , 0.9 , 0.81, 0.8 , 0.72, 0.64])
    >>> phi = spec.options["dictionary"](X) @ spec.eigenfunctions  # (N, k) eigenfunction values
    """
    caller = "edmd"
    _check_dictionary_options(dictionary, n_centers, centers, bandwidth, degree, caller)
    check_rank(rank, energy, caller)
    check_common("projected", holdout, residual_threshold, caller)
    check_solver_options(svd, oversampling, power_iterations, caller)
    check_param("residuals", residuals, bool, caller=caller, fix="pass True or False")
    check_param("reason", reason, str, caller=caller, fix="pass a short sentence")
    seed = check_seed(seed, caller)
    Xa, Ya = check_pairs(X, Y, caller=caller, orientation=orientation)
    xp = backend_of(Xa)
    Xn, Yn = xp.to_numpy(Xa), xp.to_numpy(Ya)  # (N, D) float64 on the CPU
    psi = _build_dictionary(Xn, dictionary, n_centers, centers, bandwidth, degree, seed, caller)
    psi_x, psi_y = psi(Xn), psi(Yn)  # (N, n) each
    spec = fit_projected(
        psi_x, psi_y, method=caller, reason=reason, rank=rank, energy=energy, modes="projected",
        residuals=residuals, holdout=holdout, residual_threshold=residual_threshold, svd=svd,
        seed=seed, oversampling=oversampling, power_iterations=power_iterations, dictionary=psi,
    )
    xi = spec.eigenfunctions  # (n, k) eigenfunction coefficients in the dictionary
    modes = koopman_modes(psi_x, Xn, xi)  # (D, k)
    amplitudes = psi_x[0] @ xi  # (k,) φ_j(x_0)
    return replace(spec, modes=modes, amplitudes=amplitudes)
