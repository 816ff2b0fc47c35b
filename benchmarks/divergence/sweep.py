"""The divergence sweep: train every selected configuration, profile it at initialisation, append one JSON row
per run to a JSONL file.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.divergence.sweep --out benchmarks/divergence/results/runs.jsonl --workers 2
    .venv/bin/python -m benchmarks.divergence.sweep --norms pre_ln,none --inits gpt2 --archs 64x2 \\
        --lrs 1e-3,1 --seeds 42 --steps 50 --out /tmp/runs.jsonl          # a subset
    .venv/bin/python -m benchmarks.divergence.sweep --dry-run              # list the runs still to do

Besides the run rows, each invocation appends an ``environment`` line when it starts (versions, cores, load) and
a ``finished`` line with its wall time; the readers skip both.

A run is identified by its key (init, norm, width, depth, lr, seed, steps, batch size); runs whose key is already
in the output file are skipped, so an interrupted sweep resumes where it stopped. Rows are written by the parent
process only, one complete line at a time (flushed and fsynced); a torn last line is ignored on reading.

Each worker process runs torch with one thread. Runs are scheduled most expensive first, so the workers stay
busy until the end.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from benchmarks._environment import environment

__all__ = ["RunSpec", "DEFAULTS", "main", "plan", "read_rows", "run_one"]

# The full sweep (see README.md for the timing that fixed these sizes).
DEFAULTS = {
    "norms": "pre_ln,post_ln,rmsnorm,deepnorm,subln,none",
    "inits": "gpt2,pytorch",
    "archs": "64x2,64x4,128x2",  # width x depth: width 64 -> 128 at depth 2, depth 2 -> 4 at width 64
    "lrs": "3e-3,1e-2,3e-2,1e-1,3e-1,1",  # half-decade grid: every norm has stable and divergent runs
    "seeds": "42,123,456",  # RKSP §4: seeds {42, 123, 456}
    "steps": 500,
    "batch_size": 16,
}
PROBE_SEQUENCES = 32  # probe batch for the init profile: 32 x 64 = 2048 token states (RKSP N = 2048)
PROBE_SEED, EVAL_SEED = 10_000, 20_000  # offsets: probe and held-out data never share a stream with training
ROW_VERSION = 1


@dataclass(frozen=True)
class RunSpec:
    """One training run of the sweep."""

    init: str
    norm: str
    width: int
    depth: int
    lr: float
    seed: int
    steps: int
    batch_size: int

    @property
    def key(self) -> str:
        return (f"{self.init}|{self.norm}|w{self.width}|L{self.depth}|lr{self.lr:.6g}|s{self.seed}"
                f"|n{self.steps}|b{self.batch_size}")

    @property
    def cost(self) -> float:
        """Relative compute of a full run (dense FLOPs ∝ width² · depth · steps · batch)."""
        return self.width ** 2 * self.depth * self.steps * self.batch_size


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _archs(text: str) -> list[tuple[int, int]]:
    """"64x2,128x2" -> [(64, 2), (128, 2)] (width x depth)."""
    out = []
    for item in _names(text):
        width, _, depth = item.lower().partition("x")
        out.append((int(width), int(depth)))
    return out


def plan(norms: Sequence[str], inits: Sequence[str], archs: Sequence[tuple[int, int]], lrs: Sequence[float],
         seeds: Sequence[int], steps: int, batch_size: int) -> list[RunSpec]:
    """Every combination, most expensive first (then in a fixed order)."""
    specs = [RunSpec(i, n, w, d, lr, s, steps, batch_size)
             for i in inits for n in norms for w, d in archs for lr in lrs for s in seeds]
    return sorted(specs, key=lambda r: -r.cost)


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The complete rows of a JSONL file, gzipped if it ends in .gz (a torn or malformed line is skipped; later
    rows win per key)."""
    rows: dict[str, dict[str, Any]] = {}
    p = Path(path)
    if not p.exists():
        return []
    with (gzip.open(p, "rt", encoding="utf-8") if p.suffix == ".gz" else p.open(encoding="utf-8")) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "key" in row:
                rows[row["key"]] = row
    return list(rows.values())


def _round(values: Iterable[float], digits: int = 5) -> list[float | str]:
    """Curve values to ``digits`` significant digits (JSON has no inf/nan: they become strings)."""
    out: list[float | str] = []
    for v in values:
        out.append(float(f"{v:.{digits}g}") if math.isfinite(v) else str(v))
    return out


def run_one(spec: RunSpec, grad_step: int = 100, var_window: int = 100, spike_window: int = 500) -> dict[str, Any]:
    """Build, profile at init, train, and return the row of one run (imports torch lazily: workers are spawned)."""
    import torch

    from .models import ModelConfig, build_model
    from .predictors import curve_features, init_features
    from .task import RecallTask
    from .train import TrainConfig, train

    task = RecallTask()
    model = build_model(ModelConfig(spec.norm, spec.width, spec.depth, init=spec.init), spec.seed)
    probe, _ = task.batch(task.generator(PROBE_SEED + spec.seed), PROBE_SEQUENCES)  # (32, 64)
    t0 = time.perf_counter()
    with torch.no_grad():
        init = init_features(model, probe.numpy(), seed=spec.seed)
    t_profile = time.perf_counter() - t0
    result = train(model, task, TrainConfig(lr=spec.lr, steps=spec.steps, batch_size=spec.batch_size),
                   data_seed=spec.seed, eval_seed=EVAL_SEED + spec.seed)
    curves = curve_features(result.losses, result.grad_norms, result.diverged_step, grad_step, var_window,
                            spike_window)
    layers = init.pop("layers")
    per_layer_update = init.pop("rel_update_layers")
    return {
        "row_version": ROW_VERSION, "key": spec.key, **asdict(spec),
        "diverged": result.diverged, "diverged_step": result.diverged_step, "reason": result.reason,
        "steps_run": len(result.losses), "accuracy": result.accuracy, "final_loss": result.final_loss,
        "features": {**init, **{k: v for k, v in curves.items() if k != "healthy"}},
        "healthy": curves["healthy"],
        "layers": {**{k: _round(v, 6) for k, v in layers.items()}, "rel_update": _round(per_layer_update, 6)},
        "curves": {"loss": _round(result.losses), "grad_norm": _round(result.grad_norms)},
        "seconds": {"profile": round(t_profile, 3), "train": round(result.seconds, 3)},
        "windows": {"grad_step": grad_step, "var_window": var_window, "spike_window": spike_window},
    }


def worker_init() -> None:
    """A benchmark worker: one torch thread (the workers share 2 cores)."""
    import torch

    torch.set_num_threads(1)


def _json_default(value: Any) -> Any:
    if isinstance(value, float):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def json_safe(v: Any) -> Any:
    """``v`` with non-finite floats replaced by the strings "inf", "-inf", "nan" (nested dicts and sequences)."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [json_safe(x) for x in v]
    return v


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one JSON line (non-finite floats as strings) and fsync it, so an interrupted run resumes."""
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(json_safe(row), allow_nan=False, default=_json_default) + "\n")
        f.flush()
        os.fsync(f.fileno())


def pool_results(todo: Sequence[Any], workers: int, run: Callable[..., dict[str, Any]], **kwargs: Any
                 ) -> Iterator[dict[str, Any]]:
    """``run(spec, **kwargs)`` for every spec, rows yielded as runs finish: in this process for one worker, else in
    spawned single-thread workers with at most 2 runs queued per worker (an interrupt loses little)."""
    if workers <= 1:
        worker_init()
        for spec in todo:
            yield run(spec, **kwargs)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=worker_init) as pool:
        pending: set[Future] = set()
        queue = iter(todo)
        for spec in queue:
            pending.add(pool.submit(run, spec, **kwargs))
            if len(pending) >= 2 * workers:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield fut.result()
                nxt = next(queue, None)
                if nxt is not None:
                    pending.add(pool.submit(run, nxt, **kwargs))


def _progress(i: int, n: int, row: dict[str, Any], start: float) -> str:
    outcome = (f"diverged at step {row['diverged_step']} ({row['reason']})" if row["diverged"]
               else f"stable, accuracy {row['accuracy']:.3f}")
    elapsed = time.perf_counter() - start
    return (f"[{i}/{n}] {row['key']}: {outcome}; M≈1 {row['features']['m_near_unit']:.3f}; "
            f"{row['seconds']['train']:.1f} s; elapsed {elapsed / 60:.1f} min")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.divergence.sweep", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/divergence/results/runs.jsonl", help="JSONL file (appended)")
    ap.add_argument("--norms", default=DEFAULTS["norms"], help="comma list of %(default)s")
    ap.add_argument("--inits", default=DEFAULTS["inits"], help="comma list of %(default)s")
    ap.add_argument("--archs", default=DEFAULTS["archs"], help="comma list of WIDTHxDEPTH (default %(default)s)")
    ap.add_argument("--widths", default=None, help="keep only the archs of these widths (comma list)")
    ap.add_argument("--depths", default=None, help="keep only the archs of these depths (comma list)")
    ap.add_argument("--lrs", default=DEFAULTS["lrs"], help="comma list of learning rates")
    ap.add_argument("--seeds", default=DEFAULTS["seeds"])
    ap.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    ap.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    ap.add_argument("--grad-step", type=int, default=100, help="step of the 'gradient norm at step k' baseline")
    ap.add_argument("--var-window", type=int, default=100, help="steps 1..k of the gradient-variance baseline")
    ap.add_argument("--spike-window", type=int, default=500, help="steps 1..k of the loss-spike baseline")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="run at most this many of the remaining runs")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from .models import INITS, NORMS

    norms, inits = _names(args.norms), _names(args.inits)
    bad = [n for n in norms if n not in NORMS] + [i for i in inits if i not in INITS]
    if bad:
        print(f"unknown norm/init {bad}; norms are {','.join(NORMS)}, inits {','.join(INITS)}", file=sys.stderr)
        return 2
    archs = [(w, d) for w, d in _archs(args.archs) if (args.widths is None or w in _ints(args.widths))
             and (args.depths is None or d in _ints(args.depths))]
    specs = plan(norms, inits, archs, _floats(args.lrs), _ints(args.seeds), args.steps, args.batch_size)
    out = Path(args.out)
    done = {row["key"] for row in read_rows(out)}
    remaining = [s for s in specs if s.key not in done]
    todo = remaining[:args.limit]
    print(f"{len(specs)} runs planned, {len(specs) - len(remaining)} already in {out}, {len(todo)} to run with "
          f"{args.workers} worker(s)", file=sys.stderr)
    if args.dry_run or not todo:
        for s in todo if args.dry_run else ():
            print(s.key)
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    append_row(out, {"environment": environment("torch", "scikit-learn"), "workers": args.workers,
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "n_todo": len(todo)})
    windows = {"grad_step": args.grad_step, "var_window": args.var_window, "spike_window": args.spike_window}
    start = time.perf_counter()
    for i, row in enumerate(pool_results(todo, args.workers, run_one, **windows), 1):
        append_row(out, row)
        print(_progress(i, len(todo), row, start), file=sys.stderr, flush=True)
    minutes = (time.perf_counter() - start) / 60
    append_row(out, {"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "n_runs": len(todo),
                     "minutes": round(minutes, 2), "loadavg_end": list(os.getloadavg())})
    print(f"sweep done: {len(todo)} runs in {minutes:.1f} min", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
