"""Weight edits: RTN quantisation against planted codes and its error bounds, the model-level helper on tied
storage, and planted damage (rank-1 spike, scaled row, corrupted group) against exact expectations."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import koopscope.rmt.edits as edits  # noqa: E402
from koopscope.errors import DataError, ParameterError  # noqa: E402
from koopscope.rmt.discovery import find_matrices  # noqa: E402
from koopscope.rmt.edits import corrupt_group, plant_spike, quantize_model, quantize_rtn, scale_row  # noqa: E402
from tests.capture.models import tiny  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def gaussian(out: int = 64, n_in: int = 96, seed: int = 0, dtype: Any = None) -> Any:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(out, n_in, generator=g, dtype=torch.float64).to(dtype or torch.float64)


def steps(W: Any, bits: int, group_size: int | None) -> Any:
    """The RTN step s = max|w| / (2^(b-1) - 1) of every entry's row or group, computed independently (out, in)."""
    g = W.shape[1] if group_size is None else group_size
    amax = W.abs().reshape(W.shape[0], -1, g).amax(dim=-1, keepdim=True)  # (out, groups, 1)
    return (amax / (2 ** (bits - 1) - 1)).expand(-1, -1, g).reshape(W.shape)


# --- quantize_rtn -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("group_size", [None, 16])
def test_planted_codes_are_a_fixed_point(bits: int, group_size: int | None) -> None:
    # W = s * q with integer codes q in [-q_max, q_max], each row/group reaching ±q_max and power-of-two s:
    # every product is exact, so the quantiser must return W bit for bit.
    q_max = 2 ** (bits - 1) - 1
    g = torch.Generator().manual_seed(bits)
    codes = torch.randint(-q_max, q_max + 1, (32, 64), generator=g).double()
    codes[:, ::16] = q_max  # every group of 16 (and so every row) holds the extreme code
    scales = 2.0 ** torch.randint(-8, 3, (32, 1), generator=g).double()
    W = codes * scales
    assert torch.equal(quantize_rtn(W, bits, group_size=group_size), W)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("group_size", [None, 16])
def test_error_is_at_most_half_a_step_on_few_levels(bits: int, group_size: int | None) -> None:
    W = gaussian()
    Q = quantize_rtn(W, bits, group_size=group_size)
    s = steps(W, bits, group_size)
    # float64: |w - q s| <= s/2 up to the rounding of w/s and q s, a few 1e-16 relative to max|w| = q_max s
    assert ((W - Q).abs() <= s / 2 * (1 + 1e-12)).all()
    codes = Q / s
    assert torch.allclose(codes, codes.round(), rtol=0, atol=1e-9)  # integer multiples of the step
    assert int(codes.round().abs().max()) == 2 ** (bits - 1) - 1  # the extreme code is used
    for row in Q.reshape(-1, W.shape[1] if group_size is None else group_size):
        assert row.unique().numel() <= 2**bits - 1  # symmetric: codes -q_max..q_max


def test_float32_error_bound() -> None:
    W = gaussian(dtype=torch.float32)
    s = steps(W, 4, None)
    # float32 rounding of q s is at most 6e-8 * max|w| = 6e-8 * 7 s per entry: 1e-5 s covers it
    assert ((W - quantize_rtn(W, 4)).abs() <= s / 2 + 1e-5 * s).all()


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16", "float16"])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quantisation_is_idempotent_and_keeps_dtype(dtype: str, bits: int) -> None:
    W = gaussian(dtype=getattr(torch, dtype)) * 0.02
    for group_size in (None, 32):
        Q = quantize_rtn(W, bits, group_size=group_size)
        assert Q.dtype == W.dtype and Q.device == W.device and Q.shape == W.shape
        assert torch.equal(quantize_rtn(Q, bits, group_size=group_size), Q)


def test_int4_over_int8_error_ratio() -> None:
    # The RMS rounding error is s/sqrt(12) with s = max|w|/(2^(b-1)-1), so the int4/int8 ratio is 127/7 = 18.14
    # (2^4 = 16 only asymptotically in b). The uniform-error model is exact to e^{-2 pi^2 (sigma/s)^2} < 1e-30 here
    # (s <= sigma/2 for int4 on Gaussian rows), and each mean square over 131072 entries has relative sd
    # sqrt(0.8/131072) = 0.25%: 3% is > 8 sd of the ratio.
    W = gaussian(256, 512, seed=1)
    err = {b: float((W - quantize_rtn(W, b)).square().mean().sqrt()) for b in (4, 8)}
    assert err[4] / err[8] == pytest.approx(127 / 7, rel=0.03)
    assert abs(err[4] / err[8] - 16) > 1.5  # distinguishable from the naive 16


def test_groups_lower_the_error_on_heavy_tailed_weights() -> None:
    g = torch.Generator().manual_seed(2)
    z = torch.randn(128, 256, generator=g, dtype=torch.float64)
    chi2 = torch.randn(3, 128, 256, generator=g, dtype=torch.float64).square().sum(0)
    W = z / (chi2 / 3).sqrt()  # Student-t(3): a row's max is far above most of its groups' max
    s_row, s_group = steps(W, 4, None), steps(W, 4, 32)
    assert (s_group <= s_row).all()
    err_row = (W - quantize_rtn(W, 4)).abs()
    err_group = (W - quantize_rtn(W, 4, group_size=32)).abs()
    assert (err_group <= s_row / 2 * (1 + 1e-12)).all()  # the per-channel bound holds for groups too
    assert float(err_group.square().sum()) < 0.5 * float(err_row.square().sum())


def test_zero_rows_and_groups_stay_zero() -> None:
    W = gaussian(8, 64)
    W[3] = 0.0
    W[5, 16:32] = 0.0
    for group_size in (None, 16):
        Q = quantize_rtn(W, 4, group_size=group_size)
        assert torch.isfinite(Q).all() and (Q[3] == 0).all()
    assert (quantize_rtn(W, 4, group_size=16)[5, 16:32] == 0).all()
    assert (quantize_rtn(torch.zeros(4, 4), 8) == 0).all()


def test_input_is_not_modified() -> None:
    W = gaussian()
    before = W.clone()
    quantize_rtn(W, 2)
    plant_spike(W, 1.0)
    scale_row(W, 0, 3.0)
    corrupt_group(W, 0, 0, 8)
    assert torch.equal(W, before)


QUANTIZER_ERRORS = [
    ({"bits": 1}, "The 'bits' parameter of quantize_rtn must be an int in [2, 8]; got 1; use 8 for int8 or 4 for "
                  "int4."),
    ({"bits": 9}, "The 'bits' parameter of quantize_rtn must be an int in [2, 8]; got 9; use 8 for int8 or 4 for "
                  "int4."),
    ({"bits": 4.0}, "The 'bits' parameter of quantize_rtn must be an int in [2, 8]; got 4.0; use 8 for int8 or 4 "
                    "for int4."),
    ({"group_size": 0}, "The 'group_size' parameter of quantize_rtn must be an int in [1, inf) or None; got 0; use "
                        "None for one scale per output channel, or a divisor of the input dimension such as 128."),
    ({"group_size": 7}, "The 'group_size' parameter of quantize_rtn is 7, which does not divide the input dimension "
                        "96 of W of shape (64, 96); choose a divisor of 96 or group_size=None."),
]


@pytest.mark.parametrize(("kwargs", "message"), QUANTIZER_ERRORS)
def test_quantizer_parameter_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ParameterError) as err:
        quantize_rtn(gaussian(), **kwargs)
    assert str(err.value) == message


def _nan() -> Any:
    W = gaussian(4, 4)
    W[2, 1] = math.nan
    W[3, 0] = math.inf
    return W


DATA_ERRORS = [
    (_nan, "W passed to quantize_rtn contains 2 NaN/Inf value(s), the first at row 2, column 1; a weight matrix must "
           "be finite: reload the checkpoint or inspect that layer."),
    (lambda: torch.zeros(4), "W passed to quantize_rtn must be a 2-D (out, in) weight matrix; got a 1-D tensor of "
                             "shape (4,): pass one matrix, e.g. WeightMatrix.matrix()."),
    (lambda: torch.zeros(0, 4), "W passed to quantize_rtn is empty (shape (0, 4)); pass a matrix with at least one row "
                                "and one column."),
    (lambda: torch.zeros(2, 2, dtype=torch.int32), "W passed to quantize_rtn has dtype torch.int32; a weight matrix "
                                                   "must be real floating point: cast it with W.float()."),
    (lambda: [[1.0, 2.0]], "W passed to quantize_rtn must be a torch.Tensor of shape (out, in); got list: convert it "
                           "with torch.as_tensor."),
]


@pytest.mark.parametrize(("make", "message"), DATA_ERRORS)
def test_bad_matrices_are_refused(make: Any, message: str) -> None:
    with pytest.raises(DataError) as err:
        quantize_rtn(make())
    assert str(err.value) == message


# --- quantize_model -----------------------------------------------------------------------------------------------


def test_quantize_model_touches_tied_storage_once(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny("gpt2")
    original = copy.deepcopy(model)
    seen: list[int] = []
    real = edits.quantize_rtn

    def counting(W: Any, bits: int = 8, *, group_size: int | None = None) -> Any:
        seen.append(W.untyped_storage().data_ptr() + W.storage_offset() * W.element_size())
        return real(W, bits, group_size=group_size)

    monkeypatch.setattr(edits, "quantize_rtn", counting)
    assert quantize_model(model, 4, embeddings=True) is model
    assert len(seen) == len(set(seen)) == 14  # wte, wpe, 3 x 4 Conv1D; the tied lm_head is not a second edit
    assert seen.count(model.transformer.wte.weight.data_ptr()) == 1
    assert model.lm_head.weight is model.transformer.wte.weight
    # one quantisation of the shared table, per output channel of each (out, in) view: Conv1D columns, wte rows
    torch.testing.assert_close(model.transformer.wte.weight, real(original.transformer.wte.weight, 4), rtol=0, atol=0)
    for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
        new, old = model.get_submodule(f"transformer.h.1.{name}"), original.get_submodule(f"transformer.h.1.{name}")
        torch.testing.assert_close(new.weight.T, real(old.weight.T, 4), rtol=0, atol=0)
        assert torch.equal(new.bias, old.bias)  # biases are not matrices


def test_quantize_model_without_embeddings_leaves_them() -> None:
    model = tiny("gpt2")
    wte = model.transformer.wte.weight.detach().clone()
    c_fc = model.transformer.h[0].mlp.c_fc.weight.detach().clone()
    quantize_model(model, 8)
    assert torch.equal(model.transformer.wte.weight, wte)
    assert not torch.equal(model.transformer.h[0].mlp.c_fc.weight, c_fc)
    # at most 255 levels per output channel (a column of the stored (in, out) Conv1D weight)
    assert max(col.unique().numel() for col in model.transformer.h[0].mlp.c_fc.weight.T) <= 255


def test_quantize_model_checks_everything_before_editing() -> None:
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"a": torch.nn.Linear(64, 8), "b": torch.nn.Linear(48, 8)})
    a = model["a"].weight.detach().clone()
    with pytest.raises(ParameterError) as err:  # 32 divides a's 64 inputs but not b's 48
        quantize_model(model, 4, group_size=32)
    assert str(err.value) == ("The 'group_size' parameter of quantize_model is 32, which does not divide the input "
                              "dimension 48 of b.weight; choose a divisor of 48 or group_size=None.")
    assert torch.equal(model["a"].weight, a)  # a was not quantised before b was refused
    model = tiny("llama")
    with torch.no_grad():
        model.model.layers[2].mlp.down_proj.weight[0, 1] = math.nan
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(DataError) as err:
        quantize_model(model, 4)
    assert str(err.value) == ("W passed to quantize_model (matrix model.layers.2.mlp.down_proj.weight) contains 1 "
                              "NaN/Inf value(s), the first at row 0, column 1; a weight matrix must be finite: reload "
                              "the checkpoint or inspect that layer.")
    for key, value in model.state_dict().items():  # nothing was written
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, equal_nan=True, msg=key)
    with pytest.raises(ParameterError, match=r"^The 'bits' parameter of quantize_model must be an int in \[2, 8\]"):
        quantize_model(model, 16)


def test_quantize_model_quantises_every_discovered_matrix() -> None:
    model = tiny("llama")
    quantize_model(model, 3)
    for wm in find_matrices(model):
        M = wm.matrix()
        assert torch.equal(quantize_rtn(M, 3), M), wm.name  # a fixed point: already quantised


# --- planted damage -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strength", [0.1, 0.5, 3.0])
def test_plant_spike_adds_exactly_a_rank_one_matrix_of_the_right_norm(strength: float) -> None:
    W = gaussian()
    sigma = float(torch.linalg.svdvals(W)[0])
    s = torch.linalg.svdvals(plant_spike(W, strength, seed=4) - W)
    # float64 SVD: the nonzero value to ~1e-15 relative, the others at ~1e-15 * its size
    assert float(s[0]) == pytest.approx(strength * sigma, rel=1e-12)
    assert float(s[1]) < 1e-12 * float(s[0])
    top = float(torch.linalg.svdvals(plant_spike(W, strength, seed=4))[0])
    assert abs(strength - 1) * sigma - 1e-9 <= top <= (strength + 1) * sigma + 1e-9  # Weyl


def test_plant_spike_is_seeded_and_keeps_dtype() -> None:
    W = gaussian(dtype=torch.float32)
    a, b, c = plant_spike(W, 0.5, seed=1), plant_spike(W, 0.5, seed=1), plant_spike(W, 0.5, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c) and a.dtype == torch.float32
    assert torch.equal(plant_spike(W, 0.0), W)


def test_scale_row_scales_exactly_one_row() -> None:
    W = gaussian()
    out = scale_row(W, 5, 4.0)
    assert torch.equal(out[5], 4.0 * W[5])
    assert torch.equal(torch.cat([out[:5], out[6:]]), torch.cat([W[:5], W[6:]]))


def test_corrupt_group_replaces_one_group_with_seeded_noise() -> None:
    W = gaussian(8, 1024)
    out = corrupt_group(W, 2, 256, 512, scale=10.0, seed=7)
    changed = (out != W).nonzero().tolist()
    assert {r for r, _ in changed} == {2} and min(c for _, c in changed) >= 256 and max(c for _, c in changed) < 768
    rms = float(W[2].square().mean().sqrt())
    # sample sd of 512 Gaussians: relative se 1/sqrt(2*512) = 3.1%; 15% is ~5 se
    assert float(out[2, 256:768].std()) == pytest.approx(10.0 * rms, rel=0.15)
    assert torch.equal(out, corrupt_group(W, 2, 256, 512, scale=10.0, seed=7))
    assert not torch.equal(out, corrupt_group(W, 2, 256, 512, scale=10.0, seed=8))


DAMAGE_ERRORS = [
    (lambda W: plant_spike(W, math.nan), ParameterError,
     "The 'strength' parameter of plant_spike must be a float in [0, inf); got nan; give the spike's norm as a finite "
     "multiple of sigma_max(W), e.g. 0.5."),
    (lambda W: plant_spike(W, -1.0), ParameterError,
     "The 'strength' parameter of plant_spike must be a float in [0, inf); got -1.0; give the spike's norm as a "
     "finite multiple of sigma_max(W), e.g. 0.5."),
    (lambda W: plant_spike(W, 1.0, seed=-1), ParameterError,
     "The 'seed' parameter of plant_spike must be an int in [0, 9.22337e+18]; got -1; pass a non-negative int."),
    (lambda W: plant_spike(torch.zeros(3, 3), 1.0), DataError,
     "W passed to plant_spike is all zeros, so a spike relative to sigma_max(W) = 0 would add nothing; plant it in a "
     "non-zero matrix or add strength * u v^T yourself."),
    (lambda W: scale_row(W, 64, 2.0), ParameterError,
     "The 'row' parameter of scale_row must be an int in [0, 63]; got 64; W has 64 rows (output channels), "
     "numbered from 0."),
    (lambda W: scale_row(W, 0, math.inf), ParameterError,
     "The 'factor' parameter of scale_row must be a float in (-inf, inf); got inf; give a finite real number."),
    (lambda W: corrupt_group(W, 0, 90, 8), ParameterError,
     "The 'size' parameter of corrupt_group must be an int in [1, 6]; got 8; the group must fit in the row: at most "
     "96 - start = 6 columns."),
    (lambda W: corrupt_group(W, 0, 96, 1), ParameterError,
     "The 'start' parameter of corrupt_group must be an int in [0, 95]; got 96; W has 96 columns, numbered from 0."),
    (lambda W: corrupt_group(W, 0, 0, 4, scale=0.0), ParameterError,
     "The 'scale' parameter of corrupt_group must be a float in (0, inf); got 0.0; give the noise level as a positive "
     "multiple of the row's RMS, e.g. 10.0."),
    (lambda W: corrupt_group(torch.zeros(2, 4), 1, 0, 2), DataError,
     "Row 1 of W passed to corrupt_group is all zeros, so noise at 10.0 times its RMS would be zero; pick a non-zero "
     "row."),
    (lambda W: scale_row(W.float().fill_(math.nan), 0, 2.0), DataError,
     "W passed to scale_row contains 6144 NaN/Inf value(s), the first at row 0, column 0; a weight matrix must be "
     "finite: reload the checkpoint or inspect that layer."),
]


@pytest.mark.parametrize(("call", "kind", "message"), DAMAGE_ERRORS)
def test_damage_errors(call: Any, kind: type, message: str) -> None:
    with pytest.raises(kind) as err:
        call(gaussian())
    assert str(err.value) == message
