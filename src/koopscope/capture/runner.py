"""``capture``: plan the tokens and batches, run them through the hooked model, collect the states.

:func:`prepare` does everything that needs no forward pass (resolve the blocks, normalise and truncate the
inputs, sample the tokens, split the batches) and returns a :class:`CaptureRun`. ``run.chunks(start=k)``
then runs the batches one at a time, from batch ``k``, and yields each batch's rows of every kept state as
soon as they exist, so a writer can stream them to disk and an interrupted run can resume;
``run.collect()`` gathers them into :class:`ResidualStates`. :func:`capture` is ``prepare(...).collect()``.

Each forward pass runs under ``torch.no_grad()``, in eval mode unless ``eval_mode=False`` (the modules'
own modes are restored afterwards), with ``use_cache=False`` and without ``output_hidden_states``, and stops
right after the last state it needs, so the final norm and the head (logits) never run.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from koopscope._validation import Interval, check_param, check_seed
from koopscope.capture._deps import require_torch
from koopscope.capture.adapters import BlockList, resolve_blocks
from koopscope.capture.hooks import Recorder, StopForward
from koopscope.capture.inputs import TokenBatch, as_token_batch
from koopscope.capture.sampling import Batch, plan_batches, sample_tokens
from koopscope.capture.states import CONVENTION, ResidualStates
from koopscope.errors import CaptureError, DataError, ParameterError

__all__ = ["CaptureChunk", "CaptureRun", "capture", "prepare"]

# RKSP: N = 2048 token states per transition (DESIGN.md, "Paper defaults").
MAX_TOKENS = 2048
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "context_length", "n_ctx")


@dataclass(frozen=True, eq=False)
class CaptureChunk:
    """The rows of every kept state contributed by one batch (``rows`` slices the run's ``token_index``)."""

    batch: int
    rows: slice
    states: tuple[np.ndarray, ...]  # each (n, D) float32, aligned with CaptureRun.layers
    source_dtype: str


@dataclass(frozen=True, eq=False)
class CaptureRun:
    """A planned capture: the model, its blocks, the sampled tokens and the batches, not yet run.

    ``token_index`` (N, 2) is known before any forward pass; ``chunks`` runs the batches and
    ``collect`` returns the :class:`ResidualStates`.
    """

    model: Any
    blocks: BlockList
    tokens: TokenBatch
    token_index: np.ndarray
    batches: tuple[Batch, ...]
    layers: tuple[int, ...]
    device: Any
    eval_mode: bool
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def n_batches(self) -> int:
        return len(self.batches)

    @property
    def n_tokens(self) -> int:
        return int(self.token_index.shape[0])

    def chunks(self, start: int = 0) -> Iterator[CaptureChunk]:
        """Run batches ``start``, ``start + 1``, ... one forward pass at a time, yielding each one's rows."""
        check_param("start", start, Interval(int, 0, self.n_batches), caller="CaptureRun.chunks",
                    fix=f"pass the index of the first batch to run, at most {self.n_batches}")
        for batch in self.batches[start:]:
            yield self.run_batch(batch)

    def run_batch(self, batch: Batch) -> CaptureChunk:
        """One forward pass over ``batch`` with the hooks on; the hooks are removed even when it raises."""
        torch = require_torch("capture")
        seqs = batch.sequences
        T = int(self.tokens.lengths[seqs].max())
        ids = torch.as_tensor(self.tokens.input_ids[seqs, :T], device=self.device)  # (B, T)
        mask = torch.as_tensor(self.tokens.attention_mask[seqs, :T], device=self.device)  # (B, T)
        types = None if self.tokens.token_type_ids is None else torch.as_tensor(
            self.tokens.token_type_ids[seqs, :T], device=self.device)  # (B, T)
        args, kwargs = _call_arguments(self.model, self.blocks, ids, mask, types)
        recorder = Recorder(self.blocks, self.layers, batch.local, batch.positions, (len(seqs), T),
                            stop_after=self.layers[-1])
        with torch.no_grad(), _eval_modes(self.model, self.eval_mode):
            try:
                with recorder:
                    self.model(*args, **kwargs)
            except StopForward:
                pass
            except CaptureError:
                raise
            except Exception as err:
                if not recorder.stopped:  # a model that wrapped our StopForward in its own error is done too
                    raise recorder.failure(self.model, err) from err
        recorder.check_complete(self.model)
        states = tuple(recorder.states[i] for i in self.layers)
        return CaptureChunk(batch.index, batch.rows, states, recorder.source_dtype or "unknown")

    def collect(self) -> ResidualStates:
        """Run every batch and return the states, filled in place (no batch x length x D buffer)."""
        out: list[np.ndarray] = []
        dtype = "unknown"
        for chunk in self.chunks():
            if not out:
                D = chunk.states[0].shape[1]
                out = [np.empty((self.n_tokens, D), dtype=np.float32) for _ in self.layers]  # (N, D) each
                dtype = chunk.source_dtype
            for buf, rows in zip(out, chunk.states, strict=True):
                buf[chunk.rows] = rows
            del chunk  # release this batch's rows before the next forward runs (peak = states + one batch)
        return ResidualStates(tuple(out), self.layers, self.token_index, dtype, dict(self.provenance))


def capture(model: Any, inputs: object, *, tokenizer: Any = None, max_tokens: int | None = MAX_TOKENS, seed: int = 0,
            layers: Sequence[int] | None = None, blocks: Any = None, batch_size: int = 8, device: Any = None,
            eval_mode: bool = True) -> ResidualStates:
    """Residual-stream states of ``model`` at N sampled tokens of ``inputs``, one (N, D) array per state.

    State 0 is the input of block 0 (after the embeddings), state i the output of block i - 1, and the last
    state (L) the output of the last block before any final norm (DESIGN.md, "Residual-stream indexing"):
    L + 1 states and L transitions. They are read with forward hooks, never from ``output_hidden_states``.

    Parameters
    ----------
    model : torch.nn.Module
        A Hugging Face model (GPT-2, GPT-NeoX/Pythia, LLaMA, Mistral, Qwen2, BERT/MiniLM, Mamba, RWKV, or any
        model whose blocks are the first ``nn.ModuleList`` of ``config.num_hidden_layers`` modules), or any torch
        module with ``blocks=``. Models dispatched with accelerate (``device_map``, CPU or disk offload) work.
    inputs : dict, array, list or path
        A dict or ``BatchEncoding`` with ``input_ids`` (S, T) and ``attention_mask`` (padding is never sampled
        and never enters a state); an (S, T) integer array or tensor; a list of token-id lists; a list of
        strings (with ``tokenizer``); the path of a JSONL prompts file, one ``{"text": ...}`` per line (with
        ``tokenizer``); or a :class:`TokenBatch` such as :func:`random_tokens`. Sequences longer than the
        model context are truncated, with a warning.
    tokenizer : callable, optional
        Turns a list of strings into ``{"input_ids": [[...], ...]}`` (a Hugging Face tokenizer).
    max_tokens : int or None, default 2048
        N, the token positions drawn uniformly without replacement from all real tokens (RKSP default). More
        than available: all are used, with a warning; None: all, silently.
    seed : int, default 0
        Seed of ``numpy.random.default_rng`` for the token sample.
    layers : sequence of int, optional
        State indices to keep, in 0 .. L (negative ones count from the end); default all.
    blocks : nn.ModuleList, nn.Sequential or str, optional
        The block list to hook, or its dotted path; overrides the adapter table.
    batch_size : int, default 8
        Sequences per forward pass.
    device : str or torch.device, optional
        Where the forward runs: the inputs go there and a model that is not dispatched with accelerate is
        moved there with ``model.to(device)`` (and stays). Default: the device of the model's parameters.
    eval_mode : bool, default True
        Run in eval mode (dropout off), restoring every module's mode afterwards; False keeps the model's modes.

    Returns
    -------
    ResidualStates
        float32 CPU arrays of the same N tokens for every kept state, ``token_index`` (N, 2) and
        ``provenance``.

    Raises
    ------
    ParameterError
        A bad option, a model whose blocks cannot be found (the message names ``blocks=``), ``layers`` out of range.
    DataError
        Unreadable inputs: a malformed JSONL line (named by number), no tokens, token ids beyond the vocabulary.
    CaptureError
        The forward pass failed (the message names the block); the hooks are removed first.
    MissingDependencyError
        torch is not installed.
    """
    return prepare(model, inputs, tokenizer=tokenizer, max_tokens=max_tokens, seed=seed, layers=layers,
                   blocks=blocks, batch_size=batch_size, device=device, eval_mode=eval_mode).collect()


def prepare(model: Any, inputs: object, *, tokenizer: Any = None, max_tokens: int | None = MAX_TOKENS, seed: int = 0,
            layers: Sequence[int] | None = None, blocks: Any = None, batch_size: int = 8, device: Any = None,
            eval_mode: bool = True) -> CaptureRun:
    """Plan a capture without running it; same parameters as :func:`capture`."""
    torch = require_torch("capture")
    check_param("max_tokens", max_tokens, Interval(int, 1, None), None, caller="capture",
                fix="pass the number of token positions to sample, or None for all")
    seed = check_seed(seed, "capture")
    check_param("batch_size", batch_size, Interval(int, 1, None), caller="capture", fix="pass sequences per forward")
    check_param("eval_mode", eval_mode, bool, caller="capture", fix="pass True or False")
    target = _check_device(torch, device)
    block_list = resolve_blocks(model, blocks)
    kept = _check_layers(layers, len(block_list))
    context = _context_length(model)
    tokens = as_token_batch(inputs, tokenizer=tokenizer, max_length=context, caller="capture")
    _check_vocabulary(model, tokens)
    token_index = sample_tokens(tokens.lengths, max_tokens, seed)
    batches = plan_batches(token_index, batch_size)
    dispatched = any(hasattr(m, "_hf_hook") for m in model.modules())
    dev = _place(torch, model, target, dispatched)
    provenance = _provenance(model, block_list, tokens, token_index, batches, kept, seed=seed, max_tokens=max_tokens,
                             batch_size=batch_size, context=context, device=dev, dispatched=dispatched,
                             eval_mode=eval_mode)
    return CaptureRun(model, block_list, tokens, token_index, batches, kept, dev, eval_mode, provenance)


def _check_layers(layers: Sequence[int] | None, n_blocks: int) -> tuple[int, ...]:
    n_states = n_blocks + 1
    if layers is None:
        return tuple(range(n_states))
    if isinstance(layers, str | bytes) or not isinstance(layers, Sequence | np.ndarray) or len(layers) == 0:
        raise ParameterError(f"The 'layers' parameter of capture must be a non-empty sequence of state indices or "
                             f"None; got {layers!r}: pass e.g. [0, 1, 2] or None for all {n_states} states.")
    kept = set()
    for value in layers:
        ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
        if not ok or not -n_states <= value <= n_blocks:
            raise ParameterError(f"The 'layers' parameter of capture holds {value!r}, outside the {n_states} states "
                                 f"0..{n_blocks} of this {n_blocks}-block model; pass state indices in [0, {n_blocks}] "
                                 f"(or negative ones down to -{n_states}).")
        kept.add(int(value) % n_states)
    return tuple(sorted(kept))


def _context_length(model: Any) -> int | None:
    config = getattr(model, "config", None)
    for key in _CONTEXT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _check_vocabulary(model: Any, tokens: TokenBatch) -> None:
    get = getattr(model, "get_input_embeddings", None)
    try:
        size = getattr(get(), "num_embeddings", None) if callable(get) else None
    except (NotImplementedError, AttributeError):
        size = None
    if size is None:
        return
    top = int(tokens.input_ids.max())
    if top >= size:
        s = int(np.argwhere(tokens.input_ids == top)[0, 0])
        raise DataError(f"Sequence {s} of the inputs passed to capture has token id {top}, beyond the {size} "
                        f"embeddings of {type(model).__name__}; tokenize with the model's own tokenizer.")


def _check_device(torch: Any, device: Any) -> Any:
    if device is None:
        return None
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ParameterError(f"The 'device' parameter of capture is {device!r}, which torch does not know; pass "
                             "e.g. 'cpu', 'cuda' or 'cuda:1'.") from None


def _place(torch: Any, model: Any, device: Any, dispatched: bool) -> Any:
    """The device the inputs go to; moves a model that is not dispatched when ``device`` is given."""
    if device is not None:
        if not dispatched and any(p.device != device for p in model.parameters()):
            model.to(device)
        return device
    if dispatched:  # accelerate's hooks move the inputs to each module's execution device
        return torch.device("cpu")
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.device.type != "meta":
            return tensor.device
    return torch.device("cpu")


def _is_transformers_model(model: Any) -> bool:
    return any(c.__name__ == "PreTrainedModel" and c.__module__.startswith("transformers.")
               for c in type(model).__mro__)


def _call_arguments(model: Any, blocks: BlockList, ids: Any, mask: Any, types: Any
                    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword arguments for ``model``: only the ones its ``forward`` takes."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return (ids,), {}
    named = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    open_kwargs = _is_transformers_model(model) and any(p.kind == p.VAR_KEYWORD for p in params.values())
    if "input_ids" not in named:
        return (ids,), {}
    kwargs: dict[str, Any] = {"input_ids": ids}
    if "attention_mask" in named and blocks.takes_attention_mask:
        kwargs["attention_mask"] = mask
    if "token_type_ids" in named and types is not None:
        kwargs["token_type_ids"] = types
    if "use_cache" in named:
        kwargs["use_cache"] = False
    for flag in ("output_hidden_states", "output_attentions"):
        if flag in named or open_kwargs:
            kwargs[flag] = False
    return (), kwargs


@contextmanager
def _eval_modes(model: Any, enabled: bool) -> Iterator[None]:
    """Eval mode for the duration, then every module's own mode back."""
    saved = [(m, m.training) for m in model.modules()] if enabled else []
    if not any(flag for _, flag in saved):
        yield
        return
    model.eval()
    try:
        yield
    finally:
        for module, flag in saved:
            module.training = flag


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("torch", "transformers", "accelerate"):
        module = sys.modules.get(name)
        out[name] = getattr(module, "__version__", None) if module else None
    return out


def _provenance(model: Any, blocks: BlockList, tokens: TokenBatch, token_index: np.ndarray,
                batches: tuple[Batch, ...], layers: tuple[int, ...], *, seed: int, max_tokens: int | None,
                batch_size: int, context: int | None, device: Any, dispatched: bool, eval_mode: bool
                ) -> dict[str, Any]:
    config = getattr(model, "config", None)
    every = int(getattr(config, "rescale_every", 0) or 0) if blocks.rwkv_rescale else 0
    rescale = (f"RWKV rescale_every={every}: in eval mode transformers halves the hidden state after every {every} "
               f"blocks and scales the block weights to match; capture multiplied the output of block b by "
               f"2**(b // {every}), so the states are on the training-mode scale") if every > 0 else None

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) and value else None

    return {
        "model_class": type(model).__name__,
        "name_or_path": text(getattr(config, "_name_or_path", None)),
        "commit_hash": text(getattr(config, "_commit_hash", None)),
        "model_type": text(getattr(config, "model_type", None)),
        "n_blocks": len(blocks),
        "blocks_path": blocks.path,
        "final_norm": blocks.final_norm,
        "adapter": blocks.adapter,
        "convention": CONVENTION,
        "layers": list(layers),
        "seed": seed,
        "max_tokens": max_tokens,
        "n_tokens": int(token_index.shape[0]),
        "n_tokens_available": tokens.n_tokens,
        "n_sequences": tokens.n_sequences,
        "n_sequences_run": int(sum(b.sequences.size for b in batches)),
        "batch_size": batch_size,
        "context_length": context,
        "n_truncated": tokens.n_truncated,
        "input_source": tokens.source,
        "token_ids_sha256": tokens.token_ids_sha256(),
        "prompt_sha256": tokens.prompt_sha256(),
        "mode": "eval" if eval_mode or not model.training else "train",
        "device": str(device),
        "dispatched": dispatched,
        "rescale": rescale,
        "versions": _versions(),
    }
