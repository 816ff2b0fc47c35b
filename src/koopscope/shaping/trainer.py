"""Hugging Face Trainer adapters for :class:`~koopscope.shaping.SpectralShaping` (and the spectral monitor).

Two ways in, both adding α · KSS to the loss of each training micro-batch and never to evaluation losses:

>>> from koopscope.shaping import SpectralShaping                             # doctest: +SKIP
>>> from koopscope.shaping.trainer import ShapingTrainer, with_shaping        # doctest: +SKIP
>>> trainer = ShapingTrainer(model=model, args=args, train_dataset=data,      # doctest: +SKIP
...                          shaping=SpectralShaping(model))
>>> trainer = Trainer(model=model, args=args, train_dataset=data,             # doctest: +SKIP
...                   compute_loss_func=with_shaping(my_loss, SpectralShaping(model),
...                                                  gradient_accumulation_steps=args.gradient_accumulation_steps))

Gradient accumulation: the Trainer divides a per-batch mean loss by the accumulation steps but not a loss it
considers normalised over the whole accumulated batch (``num_items_in_batch``, or any ``compute_loss_func``);
the penalty is a per-micro-batch mean, so :class:`ShapingTrainer` divides it by the accumulation steps exactly
when the Trainer will not, and :func:`with_shaping` always does (pass the steps). The latest shaping and monitor
metrics are merged into the Trainer's training logs (``koopscope/kss_penalty``, ``koopscope/layer_03/...``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from koopscope.errors import MissingDependencyError
from koopscope.shaping.monitor import SpectralMonitor
from koopscope.shaping.shaping import SpectralShaping

try:
    from transformers import Trainer
except ImportError:
    raise MissingDependencyError("koopscope.shaping.trainer needs transformers, which is not installed; install it "
                                 'with `pip install -c constraints.txt -e ".[transformers]"`.') from None

__all__ = ["ShapingTrainer", "with_shaping"]


class ShapingTrainer(Trainer):
    """A ``transformers.Trainer`` whose training loss is ``task + shaping(model)``.

    Parameters
    ----------
    shaping : SpectralShaping
        Built on the model the Trainer trains.
    monitor : SpectralMonitor, optional
        Stepped after every training forward pass; its metrics join the training logs.
    *args, **kwargs
        Passed to ``transformers.Trainer``.
    """

    def __init__(self, *args: Any, shaping: SpectralShaping, monitor: SpectralMonitor | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shaping, self.monitor = shaping, monitor
        self._spectral_logs: dict[str, float] = {}

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training and torch.is_grad_enabled():  # a training micro-batch, not prediction_step
            penalty = self.shaping(model)
            if self._loss_is_scaled(num_items_in_batch):
                penalty = penalty / getattr(self, "current_gradient_accumulation_steps", 1)
            loss = loss + penalty
            self._spectral_logs.update(self.shaping.last.metrics())
            if self.monitor is not None:
                self._spectral_logs.update(self.monitor.step())
        return (loss, outputs) if return_outputs else loss

    def _loss_is_scaled(self, num_items_in_batch: Any) -> bool:
        """Trainer.training_step's own test: True when it will not divide the loss by the accumulation steps."""
        if self.loss_is_scaled_for_ga is not None:
            return bool(self.loss_is_scaled_for_ga)
        return bool((self.model_accepts_loss_kwargs and num_items_in_batch is not None)
                    or self.compute_loss_func is not None)

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs and self._spectral_logs:  # training logs only
            logs = {**logs, **self._spectral_logs}
            self._spectral_logs = {}
        super().log(logs, *args, **kwargs)


def with_shaping(loss_func: Callable[..., Any], shaping: SpectralShaping, *,
                 gradient_accumulation_steps: int = 1) -> Callable[..., Any]:
    """A ``compute_loss_func`` for ``transformers.Trainer``: ``loss_func(...) + shaping() / accumulation steps``.

    ``loss_func(outputs, labels, num_items_in_batch=None)`` computes the task loss (the Trainer takes the labels
    away from the model when ``compute_loss_func`` is set). Evaluation (no gradients) gets the task loss alone.
    """

    def compute_loss_func(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
        loss = loss_func(outputs, labels, num_items_in_batch=num_items_in_batch)
        if not torch.is_grad_enabled():
            return loss
        return loss + shaping() / gradient_accumulation_steps

    return compute_loss_func
