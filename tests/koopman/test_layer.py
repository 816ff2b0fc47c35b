"""KoopmanLayer and KoopmanBlock: the modes' definitions, seeding, bad input, the loss, and K's spectrum/fingerprint."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import koopscope as ks
from koopscope.errors import DataError, NotFittedError, ParameterError
from koopscope.koopman import (
    CausalBlock,
    KoopmanBlock,
    KoopmanLayer,
    koopman_loss,
    koopman_mode,
    prediction_loss,
    recording,
)
from tests.koopman.refusal import refused


def states(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# -- the layer -----------------------------------------------------------------------------------------------------

def test_reference_size_has_the_designs_parameter_count() -> None:
    layer = KoopmanLayer(64, 256)
    counts = {name: sum(p.numel() for p in part.parameters()) for name, part in (("phi", layer.phi),
                                                                                   ("psi", layer.psi))}
    assert counts == {"phi": 64 * 256 + 256 + 256 * 256 + 256, "psi": 256 * 256 + 256 + 256 * 64 + 64}
    assert sum(p.numel() for p in layer.parameters()) == 230_208  # "about 230K Koopman parameters per layer"


def test_modes_are_reconstruction_and_one_operator_step() -> None:
    layer = KoopmanLayer(6, 10)
    x = states(2, 5, 6)
    with torch.no_grad():
        z = layer.phi(x)  # (2, 5, 10)
        torch.testing.assert_close(layer(x), layer.psi(z))  # standard: ψ(φ(x)), zero steps of K
        torch.testing.assert_close(layer(x, mode="koopman"), layer.psi(z @ layer.K.T))  # ψ(K φ(x)) per row
        torch.testing.assert_close(layer(x[0], mode="koopman"), layer(x, mode="koopman")[0])  # (N, d) input too


def test_identity_operator_makes_the_modes_agree() -> None:
    layer = KoopmanLayer(4, 7)
    with torch.no_grad():
        layer.K.copy_(torch.eye(7))
    x = states(3, 4)
    torch.testing.assert_close(layer(x, mode="koopman"), layer(x, mode="standard"))


def test_initialisation_is_seeded_and_leaves_the_global_generator_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a, b, c = KoopmanLayer(4, 8, seed=5), KoopmanLayer(4, 8, seed=5), KoopmanLayer(4, 8, seed=6)
    assert torch.equal(torch.rand(3), expected)  # the global stream did not move
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.K, c.K)
    # K = I + 0.01·randn: its deviation from I has standard deviation 0.01 (64 draws: within 0.004 at > 4 sigma)
    assert abs(float((a.K.detach() - torch.eye(8)).std()) - 0.01) < 0.004


@pytest.mark.parametrize(("args", "message"), [
    ((8, 0), "The 'koopman_dim' parameter of KoopmanLayer must be an int in [1, inf); got 0; pass the lifted "
             "dimension k, e.g. 256 (the design's reference)."),
    ((8, 2.5), "The 'koopman_dim' parameter of KoopmanLayer must be an int in [1, inf); got 2.5; pass the lifted "
               "dimension k, e.g. 256 (the design's reference)."),
    ((0, 8), "The 'd_model' parameter of KoopmanLayer must be an int in [1, inf); got 0; pass the state width d."),
])
def test_bad_dimensions(args: tuple, message: str) -> None:
    refused(ParameterError, message, KoopmanLayer, *args)


def test_bad_inputs_and_modes() -> None:
    layer = KoopmanLayer(8, 4)
    with pytest.raises(DataError) as err:
        layer(states(2, 3, 5))
    assert str(err.value) == ("x passed to KoopmanLayer.forward must have shape (batch, seq, 8) or (N, 8); got "
                              "(2, 3, 5): the last dimension must be d_model = 8.")
    with pytest.raises(DataError, match=r"must have shape \(batch, seq, 8\) or \(N, 8\); got \(8,\)"):
        layer(states(8))
    with pytest.raises(DataError) as err:
        layer(torch.zeros(2, 8, dtype=torch.long))
    assert str(err.value) == ("x passed to KoopmanLayer.forward must be a floating-point torch tensor of shape "
                              "(batch, seq, 8); got a torch.int64 tensor: convert it with torch.as_tensor(x, "
                              "dtype=torch.float32).")
    with pytest.raises(DataError, match="got ndarray"):
        layer(np.zeros((2, 8)))
    with pytest.raises(ParameterError) as err:
        layer(states(2, 8), mode="fast")
    assert str(err.value) == ("The 'mode' parameter of KoopmanLayer.forward must be one of 'standard', 'koopman'; "
                              "got 'fast'; 'standard' runs the standard path, 'koopman' the lifted operator.")


# -- the block wrapper ---------------------------------------------------------------------------------------------

def wrapped(seed: int = 0) -> KoopmanBlock:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        block = CausalBlock(16, 2)
    return KoopmanBlock(block, 16, 12, seed=seed)


def test_block_standard_mode_is_the_wrapped_block_and_koopman_mode_the_residual_branch() -> None:
    kb = wrapped()
    h = states(2, 5, 16)
    with torch.no_grad():
        torch.testing.assert_close(kb(h), kb.block(h), rtol=0, atol=0)
        expected = h + kb.koopman.psi(kb.koopman.phi(kb.norm(h)) @ kb.koopman.K.T)
        torch.testing.assert_close(kb(h, mode="koopman"), expected)
        with koopman_mode(kb, "koopman"):
            assert kb.mode == "koopman"
            torch.testing.assert_close(kb(h), expected)
        assert kb.mode == "standard"  # restored


def test_recorded_terms_match_the_losses_of_the_lifted_pair() -> None:
    kb = wrapped()
    h = states(2, 5, 16)
    for mode in ("standard", "koopman"):
        with recording(kb) as blocks, torch.no_grad():
            assert blocks == [kb]
            kb(h, mode=mode)
        t = kb.terms
        assert t is not None and not kb.record
        with torch.no_grad():
            h_next = kb.block(h)  # in Koopman mode the block is the teacher
            phi_x, phi_y = kb.koopman.phi(kb.norm(h)), kb.koopman.phi(kb.norm(h_next))
            torch.testing.assert_close(t.phi_x, phi_x)
            torch.testing.assert_close(t.phi_y, phi_y)
            torch.testing.assert_close(t.linearity, ((phi_y - phi_x @ kb.koopman.K.T) ** 2).mean())
            predicted = h + kb.koopman.psi(phi_x @ kb.koopman.K.T)
            torch.testing.assert_close(t.prediction, ((predicted - h_next) ** 2).mean())


def test_terms_train_the_koopman_layer_not_the_block() -> None:
    kb = wrapped()
    h = states(2, 5, 16).requires_grad_(True)
    with recording(kb):
        kb(h)
    kb.terms.total.backward()
    assert all(p.grad is None for p in kb.block.parameters())
    assert h.grad is None
    assert all(p.grad is not None for p in kb.koopman.parameters())


def test_block_errors() -> None:
    with pytest.raises(ParameterError, match="The 'block' parameter of KoopmanBlock must be an instance of Module"):
        KoopmanBlock(lambda h: h, 16, 8)
    with pytest.raises(ParameterError, match="The 'mode' parameter of KoopmanBlock must be one of"):
        KoopmanBlock(nn.Identity(), 16, 8, mode="both")
    with pytest.raises(DataError, match=r"KoopmanBlock.forward must have shape \(batch, seq, 16\)"):
        wrapped()(states(2, 5, 15))


# -- the losses ----------------------------------------------------------------------------------------------------

def test_koopman_loss_is_the_mean_squared_linearity_error() -> None:
    gen = torch.Generator().manual_seed(0)
    zx, K = torch.randn(4, 3, 5, generator=gen), torch.randn(5, 5, generator=gen)
    zy = torch.randn(4, 3, 5, generator=gen)
    expected = np.mean([np.sum((zy[i, j].numpy() - K.numpy() @ zx[i, j].numpy()) ** 2)
                        for i in range(4) for j in range(3)]) / 5  # (1/(N k)) Σ ‖z' − K z‖², column form
    assert float(koopman_loss(zx, zy, K)) == pytest.approx(expected, rel=1e-5)  # float32 sums of 60 terms
    assert float(koopman_loss(zx, zx @ K.T, K)) == 0.0
    assert float(prediction_loss(torch.ones(2, 3), torch.zeros(2, 3))) == 1.0


def test_loss_shape_errors() -> None:
    with pytest.raises(DataError) as err:
        koopman_loss(torch.zeros(4, 3), torch.zeros(4, 2), torch.eye(3))
    assert str(err.value) == ("phi_x and phi_y passed to koopman_loss must have the same shape; got (4, 3) and "
                              "(4, 2): row i of phi_y must follow row i of phi_x.")
    with pytest.raises(DataError) as err:
        koopman_loss(torch.zeros(4, 3), torch.zeros(4, 3), torch.eye(4))
    assert str(err.value) == ("K passed to koopman_loss must be a square (3, 3) operator matching the lifted "
                              "dimension of phi_x (4, 3); got shape (4, 4).")


# -- visibility: K's spectrum and fingerprint ----------------------------------------------------------------------

def sorted_eigenvalues(A: np.ndarray) -> np.ndarray:
    lam = np.linalg.eigvals(A)
    return lam[np.lexsort((-lam.imag, -np.abs(lam)))]  # descending modulus, positive imaginary part first


def test_spectrum_eigenvalues_are_those_of_K() -> None:
    layer = KoopmanLayer(4, 16, seed=3)
    with torch.no_grad():
        layer.K.mul_(0.9).add_(0.2 * states(16, 16, seed=1))  # a K with complex eigenvalues
    spec = layer.spectrum()
    assert spec.residuals is None and spec.rank == 16
    assert np.iscomplex(spec.eigenvalues).any()
    # the same float64 matrix through LAPACK twice: agreement to rounding (1e-12 allows κ(λ) up to ~1e3)
    np.testing.assert_allclose(spec.eigenvalues, sorted_eigenvalues(layer.K.detach().double().numpy()), atol=1e-12)


def test_fingerprint_of_K_on_the_buffered_pairs_renders(tmp_path) -> None:
    layer = KoopmanLayer(4, 8, seed=0, capacity=64)
    with pytest.raises(NotFittedError, match="needs at least 2 buffered lifted pairs"):
        layer.fingerprint()
    with torch.no_grad():
        z = layer.lift(states(64, 4))
        layer.observe(z, z @ layer.K.T)  # pairs that K advances exactly: every residual is ~0
    fp = layer.fingerprint(name="K of block 0")
    eigs = np.array([complex(e["re"], e["im"]) for e in fp.document["eigenvalues"]])
    np.testing.assert_allclose(eigs, sorted_eigenvalues(layer.K.detach().double().numpy()), atol=1e-12)
    assert fp.spectral_radius == pytest.approx(np.abs(eigs).max(), rel=1e-12)
    assert fp.document["kernel"]["options"] == {"operator": "learned"}
    # the pairs were made in float32 from K itself: residuals at the float32 level (~1e-7), far below 0.1
    assert max(fp.document["residuals"]) < 1e-4
    flags = {f["code"] for f in fp.document["trust"]["flags"]}
    assert flags == {"no_interval"}  # n_boot=0 by default; 64 pairs >= 2·8, no spurious eigenvalue
    path = fp.to_html(tmp_path / "k.html")
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "K of block 0" in html
    fp.to_json(tmp_path / "k.json")
    assert ks.KoopmanFingerprint.from_json(tmp_path / "k.json").document["eigenvalues"] == fp.document["eigenvalues"]


def test_fingerprint_bootstrap_needs_k_pairs() -> None:
    layer = KoopmanLayer(4, 8, capacity=5)
    layer.observe(np.eye(8)[:5], np.eye(8)[:5])
    with pytest.raises(DataError) as err:
        layer.fingerprint(n_boot=10)
    assert str(err.value) == ("operator_fingerprint with n_boot=10 refits exact DMD at rank k = 8 on the 5 pairs, "
                              "which needs at least 8: buffer more pairs (a larger capacity) or pass n_boot=0.")


def test_missing_torch_names_the_install_line() -> None:
    code = ("import sys; sys.modules['torch'] = None\n"
            "import koopscope as ks\n"
            "try:\n    ks.koopman\nexcept ks.errors.MissingDependencyError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == ("koopscope.koopman needs torch, which is not installed; install it with `pip "
                                  'install -c constraints.txt -e ".[torch]"`.')
