"""ks.profile: per-layer features against independent numpy, trust flags, determinism, aggregates, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import koopscope as ks
from koopscope.errors import DataError, ParameterError
from koopscope.profile import SMALL_UPDATE, aggregate
from koopscope.spectral.nonnormality import (
    biorthogonal_condition,
    eigenvector_condition,
    kreiss_constant,
    resolvent_ratio,
)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def tiny_gpt2(seed: int = 0, n_layer: int = 3, width: int = 32) -> object:
    config = transformers.GPT2Config(n_layer=n_layer, n_embd=width, n_head=4, vocab_size=128, n_positions=64,
                                     bos_token_id=None, eos_token_id=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transformers.GPT2Model(config).eval()


@pytest.fixture(scope="module")
def states() -> ks.capture.ResidualStates:
    tokens = ks.capture.random_tokens(8, 64, 128, seed=0)
    return ks.capture(tiny_gpt2(), tokens, max_tokens=400, seed=0)


def numpy_reference(X: np.ndarray, Y: np.ndarray, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """RKSP §1.4–1.5 written out: explicit ZCA whitening by X's covariance, pseudo-inverse, eigvals."""
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)  # (N, D)
    sigma = Xc.T @ Xc / (X.shape[0] - 1) + eps * np.eye(X.shape[1])  # (D, D)
    s, U = np.linalg.eigh(sigma)
    W = U @ np.diag(s ** -0.5) @ U.T  # Σ^{-1/2}, symmetric
    Xw, Yw = Xc @ W, Yc @ W  # rows: whitened snapshots
    A = (np.linalg.pinv(Xw) @ Yw).T  # (D, D): Ỹ ≈ X̃ Âᵀ
    lam, V = np.linalg.eig(A)
    return lam, V


def _sorted(lam: np.ndarray) -> np.ndarray:
    return lam[np.lexsort((np.round(lam.imag, 9), np.round(np.abs(lam), 9)))]


def test_per_layer_features_match_an_independent_numpy_computation(states) -> None:
    prof = ks.profile(states)
    assert [lp.index for lp in prof.layers] == [0, 1, 2]
    for lp, (X, Y) in zip(prof.layers, prof.pairs, strict=True):
        lam, V = numpy_reference(X, Y)
        # ε = 1e-5 enters the reference only through Σ + εI, whose similarity cancels in Â's eigenvalues up to
        # O(ε / s_min); the states here have s_min ~ 1e-2, so 1e-8 absolute is the right tolerance to ask.
        np.testing.assert_allclose(_sorted(lp.eigenvalues), _sorted(lam), atol=1e-8)
        r = np.abs(lam)
        assert lp.near_unit_mass == pytest.approx(np.mean((r >= 0.9) & (r <= 1.05)), abs=1e-12)
        assert lp.expansive_mass == pytest.approx(np.mean(r > 1.05), abs=1e-12)
        assert lp.contractive_mass == pytest.approx(np.mean(r < 0.8), abs=1e-12)
        assert lp.spectral_radius == pytest.approx(r.max(), abs=1e-8)
        assert lp.kappa == pytest.approx(eigenvector_condition(V), rel=1e-6)
        update = np.linalg.norm(Y.astype(np.float64) - X) / np.linalg.norm(X.astype(np.float64))
        assert lp.relative_update == pytest.approx(update, rel=1e-6)


def test_eta_nl_matches_its_definition(states) -> None:
    prof = ks.profile(states)
    X, Y = (a.astype(np.float64) for a in prof.pairs[1])
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    sigma = Xc.T @ Xc / (X.shape[0] - 1) + 1e-5 * np.eye(X.shape[1])
    s, U = np.linalg.eigh(sigma)
    W = U @ np.diag(s ** -0.5) @ U.T
    Xw, Yw = Xc @ W, Yc @ W
    A = (np.linalg.pinv(Xw) @ Yw).T
    eta = np.linalg.norm(Yw - Xw @ A.T) / np.linalg.norm(Yw - Xw)
    assert prof.layers[1].eta_nl == pytest.approx(eta, rel=1e-6)
    assert prof.layers[1].relative_update_whitened == pytest.approx(
        np.linalg.norm(Yw - Xw) / np.linalg.norm(Xw), rel=1e-6)


def test_kreiss_constant_against_dense_brute_force() -> None:
    A = np.array([[0.8, 3.0, 0.0], [0.0, 0.85, 2.0], [0.0, 0.0, 0.7]])  # strongly non-normal, ρ = 0.85
    theta = np.linspace(-np.pi, np.pi, 721)
    t = np.geomspace(1e-6, 10, 2000)
    brute = resolvent_ratio(A, ((1 + t)[None, :] * np.exp(1j * theta)[:, None]).ravel()).max()
    assert kreiss_constant(A) == pytest.approx(brute, rel=1e-4)
    assert kreiss_constant(A) >= brute * (1 - 1e-9)  # the optimiser never does worse than the dense grid
    assert kreiss_constant(np.diag([1.2, 0.5])) == np.inf
    assert kreiss_constant(np.diag([0.99, -0.5])) == 1.0  # normal contraction


@pytest.mark.parametrize("d", [60, 300])
def test_kappa_from_left_and_right_eigenvectors_matches_the_dense_svd(d: int) -> None:
    # d = 300 takes the Lanczos route (certified to 1e-12 by its residual bound), d = 60 the dense one; a
    # non-normal operator (upper-triangular coupling), a real-complex mix of eigenvalues, κ(V) in the hundreds.
    rng = np.random.default_rng(d)
    A = rng.standard_normal((d, d)) / np.sqrt(d) + np.triu(rng.standard_normal((d, d)), 1) / d
    lam, V = np.linalg.eig(A)
    U = np.linalg.inv(V).conj().T  # left eigenvectors: columns u_j with u_jᴴ A = λ_j u_jᴴ
    dense = eigenvector_condition(V)
    assert 10 < dense < 1e8 and np.iscomplexobj(V)
    assert biorthogonal_condition(V, U * rng.uniform(0.5, 2.0, d)) == pytest.approx(dense, rel=1e-9)
    # Two eigenvectors 1e-14 apart: κ(V) ~ 1e14 is past 1 / (ε·d), so numerically defective on both routes.
    V[:, 1] = V[:, 0] + 1e-14 * V[:, 1]
    V /= np.linalg.norm(V, axis=0)
    assert eigenvector_condition(V) == np.inf
    assert biorthogonal_condition(V, np.linalg.inv(V).conj().T) == np.inf


def test_kreiss_of_a_restriction_is_a_lower_bound() -> None:
    rng = np.random.default_rng(3)
    A = rng.standard_normal((12, 12)) / 4
    A *= 0.95 / np.abs(np.linalg.eigvals(A)).max()
    full = kreiss_constant(A)
    assert kreiss_constant(A, max_dim=12) == pytest.approx(full, rel=1e-9)
    assert kreiss_constant(A, max_dim=4) <= full * (1 + 1e-6)


def test_zero_initialised_residual_branches_abstain() -> None:
    model = tiny_gpt2(seed=1)
    with torch.no_grad():
        for block in model.h:  # every residual branch ends in a c_proj: zero it and the block is the identity
            for proj in (block.attn.c_proj, block.mlp.c_proj):
                proj.weight.zero_()
                proj.bias.zero_()
    prof = ks.profile(model, ks.capture.random_tokens(8, 64, 128, seed=0), max_tokens=400)
    assert all(lp.relative_update == 0.0 for lp in prof.layers)
    assert {f["code"] for f in prof.flags} >= {"small_update"}
    assert not prof.trusted and "abstain" in prof.verdict
    assert "measures how small the update is, not stability" in prof.verdict
    fp = prof.fingerprint(n_boot=5)
    assert ks.gate.AbstainGate(1.5, statistic="risk").decide(fp).verdict == "abstain"


def test_normal_updates_are_not_flagged(states) -> None:
    prof = ks.profile(states)
    assert all(lp.relative_update > SMALL_UPDATE for lp in prof.layers)
    assert "small_update" not in {f["code"] for f in prof.flags}


def test_few_tokens_is_a_warning_with_the_required_n() -> None:
    tokens = ks.capture.random_tokens(1, 40, 128, seed=0)
    prof = ks.profile(tiny_gpt2(), tokens, max_tokens=40)  # 40 tokens for width 32: 2·D = 64 needed
    few = [f for f in prof.flags if f["code"] == "few_pairs"]
    assert len(few) == 3 and "at least 2·D = 64 pairs are needed" in few[0]["message"]


def test_profiles_are_deterministic_for_a_seed() -> None:
    tokens = ks.capture.random_tokens(8, 64, 128, seed=0)
    a = ks.profile(tiny_gpt2(), tokens, max_tokens=300, seed=4)
    b = ks.profile(tiny_gpt2(), tokens, max_tokens=300, seed=4)
    assert [lp.features for lp in a.layers] == [lp.features for lp in b.layers]
    c = ks.profile(tiny_gpt2(), tokens, max_tokens=300, seed=5)  # another token sample
    assert [lp.features for lp in a.layers] != [lp.features for lp in c.layers]
    ta, tb = (p.fingerprint(n_boot=5).document for p in (a, b))
    for doc in (ta, tb):
        doc["provenance"].pop("created_at")
    assert ta == tb


def test_summary_aggregates_and_risk(states) -> None:
    prof = ks.profile(states)
    masses = [lp.near_unit_mass for lp in prof.layers]
    s = prof.summary["near_unit_mass"]
    assert s["mean"] == pytest.approx(np.mean(masses)) and s["max"] == max(masses) and s["min"] == min(masses)
    assert s["std"] == pytest.approx(np.std(masses))
    assert (s["early"], s["middle"], s["late"]) == tuple(masses)  # three layers: one per third
    assert prof.risk == pytest.approx(np.mean(masses)) and not prof.calibrated
    assert aggregate([1.0, None, float("inf"), 3.0])["mean"] == 2.0


def test_calibration_turns_risk_into_a_probability(states) -> None:
    class Halve:
        def predict_proba(self, features, lr=None):
            return 0.5 * features["near_unit_mass"] + (0.1 if lr else 0.0)

    prof = ks.profile(states, calibration=Halve(), lr=1e-3)
    assert prof.calibrated and prof.risk == pytest.approx(0.5 * prof.summary["near_unit_mass"]["mean"] + 0.1)
    assert "calibrated" in prof.verdict


def test_rank_r_profile_keeps_the_dominant_eigenvalues(states) -> None:
    full = ks.profile(states)
    low = ks.profile(states, rank=8)
    for a, b in zip(full.layers, low.layers, strict=True):
        assert b.eigenvalues.size == 8 and b.eta_nl is None
        assert b.spectral_radius == pytest.approx(a.spectral_radius, rel=0.15)


def test_fingerprint_of_a_profile(states) -> None:
    prof = ks.profile(states)
    fp = prof.fingerprint(n_boot=10)
    doc = fp.document
    assert fp.kind == "model" and len(doc["layers"]) == 3
    assert doc["layers"][0]["features"]["kappa"] == pytest.approx(prof.layers[0].kappa, rel=1e-9)
    assert doc["features"]["eta_nl"] == pytest.approx(prof.summary["eta_nl"]["mean"], rel=1e-9)
    assert fp.risk == pytest.approx(prof.risk, rel=1e-9)


# -- bad input ---------------------------------------------------------------------------------------------------

def test_non_finite_states_are_an_error() -> None:
    h = np.random.default_rng(0).standard_normal((100, 4))
    bad = h.copy()
    bad[7, 2] = np.inf
    with pytest.raises(DataError, match=r"State 1 passed to profile contains 1 NaN/Inf value\(s\), the first at row 7"):
        ks.profile([h, bad])


@pytest.mark.parametrize(("states", "kwargs", "error", "match"), [
    ([np.ones((10, 3)), np.ones((9, 3))], {}, DataError, r"State 1 passed to profile has shape \(9, 3\)"),
    ([np.ones((10, 3))], {}, DataError, "with no two consecutive"),
    ([np.eye(4)[:3], np.eye(4)[:3]], {"rank": 0}, ParameterError, "rank"),
    ([np.eye(4)[:3], np.eye(4)[:3]], {"lr": -1.0}, ParameterError, "lr"),
])
def test_bad_arguments(states, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        ks.profile(states, **kwargs)


def _whitened_rank_r_reference(X: np.ndarray, Y: np.ndarray, r: int, eps: float = 1e-5) -> np.ndarray:
    """Straightforward rank-r whitened DMD: explicit ZCA whitening, a dense SVD of the whitened snapshots, the top r
    right singular vectors, least squares; eigenvalues."""
    N, _ = X.shape
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    w, U = np.linalg.eigh(Xc.T @ Xc / (N - 1) + eps * np.eye(X.shape[1]))
    W = U @ np.diag(w**-0.5) @ U.T
    V = np.linalg.svd(Xc @ W, full_matrices=False)[2][:r].T
    K = np.linalg.lstsq(Xc @ W @ V, Yc @ W @ V, rcond=None)[0].T
    return np.linalg.eigvals(K)


def test_rank_r_whitened_dmd_finds_the_planted_principal_subspace() -> None:
    # Whitening flattens the snapshots' spectrum to 1 − ε/μ: a sketch of the whitened snapshots cannot see the top
    # r directions (both rank-r routes returned eigenvalues off by ~5 here); the sketch of CᵀC and the exact
    # principal directions of ks.dmd.whitened must match the dense reference.
    from koopscope.dmd.whitened import whitened_sketch

    rng = np.random.default_rng(0)
    N, D, r = 2000, 120, 10
    X = rng.standard_normal((N, D)) * np.concatenate([np.linspace(3, 2, r), np.full(D - r, 0.05)])
    Y = 0.9 * X @ (rng.standard_normal((D, D)) / np.sqrt(D)).T + 0.01 * rng.standard_normal((N, D))
    sketch = whitened_sketch(X, Y, rank=r)
    # A gap μ_r/μ_{r+1} = 1600 and 3 subspace iterations: the subspace is exact to rounding.
    reference = _sorted(_whitened_rank_r_reference(X, Y, r))
    np.testing.assert_allclose(_sorted(sketch.eigenvalues), reference, atol=1e-7)
    np.testing.assert_allclose(_sorted(ks.dmd.whitened(X, Y, rank=r).eigenvalues), reference, atol=1e-9)
    assert np.allclose(sketch.singular_values, np.sqrt((N - 1) * (1 - 1e-5 / np.linalg.eigvalsh(
        np.cov(X.T))[::-1][:r])), rtol=1e-10)


def test_a_model_without_inputs() -> None:
    with pytest.raises(ParameterError, match="inputs=None passed to profile with a model"):
        ks.profile(tiny_gpt2())


def test_whitened_sketch_at_full_width_equals_full_rank_whitened_dmd() -> None:
    from koopscope.dmd.whitened import whitened_sketch

    rng = np.random.default_rng(5)
    X = rng.standard_normal((500, 12)) @ rng.standard_normal((12, 12))  # correlated states
    A = rng.standard_normal((12, 12)) / 4
    Y = X @ A.T + 0.01 * rng.standard_normal((500, 12))
    full = ks.dmd.whitened(X, Y)
    sketch = whitened_sketch(X, Y, rank=12)  # the range finder spans every direction: exact up to rounding
    np.testing.assert_allclose(_sorted(sketch.eigenvalues), _sorted(full.eigenvalues), atol=1e-9)
    np.testing.assert_allclose(np.sort(sketch.residuals), np.sort(full.residuals), atol=1e-8)
    low = whitened_sketch(X, Y, rank=6, seed=1)
    assert low.eigenvalues.size == 6 and low.options["path"] == "cholesky-sketch"
