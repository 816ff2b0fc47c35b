"""An offline English corpus: the documentation strings of this Python's standard library, as bytes.

Every ``*.py`` file under ``sysconfig.get_paths()["stdlib"]`` is read in sorted path order, skipping
``site-packages`` and test directories (``test``, ``tests``, ``idle_test``); each file is parsed with ``ast`` and
the docstrings of its module, classes and functions are taken in ``ast.walk`` order (``ast.get_docstring`` with
``clean=True``). Docstrings shorter than ``MIN_CHARS`` characters are dropped, and exact duplicates keep only their
first occurrence. A seeded permutation of the documents puts ``held_out`` of them (rounded, at least one) in the
held-out split, the rest in the training split; each split is its documents in original order joined by a blank
line and encoded as UTF-8. The model reads bytes: the vocabulary is the 256 byte values.

The corpus is cached (``.npz``: two uint8 arrays and a JSON header) and rebuilt whenever the Python version, the
seed, the held-out fraction or the file limit differ from the cached header.

Usage::

    .venv/bin/python -m benchmarks.koopman_layer.corpus --cache benchmarks/koopman_layer/results/corpus.npz
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import platform
import sys
import sysconfig
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Corpus", "MIN_CHARS", "build", "docstrings", "load", "stdlib_files"]

MIN_CHARS = 40  # shorter docstrings are mostly one-liners such as "Return self."
SKIP_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})
DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Corpus:
    """The two byte streams and a header describing how they were made."""

    train: np.ndarray  # (n_train,) uint8
    held: np.ndarray  # (n_held,) uint8
    meta: dict[str, Any]


def stdlib_files(root: Path | None = None, max_files: int | None = None) -> list[Path]:
    """The standard library's ``.py`` files in sorted order, test and site-packages directories left out."""
    root = Path(sysconfig.get_paths()["stdlib"]) if root is None else Path(root)
    files = [p for p in sorted(root.rglob("*.py")) if not SKIP_DIRS & set(p.relative_to(root).parts[:-1])]
    return files[:max_files] if max_files is not None else files


def docstrings(path: Path) -> list[str]:
    """The module, class and function docstrings of one file with at least ``MIN_CHARS`` characters."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in old modules
            tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    found = (ast.get_docstring(node, clean=True) for node in ast.walk(tree) if isinstance(node, DOC_NODES))
    return [d for d in found if d and len(d) >= MIN_CHARS]


def build(*, held_out: float = 0.1, seed: int = 0, max_files: int | None = None) -> Corpus:
    """Extract, deduplicate, split (seeded, by document) and encode the corpus."""
    files = stdlib_files(max_files=max_files)
    docs = list(dict.fromkeys(d for f in files for d in docstrings(f)))  # first occurrence of each
    if len(docs) < 2:
        raise ValueError(f"the standard library gave {len(docs)} docstring(s) from {len(files)} file(s); the corpus "
                         "needs at least 2 documents (raise max_files)")
    n_held = min(len(docs) - 1, max(1, round(held_out * len(docs))))
    held_ids = set(np.random.default_rng(seed).permutation(len(docs))[:n_held].tolist())
    held = SEPARATOR.join(d for i, d in enumerate(docs) if i in held_ids).encode("utf-8")
    train = SEPARATOR.join(d for i, d in enumerate(docs) if i not in held_ids).encode("utf-8")
    meta = {"python": platform.python_version(), "stdlib": sysconfig.get_paths()["stdlib"], "files": len(files),
            "documents": len(docs), "held_documents": n_held, "held_out": held_out, "seed": seed,
            "max_files": max_files, "min_chars": MIN_CHARS, "train_bytes": len(train), "held_bytes": len(held),
            "sha256": hashlib.sha256(train + b"\0" + held).hexdigest()}
    return Corpus(np.frombuffer(train, dtype=np.uint8).copy(), np.frombuffer(held, dtype=np.uint8).copy(), meta)


def _matches(meta: dict[str, Any], held_out: float, seed: int, max_files: int | None) -> bool:
    return (meta.get("python") == platform.python_version() and meta.get("held_out") == held_out
            and meta.get("seed") == seed and meta.get("max_files") == max_files and meta.get("min_chars") == MIN_CHARS)


def load(cache: str | Path, *, held_out: float = 0.1, seed: int = 0, max_files: int | None = None) -> Corpus:
    """The cached corpus if its header matches these settings, otherwise a fresh build written to ``cache``."""
    cache = Path(cache)
    if cache.is_file():
        with np.load(cache) as f:
            meta = json.loads(str(f["meta"]))
            if _matches(meta, held_out, seed, max_files):
                return Corpus(f["train"], f["held"], meta)
    corpus = build(held_out=held_out, seed=seed, max_files=max_files)
    cache.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".npz")  # written whole, then renamed: never half a file
    os.chmod(tmp, 0o644)
    with os.fdopen(fd, "wb") as f:
        np.savez(f, train=corpus.train, held=corpus.held, meta=np.array(json.dumps(corpus.meta)))
    os.replace(tmp, cache)
    return corpus


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.koopman_layer.corpus", description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default="benchmarks/koopman_layer/results/corpus.npz")
    ap.add_argument("--held-out", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-files", type=int, default=None)
    args = ap.parse_args(argv)
    corpus = load(args.cache, held_out=args.held_out, seed=args.seed, max_files=args.max_files)
    print(json.dumps(corpus.meta, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
