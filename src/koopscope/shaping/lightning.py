"""Lightning adapters: a ``training_step`` helper that adds the KSS penalty, and a callback that logs.

>>> class LitModel(L.LightningModule):                                  # doctest: +SKIP
...     def __init__(self, net):
...         super().__init__()
...         self.net = net
...         self.shaping = SpectralShaping(net)
...     def training_step(self, batch, batch_idx):
...         return shaping_step(self.net(batch).loss, self.shaping)
>>> trainer = L.Trainer(callbacks=[SpectralCallback(shaping=lit.shaping,    # doctest: +SKIP
...                                                 monitor=SpectralMonitor(lit.net, every=50))])

A Lightning callback can read the loss but not replace it (``on_before_backward``), so the penalty is added in
``training_step``; Lightning then scales it with the task loss under ``accumulate_grad_batches`` and DDP averages
its gradients like any other. :class:`SpectralCallback` steps the monitor after each training batch and logs the
shaping and monitor metrics with ``pl_module.log_dict`` (on step), so they reach whatever logger the Trainer has.
"""

from __future__ import annotations

from typing import Any

from koopscope.errors import MissingDependencyError
from koopscope.shaping.monitor import SpectralMonitor
from koopscope.shaping.shaping import SpectralShaping

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:
    raise MissingDependencyError("koopscope.shaping.lightning needs lightning, which is not installed; install it "
                                 'with `pip install -c constraints.txt -e ".[lightning]"`.') from None

__all__ = ["SpectralCallback", "shaping_step"]


def shaping_step(loss: Any, shaping: SpectralShaping) -> Any:
    """``loss + shaping()``: the task loss of ``training_step`` with the KSS penalty of the same forward pass."""
    return loss + shaping()


class SpectralCallback(Callback):
    """Logs the latest KSS step's metrics and steps a :class:`SpectralMonitor` after every training batch.

    Parameters
    ----------
    shaping : SpectralShaping, optional
        Its ``last.metrics()`` are logged after each shaped step.
    monitor : SpectralMonitor, optional
        Stepped once per training batch; its dict is logged on its on-steps.
    """

    def __init__(self, shaping: SpectralShaping | None = None, monitor: SpectralMonitor | None = None) -> None:
        self.shaping, self.monitor = shaping, monitor
        self._logged_step = -1

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        metrics: dict[str, float] = {}
        if self.shaping is not None and self.shaping.last.step != self._logged_step:
            metrics.update(self.shaping.last.metrics())
            self._logged_step = self.shaping.last.step
        if self.monitor is not None:
            metrics.update(self.monitor.step())
        if metrics:
            pl_module.log_dict(metrics, on_step=True, on_epoch=False, batch_size=1)
