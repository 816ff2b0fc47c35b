"""Find every weight matrix of a model by module type, classify its family and detect tied storage.

The guard we replace selected modules by GPT-2 name suffixes, so LLaMA and BERT passed with zero layers
checked (``reference/anchors_rmt.md`` §1, weakness 4). Here a matrix is found by the **type** of the
module that holds it, its family comes from the tokens of its module path, and a model with no matrix
at all fails closed with :class:`~koopscope.errors.DataError`.

Every matrix is exposed in ``nn.Linear`` orientation, **(out, in)**: ``y = x W^T``. :meth:`WeightMatrix.matrix`
returns a view of the live parameter (a transpose, an expert index or a row slice, never a copy), so an
in-place edit through it (under ``torch.no_grad()``) reaches the model.

Module types (:data:`SOURCES`, in order; the first that matches a module wins)
---------------------------------------------------------------------------
- ``torch.nn.Linear`` (and subclasses), kind ``"linear"``.
- Hugging Face ``Conv1D`` (GPT-2, OpenAI GPT, ImageGPT), kind ``"conv1d"``: it stores W^T, (in, out), and is
  recognised by class name and module (``transformers.pytorch_utils``), so transformers is never imported here.
- ``torch.nn.Embedding`` (and subclasses such as OPT's learned positions), kind ``"embedding"``, kept only
  with ``embeddings=True``.
- Mixture-of-experts routers that are not ``nn.Linear`` (transformers >= 5: ``MixtralTopKRouter`` and its
  kin, any class whose name ends in "Router" and owns a 2-D ``weight`` used as ``F.linear(x, weight)``),
  kind ``"linear"``, family ``"router"``.
- Fused mixture-of-experts stores (transformers >= 5, ``@use_experts_implementation``: a module with an
  ``is_transposed`` attribute that owns 3-D parameters ``gate_up_proj`` / ``up_proj`` / ``down_proj`` of shape
  (E, out, in), or (E, in, out) when ``is_transposed``), kind ``"linear"``, family ``"expert"``: one 2-D view per
  expert, named ``"<param>[e]"``. Older checkpoints with one ``nn.Linear`` per expert (``experts.N.w1``) are
  found as linears.

Extend the search by rebinding ``SOURCES`` to a longer tuple of :class:`MatrixSource`. Quantised module
classes (bitsandbytes ``Linear8bitLt``/``Linear4bit``, GPTQ/AWQ ``QuantLinear``) are **not supported yet**: a
linear whose weight is not floating point raises :class:`~koopscope.errors.DataError`, and classes that are
not ``nn.Linear`` subclasses are not found. Norms, biases, 1-D parameters, convolutions (``nn.Conv1d``,
``nn.Conv2d``) and 3-D expert stores without the ``is_transposed`` contract are ignored.

Fused blocks (``split_fused=True``)
-----------------------------------
A fused matrix is split into row blocks of its (out, in) view, named ``"<param>[q]"``, ``"[k]"``, ``"[v]"``
or ``"[gate]"``, ``"[up]"``, each a view of the live storage. Supported layouts:

- ``Conv1D`` named ``c_attn`` with out = 3·in (GPT-2 self-attention): [q; k; v], equal thirds, as in GPT-2's
  ``c_attn(x).split(embed_dim, dim=2)``. Cross-attention ``c_attn`` (out = 2·in) is left whole.
- Phi-3 (``config.model_type == "phi3"``): ``qkv_proj`` is [q; k; v] with sizes (H·d, H_kv·d, H_kv·d) read from
  ``num_attention_heads``, ``num_key_value_heads`` and ``head_dim``; ``gate_up_proj`` is [gate; up], halves.
- Fused experts ``gate_up_proj``: [gate; up] halves when ``is_concatenated`` (the default), rows 0::2 and 1::2
  when interleaved (gpt-oss).

Left whole, on purpose: GPT-NeoX / Bloom / Falcon ``query_key_value`` interleave q, k and v **per head**
(rows laid out as [heads, 3, head_dim]), so the rows of one role are not evenly spaced and no (out, in) view of
them exists; CodeGen's ``qkv_proj`` (model-parallel blocks) and any other fused block whose layout we have
not verified against the model's forward are also left whole. A whole fused matrix keeps the family of its
path (``"attention"``).

Families (:func:`classify`)
---------------------------
From the lower-cased tokens of the module path, first rule that applies:

1. kind ``"embedding"`` → ``"embedding"``;
2. a router: token ``gate`` exactly (``block_sparse_moe.gate``, ``mlp.gate``), a token containing ``router``, or
   one ending in ``expert_gate`` → ``"router"`` (LLaMA's ``gate_proj`` is **not** a router);
3. a head or task layer (``lm_head``, ``embed_out``, ``head``, ``pooler``, ``classifier``, ``score``,
   ``qa_outputs``) → ``"other"`` (an LM head tied to the embedding is an alias and takes ``"embedding"``);
4. a linear named like an embedding table (``wte``, ``embed_tokens``, ``word_embeddings``...) → ``"embedding"``;
5. a token containing ``expert`` (``experts.3.w1``, ``shared_expert``) → ``"expert"``;
6. a token containing ``attn`` or ``attention`` (``self_attn``, ``attention.output.dense``) → ``"attention"``;
7. an FFN token (``mlp``, ``ffn``, ``feed_forward``, ``intermediate``, ``fc1``, ``c_fc``, ``gate_proj``,
   ``dense_h_to_4h``...), or BERT's block output ``layer.N.output`` → ``"ffn"``;
8. a q/k/v leaf outside any FFN (``q_proj``, ``query``, ``qkv_proj``, ``Wqkv``...) → ``"attention"``;
9. anything else (Mamba mixers, projections) → ``"other"``.

Tying
-----
Two matrices are tied when their (out, in) views address the same elements of the same storage (equal
storage pointer, offset, shape, strides and dtype; the Parameter identity on the meta device). The first
one found (module registration order, shared modules visited under every path) is canonical; the others are
aliases with ``tied_to`` set to its name and its family, so a correction touches shared storage once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from koopscope._validation import Options, check_param
from koopscope.errors import DataError

__all__ = [
    "FAMILIES", "KINDS", "SOURCES", "MatrixSource", "WeightMatrix", "classify", "find_matrices", "is_hf_conv1d",
]

FAMILIES: tuple[str, ...] = ("attention", "ffn", "embedding", "router", "expert", "other")
KINDS: tuple[str, ...] = ("linear", "conv1d", "embedding")

_OTHER_TOKENS = frozenset({"lm_head", "embed_out", "head", "pooler", "classifier", "score", "qa_outputs"})
_EMBEDDING_TOKENS = frozenset({
    "wte", "wpe", "embed_tokens", "embed_in", "embed_positions", "word_embeddings", "position_embeddings",
    "token_type_embeddings", "shared",
})
_ATTENTION_LEAVES = frozenset({
    "q_proj", "k_proj", "v_proj", "o_proj", "query", "key", "value", "qkv_proj", "wqkv", "c_attn",
    "query_key_value",
})
_FFN_TOKENS = frozenset({
    "mlp", "ffn", "feed_forward", "feedforward", "intermediate", "densereludense", "fc1", "fc2", "c_fc",
    "dense_h_to_4h", "dense_4h_to_h", "gate_proj", "up_proj", "down_proj", "gate_up_proj", "w1", "w2", "w3",
})


@dataclass(frozen=True)
class WeightMatrix:
    """One weight matrix of a model, in (out, in) orientation, with its family and tying.

    Attributes
    ----------
    name : str
        Parameter path, e.g. ``"transformer.h.0.attn.c_attn.weight[q]"`` (``[q]``/``[k]``/``[v]``/``[gate]``/
        ``[up]`` for a split fused block, ``[e]`` for expert e of a fused expert store).
    module : str
        Path of the module that owns the parameter.
    family : str
        One of :data:`FAMILIES`; an alias carries its canonical matrix's family.
    kind : str
        One of :data:`KINDS`: how the parameter is stored and used.
    shape : tuple of int
        (out, in), whatever the storage orientation.
    tied_to : str or None
        Name of the first discovered matrix with the same storage, else None.
    parameter : torch.nn.Parameter
        The live parameter (not compared, not shown).
    expert, transposed, rows
        How :meth:`matrix` is cut from ``parameter``: expert index of a 3-D store, whether the stored
        layout is (in, out), and the row slice of a fused block.
    """

    name: str
    module: str
    family: str
    kind: str
    shape: tuple[int, int]
    tied_to: str | None
    parameter: torch.nn.Parameter = field(compare=False, repr=False)
    expert: int | None = field(default=None, compare=False, repr=False)
    transposed: bool = field(default=False, compare=False, repr=False)
    rows: slice | None = field(default=None, compare=False, repr=False)

    def matrix(self) -> torch.Tensor:
        """The (out, in) view of the live parameter: no copy, so in-place edits reach the model.

        Edit under ``torch.no_grad()``: autograd refuses in-place writes to a view of a parameter that
        requires grad.
        """
        W = self.parameter if self.expert is None else self.parameter[self.expert]  # stored 2-D block
        W = W.T if self.transposed else W  # (out_full, in)
        return W if self.rows is None else W[self.rows]  # (out, in)


@dataclass(frozen=True)
class MatrixSource:
    """A module type that holds weight matrices: how to recognise it and the matrices it holds.

    ``views(path, module, split_fused, config)`` yields :class:`WeightMatrix` objects with ``tied_to=None``;
    ``config`` is the model's ``config`` attribute (or None).
    """

    name: str
    matches: Callable[[torch.nn.Module], bool]
    views: Callable[[str, torch.nn.Module, bool, Any], Iterator[WeightMatrix]]


def classify(module_path: str, kind: str) -> str:
    """The family of a matrix from its module path and kind (rules in the module docstring).

    >>> classify("model.layers.0.mlp.gate_proj", "linear"), classify("block_sparse_moe.gate", "linear")
    ('ffn', 'router')
    """
    check_param("module_path", module_path, str, caller="classify", fix="pass the module's dotted path")
    check_param("kind", kind, Options(KINDS), caller="classify")
    tokens = module_path.lower().split(".")
    if kind == "embedding":
        return "embedding"
    if any(t == "gate" or "router" in t or t.endswith("expert_gate") for t in tokens):
        return "router"
    if any(t in _OTHER_TOKENS for t in tokens):
        return "other"
    if any(t in _EMBEDDING_TOKENS for t in tokens):
        return "embedding"
    if any("expert" in t for t in tokens):
        return "expert"
    if any("attn" in t or "attention" in t for t in tokens):
        return "attention"
    if any(t in _FFN_TOKENS for t in tokens) or _is_block_output(tokens):
        return "ffn"
    return "attention" if tokens[-1] in _ATTENTION_LEAVES else "other"


def _is_block_output(tokens: list[str]) -> bool:
    """BERT-style ``layer.N.output.dense``: the output projection of the block's FFN."""
    return any(t == "output" and i > 0 and tokens[i - 1].isdigit() for i, t in enumerate(tokens))


def is_hf_conv1d(module: torch.nn.Module) -> bool:
    """Whether ``module`` is (a subclass of) transformers' ``Conv1D``, detected without importing transformers."""
    return any(c.__name__ == "Conv1D" and c.__module__.startswith("transformers") for c in type(module).__mro__)


def _join(path: str, leaf: str) -> str:
    return f"{path}.{leaf}" if path else leaf


def _weight(path: str, module: torch.nn.Module, pname: str, ndim: int) -> torch.nn.Parameter:
    """The parameter ``pname`` of ``module``, refused with a sentence unless it is a floating ``ndim``-D tensor."""
    W = getattr(module, pname)
    if W.dim() != ndim or not W.is_floating_point():
        raise DataError(f"Module {path or '<root>'!r} ({type(module).__name__}) stores {pname!r} as a {W.dim()}-D "
                        f"{W.dtype} tensor of shape {tuple(W.shape)}, not a floating {ndim}-D matrix; quantised module "
                        "classes are not supported yet: dequantise the model before checking its weights.")
    return W


def _blocks(sizes: tuple[int, ...], roles: tuple[str, ...]) -> list[tuple[str, slice]]:
    """Contiguous row blocks of the given sizes, labelled by role."""
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [(r, slice(s, s + n)) for r, s, n in zip(roles, starts, sizes, strict=True)]


def _phi3_qkv(config: Any, out: int) -> tuple[int, ...] | None:
    """(H d, H_kv d, H_kv d) of Phi-3's fused ``qkv_proj``, or None when the config does not add up to ``out``."""
    heads = getattr(config, "num_attention_heads", None)
    if not heads:
        return None
    kv = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    sizes = (heads * head_dim, kv * head_dim, kv * head_dim)
    return sizes if sum(sizes) == out else None


def _halves(config: Any, out: int) -> tuple[int, ...] | None:
    return (out // 2, out // 2) if out % 2 == 0 else None


# model_type -> {linear leaf name: (roles, block sizes from (config, out))}; only layouts checked against the
# model's own forward (tests/rmt/test_discovery.py) belong here.
FUSED_LINEARS: dict[str, dict[str, tuple[tuple[str, ...], Callable[[Any, int], tuple[int, ...] | None]]]] = {
    "phi3": {"qkv_proj": (("q", "k", "v"), _phi3_qkv), "gate_up_proj": (("gate", "up"), _halves)},
}


def _fused_blocks(path: str, kind: str, shape: tuple[int, int], config: Any) -> list[tuple[str, slice]]:
    """The (role, row slice) blocks of a fused matrix, or [] when it is not a fused layout we support."""
    leaf = path.rsplit(".", 1)[-1]
    out, n_in = shape
    if kind == "conv1d":
        return _blocks((n_in,) * 3, ("q", "k", "v")) if leaf == "c_attn" and out == 3 * n_in else []
    entry = FUSED_LINEARS.get(getattr(config, "model_type", None), {}).get(leaf)
    sizes = entry[1](config, out) if entry else None
    return _blocks(sizes, entry[0]) if sizes else []


def _split(wm: WeightMatrix, blocks: list[tuple[str, slice]]) -> Iterator[WeightMatrix]:
    """``wm`` itself, or one row-block view per role of a fused matrix."""
    if not blocks:
        yield wm
        return
    for role, rows in blocks:
        n = len(range(*rows.indices(wm.shape[0])))
        yield dataclasses.replace(wm, name=f"{wm.name}[{role}]", shape=(n, wm.shape[1]), rows=rows)


def _dense_views(kind: str, transposed: bool) -> Callable[[str, torch.nn.Module, bool, Any], Iterator[WeightMatrix]]:
    """The views of a module with one 2-D ``weight``, stored (out, in) or, when ``transposed``, (in, out)."""

    def views(path: str, module: torch.nn.Module, split_fused: bool, config: Any) -> Iterator[WeightMatrix]:
        W = _weight(path, module, "weight", 2)
        out, n_in = W.shape[::-1] if transposed else W.shape
        wm = WeightMatrix(name=_join(path, "weight"), module=path, family=classify(path, kind), kind=kind,
                          shape=(out, n_in), tied_to=None, parameter=W, transposed=transposed)
        yield from _split(wm, _fused_blocks(path, kind, wm.shape, config) if split_fused else [])

    return views


def _router_views(path: str, module: torch.nn.Module, split_fused: bool, config: Any) -> Iterator[WeightMatrix]:
    W = _weight(path, module, "weight", 2)  # (E, in), used as F.linear(x, W)
    yield WeightMatrix(name=_join(path, "weight"), module=path, family="router", kind="linear",
                       shape=tuple(W.shape), tied_to=None, parameter=W)


def _expert_views(path: str, module: torch.nn.Module, split_fused: bool, config: Any) -> Iterator[WeightMatrix]:
    transposed = bool(module.is_transposed)  # (E, in, out) instead of (E, out, in)
    interleaved = not getattr(module, "is_concatenated", True)
    for pname, P in module.named_parameters(recurse=False):
        if P.dim() != 3:
            continue  # biases (E, out) and scalars
        W = _weight(path, module, pname, 3)
        out, n_in = (W.shape[2], W.shape[1]) if transposed else (W.shape[1], W.shape[2])
        gated = split_fused and pname == "gate_up_proj" and getattr(module, "has_gate", True) and out % 2 == 0
        roles = [("gate", slice(0, None, 2)), ("up", slice(1, None, 2))] if interleaved else _blocks(
            (out // 2, out // 2), ("gate", "up"))
        for e in range(W.shape[0]):
            wm = WeightMatrix(name=f"{_join(path, pname)}[{e}]", module=path, family="expert", kind="linear",
                              shape=(out, n_in), tied_to=None, parameter=W, expert=e, transposed=transposed)
            yield from _split(wm, roles if gated else [])


def _is_router(module: torch.nn.Module) -> bool:
    W = getattr(module, "weight", None)
    return (type(module).__name__.lower().endswith("router") and isinstance(W, torch.nn.Parameter)
            and W.dim() == 2)


def _is_fused_experts(module: torch.nn.Module) -> bool:
    return isinstance(getattr(module, "is_transposed", None), bool) and any(
        P.dim() == 3 for P in module.parameters(recurse=False))


SOURCES: tuple[MatrixSource, ...] = (
    MatrixSource("torch.nn.Linear", lambda m: isinstance(m, torch.nn.Linear), _dense_views("linear", False)),
    MatrixSource("transformers Conv1D", is_hf_conv1d, _dense_views("conv1d", True)),
    MatrixSource("torch.nn.Embedding", lambda m: isinstance(m, torch.nn.Embedding), _dense_views("embedding", False)),
    MatrixSource("MoE routers", _is_router, _router_views),
    MatrixSource("fused MoE experts", _is_fused_experts, _expert_views),
)


def _storage_key(wm: WeightMatrix) -> tuple[Any, ...]:
    """What identifies the elements a view addresses: storage, offset, shape, strides, dtype."""
    W = wm.matrix()
    base = id(wm.parameter) if W.device.type == "meta" else W.untyped_storage().data_ptr()
    return str(W.device), base, W.storage_offset(), tuple(W.shape), W.stride(), W.dtype


def _discovered(model: torch.nn.Module, split_fused: bool) -> Iterator[WeightMatrix]:
    config = getattr(model, "config", None)
    for path, module in model.named_modules(remove_duplicate=False):
        source = next((s for s in SOURCES if s.matches(module)), None)
        if source is not None:
            yield from source.views(path, module, split_fused, config)


def _with_tying(found: Iterator[WeightMatrix]) -> list[WeightMatrix]:
    """Set ``tied_to`` (and the canonical family) on every matrix whose storage an earlier one already holds."""
    canonical: dict[tuple[Any, ...], WeightMatrix] = {}
    out = []
    for wm in found:
        first = canonical.setdefault(_storage_key(wm), wm)
        out.append(wm if first is wm else dataclasses.replace(wm, tied_to=first.name, family=first.family))
    return out


def find_matrices(model: torch.nn.Module, *, embeddings: bool = False, split_fused: bool = True) -> list[WeightMatrix]:
    """Every weight matrix of ``model``, found by module type, in module registration order.

    Parameters
    ----------
    model : torch.nn.Module
    embeddings : bool, default=False
        Keep the ``"embedding"`` family: embedding tables and their aliases (a tied LM head).
    split_fused : bool, default=True
        Split fused q/k/v and gate/up blocks into row-block views (supported layouts in the module docstring).

    Returns
    -------
    list of WeightMatrix
        Canonical matrices and their aliases (``tied_to`` set), in discovery order.

    Raises
    ------
    ParameterError
        ``model`` is not a module, or a flag is not a bool.
    DataError
        No matrix was found (fail closed), or a linear stores a quantised (non-floating) weight.
    """
    check_param("model", model, torch.nn.Module, caller="find_matrices",
                fix="pass the torch.nn.Module itself, e.g. the transformers model")
    for flag, value in (("embeddings", embeddings), ("split_fused", split_fused)):
        check_param(flag, value, bool, caller="find_matrices", fix="pass True or False")
    every = _with_tying(_discovered(model, split_fused))
    found = [wm for wm in every if embeddings or wm.family != "embedding"]
    if not found:
        searched = ", ".join(s.name for s in SOURCES)
        hint = "pass embeddings=True to include its embedding tables, or " if every else ""
        raise DataError(f"find_matrices found no weight matrix in {type(model).__name__} "
                        f"({sum(1 for _ in model.modules())} modules searched for {searched}); {hint}pass a model "
                        "with linear layers (quantised module classes are not supported yet).")
    return found
