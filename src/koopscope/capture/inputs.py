"""What capture runs on: token sequences, from tensors, texts, a JSONL prompts file or random ids.

Every input is normalised to a :class:`TokenBatch`: the real tokens of each sequence packed to the left
(right padding), so that padding never enters a state, a sequence's positions are 0, 1, ... whatever
padding side it came with, and recurrent models (Mamba, RWKV) never read a pad before a real token.
Sequences longer than the model's context are cut to their first ``max_length`` tokens, with a warning.

Nothing here imports torch: torch tensors are recognised by their type and converted with ``.cpu()``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from koopscope._backend import is_torch
from koopscope._validation import Interval, check_param, check_seed
from koopscope.capture._warn import warn
from koopscope.errors import DataError, ParameterError
from koopscope.store.provenance import sha256_text, sha256_token_ids

__all__ = ["TokenBatch", "as_token_batch", "random_tokens", "read_prompts"]

_JSONL_HINT = 'each line must be a JSON object like {"text": "..."}'


@dataclass(frozen=True, eq=False)
class TokenBatch:
    """Token sequences packed to the left, the form :func:`koopscope.capture.capture` runs on.

    Attributes
    ----------
    input_ids : ndarray of shape (S, T), int64
        Token ids; row s holds its ``lengths[s]`` real tokens first, then pad id 0.
    lengths : ndarray of shape (S,), int64
        Real tokens per sequence (after truncation).
    token_type_ids : ndarray of shape (S, T), int64, or None
        Segment ids (BERT), packed like ``input_ids``.
    texts : tuple of str, or None
        The prompt texts, when the tokens came from text.
    source : str
        Where the tokens came from: "tokens", "texts", "jsonl:<path>" or "random".
    n_truncated : int
        Sequences cut to the model context.
    """

    input_ids: np.ndarray
    lengths: np.ndarray
    token_type_ids: np.ndarray | None = None
    texts: tuple[str, ...] | None = None
    source: str = "tokens"
    n_truncated: int = 0

    def __post_init__(self) -> None:
        for name in ("input_ids", "lengths", "token_type_ids"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value).view()
                value.setflags(write=False)
                object.__setattr__(self, name, value)

    @property
    def attention_mask(self) -> np.ndarray:
        """(S, T) int64: 1 on real tokens, 0 on padding."""
        T = self.input_ids.shape[1]
        return (np.arange(T)[None, :] < self.lengths[:, None]).astype(np.int64)  # (S, T)

    @property
    def n_sequences(self) -> int:
        return int(self.lengths.size)

    @property
    def n_tokens(self) -> int:
        """Real (unpadded) tokens in all sequences."""
        return int(self.lengths.sum())

    def token_rows(self) -> list[np.ndarray]:
        """The real (unpadded) token ids of each sequence."""
        return [row[:n] for row, n in zip(self.input_ids, self.lengths, strict=True)]

    def token_ids_sha256(self) -> str:
        """:func:`koopscope.store.sha256_token_ids` of the real token ids (the hash every store records)."""
        return sha256_token_ids(self.token_rows())

    def prompt_sha256(self) -> str | None:
        """:func:`koopscope.store.sha256_text` of the prompt texts, or None for token inputs."""
        return None if self.texts is None else sha256_text(list(self.texts))

    def to_torch(self, device: Any = None) -> dict[str, Any]:
        """``input_ids``, ``attention_mask`` (and ``token_type_ids``) as torch tensors, for ``model(**batch)``."""
        from koopscope.capture._deps import require_torch

        torch = require_torch("TokenBatch.to_torch")
        out = {"input_ids": torch.tensor(self.input_ids, device=device),
               "attention_mask": torch.tensor(self.attention_mask, device=device)}
        if self.token_type_ids is not None:
            out["token_type_ids"] = torch.tensor(self.token_type_ids, device=device)
        return out

    def truncated(self, max_length: int | None) -> TokenBatch:
        """This batch with every sequence cut to its first ``max_length`` tokens, warning when one was cut."""
        if max_length is None or self.input_ids.shape[1] <= max_length:
            return self
        n_cut = int((self.lengths > max_length).sum())
        if n_cut:
            warn(f"{n_cut} of {self.n_sequences} input sequence(s) are longer than the model context of "
                          f"{max_length} tokens and were truncated to their first {max_length} tokens.")
        types = None if self.token_type_ids is None else self.token_type_ids[:, :max_length]
        return TokenBatch(self.input_ids[:, :max_length], np.minimum(self.lengths, max_length), types, self.texts,
                          self.source, self.n_truncated + n_cut)


def random_tokens(n_sequences: int, length: int, vocab_size: int, seed: int = 0) -> TokenBatch:
    """Uniform random token ids, for profiling a model at initialisation without a tokenizer or data.

    >>> random_tokens(2, 4, vocab_size=100).input_ids.shape
    (2, 4)
    """
    for name, value in (("n_sequences", n_sequences), ("length", length), ("vocab_size", vocab_size)):
        check_param(name, value, Interval(int, 1, None), caller="random_tokens", fix="pass a positive int")
    rng = np.random.default_rng(check_seed(seed, "random_tokens"))
    ids = rng.integers(0, vocab_size, size=(n_sequences, length), dtype=np.int64)  # (S, T)
    return TokenBatch(ids, np.full(n_sequences, length, dtype=np.int64), source="random")


def read_prompts(path: str | os.PathLike[str]) -> list[str]:
    """The ``"text"`` of every non-blank line of a JSONL prompts file.

    Raises :class:`DataError` naming the line for malformed JSON, a line that is not an object with a
    string ``"text"``, or bytes that are not UTF-8; and for a missing or empty file.
    """
    p = Path(path)
    if not p.is_file():
        what = "is a directory" if p.is_dir() else "does not exist"
        raise DataError(f"The prompts file {str(p)!r} {what}; pass the path of a JSONL file in which {_JSONL_HINT}.")
    texts: list[str] = []
    for lineno, raw in enumerate(p.read_bytes().splitlines(), start=1):
        try:
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"Line {lineno} of the prompts file {str(p)!r} is not valid UTF-8 (byte {err.start}); "
                            "save the file as UTF-8.") from None
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"Line {lineno} of the prompts file {str(p)!r} is not valid JSON ({err.msg} at column "
                            f"{err.colno}); {_JSONL_HINT}.") from None
        if not isinstance(record, dict) or "text" not in record:
            raise DataError(f"Line {lineno} of the prompts file {str(p)!r} has no \"text\" field (got "
                            f"{type(record).__name__} {_short(line)}); {_JSONL_HINT}.")
        if not isinstance(record["text"], str):
            raise DataError(f"Line {lineno} of the prompts file {str(p)!r} has a \"text\" field of type "
                            f"{type(record['text']).__name__}; {_JSONL_HINT}.")
        texts.append(record["text"])
    if not texts:
        raise DataError(f"The prompts file {str(p)!r} is empty (no non-blank lines); {_JSONL_HINT}.")
    return texts


def as_token_batch(inputs: object, *, tokenizer: Any = None, max_length: int | None = None,
                   caller: str = "capture") -> TokenBatch:
    """Normalise any supported input to a left-packed :class:`TokenBatch`, cut to ``max_length`` tokens.

    ``inputs`` is a :class:`TokenBatch`; a mapping (dict, ``BatchEncoding``) with ``input_ids`` (S, T) and
    optionally ``attention_mask`` and ``token_type_ids``; an (S, T) integer array or tensor of ids; a list of
    token-id sequences (ragged); a list of strings (with ``tokenizer``); or the path of a JSONL prompts file
    (with ``tokenizer``). Positions whose ``attention_mask`` is 0 are dropped.
    """
    if isinstance(inputs, TokenBatch):
        batch = inputs
    elif isinstance(inputs, str | os.PathLike):
        texts = read_prompts(inputs)
        batch = _tokenize(texts, tokenizer, f"jsonl:{os.fspath(inputs)}", caller)
    elif isinstance(inputs, Mapping):
        if "input_ids" not in inputs:
            raise ParameterError(f"The inputs mapping passed to {caller} has no 'input_ids' (keys: "
                                 f"{sorted(map(str, inputs))}); pass the output of a tokenizer or a dict with "
                                 "'input_ids' and 'attention_mask'.")
        batch = _from_arrays(inputs["input_ids"], inputs.get("attention_mask"), inputs.get("token_type_ids"), caller)
    elif is_torch(inputs) or isinstance(inputs, np.ndarray):
        batch = _from_arrays(inputs, None, None, caller)
    elif isinstance(inputs, Sequence) and len(inputs) > 0 and all(isinstance(t, str) for t in inputs):
        batch = _tokenize(list(inputs), tokenizer, "texts", caller)
    elif isinstance(inputs, Sequence) and len(inputs) > 0:
        rows = [_id_row(row, k, caller) for k, row in enumerate(inputs)]
        batch = _pack(rows, None, texts=None, source="tokens")
    else:
        what = "an empty sequence" if isinstance(inputs, Sequence) else f"a {type(inputs).__name__}"
        raise ParameterError(f"The inputs passed to {caller} are {what}; pass a dict with 'input_ids' and "
                             "'attention_mask', an (S, T) array of token ids, a list of strings with tokenizer=, "
                             "or the path of a JSONL prompts file.")
    if batch.n_tokens == 0:
        raise DataError(f"The inputs passed to {caller} contain no tokens (every sequence is empty or fully "
                        "masked); pass at least one non-empty sequence.")
    return batch.truncated(max_length)


def _short(text: str, limit: int = 40) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


def _to_numpy(x: object) -> np.ndarray:
    if is_torch(x):
        return x.detach().cpu().numpy()  # type: ignore[attr-defined]
    return np.asarray(x)


def _int_array(name: str, x: object, caller: str) -> np.ndarray:
    try:
        a = _to_numpy(x)
    except (TypeError, ValueError):
        raise DataError(f"{name} passed to {caller} could not be read as an integer array (ragged rows?); pass "
                        "an (S, T) array with an attention_mask, or a list of token-id lists.") from None
    if a.dtype.kind == "b" and name == "attention_mask":
        a = a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise DataError(f"{name} passed to {caller} has dtype {a.dtype}; expected integer token ids: tokenize the "
                        "text first, or pass a list of strings with tokenizer=.")
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise DataError(f"{name} passed to {caller} must have shape (S, T) (sequences x positions); got shape "
                        f"{a.shape}.")
    return a.astype(np.int64, copy=False)


def _from_arrays(ids: object, mask: object, types: object, caller: str) -> TokenBatch:
    input_ids = _int_array("input_ids", ids, caller)
    arrays = {"attention_mask": mask, "token_type_ids": types}
    parsed = {}
    for name, value in arrays.items():
        if value is None:
            parsed[name] = None
            continue
        parsed[name] = _int_array(name, value, caller)
        if parsed[name].shape != input_ids.shape:
            raise DataError(f"{name} passed to {caller} has shape {parsed[name].shape}, but input_ids has shape "
                            f"{input_ids.shape}; they must match position for position.")
    keep = np.ones(input_ids.shape, dtype=bool) if parsed["attention_mask"] is None else parsed["attention_mask"] != 0
    if parsed["attention_mask"] is not None and not np.isin(parsed["attention_mask"], (0, 1)).all():
        raise DataError(f"attention_mask passed to {caller} has values other than 0 and 1; pass 1 for real tokens "
                        "and 0 for padding.")
    rows = [_check_ids(r[k], s, caller) for s, (r, k) in enumerate(zip(input_ids, keep, strict=True))]
    type_rows = None if parsed["token_type_ids"] is None else [
        r[k] for r, k in zip(parsed["token_type_ids"], keep, strict=True)]
    return _pack(rows, type_rows, texts=None, source="tokens")


def _check_ids(row: np.ndarray, s: int, caller: str) -> np.ndarray:
    if row.size and row.min() < 0:
        raise DataError(f"Sequence {s} passed to {caller} has a negative token id ({int(row.min())}); token ids "
                        "must be >= 0 (mark padding with attention_mask = 0 instead).")
    return row


def _id_row(row: object, s: int, caller: str) -> np.ndarray:
    try:
        a = _to_numpy(row)
    except (TypeError, ValueError):
        a = np.asarray([], dtype=object)
    if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
        raise DataError(f"Sequence {s} passed to {caller} is not a 1-D sequence of integer token ids (got "
                        f"{type(row).__name__}); pass a list of token-id lists, or strings with tokenizer=.")
    return _check_ids(a.astype(np.int64), s, caller)


def _pack(rows: list[np.ndarray], type_rows: list[np.ndarray] | None, *, texts: tuple[str, ...] | None,
          source: str) -> TokenBatch:
    lengths = np.array([r.size for r in rows], dtype=np.int64)  # (S,)
    T = max(int(lengths.max()), 1)
    ids = np.zeros((len(rows), T), dtype=np.int64)  # (S, T), pad id 0
    types = None if type_rows is None else np.zeros((len(rows), T), dtype=np.int64)
    for s, row in enumerate(rows):
        ids[s, : row.size] = row
        if types is not None and type_rows is not None:
            types[s, : row.size] = type_rows[s]
    return TokenBatch(ids, lengths, types, texts, source)


def _tokenize(texts: list[str], tokenizer: Any, source: str, caller: str) -> TokenBatch:
    if tokenizer is None:
        raise ParameterError(f"The inputs passed to {caller} are text ({len(texts)} prompt(s)) but tokenizer is None; "
                             "pass tokenizer=, e.g. AutoTokenizer.from_pretrained(<the model's directory>).")
    if not callable(tokenizer):
        raise ParameterError(f"The tokenizer passed to {caller} is a {type(tokenizer).__name__}, which is not "
                             "callable; pass a Hugging Face tokenizer or a function text list -> {'input_ids': ...}.")
    encoded = tokenizer(texts)
    ids = encoded.get("input_ids") if isinstance(encoded, Mapping) else None
    if ids is None or len(ids) != len(texts):
        raise DataError(f"The tokenizer passed to {caller} did not return one 'input_ids' list per text for "
                        f"{len(texts)} texts; pass a tokenizer whose call on a list of strings returns "
                        "{'input_ids': [[...], ...]}.")
    rows = [_id_row(r, s, caller) for s, r in enumerate(ids)]
    types = encoded.get("token_type_ids")
    type_rows = None if types is None else [np.asarray(t, dtype=np.int64) for t in types]
    return _pack(rows, type_rows, texts=tuple(texts), source=source)
