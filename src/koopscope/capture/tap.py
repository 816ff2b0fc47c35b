"""A persistent tap on a model's blocks that keeps sampled residual-stream rows as torch tensors, graph and all.

:func:`koopscope.capture` runs its own forward passes under ``torch.no_grad`` and copies rows to numpy; a
training regulariser instead needs the states of the *user's* forward pass, on the model's device, with the
autograd graph that leads back to the parameters. :class:`Tap` reads them with the same conventions (the
adapters of :func:`~koopscope.capture.resolve_blocks`; state 0 = the input of block 0, read by a forward
pre-hook; state i + 1 = the output of block i, element 0 of a tuple; RWKV's eval-mode rescaling undone) and
keeps only what it is armed for:

>>> import torch, koopscope.capture as cap
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh())
>>> tap = Tap(cap.resolve_blocks(net, blocks=net)).attach()
>>> tap.arm({0, 2}, lambda B, T, device: (torch.tensor([0]), torch.tensor([1])))
>>> _ = net(torch.randn(1, 3, 4, requires_grad=True))
>>> sorted(tap.states), tuple(tap.states[2].shape), tap.states[2].requires_grad
([0, 2], (1, 4), True)
>>> tap.detach()

The hooks stay registered between steps and cost one Python call per block while disarmed. A new forward pass
(block 0 entered again) replaces the rows of the previous one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from koopscope.capture._deps import require_torch
from koopscope.capture.adapters import BlockList
from koopscope.capture.hooks import block_input, block_output
from koopscope.errors import CaptureError

__all__ = ["RowSelector", "Tap"]

#: ``select(B, T, device) -> (batch_index, position_index)``: two int64 tensors (n,) on ``device``.
RowSelector = Callable[[int, int, Any], tuple[Any, Any]]


class Tap:
    """Forward hooks on ``blocks`` that keep rows of the armed states of each forward pass.

    Parameters
    ----------
    blocks : BlockList
        The resolved blocks (:func:`koopscope.capture.resolve_blocks`).

    Attributes
    ----------
    states : dict of int to Tensor of shape (n, D)
        The rows kept during the latest armed forward pass, in the hidden states' own dtype and device.
    shape : (B, T) or None
        Leading shape of that forward pass's hidden states.
    """

    def __init__(self, blocks: BlockList) -> None:
        self.blocks = blocks
        self.states: dict[int, Any] = {}
        self.shape: tuple[int, int] | None = None
        self._wanted: frozenset[int] = frozenset()
        self._select: RowSelector | None = None
        self._keep_graph = True
        self._index: tuple[Any, Any] | None = None
        self._running = False  # block 0 was entered while armed: this forward pass is being read
        self._handles: list[Any] = []

    # -- lifecycle ----------------------------------------------------------------------------------
    def attach(self) -> Tap:
        """Register the hooks (idempotent); returns ``self``."""
        if not self._handles:
            for i, block in enumerate(self.blocks.blocks):
                self._handles.append(block.register_forward_pre_hook(self._pre_hook(i), with_kwargs=True))
                self._handles.append(block.register_forward_hook(self._post_hook(i)))
        return self

    def detach(self) -> None:
        """Remove every hook and forget the kept rows."""
        while self._handles:
            self._handles.pop().remove()
        self.disarm()

    def __enter__(self) -> Tap:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def arm(self, states: set[int] | frozenset[int], select: RowSelector, *, keep_graph: bool = True) -> None:
        """Keep the rows ``select`` picks of ``states`` in the coming forward passes.

        With ``keep_graph`` (training), a forward pass run without gradients (``torch.no_grad``, an evaluation
        loop) is ignored and leaves the rows of the previous one; without it (monitoring) every forward pass is read
        and the rows are detached as they are read.
        """
        self._wanted = frozenset(states)
        self._select = select
        self._keep_graph = keep_graph
        self.clear()

    def disarm(self) -> None:
        """Keep nothing until armed again."""
        self._wanted = frozenset()
        self._select = None
        self.clear()

    def clear(self) -> None:
        """Drop the kept rows (and with them the references to the autograd graph)."""
        self.states = {}
        self.shape = None
        self._index = None
        self._running = False

    # -- hooks --------------------------------------------------------------------------------------
    def _pre_hook(self, i: int) -> Any:
        def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if i != 0 or not self._wanted:
                return
            hidden = block_input(args, kwargs)
            if hidden is None:
                raise CaptureError(f"Block 0 ({self._name(0)}) was called without a hidden-state tensor as its first "
                                   "argument or as hidden_states=; the tap cannot read state 0: pass blocks= with "
                                   "the list of blocks that take the residual stream.")
            if not self._usable(hidden):  # a forward pass without gradients: keep what the last one left
                self._running = False
                return
            self.clear()  # a new forward pass starts
            self._running = True
            if 0 in self._wanted:
                self._keep(0, hidden, 1.0)

        return hook

    def _post_hook(self, i: int) -> Any:
        def hook(module: Any, args: tuple[Any, ...], output: Any) -> None:
            if i + 1 in self._wanted and self._running:
                self._keep(i + 1, block_output(output), self.blocks.rescale(i))

        return hook

    def _usable(self, hidden: Any) -> bool:
        return not self._keep_graph or require_torch("capture").is_grad_enabled()

    def _keep(self, state: int, hidden: Any, scale: float) -> None:
        torch = require_torch("capture")
        where = "input of block 0" if state == 0 else f"output of block {state - 1}"
        if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3:
            got = f"shape {tuple(hidden.shape)}" if isinstance(hidden, torch.Tensor) else type(hidden).__name__
            raise CaptureError(f"The {where} ({self._name(max(state - 1, 0))}) is {got}, not a tensor of shape "
                               "(batch, length, width); pass blocks= with the list of blocks that carry the residual "
                               "stream.")
        if self.shape is None:  # the first kept state of this forward pass: pick its rows
            self.shape = (int(hidden.shape[0]), int(hidden.shape[1]))
            self._index = self._select(*self.shape, hidden.device)  # type: ignore[misc]
        elif tuple(hidden.shape[:2]) != self.shape:
            B, T = self.shape
            raise CaptureError(f"The {where} ({self._name(max(state - 1, 0))}) has shape {tuple(hidden.shape)}, not "
                               f"({B}, {T}, D) like state 0; pass blocks= with the blocks that carry the residual "
                               "stream.")
        b, t = self._index  # type: ignore[misc]
        rows = hidden[b.to(hidden.device), t.to(hidden.device)]  # (n, D), graph kept
        if not self._keep_graph:
            rows = rows.detach()
        self.states[state] = rows * scale if scale != 1.0 else rows

    def _name(self, i: int) -> str:
        return f"{self.blocks.path}.{i}" if self.blocks.path else str(i)
