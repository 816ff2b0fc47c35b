"""SpectralShaping: penalty from the user's own forward pass, schedule, skips, bad input, dtypes, wrappers."""

from __future__ import annotations

import logging

import pytest

import koopscope as ks
from koopscope.errors import CaptureError, ParameterError
from tests.shaping.models import map_batch, residual_mlp, tiny_gpt2

torch = pytest.importorskip("torch")

from koopscope.shaping import KSSConfig, guarded_eigvals, kss_loss, whitened_operator  # noqa: E402
from koopscope.shaping.schedule import Schedule  # noqa: E402

F = torch.nn.functional


def task_loss(net, x, y):
    return F.cross_entropy(net(x).reshape(-1, 32), y.reshape(-1))


class CountingNet(torch.nn.Module):
    """Counts forward passes of the wrapped model."""

    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, x):
        self.calls += 1
        return self.net(x)


def test_no_extra_forward_pass_and_zero_off_steps() -> None:
    net = residual_mlp(0, d=16, L=4)
    counted = CountingNet(net)
    shaping = ks.shaping.SpectralShaping(counted, every=3, rank=8, blocks=net.blocks)
    g = torch.Generator().manual_seed(0)
    active = []
    for step in range(7):
        x, y = map_batch(g)
        loss = task_loss(counted, x, y)
        penalty = shaping(counted)
        assert counted.calls == step + 1  # one forward per step: shaping never runs the model itself
        if shaping.last.active:
            assert penalty.requires_grad and penalty.item() > 0
        else:
            assert penalty.item() == 0.0 and not penalty.requires_grad
        active.append(shaping.last.active)
        (loss + penalty).backward()
    assert active == [True, False, False, True, False, False, True]
    shaping.remove()
    assert not shaping.tap.attached and shaping(counted).item() == 0.0


def test_transition_0_is_left_out_by_default() -> None:
    net = residual_mlp(0, d=16, L=4)
    shaping = ks.shaping.SpectralShaping(net, rank=8, blocks=net.blocks, layer_fraction=1.0, seed=3)
    x, _ = map_batch(torch.Generator().manual_seed(0))
    _ = net(x)
    shaping(net)
    assert sorted(shaping.last.layers) == [1, 2, 3]
    one_block = torch.nn.Sequential(torch.nn.Linear(8, 8))
    with pytest.raises(ParameterError, match="first_transition=True"):
        ks.shaping.SpectralShaping(one_block, rank=4, blocks=one_block)


def test_penalty_equals_the_operator_of_the_forward_states_and_reaches_the_weights() -> None:
    net = residual_mlp(0, d=16, L=4)
    shaping = ks.shaping.SpectralShaping(net, alpha=0.2, rank=8, blocks=net.blocks, seed=3, first_transition=True)
    transitions = shaping.schedule.transitions(0, 4)
    rows = shaping.schedule.rows(0)
    g = torch.Generator().manual_seed(0)
    x, y = map_batch(g)
    states = [net.emb(x) + net.pos[:16]]  # the residual stream, recomputed by hand
    for block in net.blocks:
        states.append(block(states[-1]))
    b, t = rows(16, 16, "cpu")
    expected = torch.stack([
        kss_loss(guarded_eigvals(whitened_operator(states[i][b, t], states[i + 1][b, t], 8,
                                                   seed=shaping.schedule.basis_seed(0) + k)))
        for k, i in enumerate(transitions)]).mean() * 0.2
    net.zero_grad()
    _ = net(x)
    penalty = shaping(net)
    assert len(transitions) == 2 and sorted(shaping.last.layers) == list(transitions)
    torch.testing.assert_close(penalty.double(), expected, rtol=1e-6, atol=1e-9)
    penalty.backward()
    assert transitions == (0, 2)  # seed 3: blocks 0 and 2 are shaped, block 1 feeds block 2's input, 3 is not read
    for block in net.blocks[:3]:
        assert all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in block.parameters())
    assert all(p.grad is None for p in net.blocks[3].parameters())
    assert net.head.weight.grad is None  # the penalty depends on the residual stream only


def test_residual_filter_keeps_the_supported_eigenvalues() -> None:
    from koopscope.shaping.operator import eigenvalue_residuals, operator_from, whitened_coordinates

    def penalty(threshold):
        net = residual_mlp(0, d=16, L=4)
        shaping = ks.shaping.SpectralShaping(net, rank=8, blocks=net.blocks, seed=2, layer_fraction=1.0,
                                             residual_threshold=threshold)
        x, _ = map_batch(torch.Generator().manual_seed(0))
        net(x)
        states = {k: v.detach().clone() for k, v in shaping.tap.states.items()}
        value = shaping(net)
        value.backward()
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        return value.item(), shaping, states, grads

    everything, shaping, states, _ = penalty(None)
    assert penalty(1e9)[0] == pytest.approx(everything, rel=1e-12)  # a threshold nothing exceeds: the paper's
    nothing, none_kept, _, grads = penalty(1e-12)  # nothing is supported that well: no penalty, finite zeros
    assert nothing == 0.0 and none_kept.last.active and all(bool(torch.isfinite(g).all()) for g in grads)
    # In between (the median residual): the penalty of exactly the eigenvalues whose residual is within it.
    spectra = {}
    for i, t in enumerate(sorted(shaping.last.layers)):
        psi_x, psi_y = whitened_coordinates(states[t], states[t + 1], 8, seed=shaping.schedule.basis_seed(0) + i)
        lam = guarded_eigvals(operator_from(psi_x, psi_y))
        spectra[t] = (lam, eigenvalue_residuals(lam, psi_x, psi_y))
    threshold = float(torch.cat([res for _, res in spectra.values()]).median())
    value, filtered, _, _ = penalty(threshold)
    expected = [float(kss_loss(lam[res <= threshold])) if bool((res <= threshold).any()) else 0.0
                for lam, res in spectra.values()]
    for t, e in zip(spectra, expected, strict=True):
        assert filtered.last.layers[t]["kss_loss"] == pytest.approx(e, rel=1e-9)
    assert value == pytest.approx(0.15 * sum(expected) / len(expected), rel=1e-6) and value != everything


def test_same_seed_same_penalty_and_metrics() -> None:
    def one(seed):
        net = residual_mlp(0, d=16, L=4)
        shaping = ks.shaping.SpectralShaping(net, rank=8, blocks=net.blocks, seed=seed)
        x, _ = map_batch(torch.Generator().manual_seed(0))
        net(x)
        return shaping(net).item(), shaping.last
    (a, last_a), (b, _), (c, _) = one(0), one(0), one(1)
    assert a == b and a != c
    metrics = last_a.metrics()
    assert metrics["koopscope/kss_penalty"] == pytest.approx(a, rel=1e-6)
    layer = min(last_a.layers)
    assert {f"koopscope/layer_{layer:02d}/kss_loss", f"koopscope/layer_{layer:02d}/kss_spectral_radius",
            f"koopscope/layer_{layer:02d}/kss_soft_near_unit_mass"} <= set(metrics)


def test_schedule_draws_half_the_layers_and_distinct_rows() -> None:
    s = Schedule(every=10, layer_fraction=0.5, max_tokens=40, seed=0)
    assert [s.is_on(k) for k in (0, 9, 10, 20)] == [True, False, True, True]
    picks = {s.transitions(k, 8) for k in range(0, 200, 10)}
    assert all(len(p) == 4 for p in picks) and len(picks) > 5
    b, t = s.rows(0)(4, 16, "cpu")
    flat = (b * 16 + t).tolist()
    assert len(flat) == 40 and flat == sorted(set(flat))


def test_evaluation_forwards_are_ignored() -> None:
    net = residual_mlp(0, d=16, L=4)
    shaping = ks.shaping.SpectralShaping(net, rank=8, blocks=net.blocks)
    x, _ = map_batch(torch.Generator().manual_seed(0))
    net(x)  # the training forward
    with torch.no_grad():
        net(x[:1, :2])  # an evaluation forward in between: too small, and without gradients
    assert shaping(net).item() > 0


def test_missing_forward_is_an_error() -> None:
    net = residual_mlp(0, d=16, L=4)
    shaping = ks.shaping.SpectralShaping(net, rank=8, blocks=net.blocks)
    with pytest.raises(CaptureError, match=r"^SpectralShaping has no residual state \d from the forward pass of step "
                                           r"0; call shaping\(model\) after the model's forward pass of the same "
                                           r"step, with gradients enabled \(not under torch.no_grad\)\.$"):
        shaping(net)
    assert shaping.step == 1


def test_small_batch_is_skipped_with_a_logged_reason(caplog) -> None:
    net = residual_mlp(0, d=16, L=4)
    shaping = ks.shaping.SpectralShaping(net, rank=8, blocks=net.blocks)
    x, _ = map_batch(torch.Generator().manual_seed(0), B=1, T=10)
    net(x)
    with caplog.at_level(logging.WARNING, logger="koopscope.shaping"):
        penalty = shaping(net)
    assert penalty.item() == 0.0 and not shaping.last.active
    assert shaping.last.skipped == ("the micro-batch has 10 token states, fewer than 2 * rank = 16; use larger batches "
                                    "or a lower rank")
    assert "SpectralShaping skipped step 0: the micro-batch has 10 token states" in caplog.text


def test_non_finite_states_skip_the_step(caplog) -> None:
    net = residual_mlp(0, d=16, L=4)
    shaping = ks.shaping.SpectralShaping(net, rank=8, layer_fraction=1.0, blocks=net.blocks)
    with torch.no_grad():
        net.blocks[2].proj.bias[0] = float("inf")
    x, _ = map_batch(torch.Generator().manual_seed(0))
    net(x)
    with caplog.at_level(logging.WARNING, logger="koopscope.shaping"):
        penalty = shaping(net)
    assert penalty.item() == 0.0 and torch.isfinite(penalty)
    assert shaping.last.skipped == "residual state 3 holds NaN or Inf values"
    assert "skipped step 0" in caplog.text


def test_alpha_zero_attaches_nothing() -> None:
    net = residual_mlp(0, d=16, L=4)
    shaping = ks.shaping.SpectralShaping(net, alpha=0.0, blocks=net.blocks, rank=8)
    assert not shaping.tap.attached and shaping(net).item() == 0.0 and not shaping.on_step


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha": -0.1}, r"^The 'alpha' parameter of SpectralShaping must be a float in \[0, inf\); got -0.1; RKSP "
                      r"recommends alpha=0.15\.$"),
    ({"every": 0}, r"^The 'every' parameter of SpectralShaping must be an int in \[1, inf\); got 0; RKSP shapes every "
                   r"10 steps \(every=10\)\.$"),
    ({"layer_fraction": 0.0}, r"^The 'layer_fraction' parameter of SpectralShaping must be a float in \(0, 1\]"),
    ({"rank": 64}, r"^The 'rank' parameter of SpectralShaping is 64, larger than the residual-stream width 32; pass "
                   r"rank <= 32 \(RKSP uses 32 on wider models\)\.$"),
    ({"max_tokens": 40}, r"^The 'max_tokens' parameter of SpectralShaping is 40, below 2 \* rank = 64"),
    ({"config": {"gamma": 0.3}}, r"^The 'config' parameter of SpectralShaping must be an instance of KSSConfig or "
                                 r"None; got \{'gamma': 0.3\}"),
    ({"residual_threshold": 0.0}, r"^The 'residual_threshold' parameter of SpectralShaping must be a float in "
                                  r"\(0, inf\) or None; got 0.0; ks.profile filters at 0.1"),
])
def test_bad_options(kwargs, message) -> None:
    with pytest.raises(ParameterError, match=message):
        ks.shaping.SpectralShaping(tiny_gpt2(), **kwargs)


def test_rank_above_the_width_of_an_unconfigured_model_fails_at_its_first_step() -> None:
    net = residual_mlp(0, d=16, L=2)
    shaping = ks.shaping.SpectralShaping(net, rank=20, blocks=net.blocks, max_tokens=64)
    net(map_batch(torch.Generator().manual_seed(0))[0])
    with pytest.raises(ParameterError, match=r"^The 'rank' parameter of SpectralShaping is 20, larger than the "
                                             r"residual-stream width 16; pass rank <= 16"):
        shaping(net)


def test_unrecognised_model_names_blocks() -> None:
    with pytest.raises(ParameterError, match=r"^SpectralShaping cannot find the block list of ResidualMLP \(model_type "
                                             r"None is not in the adapter table and its config gives no number of "
                                             r"layers\); pass blocks= with the nn.ModuleList"):
        ks.shaping.SpectralShaping(residual_mlp(0, d=16, L=2))


def test_call_with_another_model_is_an_error() -> None:
    net = residual_mlp(0, d=16, L=2)
    shaping = ks.shaping.SpectralShaping(net, rank=8, blocks=net.blocks)
    with pytest.raises(ParameterError, match="neither is nor contains the ResidualMLP it was built for"):
        shaping(residual_mlp(1, d=16, L=2))


def test_hf_model_through_the_adapters_and_a_wrapper() -> None:
    model = tiny_gpt2(head=True).train()
    wrapper = torch.nn.DataParallel(model)  # unwrapped through .module, like DistributedDataParallel
    shaping = ks.shaping.SpectralShaping(wrapper, rank=8, every=1, config=KSSConfig(gamma=0.3))
    assert shaping.blocks.adapter == "gpt2" and shaping.model is model
    ids = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(0))
    out = model(input_ids=ids, labels=ids)
    loss = out.loss + shaping(wrapper)
    loss.backward()
    assert shaping.last.active and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_bf16_model_on_cpu() -> None:
    net = residual_mlp(0, d=16, L=4).to(torch.bfloat16)
    shaping = ks.shaping.SpectralShaping(net, rank=8, blocks=net.blocks)
    x, y = map_batch(torch.Generator().manual_seed(0))
    logits = net(x)
    penalty = shaping(net)
    assert penalty.dtype == torch.float32 and shaping.last.active
    (F.cross_entropy(logits.float().reshape(-1, 32), y.reshape(-1)) + penalty).backward()
    assert all(torch.isfinite(p.grad.float()).all() for p in net.blocks.parameters())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cuda(dtype) -> None:
    net = residual_mlp(0, d=16, L=4).cuda().to(getattr(torch, dtype))
    shaping = ks.shaping.SpectralShaping(net, rank=8, blocks=net.blocks)
    x, y = map_batch(torch.Generator().manual_seed(0))
    logits = net(x.cuda())
    penalty = shaping(net)
    assert penalty.device.type == "cuda" and shaping.last.active
    (F.cross_entropy(logits.float().reshape(-1, 32), y.cuda().reshape(-1)) + penalty).backward()
    assert all(torch.isfinite(p.grad.float()).all() for p in net.blocks.parameters())
