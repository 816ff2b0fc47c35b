"""Forward hooks that gather the sampled token rows of every state during one forward pass.

A forward pre-hook on block 0 reads state 0 (the input of block 0); a forward hook on block i reads state
i + 1 (its output; element 0 when the block returns a tuple). Each hook keeps only the sampled rows,
``hidden[local, positions]``, moved at once to the CPU as float32: never batch x length x D. Pre-hooks on
every block track which block is running, so a failing forward names its block. :class:`Recorder` removes
every handle on exit, also when the forward raises.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from koopscope.capture._deps import require_torch
from koopscope.capture.adapters import BlockList
from koopscope.errors import CaptureError

__all__ = ["Recorder", "StopForward", "block_input", "block_output"]


class StopForward(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by a hook once the last needed state is read, to skip the rest of the forward pass."""


def block_input(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The hidden-state tensor a block was called with (first positional argument or a known keyword), or None."""
    torch = require_torch("capture")
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    for key in ("hidden_states", "hidden", "x", "input"):
        if isinstance(kwargs.get(key), torch.Tensor):
            return kwargs[key]
    return None


def block_output(output: Any) -> Any:
    """The hidden state a block returned: the output itself, element 0 of a tuple, or of a ModelOutput."""
    if isinstance(output, tuple | list):
        return output[0] if output else None
    if hasattr(output, "to_tuple"):  # a transformers ModelOutput
        return output.to_tuple()[0]
    return output


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else "(no message)"


class Recorder:
    """Hooks on ``blocks`` for one forward pass of a (B, T) batch.

    Parameters
    ----------
    blocks : BlockList
        The resolved blocks.
    keep : tuple of int
        State indices to record (0 .. L).
    local, positions : ndarray of shape (n,)
        Batch row and position of each sampled token.
    shape : (B, T)
        Leading shape every hidden-state tensor must have.
    stop_after : int or None
        Raise :class:`StopForward` right after recording this state (None: let the forward finish).
    """

    def __init__(self, blocks: BlockList, keep: tuple[int, ...], local: np.ndarray, positions: np.ndarray,
                 shape: tuple[int, int], stop_after: int | None = None) -> None:
        self.blocks = blocks
        self.keep = set(keep)
        self.local, self.positions = local, positions
        self.shape = shape
        self.stop_after = stop_after
        self.states: dict[int, np.ndarray] = {}
        self.source_dtype: str | None = None
        self.running: int | None = None
        self.finished: int | None = None
        self.stopped = False  # True once StopForward was raised: the states are complete
        self._entered: set[int] = set()
        self._index: dict[Any, Any] = {}  # device -> (local, positions) index tensors
        self._handles: list[Any] = []

    # -- context manager ---------------------------------------------------------------------------
    def __enter__(self) -> Recorder:
        try:
            for i, block in enumerate(self.blocks.blocks):
                self._handles.append(block.register_forward_pre_hook(self._pre_hook(i), with_kwargs=True))
                self._handles.append(block.register_forward_hook(self._post_hook(i)))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook this recorder registered."""
        while self._handles:
            self._handles.pop().remove()

    # -- hooks --------------------------------------------------------------------------------------
    def _pre_hook(self, i: int) -> Any:
        def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if i in self._entered:
                raise CaptureError(f"Block {i} ({self._name(i)}) ran twice in one forward pass; capture needs each "
                                   "block to run once per forward: pass blocks= with a list of distinct blocks, and do "
                                   "not capture inside generate().")
            self._entered.add(i)
            self.running = i
            if i == 0 and 0 in self.keep:
                self._record(0, self._hidden_input(args, kwargs), 1.0)

        return hook

    def _post_hook(self, i: int) -> Any:
        def hook(module: Any, args: tuple[Any, ...], output: Any) -> None:
            self.running, self.finished = None, i
            if i + 1 in self.keep:
                self._record(i + 1, self._hidden_output(i, output), self.blocks.rescale(i))

        return hook

    def _hidden_input(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        hidden = block_input(args, kwargs)
        if hidden is not None:
            return hidden
        raise CaptureError(f"Block 0 ({self._name(0)}) was called without a hidden-state tensor as its first argument "
                           "or as hidden_states=; capture cannot read state 0: pass blocks= with the list of blocks "
                           "that take the residual stream.")

    def _hidden_output(self, i: int, output: Any) -> Any:
        return block_output(output)

    def _record(self, state: int, hidden: Any, scale: float) -> None:
        torch = require_torch("capture")
        where = "input of block 0" if state == 0 else f"output of block {state - 1}"
        if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3 or tuple(hidden.shape[:2]) != self.shape:
            got = f"shape {tuple(hidden.shape)}" if isinstance(hidden, torch.Tensor) else type(hidden).__name__
            B, T = self.shape
            raise CaptureError(f"The {where} ({self._name(max(state - 1, 0))}) is {got}, not a tensor of shape "
                               f"(batch, length, width) = ({B}, {T}, D); pass blocks= with the list of blocks that "
                               "carry the residual stream.")
        device = hidden.device
        if device not in self._index:
            self._index[device] = (torch.as_tensor(self.local, device=device),
                                   torch.as_tensor(self.positions, device=device))
        b, t = self._index[device]
        rows = hidden.detach()[b, t].to("cpu", torch.float32)  # (n, D)
        if scale != 1.0:
            rows = rows * scale  # a power of 2: exact
        self.states[state] = rows.numpy()
        if self.source_dtype is None:  # the lowest kept state's dtype (Mamba may keep later residuals in float32)
            self.source_dtype = str(hidden.dtype).removeprefix("torch.")
        if state == self.stop_after:
            self.stopped = True
            raise StopForward

    # -- diagnostics --------------------------------------------------------------------------------
    def _name(self, i: int) -> str:
        return f"{self.blocks.path}.{i}" if self.blocks.path else str(i)

    def failure(self, model: Any, err: BaseException) -> CaptureError:
        """A :class:`CaptureError` that says where in the forward pass ``err`` was raised."""
        n = len(self.blocks)
        if self.running is not None:
            where = f"inside block {self.running} of {n} ({self._name(self.running)})"
        elif self.finished is None:
            where = "before block 0 (in the embeddings or the input handling)"
        else:
            where = f"after block {self.finished} of {n} ({self._name(self.finished)}), outside the blocks"
        return CaptureError(f"The forward pass of {type(model).__name__} failed {where} with {type(err).__name__}: "
                            f"{_first_line(err)}; the capture hooks were removed, fix that error and capture again.")

    def check_complete(self, model: Any) -> None:
        """Raise :class:`CaptureError` if a state to keep was never recorded (a block that did not run)."""
        missing = sorted(self.keep - set(self.states))
        if missing:
            state = missing[0]
            block = max(state - 1, 0)
            raise CaptureError(f"Block {block} ({self._name(block)}) never ran during the forward pass of "
                               f"{type(model).__name__}, so state {state} was not captured; the model does not "
                               "execute this block list: pass blocks= with the blocks it runs.")
