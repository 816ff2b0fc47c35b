"""Weight edits used to test the spectrum guard: round-to-nearest quantisation and planted damage.

Every function takes one weight matrix W of shape (out, in) (``nn.Linear`` orientation, e.g.
:meth:`~koopscope.rmt.discovery.WeightMatrix.matrix`) and returns a **new** tensor of the same shape, dtype
and device; :func:`quantize_model` is the one in-place, model-level helper. Random edits draw from a seeded
CPU ``torch.Generator`` and move the draw to W's device, so the same seed gives the same edit on any device.

The damage models follow ``reference/anchors_rmt.md`` §3: a rank-1 spike is the BBP picture of a structured
edit (Benaych-Georges & Nadakuditi 2012), a scaled row is an outlier channel, and a corrupted group is one
bad quantisation group.
"""

from __future__ import annotations

import torch

from koopscope._validation import Interval, check_param, check_seed
from koopscope.errors import DataError, ParameterError
from koopscope.rmt.discovery import find_matrices

__all__ = ["corrupt_group", "plant_spike", "quantize_model", "quantize_rtn", "scale_row"]


def _check_matrix(W: object, caller: str) -> torch.Tensor:
    """W as a finite, non-empty, floating 2-D tensor, else a one-sentence :class:`DataError`."""
    if not isinstance(W, torch.Tensor):
        raise DataError(f"W passed to {caller} must be a torch.Tensor of shape (out, in); got {type(W).__name__}: "
                        "convert it with torch.as_tensor.")
    if W.dim() != 2:
        raise DataError(f"W passed to {caller} must be a 2-D (out, in) weight matrix; got a {W.dim()}-D tensor of "
                        f"shape {tuple(W.shape)}: pass one matrix, e.g. WeightMatrix.matrix().")
    if not W.is_floating_point():
        raise DataError(f"W passed to {caller} has dtype {W.dtype}; a weight matrix must be real floating point: "
                        "cast it with W.float().")
    if W.numel() == 0:
        raise DataError(f"W passed to {caller} is empty (shape {tuple(W.shape)}); pass a matrix with at least one "
                        "row and one column.")
    bad = ~torch.isfinite(W)
    count = int(bad.sum())
    if count:
        row, col = (int(i) for i in bad.nonzero()[0])
        raise DataError(f"W passed to {caller} contains {count} NaN/Inf value(s), the first at row {row}, column "
                        f"{col}; a weight matrix must be finite: reload the checkpoint or inspect that layer.")
    return W


def _compute_dtype(W: torch.Tensor) -> torch.dtype:
    """float64 stays float64; float32 and the half types are computed in float32."""
    return torch.float64 if W.dtype == torch.float64 else torch.float32


def _check_row(row: object, W: torch.Tensor, caller: str) -> int:
    check_param("row", row, Interval(int, 0, W.shape[0] - 1), caller=caller,
                fix=f"W has {W.shape[0]} rows (output channels), numbered from 0")
    return int(row)  # type: ignore[call-overload]


def _unit(n: int, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """A seeded uniformly random unit vector of length n, drawn on the CPU, on ``like``'s device and dtype."""
    x = torch.randn(n, generator=generator, dtype=torch.float64)  # (n,)
    return (x / torch.linalg.vector_norm(x)).to(device=like.device, dtype=like.dtype)


def _check_quantizer(bits: object, group_size: object, caller: str) -> None:
    check_param("bits", bits, Interval(int, 2, 8), caller=caller, fix="use 8 for int8 or 4 for int4")
    check_param("group_size", group_size, Interval(int, 1, None), None, caller=caller,
                fix="use None for one scale per output channel, or a divisor of the input dimension such as 128")


def _check_groups(n_in: int, group_size: int | None, what: str, caller: str) -> None:
    if group_size is not None and n_in % group_size:
        raise ParameterError(f"The 'group_size' parameter of {caller} is {group_size}, which does not divide the "
                             f"input dimension {n_in} of {what}; choose a divisor of {n_in} or group_size=None.")


def quantize_rtn(W: torch.Tensor, bits: int = 8, *, group_size: int | None = None) -> torch.Tensor:
    """Symmetric round-to-nearest quantisation of W (out, in), returned dequantised.

    Each row (output channel), or each contiguous group of ``group_size`` input columns within a row, gets
    one scale ``s = max|w| / q_max`` with ``q_max = 2^(b-1) - 1``; the codes are
    ``q = clamp(round(w / s), -2^(b-1), q_max)`` and the result is ``q s``. Hence ``|w - Q(w)| <= s / 2``
    elementwise, and the RMS error is about ``s / sqrt(12)``.

    Parameters
    ----------
    W : torch.Tensor of shape (out, in)
        Finite, floating point; any device.
    bits : int in [2, 8], default=8
    group_size : int, optional
        Columns per scale group; must divide ``in``. None: one scale per row.

    Returns
    -------
    torch.Tensor of shape (out, in)
        Same dtype and device as W. An all-zero row or group stays zero. Codes at ``±q_max`` map to exactly
        ``±max|w|`` (equal to ``q_max s`` in exact arithmetic), so the scale is reproduced exactly and
        ``Q(Q(W)) == Q(W)`` bit for bit (float64, float32, and bfloat16/float16 for bits <= 8).
    """
    W = _check_matrix(W, "quantize_rtn")
    _check_quantizer(bits, group_size, "quantize_rtn")
    out, n_in = W.shape
    _check_groups(n_in, group_size, f"W of shape {(out, n_in)}", "quantize_rtn")
    g = n_in if group_size is None else group_size
    q_max = 2 ** (bits - 1) - 1
    Wg = W.to(_compute_dtype(W)).reshape(out, n_in // g, g)  # (out, groups, g)
    amax = Wg.abs().amax(dim=-1, keepdim=True)  # (out, groups, 1)
    scale = torch.where(amax > 0, amax / q_max, torch.ones_like(amax))  # zero groups: any scale, codes are 0
    q = torch.clamp(torch.round(Wg / scale), -q_max - 1, q_max)  # (out, groups, g) integer codes
    Q = torch.where(q.abs() == q_max, q.sign() * amax, q * scale)  # (out, groups, g)
    return Q.reshape(out, n_in).to(W.dtype)


def quantize_model(model: torch.nn.Module, bits: int = 8, *, group_size: int | None = None,
                   embeddings: bool = False) -> torch.nn.Module:
    """Quantise every weight matrix of ``model`` with :func:`quantize_rtn`, **in place**, and return it.

    Matrices come from :func:`~koopscope.rmt.discovery.find_matrices` (fused blocks unsplit: the quantiser
    works row by row, so splitting changes nothing); tied storage is quantised once, through its canonical
    entry. Everything is validated before the first write (bits, group sizes against every matrix, finite
    weights), so a refused call leaves the model untouched. Callers that need the original keep a
    ``copy.deepcopy(model)``.
    """
    _check_quantizer(bits, group_size, "quantize_model")
    matrices = [wm for wm in find_matrices(model, embeddings=embeddings, split_fused=False) if wm.tied_to is None]
    for wm in matrices:
        _check_groups(wm.shape[1], group_size, wm.name, "quantize_model")
        _check_matrix(wm.matrix(), f"quantize_model (matrix {wm.name})")
    with torch.no_grad():
        for wm in matrices:
            M = wm.matrix()  # (out, in) view of the live parameter
            M.copy_(quantize_rtn(M, bits, group_size=group_size))
    return model


def plant_spike(W: torch.Tensor, strength: float, *, seed: int = 0) -> torch.Tensor:
    """W + θ σ_max(W) u vᵀ with seeded random unit vectors u (out,) and v (in,), θ = ``strength``.

    The added matrix is rank one with spectral norm θ σ_max(W). In the BBP picture it leaves the bulk
    once θ σ_max exceeds the noise edge by the factor c^{1/4} (Benaych-Georges & Nadakuditi 2012).
    """
    W = _check_matrix(W, "plant_spike")
    check_param("strength", strength, Interval(float, 0.0, None), caller="plant_spike",
                fix="give the spike's norm as a finite multiple of sigma_max(W), e.g. 0.5")
    g = torch.Generator().manual_seed(check_seed(seed, "plant_spike"))
    Wc = W.to(_compute_dtype(W))  # (out, in)
    sigma = torch.linalg.matrix_norm(Wc, ord=2)
    if float(sigma) == 0.0:
        raise DataError("W passed to plant_spike is all zeros, so a spike relative to sigma_max(W) = 0 would add "
                        "nothing; plant it in a non-zero matrix or add strength * u v^T yourself.")
    u, v = _unit(W.shape[0], g, Wc), _unit(W.shape[1], g, Wc)  # (out,), (in,)
    return (Wc + (float(strength) * sigma) * torch.outer(u, v)).to(W.dtype)  # (out, in)


def scale_row(W: torch.Tensor, row: int, factor: float) -> torch.Tensor:
    """W with row ``row`` (one output channel) multiplied by ``factor``: an outlier channel."""
    W = _check_matrix(W, "scale_row")
    i = _check_row(row, W, "scale_row")
    check_param("factor", factor, Interval(float, None, None), caller="scale_row", fix="give a finite real number")
    out = W.clone()
    out[i] *= factor
    return out


def corrupt_group(W: torch.Tensor, row: int, start: int, size: int, *, scale: float = 10.0,
                  seed: int = 0) -> torch.Tensor:
    """W with ``W[row, start:start+size]`` replaced by seeded Gaussian noise of std ``scale`` × RMS(W[row]).

    A model of one bad quantisation group (a corrupted scale or codes).
    """
    W = _check_matrix(W, "corrupt_group")
    i = _check_row(row, W, "corrupt_group")
    n_in = W.shape[1]
    check_param("start", start, Interval(int, 0, n_in - 1), caller="corrupt_group",
                fix=f"W has {n_in} columns, numbered from 0")
    check_param("size", size, Interval(int, 1, n_in - start), caller="corrupt_group",
                fix=f"the group must fit in the row: at most {n_in} - start = {n_in - start} columns")
    check_param("scale", scale, Interval(float, 0.0, None, closed="neither"), caller="corrupt_group",
                fix="give the noise level as a positive multiple of the row's RMS, e.g. 10.0")
    g = torch.Generator().manual_seed(check_seed(seed, "corrupt_group"))
    rms = float(torch.sqrt(torch.mean(W[i].to(_compute_dtype(W)) ** 2)))
    if rms == 0.0:
        raise DataError(f"Row {i} of W passed to corrupt_group is all zeros, so noise at {scale} times its RMS would "
                        "be zero; pick a non-zero row.")
    noise = torch.randn(size, generator=g, dtype=torch.float64) * (float(scale) * rms)  # (size,)
    out = W.clone()
    out[i, start:start + size] = noise.to(device=W.device, dtype=W.dtype)
    return out
