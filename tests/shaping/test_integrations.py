"""The training-loop integrations: a plain loop, the Hugging Face Trainer, Lightning, DistributedDataParallel."""

from __future__ import annotations

import json
import math

import pytest

import koopscope as ks
from tests.shaping.models import map_batch, residual_mlp, tiny_gpt2

torch = pytest.importorskip("torch")
F = torch.nn.functional


def test_plain_loop() -> None:
    net = residual_mlp(0, d=16, L=4)
    shaping = ks.shaping.SpectralShaping(net, every=2, rank=8, blocks=net.blocks)
    monitor = ks.shaping.SpectralMonitor(net, every=2, blocks=net.blocks)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    logged = []
    for _ in range(4):
        x, y = map_batch(g)
        loss = F.cross_entropy(net(x).reshape(-1, 32), y.reshape(-1)) + shaping(net)
        opt.zero_grad()
        loss.backward()
        opt.step()
        logged.append({**shaping.last.metrics(), **monitor.step()})
    assert [bool(m) for m in logged] == [True, False, True, False]
    assert "koopscope/kss_penalty" in logged[2] and "koopscope/layer_03/near_unit_mass" in logged[2]


# -- Hugging Face Trainer ------------------------------------------------------------------------------------------


def lm_data(n: int = 8, length: int = 16) -> list[dict]:
    ids = torch.randint(0, 64, (n, length), generator=torch.Generator().manual_seed(0))
    return [{"input_ids": row, "labels": row} for row in ids]


def training_args(tmp_path, **kwargs):
    transformers = pytest.importorskip("transformers")
    return transformers.TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2,
                                          learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to=[],
                                          use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, **kwargs)


def test_hf_trainer_subclass(tmp_path) -> None:
    from koopscope.shaping.trainer import ShapingTrainer

    model = tiny_gpt2(head=True)
    shaping = ks.shaping.SpectralShaping(model, every=1, rank=8)
    monitor = ks.shaping.SpectralMonitor(model, every=2, max_tokens=64)
    trainer = ShapingTrainer(model=model, args=training_args(tmp_path, gradient_accumulation_steps=2),
                             train_dataset=lm_data(), shaping=shaping, monitor=monitor)
    assert trainer._loss_is_scaled(num_items_in_batch=torch.tensor(60))  # GPT-2 takes loss kwargs: divide by 2
    trainer.train()
    assert shaping.step == 4 and shaping.last.active  # 2 optimiser steps x 2 micro-batches, each shaped
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2 and all(math.isfinite(entry["koopscope/kss_penalty"]) for entry in logs)
    assert "koopscope/layer_00/near_unit_mass" in logs[0]
    trainer.evaluate(eval_dataset=lm_data(4))  # evaluation is not shaped
    assert shaping.step == 4


def test_hf_compute_loss_func(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    from koopscope.shaping.trainer import with_shaping

    def causal_lm_loss(outputs, labels, num_items_in_batch=None):
        logits = outputs.logits[:, :-1].reshape(-1, outputs.logits.shape[-1])
        return F.cross_entropy(logits, labels[:, 1:].reshape(-1))

    model = tiny_gpt2(head=True)
    shaping = ks.shaping.SpectralShaping(model, every=1, rank=8)
    trainer = transformers.Trainer(model=model, args=training_args(tmp_path), train_dataset=lm_data(),
                                   compute_loss_func=with_shaping(causal_lm_loss, shaping))
    trainer.train()
    assert shaping.step == 2 and shaping.last.active
    assert all(math.isfinite(p.detach().abs().sum()) for p in model.parameters())


# -- Lightning -----------------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*is deprecated")  # lightning 2.6 on torch 2.13, not ours
def test_lightning_step_helper_and_callback() -> None:
    L = pytest.importorskip("lightning")
    from koopscope.shaping.lightning import SpectralCallback, shaping_step

    class LitMLP(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = residual_mlp(0, d=16, L=4)
            self.shaping = ks.shaping.SpectralShaping(self.net, every=2, rank=8, blocks=self.net.blocks)

        def training_step(self, batch, batch_idx):
            x, y = batch
            task = F.cross_entropy(self.net(x).reshape(-1, 32), y.reshape(-1))
            return shaping_step(task, self.shaping)

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    class Memory(L.pytorch.loggers.Logger):
        name, version = "memory", 0

        def __init__(self) -> None:
            super().__init__()
            self.rows: list[dict] = []

        def log_metrics(self, metrics, step=None) -> None:
            self.rows.append(dict(metrics))

        def log_hyperparams(self, *args, **kwargs) -> None:
            pass

    g = torch.Generator().manual_seed(0)
    data = [map_batch(g) for _ in range(4)]
    lit = LitMLP()
    monitor = ks.shaping.SpectralMonitor(lit.net, every=3, blocks=lit.net.blocks)
    logger = Memory()
    trainer = L.Trainer(max_steps=4, accelerator="cpu", devices=1, logger=logger, log_every_n_steps=1,
                        callbacks=[SpectralCallback(shaping=lit.shaping, monitor=monitor)], enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(lit, train_dataloaders=torch.utils.data.DataLoader(data, batch_size=None))
    assert lit.shaping.step == 4 and monitor.step_count == 4
    keys = set().union(*logger.rows)
    assert {"koopscope/kss_penalty", "koopscope/layer_03/near_unit_mass", "koopscope/alarms"} <= keys
    penalties = {row["koopscope/kss_penalty"] for row in logger.rows if "koopscope/kss_penalty" in row}
    assert len(penalties) == 2 and all(p > 0 for p in penalties)  # shaped on steps 0 and 2 (Lightning repeats them)


# -- DistributedDataParallel over gloo -----------------------------------------------------------------------------


def _ddp_train(rank: int, world: int) -> dict:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    net = residual_mlp(0, d=16, L=4)  # the same initial weights on every rank
    ddp = DistributedDataParallel(net)
    shaping = ks.shaping.SpectralShaping(ddp, every=1, layer_fraction=1.0, rank=8, blocks=net.blocks)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(100 + rank)  # each rank its own micro-batches
    penalties, finite = [], True
    for _ in range(3):
        x, y = map_batch(g)
        loss = F.cross_entropy(ddp(x).reshape(-1, 32), y.reshape(-1)) + shaping(ddp)
        opt.zero_grad()
        loss.backward()
        finite &= all(bool(torch.isfinite(p.grad).all()) for p in ddp.parameters())
        penalties.append(shaping.last.penalty)
        opt.step()
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    spread = max(float((t - gathered[0]).abs().max()) for t in gathered)
    return {"penalties": penalties, "finite": finite, "spread": spread}


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import gc

    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = _ddp_train(rank, world)
        with open(f"{out_dir}/rank{rank}.json", "w") as fh:
            json.dump(result, fh)
        dist.barrier()  # neither rank tears gloo down while the other still talks to it
    finally:
        gc.collect()  # the DDP reducer releases the process group before it is destroyed
        dist.destroy_process_group()


def test_ddp_two_cpu_processes_over_gloo(tmp_path) -> None:
    import torch.multiprocessing as mp

    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "pg"), str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for result in results:
        assert result["finite"] and len(result["penalties"]) == 3
        assert all(p is not None and p > 0 for p in result["penalties"])
        assert result["spread"] == 0.0  # gradients all-reduced: the replicas stay identical
    assert results[0]["penalties"] != results[1]["penalties"]  # each rank shaped its own micro-batch
