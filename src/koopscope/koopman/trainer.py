r"""The hybrid trainer: gradient warm-up, hybrid, and Koopman-dominant phases, with the design's fallbacks.

Training of a model that contains :class:`~koopscope.koopman.KoopmanBlock` s (any ``nn.Module``; the
:class:`~koopscope.koopman.KoopmanLanguageModel` is one) over S = ``schedule.total_steps`` steps, split by
``phases = (f_w, f_h, f_k)`` into

=========== ======================== ============================================= ==========================
phase       forward of the wrappers  loss                                          operator K
=========== ======================== ============================================= ==========================
warmup      standard (the blocks)    task                                          gradient only
hybrid      standard, terms recorded task + w(s) · L_koop                          gradient, and a streaming
                                                                                   DMD update every
                                                                                   ``update_every`` steps
koopman     Koopman branch; the      task (through the Koopman branches)           as in hybrid
            blocks run without grad  + w(s) · L_koop
            as teachers
=========== ======================== ============================================= ==========================

with L_koop the mean over the wrappers of :func:`~koopscope.koopman.koopman_loss` + the prediction loss
(:class:`~koopscope.koopman.layer.KoopmanTerms`) and w(s) the :class:`~koopscope.koopman.LossWeightSchedule`
(whose ``warmup_steps`` is normally the warm-up phase's length, round(f_w · S)). In the recording phases each
step pushes ``rows_per_step`` lifted pairs per wrapper (a seeded random subset of its batch × sequence rows)
into that layer's buffer.

Fallbacks (each logged on the ``koopscope.koopman`` logger and recorded in ``events`` and the phase metrics):

* a NaN/Inf Koopman loss disables the Koopman terms for the rest of training: that step and every later one
  trains on the task loss alone, in standard mode ("fall back to plain gradients");
* a Koopman loss above ``loss_threshold`` (10) multiplies the weight by ``weight_cut`` (0.1) from that step on;
* a failed operator update keeps K (:func:`~koopscope.koopman.update.streaming_update`);
* a non-finite total loss skips the optimiser step.

Gradients are clipped to norm ``clip`` (0.5) before every optimiser step. Any optimiser and any iterable of
batches work; ``loss_fn(model, batch)`` (default :func:`~koopscope.koopman.model.next_token_loss`) returns the
task loss.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from koopscope._validation import Interval, check_param, check_seed
from koopscope.errors import DataError, ParameterError
from koopscope.koopman.layer import KoopmanBlock, KoopmanTerms, koopman_blocks, koopman_mode, recording
from koopscope.koopman.model import next_token_loss
from koopscope.koopman.schedule import LossWeightSchedule

__all__ = ["PHASES", "HybridKoopmanTrainer"]

logger = logging.getLogger("koopscope.koopman")

PHASES = ("warmup", "hybrid", "koopman")
LOSS_THRESHOLD = 10.0  # design: a Koopman loss above 10 cuts its weight ...
WEIGHT_CUT = 0.1  # ... 10x
CLIP = 0.5  # design: gradient clipping 0.5


def _check_phases(phases: object) -> tuple[float, float, float]:
    ok = (isinstance(phases, (tuple, list)) and len(phases) == 3
          and all(isinstance(f, (int, float)) and not isinstance(f, bool) and math.isfinite(f) and f >= 0
                  for f in phases))
    if not ok or abs(sum(phases) - 1.0) > 1e-9:  # type: ignore[arg-type]
        raise ParameterError(f"The 'phases' parameter of HybridKoopmanTrainer must be three non-negative fractions "
                             f"(warmup, hybrid, koopman) summing to 1; got {phases!r}: e.g. (0.2, 0.6, 0.2).")
    return tuple(float(f) for f in phases)  # type: ignore[return-value]


def _new_phase_metrics() -> dict[str, Any]:
    return {"steps": 0, "loss": 0.0, "task_loss": 0.0, "koopman_loss": 0.0, "koopman_steps": 0, "weight": None,
            "grad_norm": 0.0, "updates_applied": 0, "updates_skipped": 0, "skip_reasons": [], "seconds": 0.0,
            "skipped_steps": 0}


class HybridKoopmanTrainer:
    """Train a model with Koopman blocks through the warm-up, hybrid and Koopman-dominant phases.

    Parameters
    ----------
    model : nn.Module
    optimizer : torch.optim.Optimizer
        Over (at least) the model's parameters; any optimiser.
    schedule : LossWeightSchedule
        The Koopman-loss weight per step; ``schedule.total_steps`` is the S the phases divide.
    phases : (float, float, float), default=(0.2, 0.6, 0.2)
        Fractions of S in the warm-up, hybrid and Koopman-dominant phases (summing to 1).
    clip : float > 0, default=0.5
        Gradient-norm clip.
    loss_fn : callable, optional
        ``loss_fn(model, batch) -> scalar tensor``; default next-token cross-entropy.
    update_every : int >= 1, default=10
        Streaming DMD update of every K after each ``update_every``-th step of the recording phases.
    rows_per_step : int >= 1 or None, default=64
        Lifted pairs buffered per wrapper and step (None: all rows of the batch).
    loss_threshold, weight_cut : float, default=10.0, 0.1
        The cut-the-weight fallback.
    seed : int, default=0
        Seeds the choice of buffered rows.

    Attributes
    ----------
    step_count : int
    koopman_enabled : bool
        False after a non-finite Koopman loss.
    weight_scale : float
        Product of the weight cuts so far.
    events : list of dict
        Every fallback, with its step, phase, kind and reason.
    history : list of dict
        One record per step (phase, losses, weight, grad norm, updates).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, schedule: LossWeightSchedule,
                 phases: tuple[float, float, float] = (0.2, 0.6, 0.2), clip: float = CLIP,
                 loss_fn: Callable[[nn.Module, Any], torch.Tensor] | None = None, update_every: int = 10,
                 rows_per_step: int | None = 64, loss_threshold: float = LOSS_THRESHOLD,
                 weight_cut: float = WEIGHT_CUT, seed: int = 0) -> None:
        caller = "HybridKoopmanTrainer"
        check_param("model", model, nn.Module, caller=caller, fix="pass the torch model to train")
        check_param("optimizer", optimizer, torch.optim.Optimizer, caller=caller,
                    fix="pass e.g. torch.optim.AdamW(model.parameters())")
        check_param("schedule", schedule, LossWeightSchedule, caller=caller,
                    fix="pass koopscope.koopman.LossWeightSchedule(...)")
        check_param("clip", clip, Interval(float, 0.0, None, closed="neither"), caller=caller, fix="e.g. 0.5")
        check_param("update_every", update_every, Interval(int, 1, None), caller=caller, fix="e.g. 10")
        check_param("rows_per_step", rows_per_step, Interval(int, 1, None), None, caller=caller,
                    fix="e.g. 64, or None for every row")
        check_param("loss_threshold", loss_threshold, Interval(float, 0.0, None, closed="neither"), caller=caller,
                    fix="the design's value is 10.0")
        check_param("weight_cut", weight_cut, Interval(float, 0.0, 1.0, closed="neither"), caller=caller,
                    fix="the design's value is 0.1")
        self.model, self.optimizer, self.schedule = model, optimizer, schedule
        self.phases = _check_phases(phases)
        self.clip, self.update_every, self.rows_per_step = float(clip), update_every, rows_per_step
        self.loss_fn = loss_fn if loss_fn is not None else next_token_loss
        self.loss_threshold, self.weight_cut = float(loss_threshold), float(weight_cut)
        self.seed = check_seed(seed, caller)
        self.blocks: list[KoopmanBlock] = koopman_blocks(model)
        S = schedule.total_steps
        self.boundaries = (round(self.phases[0] * S), round((self.phases[0] + self.phases[1]) * S))
        self.step_count = 0
        self.koopman_enabled = True
        self.weight_scale = 1.0
        self.events: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []
        self._phase_metrics = {p: _new_phase_metrics() for p in PHASES}

    # -- the plan ----------------------------------------------------------------------------------------------
    def phase(self, step: int) -> str:
        """The phase of ``step`` (steps past S stay in the last phase)."""
        if step < self.boundaries[0]:
            return "warmup"
        return "hybrid" if step < self.boundaries[1] else "koopman"

    def _event(self, kind: str, phase: str, reason: str) -> None:
        logger.warning("HybridKoopmanTrainer step %d (%s): %s: %s", self.step_count, phase, kind, reason)
        self.events.append({"step": self.step_count, "phase": phase, "kind": kind, "reason": reason})

    # -- one step ----------------------------------------------------------------------------------------------
    def step(self, batch: Any) -> dict[str, Any]:
        """One optimiser step on ``batch``; returns the step's record (also appended to ``history``)."""
        start, s = time.perf_counter(), self.step_count
        phase = self.phase(s)
        koopman_on = self.koopman_enabled and phase != "warmup" and bool(self.blocks)
        mode = "koopman" if koopman_on and phase == "koopman" else "standard"
        self.model.train()
        with koopman_mode(self.model, mode), recording(self.model, koopman_on) as blocks:
            task = self.loss_fn(self.model, batch)
            terms = [b.terms for b in blocks if b.terms is not None] if koopman_on else []
        weight, koop = self._koopman_term(terms, phase) if terms else (0.0, None)
        loss = task if koop is None else task + weight * koop
        record: dict[str, Any] = {"step": s, "phase": phase, "mode": mode, "task_loss": float(task.detach()),
                                  "koopman_loss": None if koop is None else float(koop.detach()), "weight": weight,
                                  "loss": float(loss.detach()), "grad_norm": None, "updates": []}
        if math.isfinite(record["loss"]):
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            record["grad_norm"] = float(nn.utils.clip_grad_norm_(self.model.parameters(), self.clip))
            self.optimizer.step()
        else:
            self._event("skipped_step", phase, f"the total loss is {record['loss']}; no optimiser step")
        if koop is not None:
            self._buffer(terms, s)
            if (s + 1) % self.update_every == 0:
                record["updates"] = [b.koopman.update_operator() for b in self.blocks]
        for b in self.blocks:
            b.terms = None  # drop the graph
        record["seconds"] = time.perf_counter() - start
        self._account(record)
        self.step_count += 1
        return record

    def _koopman_term(self, terms: list[KoopmanTerms], phase: str) -> tuple[float, torch.Tensor | None]:
        """The weight and the Koopman loss of this step, after the NaN and too-large fallbacks."""
        koop = torch.stack([t.total for t in terms]).mean()
        value = float(koop.detach())
        if not math.isfinite(value):
            self.koopman_enabled = False
            self._event("koopman_disabled", phase, f"the Koopman loss is {value}; the Koopman terms are disabled "
                        "for the rest of training (plain gradients, standard mode)")
            return 0.0, None
        if value > self.loss_threshold:
            self.weight_scale *= self.weight_cut
            self._event("weight_cut", phase, f"the Koopman loss {value:.4g} exceeds {self.loss_threshold:g}; its "
                        f"weight is multiplied by {self.weight_cut:g} (scale now {self.weight_scale:.3g})")
        return self.schedule(self.step_count) * self.weight_scale, koop

    def _buffer(self, terms: list[KoopmanTerms], step: int) -> None:
        rng = np.random.default_rng((self.seed, step))
        for block, t in zip(self.blocks, terms, strict=True):
            X, Y = t.phi_x.reshape(-1, t.phi_x.shape[-1]), t.phi_y.reshape(-1, t.phi_y.shape[-1])  # (n, k)
            n = X.shape[0]
            if self.rows_per_step is not None and self.rows_per_step < n:
                idx = torch.as_tensor(np.sort(rng.choice(n, size=self.rows_per_step, replace=False)))
                X, Y = X[idx.to(X.device)], Y[idx.to(Y.device)]
            block.koopman.observe(X, Y)

    def _account(self, record: dict[str, Any]) -> None:
        m = self._phase_metrics[record["phase"]]
        m["steps"] += 1
        m["seconds"] += record["seconds"]
        if record["grad_norm"] is None:
            m["skipped_steps"] += 1
        else:
            m["loss"] += record["loss"]
            m["task_loss"] += record["task_loss"]
            m["grad_norm"] += record["grad_norm"]
        if record["koopman_loss"] is not None:
            m["koopman_loss"] += record["koopman_loss"]
            m["koopman_steps"] += 1
            m["weight"] = record["weight"]
        for result in record["updates"]:
            m["updates_applied" if result.applied else "updates_skipped"] += 1
            if not result.applied and result.reason not in m["skip_reasons"]:
                m["skip_reasons"].append(result.reason)
        record["updates"] = [{"applied": r.applied, "reason": r.reason, "rank": r.rank} for r in record["updates"]]
        self.history.append(record)

    # -- loops and summaries -----------------------------------------------------------------------------------
    def fit(self, loader: Iterable[Any], steps: int) -> dict[str, Any]:
        """Run ``steps`` steps on batches drawn from ``loader`` (re-iterated when it runs out); returns
        :meth:`metrics`."""
        check_param("steps", steps, Interval(int, 0, None), caller="HybridKoopmanTrainer.fit",
                    fix="the number of optimiser steps to run")
        it, fresh, done = iter(loader), True, 0
        while done < steps:
            try:
                batch = next(it)
            except StopIteration:
                if fresh:
                    got = "yielded no batch" if done == 0 else f"ran out after {done} of {steps} steps and yields " \
                                                             "nothing when iterated again"
                    raise DataError(f"The loader passed to HybridKoopmanTrainer.fit {got}; pass a non-empty, "
                                    "re-iterable loader (a list or a DataLoader) or fewer steps.") from None
                it, fresh = iter(loader), True
                continue
            fresh = False
            self.step(batch)
            done += 1
        return self.metrics()

    def metrics(self) -> dict[str, Any]:
        """Per-phase means (loss, task loss, Koopman loss, grad norm), counts, time, and the fallback state."""
        phases = {}
        for name, m in self._phase_metrics.items():
            done = m["steps"] - m["skipped_steps"]
            phases[name] = {
                "steps": m["steps"], "skipped_steps": m["skipped_steps"], "seconds": m["seconds"],
                "loss": m["loss"] / done if done else None, "task_loss": m["task_loss"] / done if done else None,
                "grad_norm": m["grad_norm"] / done if done else None,
                "koopman_loss": m["koopman_loss"] / m["koopman_steps"] if m["koopman_steps"] else None,
                "weight": m["weight"], "updates_applied": m["updates_applied"],
                "updates_skipped": m["updates_skipped"], "skip_reasons": list(m["skip_reasons"]),
            }
        return {"phases": phases, "events": list(self.events), "koopman_enabled": self.koopman_enabled,
                "weight_scale": self.weight_scale, "steps": self.step_count}
