"""``koopscope extract``: capture a model's residual stream on a prompts file into a resumable zarr store.

The work is the library's: :func:`koopscope.capture.loading.load_model` resolves MODEL offline,
:func:`koopscope.capture.prepare` plans the capture (tokens, sample, batches), and each batch's rows are
appended to a :class:`koopscope.store.TrajectoryStore` as soon as they exist. The store is created with
``resume=True`` semantics: rerunning the same command continues an interrupted ``<out>.partial`` at its first
unwritten batch (and does nothing for a complete store), while a store made with a different model, revision,
prompts, seed, token budget, layers or dtype is refused with exit code 2.

The store is created when the first batch is captured, with that batch's width and hidden-state dtype, so
nothing is written before there is something to keep.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from koopscope.capture.loading import DEMO_NAMES, DEVICES, DTYPES
from koopscope.cli._common import EXIT_OK, bounded, emit, emit_json, progress
from koopscope.errors import DataError, ParameterError

NAME = "extract"
HELP = "capture a model's residual-stream states on a prompts file into a resumable zarr store"

# Keys of the capture's own provenance that the store's provenance already records at top level
# (or records with its own hash framing), left out of the nested "capture" record.
_SHARED_KEYS = ("seed", "max_tokens", "layers", "convention", "versions", "token_ids_sha256", "prompt_sha256")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help=f"a local model directory, a Hugging Face id in the local cache, or a built-in demo "
                             f"({', '.join(DEMO_NAMES)}); nothing is downloaded")
    parser.add_argument("--prompts", required=True, metavar="PROMPTS.jsonl",
                        help='JSONL file, one {"text": ...} object per line')
    parser.add_argument("--out", required=True, metavar="TRAJ.zarr",
                        help="the store to write (built in TRAJ.zarr.partial, renamed when complete); rerun the "
                             "same command to resume an interrupted extraction")
    parser.add_argument("--revision", default=None, metavar="REV",
                        help="branch, tag or commit of a hub model (default: the cached main)")
    parser.add_argument("--max-tokens", type=bounded(int, 1), default=2048, metavar="N",
                        help="token positions sampled, the same for every state (default: 2048; all when fewer)")
    parser.add_argument("--layers", type=parse_layers, default=None, metavar="LIST",
                        help="state indices to keep, e.g. 0,1,5 or 0-3 or 0-2,6 (default: all L+1 states; state 0 "
                             "is the input of block 0, state i the output of block i-1)")
    parser.add_argument("--dtype", choices=DTYPES, default=None,
                        help="load the weights in this dtype (default: the checkpoint's own); states are stored "
                             "as float32")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where the forward passes run (default: auto, CUDA when available)")
    parser.add_argument("--batch-size", type=bounded(int, 1), default=8, metavar="B",
                        help="prompts per forward pass (default: 8)")
    parser.add_argument("--seed", type=bounded(int, 0), default=0, help="seed of the token sample (default: 0)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="let transformers run code shipped with the model (off by default)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a summary")


def parse_layers(text: str) -> tuple[int, ...]:
    """``"0,1,5"``, ``"0-3"`` or ``"0-2,6"`` as sorted distinct state indices; argparse error otherwise.

    >>> parse_layers("4,0-2,2")
    (0, 1, 2, 4)
    """
    kept: set[int] = set()
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            first = int(lo)
            last = int(hi) if sep else first
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected state indices like 0,1,5 or 0-3, got {text!r}") from None
        if first < 0 or last < first:
            raise argparse.ArgumentTypeError(f"expected non-negative indices and ranges lo-hi with lo <= hi, "
                                             f"got {text!r}")
        kept.update(range(first, last + 1))
    return tuple(sorted(kept))


def run(args: argparse.Namespace) -> int:
    from koopscope.capture import prepare, read_prompts, resolve_blocks
    from koopscope.capture.loading import load_model, quiet_transformers

    started = time.monotonic()
    out = Path(args.out)
    texts = read_prompts(args.prompts)
    progress(f"extract: {len(texts)} prompt(s) from {args.prompts}; loading {args.model}")
    loaded = load_model(args.model, revision=args.revision, trust_remote_code=args.trust_remote_code,
                        dtype=args.dtype, device=args.device)
    check_layers(args.layers, len(resolve_blocks(loaded.model)), loaded.model_id)
    with quiet_transformers(), _warnings_as_lines():
        plan = prepare(loaded.model, texts, tokenizer=loaded.tokenizer, max_tokens=args.max_tokens, seed=args.seed,
                       layers=args.layers, batch_size=args.batch_size)
    provenance = build_provenance(loaded, plan)
    store, start = open_existing(out, plan, provenance)
    if store is not None and store.is_complete:
        progress(f"extract: {str(store.path)!r} is already complete ({store.n_rows} tokens x {store.n_states} "
                 "states); nothing to do")
    else:
        done = 0 if store is None else store.rows_written
        if store is not None:
            progress(f"extract: resuming {str(out)!r} at batch {start + 1} of {plan.n_batches} ({done} of "
                     f"{plan.n_tokens} tokens already written)")
        bar = ProgressLine(plan.n_batches, plan.n_tokens, done_rows=done)
        try:
            store = write_chunks(plan, store, start, out, provenance, bar.update)
        finally:
            bar.end_line()
        bar.finish(store.path, time.monotonic() - started)
    summary = _summary(store, loaded, plan, start)
    if args.json:
        emit_json(summary)
    else:
        emit(format_summary(summary))
    return EXIT_OK


def check_layers(layers: tuple[int, ...] | None, n_blocks: int, model_id: str) -> None:
    """Refuse ``--layers`` indices beyond the model's L + 1 states (one sentence naming the option)."""
    if layers is None:
        return
    bad = [i for i in layers if i > n_blocks]
    if bad:
        raise ParameterError(f"--layers holds {', '.join(map(str, bad))}, outside the {n_blocks + 1} states "
                             f"0-{n_blocks} of the {n_blocks}-block model {model_id!r}; pass state indices in "
                             f"0-{n_blocks}, e.g. --layers 0-{n_blocks}.")


def build_provenance(loaded: Any, plan: Any) -> dict[str, Any]:
    """The store's provenance: :func:`koopscope.store.make_provenance` plus the model dtype and the capture's record.

    The prompt and token-id hashes use the store's documented framing (:func:`koopscope.store.sha256_text`,
    :func:`koopscope.store.sha256_token_ids`) over the prompt texts and the real (unpadded, truncated) token ids.
    """
    from koopscope.store import make_provenance, sha256_text

    tokens = plan.tokens
    record = make_provenance(
        model_id=loaded.model_id, revision_requested=loaded.revision_requested,
        revision_resolved=loaded.revision_resolved, tokenizer=loaded.tokenizer_id,
        prompt_sha256=tokens.prompt_sha256() or sha256_text(()), token_ids_sha256=tokens.token_ids_sha256(),
        seed=int(plan.provenance["seed"]), max_tokens=plan.provenance["max_tokens"], layers=plan.layers,
    )
    record["model_dtype"] = loaded.source_dtype
    record["capture"] = {k: v for k, v in plan.provenance.items() if k not in _SHARED_KEYS}
    return record


def resume_batch(plan: Any, batch_rows: tuple[int, ...], where: str, stored_batch_size: object) -> int:
    """The first batch of ``plan`` not yet in a store that holds ``batch_rows`` rows per appended batch.

    The rows written must end on a batch boundary of this run's plan (always true with the same
    ``--batch-size``); otherwise :class:`DataError` names the batch size the store was written with.
    """
    done = sum(batch_rows)
    if done == 0:
        return 0
    ends = np.cumsum([b.rows.stop - b.rows.start for b in plan.batches])  # (n_batches,)
    hit = np.flatnonzero(ends == done)
    if hit.size:
        return int(hit[0]) + 1
    raise DataError(f"The store {where!r} holds {done} rows written in batches that do not line up with this run's "
                    f"--batch-size {plan.provenance['batch_size']}; rerun with --batch-size {stored_batch_size} (the "
                    "size it was made with), or pass a new --out path.")


def open_existing(out: Path, plan: Any, provenance: dict[str, Any]) -> tuple[Any, int]:
    """(store, first batch to run): the store at ``out`` (or ``<out>.partial``) checked for resuming, or (None, 0).

    :meth:`TrajectoryStore.create` with ``resume=True`` refuses a different identity (model, revision, prompts,
    token ids, seed, max_tokens, layers) or layout; the weights' dtype and the batch boundaries are checked here.
    """
    from koopscope.store import TrajectoryStore, partial_path

    if not (out.exists() or (out.name and partial_path(out).exists())):
        return None, 0
    existing = TrajectoryStore.open(out)  # a foreign or corrupt directory is refused here
    store = TrajectoryStore.create(out, n_states=len(plan.layers), width=existing.width, n_rows=plan.n_tokens,
                                   provenance=provenance, source_dtype=existing.source_dtype, resume=True,
                                   layers=plan.layers, n_blocks=len(plan.blocks))
    stored = store.provenance
    where = str(store.location)
    dtype = stored.get("model_dtype")
    if dtype is not None and dtype != provenance["model_dtype"]:
        raise DataError(f"The store {where!r} was made with the weights in {dtype}, but this run loads them in "
                        f"{provenance['model_dtype']}; pass --dtype {dtype}, or a new --out path.")
    stored_bs = (stored.get("capture") or {}).get("batch_size", "of the first run")
    return store, resume_batch(plan, store.batch_rows, where, stored_bs)


def write_chunks(plan: Any, store: Any, start: int, out: Path, provenance: dict[str, Any],
                 on_batch: Callable[[int, int], None]) -> Any:
    """Run batches ``start``, ... and append each one's rows; a new store is created with the first batch."""
    from koopscope.store import TrajectoryStore

    for chunk in plan.chunks(start=start):
        if store is None:
            store = TrajectoryStore.create(out, n_states=len(plan.layers), width=int(chunk.states[0].shape[1]),
                                           n_rows=plan.n_tokens, provenance=provenance,
                                           source_dtype=chunk.source_dtype, layers=plan.layers,
                                           n_blocks=len(plan.blocks))
        written = store.append(chunk.states)
        on_batch(chunk.batch + 1, written)
    return store


class ProgressLine:
    """A text progress bar on stderr, updated per batch: redrawn in place on a terminal, else every 10 %.

    Always ends with one final line (:meth:`finish`), so a log file records the outcome.
    """

    WIDTH = 24

    def __init__(self, n_batches: int, n_rows: int, *, done_rows: int = 0, stream: Any = None) -> None:
        self.n_batches, self.n_rows = n_batches, n_rows
        self.start_rows = done_rows
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.monotonic()
        self.last_decile = done_rows * 10 // max(n_rows, 1)
        self.drawn = False

    def update(self, batch: int, rows: int) -> None:
        frac = rows / max(self.n_rows, 1)
        elapsed = time.monotonic() - self.t0
        new_rows = rows - self.start_rows
        eta = elapsed / new_rows * (self.n_rows - rows) if new_rows > 0 else float("nan")
        fill = int(round(frac * self.WIDTH))
        line = (f"koopscope: extract: [{'#' * fill}{'.' * (self.WIDTH - fill)}] {frac:4.0%} batch {batch}/"
                f"{self.n_batches}, {rows}/{self.n_rows} tokens, {elapsed:.1f} s, eta {eta:.1f} s")
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
            self.drawn = True
        else:
            decile = rows * 10 // max(self.n_rows, 1)
            if decile > self.last_decile and rows < self.n_rows:
                self.stream.write(line + "\n")
            self.last_decile = decile
        self.stream.flush()

    def end_line(self) -> None:
        """End a line redrawn in place, so that what follows (a result, an error) starts on its own line."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False

    def finish(self, path: Path, seconds: float) -> None:
        self.end_line()
        self.stream.write(f"koopscope: extract: done: {self.n_rows} tokens written to {str(path)!r} in "
                          f"{seconds:.1f} s\n")
        self.stream.flush()


@contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Print each warning raised inside (truncated prompts, max_tokens > available) as one stderr line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    seen: set[str] = set()
    for w in caught:
        text = " ".join(str(w.message).split())
        if text not in seen:
            seen.add(text)
            sys.stderr.write(f"koopscope: warning: {text}\n")
    sys.stderr.flush()


def _span(layers: tuple[int, ...]) -> str:
    """``(0, 1, 2, 5)`` as ``"0-2,5"``."""
    parts: list[str] = []
    i = 0
    while i < len(layers):
        j = i
        while j + 1 < len(layers) and layers[j + 1] == layers[j] + 1:
            j += 1
        parts.append(str(layers[i]) if i == j else f"{layers[i]}-{layers[j]}")
        i = j + 1
    return ",".join(parts)


def _summary(store: Any, loaded: Any, plan: Any, start: int) -> dict[str, Any]:
    return {
        "path": str(store.path),
        "complete": bool(store.is_complete),
        "n_states": store.n_states,
        "layers": list(plan.layers),
        "n_tokens": store.n_rows,
        "width": store.width,
        "source_dtype": store.source_dtype,
        "device": str(plan.provenance.get("device")),
        "model_id": loaded.model_id,
        "revision_requested": loaded.revision_requested,
        "revision_resolved": loaded.revision_resolved,
        "n_batches": plan.n_batches,
        "batches_run": plan.n_batches - start,
        "n_truncated": plan.tokens.n_truncated,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The terminal summary: where the store is, its shape, and which model and revision made it."""
    requested = summary["revision_requested"] or "-"
    resumed = "" if summary["batches_run"] == summary["n_batches"] else \
        f" ({summary['batches_run']} of {summary['n_batches']} batches run now)"
    return "\n".join([
        f"store      {summary['path']}{resumed}",
        f"states     {summary['n_states']} (state indices {_span(tuple(summary['layers']))})",
        f"tokens N   {summary['n_tokens']} per state",
        f"width D    {summary['width']} (stored float32; model hidden states {summary['source_dtype']})",
        f"model      {summary['model_id']}",
        f"revision   {summary['revision_resolved']} (requested: {requested})",
    ])
