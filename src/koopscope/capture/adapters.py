"""Where a model keeps its blocks: a table by ``config.model_type``, a fallback, and the ``blocks=`` override.

Paths in the table are relative to the Hugging Face base model (``model.base_model``: ``GPT2Model`` inside
``GPT2LMHeadModel``), so one entry serves the bare model and every head class. Resolution order:

1. ``blocks=``: an ``nn.ModuleList`` / ``nn.Sequential`` of the model, or its dotted path (any torch module);
2. the :data:`ADAPTERS` entry whose ``model_types`` holds ``config.model_type``;
3. the first ``nn.ModuleList`` (in ``named_modules`` order) whose length is the configured number of layers
   (``config.num_hidden_layers``, ``n_layer`` or ``num_layers``).

Anything else raises a :class:`ParameterError` that names ``blocks=``.

What ``output_hidden_states`` holds, as read in the transformers 5.23 sources and checked by the tests:
GPT-2, GPT-NeoX, LLaMA/Mistral/Qwen2 return L + 1 entries, [0] the input of block 0 and [i] the output of
block i - 1, except that [L] is after the final norm; BERT has no final norm, so all L + 1 match. Mamba and
RWKV return no embedding entry: [i] is the output of block i for i < L and [L] is after the final norm. RWKV
in eval mode also divides the weights of block b by 2 ** (b // rescale_every) and halves the hidden state
after every ``rescale_every`` blocks (an fp16 overflow guard); capture multiplies the output of block b by
2 ** (b // rescale_every) so the states are on the training-mode scale.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from koopscope.capture._deps import require_torch
from koopscope.errors import ParameterError

__all__ = ["ADAPTERS", "Adapter", "BlockList", "resolve_blocks"]


@dataclass(frozen=True)
class Adapter:
    """How to find the blocks of one model family (paths relative to ``model.base_model``)."""

    name: str
    model_types: tuple[str, ...]
    blocks: str
    final_norm: str | None
    takes_attention_mask: bool = True
    rwkv_rescale: bool = False


ADAPTERS: tuple[Adapter, ...] = (
    Adapter("gpt2", ("gpt2",), "h", "ln_f"),
    Adapter("gpt_neox", ("gpt_neox",), "layers", "final_layer_norm"),
    Adapter("llama", ("llama", "mistral", "qwen2"), "layers", "norm"),
    Adapter("bert", ("bert",), "encoder.layer", None),
    Adapter("mamba", ("mamba",), "layers", "norm_f"),
    # RWKV ignores attention_mask (and logs a warning when it gets one); capture right-pads every batch.
    Adapter("rwkv", ("rwkv",), "blocks", "ln_out", takes_attention_mask=False, rwkv_rescale=True),
)

_LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers")


@dataclass(frozen=True, eq=False)
class BlockList:
    """The resolved blocks of a model and how to run them.

    ``owner`` is the module holding the block list (RWKV keeps its rescaling flag there).
    """

    blocks: tuple[Any, ...]
    path: str
    adapter: str
    final_norm: str | None
    owner: Any
    takes_attention_mask: bool = True
    rwkv_rescale: bool = False

    def __len__(self) -> int:
        return len(self.blocks)

    def rescale(self, block: int) -> float:
        """Factor that brings block ``block``'s output to the training-mode scale (RWKV in eval mode), else 1."""
        every = int(getattr(getattr(self.owner, "config", None), "rescale_every", 0) or 0)
        if not self.rwkv_rescale or every <= 0 or not getattr(self.owner, "layers_are_rescaled", False):
            return 1.0
        return float(2 ** (block // every))


def _config(model: Any) -> Any:
    return getattr(model, "config", None)


def _model_type(model: Any) -> str | None:
    value = getattr(_config(model), "model_type", None)
    return value if isinstance(value, str) else None


def _configured_layers(model: Any) -> int | None:
    config = _config(model)
    for key in _LAYER_COUNT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _name_of(model: Any, module: Any) -> str | None:
    for name, m in model.named_modules():
        if m is module:
            return name
    return None


def _parent(model: Any, path: str) -> Any:
    return model.get_submodule(path.rpartition(".")[0]) if "." in path else model


def _is_block_list(obj: Any) -> bool:
    nn = require_torch("capture").nn
    return isinstance(obj, nn.ModuleList | nn.Sequential) and len(obj) > 0


def _unrecognised(model: Any, why: str, caller: str) -> ParameterError:
    return ParameterError(f"{caller} cannot find the block list of {type(model).__name__} ({why}); pass blocks= with "
                          "the nn.ModuleList of its blocks or its dotted path, e.g. blocks='model.layers'.")


def _build(model: Any, block_list: Any, path: str, adapter: str, final_norm: str | None = None,
           spec: Adapter | None = None) -> BlockList:
    return BlockList(
        blocks=tuple(block_list), path=path, adapter=adapter, final_norm=final_norm,
        owner=_parent(model, path),
        takes_attention_mask=spec.takes_attention_mask if spec else True,
        rwkv_rescale=spec.rwkv_rescale if spec else False,
    )


def _from_override(model: Any, blocks: Any, caller: str) -> BlockList:
    if isinstance(blocks, str):
        try:
            block_list = model.get_submodule(blocks)
        except AttributeError:
            raise ParameterError(f"The 'blocks' parameter of {caller} is {blocks!r}, which is not a submodule of "
                                 f"{type(model).__name__}; pass the dotted path of its block list as printed by "
                                 "print(model), e.g. 'transformer.h'.") from None
        path = blocks
    else:
        block_list = blocks
        path = _name_of(model, blocks) if _is_block_list(blocks) else None
        if _is_block_list(blocks) and path is None:
            raise ParameterError(f"The 'blocks' parameter of {caller} is a {type(blocks).__name__} that is not part of "
                                 f"{type(model).__name__}; pass the block list of this model or its dotted path.")
    if not _is_block_list(block_list):
        raise ParameterError(f"The 'blocks' parameter of {caller} must be a non-empty nn.ModuleList or nn.Sequential "
                             f"of the model, or its dotted path; got {type(block_list).__name__}.")
    table = _from_table(model)
    if table is not None and table.blocks == tuple(block_list):  # the table's own blocks: keep its settings (RWKV)
        return replace(table, adapter="blocks=")
    return _build(model, block_list, str(path), "blocks=")


def _from_table(model: Any) -> BlockList | None:
    model_type = _model_type(model)
    spec = next((a for a in ADAPTERS if model_type in a.model_types), None)
    if spec is None:
        return None
    base = getattr(model, "base_model", model)
    for root in (base, model):
        try:
            block_list = root.get_submodule(spec.blocks)
        except AttributeError:
            continue
        if _is_block_list(block_list):
            path = _name_of(model, block_list) or spec.blocks
            prefix = path[: -len(spec.blocks)]
            norm = None
            if spec.final_norm is not None:
                try:
                    root.get_submodule(spec.final_norm)
                    norm = prefix + spec.final_norm
                except AttributeError:
                    norm = None
            return _build(model, block_list, path, spec.name, norm, spec)
    return None


def _fallback(model: Any, caller: str) -> BlockList:
    n = _configured_layers(model)
    if n is None:
        raise _unrecognised(model, f"model_type {_model_type(model)!r} is not in the adapter table and its config "
                                   "gives no number of layers", caller)
    nn = require_torch("capture").nn
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return _build(model, module, name, "fallback")
    raise _unrecognised(model, f"model_type {_model_type(model)!r} is not in the adapter table and no nn.ModuleList "
                               f"has the configured {n} layers", caller)


def resolve_blocks(model: Any, blocks: Any = None, caller: str = "capture") -> BlockList:
    """The blocks of ``model``: from ``blocks=``, the adapter table, or the fallback (see the module docstring).

    ``caller`` is the function named in the error messages.
    """
    nn = require_torch("capture").nn
    if not isinstance(model, nn.Module):
        raise ParameterError(f"The 'model' parameter of {caller} must be a torch.nn.Module; got "
                             f"{type(model).__name__}: load it first, e.g. AutoModel.from_pretrained(path).")
    if blocks is not None:
        return _from_override(model, blocks, caller)
    return _from_table(model) or _fallback(model, caller)
