"""Koopman layers against the plain model: held-out perplexity, training-step time and forward cost.

Trains the reference model of the "ResNet-BK" design (d_model 64, 4 pre-LN blocks, 4 heads, sequence 128,
k = 256, byte vocabulary) on the same data stream from the standard-library docstring corpus
(:mod:`benchmarks.koopman_layer.corpus`), with the same initial block weights, as each variant of ``--variants``:

* ``plain``: no Koopman layers (the same trainer, so the same gradient clipping; no Koopman terms);
* ``koopman``: every block wrapped in a ``KoopmanBlock``, trained by ``HybridKoopmanTrainer`` (warm-up / hybrid /
  Koopman-dominant phases) with the library's streaming-DMD defaults (α = 0.1, rcond = 1e-3);
* ``design-rcond``: the same with the design's cutoff rcond = 1e-6 (``koopscope.koopman.DESIGN_RCOND``);
* ``no-dmd``: the same without streaming DMD updates (K learnt by gradient only).

Then, in the same process:

* held-out perplexity (and bits per byte) of every variant, the Koopman ones in standard and in Koopman mode, on
  the first ``--eval-windows`` non-overlapping windows of the held-out split;
* time per training step (median per phase), from the trainer's own per-step timing;
* forward cost: the whole model in standard vs Koopman mode, and one block vs one Koopman branch
  h + ψ(K φ(LN h)), each the median of ``--timing-repeats`` interleaved no-grad calls on the same batch; with the
  analytic multiply-add counts per token next to the measured ratio;
* the spectrum of each learned K (its fingerprint on the layer's buffered lifted pairs).

Usage (from the repository root; one torch thread, about 13 minutes on the 2-core development machine)::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \\
        .venv/bin/python -m benchmarks.koopman_layer.run --out benchmarks/koopman_layer/results/koopman_layer.json

The JSON holds every number and the environment; a markdown summary goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from benchmarks._environment import environment
from benchmarks.koopman_layer.corpus import load

__all__ = ["DEFAULTS", "main", "macs_per_token", "parse_args"]

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULTS: dict[str, Any] = {
    "variants": "plain,koopman,design-rcond,no-dmd", "steps": 800, "batch_size": 16, "seq_len": 128, "d_model": 64,
    "layers": 4, "heads": 4, "koopman_dim": 256,
    "lr": 3e-3, "phases": "0.2,0.6,0.2", "min_weight": 0.1, "max_weight": 1.0, "capacity": 512, "rows_per_step": 64,
    "update_every": 10, "eval_windows": 128, "timing_repeats": 30, "threads": 1, "seed": 0,
}
VARIANTS = ("plain", "koopman", "design-rcond", "no-dmd")
CLAIMED_SPEEDUP = (8.0, 10.0)  # "8-10x cheaper per layer": a FLOP count of one matrix product, never measured


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.koopman_layer.run", description=__doc__.split("\n")[0])
    for name, value in DEFAULTS.items():
        ap.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    ap.add_argument("--corpus-cache", default=str(RESULTS / "corpus.npz"))
    ap.add_argument("--max-files", type=int, default=None, help="read only the first N stdlib files (smoke tests)")
    ap.add_argument("--out", default=str(RESULTS / "koopman_layer.json"))
    ap.add_argument("--fingerprints", default=None, help="also write each layer's K fingerprint (JSON + HTML) here")
    return ap.parse_args(argv)


def macs_per_token(d: int, k: int, T: int) -> dict[str, float]:
    """Multiply-adds per token of one block and of one Koopman branch (biases, norms and activations left out).

    Block: QKV and output projections 4 d², MLP 8 d², causal attention scores and values 2 · d · (T + 1) / 2 on
    average over positions. Koopman branch h + ψ(K φ(LN h)): φ d k + k², K k², ψ k² + k d.
    """
    block = 12 * d * d + d * (T + 1)
    branch = 2 * d * k + 3 * k * k
    return {"block": float(block), "koopman_branch": float(branch), "operator_only": float(k * k),
            "block_over_branch": block / branch}


def _seconds(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _interleaved(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds of each callable, called in turn (one warm-up call each) so drifts in load hit all alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_seconds(fn))
    return {name: statistics.median(ts) for name, ts in times.items()}


def _batches(train: Any, batch_size: int, seq_len: int, seed: int) -> Any:
    """An endless stream of (batch, seq_len + 1) random windows of the training bytes (seeded)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    data = torch.as_tensor(np.asarray(train, dtype=np.int64))
    span = seq_len + 1
    while True:
        starts = torch.randint(0, data.numel() - span + 1, (batch_size,), generator=gen)
        yield torch.stack([data[s:s + span] for s in starts.tolist()])


def _eval_windows(held: Any, seq_len: int, n: int) -> Any:
    import torch

    span = seq_len + 1
    n = min(n, len(held) // span)
    if n < 1:
        raise ValueError(f"the held-out split has {len(held)} bytes, fewer than one window of {span}")
    return torch.as_tensor(np.asarray(held[: n * span], dtype=np.int64)).reshape(n, span)


def _perplexity(model: Any, windows: Any, mode: str | None, batch_size: int) -> dict[str, float]:
    import torch
    from torch.nn import functional as F

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for chunk in windows.split(batch_size):
            logits = model(chunk[:, :-1], mode=mode)
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1),
                                           reduction="sum"))
            count += chunk[:, 1:].numel()
    nats = total / count
    return {"nats_per_byte": nats, "bits_per_byte": nats / math.log(2), "perplexity": math.exp(nats),
            "tokens": count}


def _train(variant: str, args: argparse.Namespace, corpus: Any) -> tuple[Any, dict[str, Any]]:
    import torch

    from koopscope.koopman import (
        DESIGN_RCOND,
        HybridKoopmanTrainer,
        KoopmanLanguageModel,
        LossWeightSchedule,
        StreamingUpdate,
    )

    phases = tuple(float(f) for f in args.phases.split(","))
    update = StreamingUpdate(rcond=DESIGN_RCOND) if variant == "design-rcond" else StreamingUpdate()
    model = KoopmanLanguageModel(256, args.d_model, args.layers, args.heads, args.koopman_dim, args.seq_len,
                                 koopman_layers=() if variant == "plain" else None, seed=args.seed,
                                 capacity=args.capacity, update=update)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    schedule = LossWeightSchedule("linear", args.min_weight, args.max_weight, total_steps=args.steps,
                                  warmup_steps=min(args.steps - 1, round(phases[0] * args.steps)))
    every = args.steps + 1 if variant == "no-dmd" else args.update_every  # no-dmd: never reached
    trainer = HybridKoopmanTrainer(model, optimizer, schedule=schedule, phases=phases, update_every=every,
                                   rows_per_step=args.rows_per_step, seed=args.seed)
    stream = _batches(corpus.train, args.batch_size, args.seq_len, args.seed)
    start = time.perf_counter()
    for i in range(args.steps):
        record = trainer.step(next(stream))
        if (i + 1) % max(1, args.steps // 10) == 0:
            koop = "—" if record["koopman_loss"] is None else f"{record['koopman_loss']:.4g}"
            print(f"  {variant} step {i + 1}/{args.steps} [{record['phase']}] task loss {record['task_loss']:.3f} "
                  f"koopman loss {koop} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    history = trainer.history
    step_ms = {p: [1e3 * h["seconds"] for h in history if h["phase"] == p] for p in ("warmup", "hybrid", "koopman")}
    last_hybrid = [h["koopman_loss"] for h in history if h["phase"] == "hybrid" and h["koopman_loss"] is not None]
    summary = {"train_seconds": time.perf_counter() - start, "metrics": trainer.metrics(),
               "step_ms_median": {p: statistics.median(v) if v else None for p, v in step_ms.items()},
               "step_ms_median_all": statistics.median([1e3 * h["seconds"] for h in history]),
               "koopman_loss_end_of_hybrid": statistics.median(last_hybrid[-50:]) if last_hybrid else None,
               "weight_cuts": sum(e["kind"] == "weight_cut" for e in trainer.events),
               "parameters": sum(p.numel() for p in model.parameters())}
    return model, summary


def _forward_costs(model: Any, windows: Any, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from koopscope.koopman import koopman_blocks

    model.eval()
    x = windows[: args.batch_size, :-1]
    block = koopman_blocks(model)[0]
    with torch.no_grad():
        h = model.tok(x) + model.pos(torch.arange(x.shape[1]))  # (B, T, d): the input of block 0
        whole = _interleaved({"standard": lambda: model(x, mode="standard"),
                              "koopman": lambda: model(x, mode="koopman")}, args.timing_repeats)
        layer = _interleaved({"block": lambda: block(h, mode="standard"),
                              "koopman_branch": lambda: block(h, mode="koopman")}, args.timing_repeats)
    macs = macs_per_token(args.d_model, args.koopman_dim, args.seq_len)
    return {"batch": list(x.shape), "model_seconds": whole, "layer_seconds": layer,
            "model_speedup": whole["standard"] / whole["koopman"],
            "layer_speedup": layer["block"] / layer["koopman_branch"], "macs_per_token": macs,
            "claimed_speedup": list(CLAIMED_SPEEDUP)}


def _spectra(model: Any, fingerprints: str | None, variant: str) -> list[dict[str, Any]]:
    from koopscope.koopman import koopman_blocks

    out = []
    for i, block in enumerate(koopman_blocks(model)):
        fp = block.koopman.fingerprint(name=f"KoopmanLayer of block {i} ({variant})")
        features = fp.document["features"]
        out.append({"block": i, "spectral_radius": fp.spectral_radius, "stability_label": fp.stability_label,
                    "near_unit_mass": features["near_unit_mass"], "contractive_mass": features["contractive_mass"],
                    "expansive_mass": features["expansive_mass"], "median_residual": features["median_residual"],
                    "n_spurious": features["n_spurious"], "buffered_pairs": len(block.koopman.buffer)})
        if fingerprints:
            Path(fingerprints).mkdir(parents=True, exist_ok=True)
            fp.to_json(Path(fingerprints) / f"K_{variant}_block{i}.json")
            fp.to_html(Path(fingerprints) / f"K_{variant}_block{i}.html")
    return out


def _fmt(v: float | None, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    """The summary tables of one run."""
    ev, runs, cost, spectra = result["evaluation"], result["runs"], result["forward"], result["spectra"]
    lines = ["| variant | mode | held-out perplexity | bits / byte |", "|---|---|---|---|"]
    for name, modes in ev.items():
        for mode, e in modes.items():
            lines.append(f"| {name} | {mode} | {_fmt(e['perplexity'], 2)} | {_fmt(e['bits_per_byte'])} |")
    lines += ["", "| variant | ms / step: warm-up | hybrid | Koopman phase | all steps | training (s) | Koopman loss, "
              "end of hybrid | DMD updates applied / skipped | weight cuts | spectral radius of K (blocks) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name, run in runs.items():
        s, phases = run["step_ms_median"], run["metrics"]["phases"]
        applied = sum(p["updates_applied"] for p in phases.values())
        skipped = sum(p["updates_skipped"] for p in phases.values())
        rho = ", ".join(f"{b['spectral_radius']:.3g}" for b in spectra.get(name, [])) or "—"
        lines.append(f"| {name} | {_fmt(s['warmup'], 1)} | {_fmt(s['hybrid'], 1)} | {_fmt(s['koopman'], 1)} | "
                     f"{_fmt(run['step_ms_median_all'], 1)} | {run['train_seconds']:.0f} | "
                     f"{_fmt(run['koopman_loss_end_of_hybrid'], 3)} | {applied} / {skipped} | {run['weight_cuts']} | "
                     f"{rho} |")
    m, lay, macs = cost["model_seconds"], cost["layer_seconds"], cost["macs_per_token"]
    lines += ["", "| forward (no grad, batch " + "×".join(map(str, cost["batch"])) + ") | standard | Koopman | "
              "speed-up of Koopman mode | claimed |", "|---|---|---|---|---|",
              f"| whole model | {1e3 * m['standard']:.2f} ms | {1e3 * m['koopman']:.2f} ms | "
              f"{cost['model_speedup']:.2f}× | 8–10× |",
              f"| one layer (block vs h + ψ(Kφ(LN h))) | {1e3 * lay['block']:.2f} ms | "
              f"{1e3 * lay['koopman_branch']:.2f} ms | {cost['layer_speedup']:.2f}× | 8–10× |",
              f"| multiply-adds per token, one layer | {macs['block']:,.0f} | {macs['koopman_branch']:,.0f} | "
              f"{macs['block_over_branch']:.2f}× | |"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    logging.getLogger("koopscope.koopman").setLevel(logging.ERROR)  # every fallback is counted in the JSON instead
    env = environment("torch")
    start = time.perf_counter()
    corpus = load(args.corpus_cache, seed=args.seed, max_files=args.max_files)
    print(f"corpus: {corpus.meta['documents']} docstrings, {corpus.meta['train_bytes']:,} train bytes, "
          f"{corpus.meta['held_bytes']:,} held-out bytes", file=sys.stderr, flush=True)
    windows = _eval_windows(corpus.held, args.seq_len, args.eval_windows)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or not variants:
        print(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    runs, evaluation, spectra, forward = {}, {}, {}, None
    for variant in variants:
        model, runs[variant] = _train(variant, args, corpus)
        modes = ("standard",) if variant == "plain" else ("standard", "koopman")
        evaluation[variant] = {m: _perplexity(model, windows, m, args.batch_size) for m in modes}
        if variant != "plain":
            spectra[variant] = _spectra(model, args.fingerprints, variant)
            if forward is None:  # every Koopman variant has the same architecture: time the first
                forward = _forward_costs(model, windows, args)
        del model
    if forward is None:
        print("no Koopman variant to time; add one to --variants", file=sys.stderr)
        return 2
    result = {"environment": env, "threads": args.threads, "settings": {k: getattr(args, k) for k in DEFAULTS},
              "corpus": corpus.meta, "runs": runs, "evaluation": evaluation, "forward": forward, "spectra": spectra}
    result["wall_seconds"] = time.perf_counter() - start
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    print(markdown(result))
    print(f"\nwall time {result['wall_seconds']:.0f} s; results in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
