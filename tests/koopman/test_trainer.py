"""HybridKoopmanTrainer: phases, decreasing loss on the reference model, each fallback on a constructed failure,
gradient clipping, loaders, metrics and parameter errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from koopscope.errors import DataError, ParameterError
from koopscope.koopman import (
    HybridKoopmanTrainer,
    KoopmanLanguageModel,
    LossWeightSchedule,
    StreamingUpdate,
    koopman_blocks,
)
from tests.koopman.refusal import refused


def batch(B: int = 2, T: int = 17, vocab: int = 13, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(seed))


def small(**kwargs) -> KoopmanLanguageModel:
    return KoopmanLanguageModel(**{"vocab_size": 13, "d_model": 16, "n_layers": 2, "n_heads": 2, "koopman_dim": 8,
                                   "max_len": 16, "capacity": 64, **kwargs})


def trainer(model, steps: int = 10, optimizer=None, phases=(0.2, 0.5, 0.3), **kwargs) -> HybridKoopmanTrainer:
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), 1e-2)
    schedule = LossWeightSchedule("linear", 0.1, 1.0, total_steps=steps, warmup_steps=round(phases[0] * steps))
    return HybridKoopmanTrainer(model, optimizer, schedule=schedule, phases=phases, **kwargs)


def test_reference_model_trains_with_decreasing_loss() -> None:
    # The reference configuration (d_model 64, 4 layers, 4 heads, k = 256), on one fixed batch of 2 x 32 tokens.
    lm = KoopmanLanguageModel(64, max_len=32, capacity=64, seed=0)
    tr = trainer(lm, steps=15, optimizer=torch.optim.AdamW(lm.parameters(), 3e-3), phases=(0.2, 0.6, 0.2),
                 update_every=3, rows_per_step=16)
    x = batch(T=33, vocab=64)
    records = [tr.step(x) for _ in range(15)]
    assert [r["phase"] for r in records] == ["warmup"] * 3 + ["hybrid"] * 9 + ["koopman"] * 3
    task = [r["task_loss"] for r in records]
    # memorising one batch: the task loss falls at every standard-mode step (seeded; measured drop 4.15 -> 2.71)
    assert all(b < a for a, b in zip(task[:12], task[1:12], strict=False))
    assert task[11] < task[0] - 1.0
    koop = [r["koopman_loss"] for r in records[3:12]]
    assert koop[-1] < koop[0]  # the Koopman layers learn the blocks' dynamics (measured 0.29 -> 0.10)
    m = tr.metrics()
    assert m["phases"]["hybrid"]["updates_applied"] == 4 * 3 and m["phases"]["koopman"]["updates_applied"] == 4
    assert m["phases"]["warmup"]["koopman_loss"] is None and m["events"] == [] and m["koopman_enabled"]


def test_phases_modes_and_weights() -> None:
    lm = small()
    tr = trainer(lm, steps=10, phases=(0.2, 0.5, 0.3), update_every=2)
    records = tr.fit([batch(seed=i) for i in range(3)], steps=12)  # a list re-iterated; 2 steps past S
    hist = tr.history
    assert records["steps"] == 12 and len(hist) == 12
    assert [h["phase"] for h in hist] == ["warmup"] * 2 + ["hybrid"] * 5 + ["koopman"] * 5
    assert [h["mode"] for h in hist] == ["standard"] * 7 + ["koopman"] * 5
    assert [h["weight"] for h in hist[:2]] == [0.0, 0.0] and hist[0]["koopman_loss"] is None
    schedule = tr.schedule
    assert [h["weight"] for h in hist[2:]] == [schedule(s) for s in range(2, 12)]
    assert hist[3]["updates"] and all(u["applied"] for u in hist[3]["updates"])  # (3 + 1) % 2 == 0
    assert hist[2]["updates"] == []
    phases = records["phases"]
    assert {k: v["steps"] for k, v in phases.items()} == {"warmup": 2, "hybrid": 5, "koopman": 5}
    assert set(phases["hybrid"]) == {"steps", "skipped_steps", "seconds", "loss", "task_loss", "grad_norm",
                                     "koopman_loss", "weight", "updates_applied", "updates_skipped", "skip_reasons"}
    assert phases["hybrid"]["koopman_loss"] == pytest.approx(np.mean([h["koopman_loss"] for h in hist[2:7]]))
    rows = [len(b.koopman.buffer) for b in koopman_blocks(lm)]
    assert rows == [64, 64]  # 10 recording steps x 64 rows, capacity 64 per layer


def test_nan_koopman_loss_disables_it(caplog: pytest.LogCaptureFixture) -> None:
    lm = small()
    tr = trainer(lm, steps=10)
    for _ in range(2):
        tr.step(batch())
    with torch.no_grad():
        koopman_blocks(lm)[0].koopman.K.fill_(float("nan"))  # a constructed failure in the hybrid phase
    with caplog.at_level(logging.WARNING, logger="koopscope.koopman"):
        record = tr.step(batch())
    assert record["koopman_loss"] is None and record["weight"] == 0.0 and np.isfinite(record["loss"])
    assert record["grad_norm"] is not None  # the step still trained on the task loss
    assert not tr.koopman_enabled
    assert tr.events == [{"step": 2, "phase": "hybrid", "kind": "koopman_disabled", "reason": "the Koopman loss is "
                          "nan; the Koopman terms are disabled for the rest of training (plain gradients, standard "
                          "mode)"}]
    assert "koopman_disabled" in caplog.text
    later = [tr.step(batch()) for _ in range(7)]
    assert all(r["mode"] == "standard" and r["koopman_loss"] is None for r in later)  # also in the Koopman phase
    assert later[-1]["phase"] == "koopman" and np.isfinite(later[-1]["loss"])


def test_huge_koopman_loss_cuts_its_weight_tenfold() -> None:
    lm = small()
    tr = trainer(lm, steps=10)
    for _ in range(2):
        tr.step(batch())
    with torch.no_grad():
        for b in koopman_blocks(lm):
            b.koopman.phi[2].weight.mul_(1e3)  # lifted states ~1e3 x larger: linearity loss far above 10
    record = tr.step(batch())
    assert record["koopman_loss"] > 10
    assert tr.weight_scale == pytest.approx(0.1)
    assert record["weight"] == pytest.approx(0.1 * tr.schedule(2), rel=1e-12)
    assert [e["kind"] for e in tr.events] == ["weight_cut"]
    assert tr.events[0]["reason"].startswith(f"the Koopman loss {record['koopman_loss']:.4g} exceeds 10; its weight "
                                             "is multiplied by 0.1 (scale now 0.1)")


def test_failed_update_keeps_K() -> None:
    lm = small(update=StreamingUpdate(min_rank_fraction=0.5))  # k = 8: a rank-1 buffer is below ceil(0.5·8)
    # lr = 0: the optimiser never moves K, so any change would come from the update
    tr = trainer(lm, steps=10, optimizer=torch.optim.SGD(lm.parameters(), lr=0.0), update_every=1)
    with torch.no_grad():
        for b in koopman_blocks(lm):
            b.koopman.phi[2].weight.zero_()  # φ ≡ its bias: every buffered row is the same, a singular buffer
    before = [b.koopman.K.detach().clone() for b in koopman_blocks(lm)]
    for _ in range(4):
        tr.step(batch())
    for b, K0 in zip(koopman_blocks(lm), before, strict=True):
        assert torch.equal(b.koopman.K.detach(), K0)
        assert not b.koopman.last_update.applied
    hybrid = tr.metrics()["phases"]["hybrid"]
    assert hybrid["updates_applied"] == 0 and hybrid["updates_skipped"] == 2 * 2
    assert len(hybrid["skip_reasons"]) >= 1 and hybrid["skip_reasons"][0].startswith("ill-conditioned: only 1 of")


def test_gradients_are_clipped_to_half() -> None:
    lm = small(koopman_layers=())
    tr = trainer(lm, optimizer=torch.optim.SGD(lm.parameters(), lr=1.0))
    before = torch.cat([p.detach().flatten().clone() for p in lm.parameters()])
    record = tr.step(batch())
    after = torch.cat([p.detach().flatten() for p in lm.parameters()])
    assert record["grad_norm"] > 0.5  # the unclipped norm is recorded
    # SGD with lr = 1 moves the parameters by exactly the clipped gradient: norm 0.5 (float32 rounding)
    assert float((after - before).norm()) == pytest.approx(0.5, rel=1e-4)


def test_non_finite_total_loss_skips_the_optimiser_step() -> None:
    lm = small()
    tr = trainer(lm, loss_fn=lambda model, b: model(b[:, :-1]).sum() * float("nan"))
    before = [p.detach().clone() for p in lm.parameters()]
    record = tr.step(batch())
    assert record["grad_norm"] is None and tr.events[0]["kind"] == "skipped_step"
    assert all(torch.equal(p, q) for p, q in zip(lm.parameters(), before, strict=True))
    assert tr.metrics()["phases"]["warmup"]["skipped_steps"] == 1


def test_loaders() -> None:
    lm = small()
    with pytest.raises(DataError) as err:
        trainer(lm).fit([], steps=3)
    assert str(err.value) == ("The loader passed to HybridKoopmanTrainer.fit yielded no batch; pass a non-empty, "
                              "re-iterable loader (a list or a DataLoader) or fewer steps.")
    one_shot = (batch(seed=i) for i in range(2))
    with pytest.raises(DataError, match="ran out after 2 of 3 steps and yields nothing when iterated again"):
        trainer(lm).fit(one_shot, steps=3)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(batch(B=4)), batch_size=2)
    tr = trainer(lm, loss_fn=lambda model, b: torch.nn.functional.cross_entropy(
        model(b[0][:, :-1]).reshape(-1, 13), b[0][:, 1:].reshape(-1)))
    assert tr.fit(data, steps=5)["steps"] == 5


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"phases": (0.5, 0.5, 0.5)}, "The 'phases' parameter of HybridKoopmanTrainer must be three non-negative "
                                  "fractions (warmup, hybrid, koopman) summing to 1; got (0.5, 0.5, 0.5): e.g. (0.2, "
                                  "0.6, 0.2)."),
    ({"clip": 0.0}, "The 'clip' parameter of HybridKoopmanTrainer must be a float in (0, inf); got 0.0; e.g. 0.5."),
    ({"update_every": 0}, "The 'update_every' parameter of HybridKoopmanTrainer must be an int in [1, inf); got 0; "
                          "e.g. 10."),
    ({"weight_cut": 1.0}, "The 'weight_cut' parameter of HybridKoopmanTrainer must be a float in (0, 1); got 1.0; "
                          "the design's value is 0.1."),
])
def test_parameter_errors(kwargs: dict, message: str) -> None:
    lm = small()
    schedule = LossWeightSchedule(total_steps=10)
    refused(ParameterError, message, HybridKoopmanTrainer, lm, torch.optim.SGD(lm.parameters(), 0.1),
            schedule=schedule, **kwargs)
