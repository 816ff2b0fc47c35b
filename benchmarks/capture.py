"""Benchmark ks.capture on a GPT-2-small configuration: hook overhead over a plain forward, and peak memory.

Issue 3: "capture of a GPT-2-small configuration (12 layers, width 768) at initialisation on this CPU,
16 x 128 tokens: hook overhead <= 10 % over a plain forward pass in the same run; peak extra memory
<= (L+1)·N·D·4 bytes plus one layer's activations, measured."

Model: ``GPT2Model(GPT2Config())`` (12 layers, width 768, 12 heads, sdpa attention) at initialisation,
``torch.manual_seed(0)``, eval mode, float32, on the CPU with torch's default thread count. Inputs:
``ks.capture.random_tokens(16, 128, vocab_size, seed=0)``, so N = max_tokens = 2048 = every token.

**Time.** Every case runs in this one process on the same model and tokens; one warm-up round, then
``--repeats`` rounds, each round running every case once (interleaved, and the order rotated each round so
that no case always runs first); the median is reported (``time.perf_counter``). Cases, for batch size 16
(one forward of 16 sequences) and 4 (four forwards of 4):

- *plain full forward*: ``model(input_ids=..., attention_mask=..., use_cache=False)`` under
  ``torch.no_grad()``, the exact call capture makes, but without hooks; it runs the final norm ``ln_f``.
- *plain forward through the same blocks*: the same call with ``ln_f`` swapped for ``nn.Identity`` for the
  duration. Capture stops right after the last block (it never runs ``ln_f``), so this is the fair
  reference for the hook overhead; the full forward favours capture by one layer norm.
- *capture*: ``ks.capture(model, tokens, max_tokens=2048, batch_size=B)`` (planning, hooks, row gathers,
  the copy into the (N, D) arrays, provenance: the whole call).

Target: capture / plain <= 1.10; both ratios are printed, "met?" is judged on the fair one.

**Memory.** Each measurement runs in a fresh subprocess (``--child``): it builds the same model and tokens,
then reads ``VmRSS`` (the baseline: model and inputs resident), resets the peak RSS (writes "5" to
``/proc/self/clear_refs``, Linux) and runs the operation once (cold, as a user's first capture would);
peak extra = ``VmHWM`` - baseline. The child also reports ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the
lifetime peak. The subprocesses run before the parent builds anything, because an exec'd child's ru_maxrss
starts from the RSS of the parent it was forked from. Each case runs ``--mem-repeats`` times (interleaved,
median) under two glibc settings: the default, where freed heap blocks can stay resident (fragmentation
across the per-thread arenas, so peak RSS is noisy and overstates live memory), and
``MALLOC_MMAP_THRESHOLD_=65536``, where every tensor above 64 KiB is its own mapping returned on free, so
RSS tracks live bytes. One more subprocess per capture configuration runs under ``tracemalloc`` to count
the numpy allocations (the (N, D) arrays); torch's CPU allocations are invisible to tracemalloc.

Budget: (L+1)·N·D·4 bytes for the kept states, plus one layer's activations, estimated as
B·T·(16·D + H·T)·4 bytes (B sequences of T tokens per forward: the residual, the layer-norm output, the
4·D MLP hidden and two 4·D temporaries of the GELU, the attention's q, k, v and output, rounded up to
16·D per token, plus an H·T attention-score row per token and head). The strict check is also printed:
capture's peak extra minus the plain forward's (same batching) <= (L+1)·N·D·4, i.e. the forward's own
activations measured rather than estimated.

Usage::

    .venv/bin/python benchmarks/capture.py [--repeats 5] [--mem-repeats 3] [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from _environment import environment as shared_environment

FULL = {"n_layer": 12, "n_embd": 768, "n_head": 12, "vocab_size": None, "n_positions": None, "bos_token_id": None,
        "eos_token_id": None,
        "n_sequences": 16, "length": 128, "max_tokens": 2048, "batch_sizes": (16, 4)}
QUICK = {"n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 1000, "n_positions": 128, "bos_token_id": 0,
         "eos_token_id": 0,
         "n_sequences": 4, "length": 32, "max_tokens": 64, "batch_sizes": (4, 2)}
OVERHEAD_TARGET = 1.10  # capture time / plain forward time
ACT_FACTOR = 16  # floats per token and unit of width held by one GPT-2 block (see the module docstring)
MiB = 2 ** 20
# glibc settings of the memory children. With the default, freed blocks of the dynamic-threshold heap can stay
# resident (fragmentation across the per-thread arenas), so peak RSS is noisy and overstates live memory; with a
# fixed 64 KiB mmap threshold every tensor above 64 KiB is its own mapping, returned on free: RSS tracks live bytes.
ALLOCATORS: dict[str, dict[str, str]] = {"glibc default": {}, "MALLOC_MMAP_THRESHOLD_=65536": {
    "MALLOC_MMAP_THRESHOLD_": "65536"}}


# ----------------------------------------------------------------------------------------------------------------
# model and inputs (identical in the parent and every child)


def build(cfg: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """(model, tokens, input_ids, attention_mask): the seeded GPT-2 at initialisation and the random tokens."""
    import torch
    from transformers import GPT2Config, GPT2Model

    import koopscope as ks

    extra = {k: cfg[k] for k in ("vocab_size", "n_positions", "bos_token_id", "eos_token_id") if cfg[k] is not None}
    config = GPT2Config(n_layer=cfg["n_layer"], n_embd=cfg["n_embd"], n_head=cfg["n_head"], **extra)
    torch.manual_seed(0)
    model = GPT2Model(config).eval().float()
    tokens = ks.capture.random_tokens(cfg["n_sequences"], cfg["length"], config.vocab_size, seed=0)
    ids = torch.as_tensor(np.array(tokens.input_ids))  # (S, T)
    mask = torch.as_tensor(tokens.attention_mask)  # (S, T), all ones
    return model, tokens, ids, mask


@contextmanager
def final_norm_removed(model: Any) -> Iterator[None]:
    """``model.ln_f`` replaced by ``nn.Identity`` for the duration: a forward through the blocks only."""
    import torch

    saved = model.ln_f
    model.ln_f = torch.nn.Identity()
    try:
        yield
    finally:
        model.ln_f = saved


def plain(model: Any, ids: Any, mask: Any, batch_size: int, blocks_only: bool = False) -> list[Any]:
    """Plain forward passes without hooks, ``batch_size`` sequences at a time; the last hidden states."""
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, ids.shape[0], batch_size):
            kwargs = {"input_ids": ids[s:s + batch_size], "attention_mask": mask[s:s + batch_size],
                      "use_cache": False, "output_hidden_states": False, "output_attentions": False}
            if blocks_only:
                with final_norm_removed(model):
                    out.append(model(**kwargs).last_hidden_state)
            else:
                out.append(model(**kwargs).last_hidden_state)
    return out


def run_capture(model: Any, tokens: Any, cfg: dict[str, Any], batch_size: int) -> Any:
    import koopscope as ks

    return ks.capture(model, tokens, max_tokens=cfg["max_tokens"], batch_size=batch_size)


def operation(name: str, model: Any, tokens: Any, ids: Any, mask: Any, cfg: dict[str, Any]
              ) -> Callable[[], Any]:
    """The callable for a case name such as ``plain-full-16``, ``plain-blocks-4`` or ``capture-16``."""
    kind, _, bs = name.rpartition("-")
    batch_size = int(bs)
    if kind == "plain-full":
        return lambda: plain(model, ids, mask, batch_size)
    if kind == "plain-blocks":
        return lambda: plain(model, ids, mask, batch_size, blocks_only=True)
    if kind == "capture":
        return lambda: run_capture(model, tokens, cfg, batch_size)
    raise ValueError(f"unknown case {name!r}")


# ----------------------------------------------------------------------------------------------------------------
# memory: one fresh subprocess per configuration


def _proc_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process in bytes (Linux)."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value, unit = line.split()
                out[key.rstrip(":")] = int(value) * 1024 if unit == "kB" else int(value)
    return out


def child(name: str, cfg: dict[str, Any], trace: bool) -> dict[str, Any]:
    """Run case ``name`` once in this (fresh) process and measure its peak memory above the baseline."""
    import torch

    model, tokens, ids, mask = build(cfg)
    fn = operation(name, model, tokens, ids, mask, cfg)
    gc.collect()
    base = _proc_status()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current RSS
        hwm_reset = True
    except OSError:
        hwm_reset = False
    if trace:
        import tracemalloc

        tracemalloc.start()
    t0 = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - t0
    traced = None
    if trace:
        import tracemalloc

        traced = {"current": tracemalloc.get_traced_memory()[0], "peak": tracemalloc.get_traced_memory()[1]}
        tracemalloc.stop()
    after = _proc_status()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    kept = None
    if name.startswith("capture"):
        kept = {"n_states": len(result.states), "n_tokens": result.n_tokens, "dim": result.dim,
                "bytes": int(sum(s.nbytes for s in result.states))}
    return {"case": name, "trace": trace, "torch_threads": torch.get_num_threads(), "time_s": elapsed,
            "rss_base": base["VmRSS"], "hwm_before": base["VmHWM"], "hwm_reset": hwm_reset,
            "rss_peak": after["VmHWM"], "rss_after": after["VmRSS"], "ru_maxrss": usage.ru_maxrss * 1024,
            "peak_extra": after["VmHWM"] - base["VmRSS"] if hwm_reset else None, "traced": traced, "kept": kept}


def spawn(name: str, quick: bool, trace: bool, allocator: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Run case ``name`` in a fresh interpreter with the glibc settings of ``allocator`` (a key of ALLOCATORS)."""
    args = [sys.executable, os.path.abspath(__file__), "--child", name] + ["--quick"] * quick + ["--trace"] * trace
    log(f"memory [{allocator}]: fresh subprocess for {name}{' (tracemalloc)' if trace else ''} ...")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | ALLOCATORS[allocator]
    proc = subprocess.run(args, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"child {name} failed (exit {proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1]) | {"allocator": allocator}


def memory(cfg: dict[str, Any], quick: bool, repeats: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Fresh-process peak-memory measurements: ``repeats`` children per case and allocator, interleaved."""
    names = [f"{kind}-{bs}" for bs in cfg["batch_sizes"] for kind in ("plain-full", "capture")]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {a: {n: [] for n in names} for a in ALLOCATORS}
    for _ in range(repeats):
        for allocator in ALLOCATORS:
            for n in names:
                runs[allocator][n].append(spawn(n, quick, False, allocator, log))
    traced = {n: spawn(n, quick, True, "glibc default", log) for n in names if n.startswith("capture")}
    return {"runs": runs, "traced": traced}


# ----------------------------------------------------------------------------------------------------------------
# report


def environment() -> dict[str, Any]:
    """Versions and machine; imports no torch, so that the memory subprocesses fork from a small parent."""
    return shared_environment("torch", "transformers")


def mib(x: float | None) -> str:
    return "—" if x is None else f"{x / MiB:.{1 if abs(x) >= MiB else 3}f}"


def timing(cfg: dict[str, Any], repeats: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Interleaved timings of every case; returns the per-case times and a check that the cases agree."""
    model, tokens, ids, mask = build(cfg)
    names = [f"{kind}-{bs}" for bs in cfg["batch_sizes"] for kind in ("plain-full", "plain-blocks", "capture")]
    ops = {n: operation(n, model, tokens, ids, mask, cfg) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    results: dict[str, Any] = {}
    for r in range(repeats + 1):
        order = names[r % len(names):] + names[:r % len(names)]
        log(f"timing round {r}/{repeats}{' (warm-up)' if r == 0 else ''}: {', '.join(order)}")
        for n in order:
            t0 = time.perf_counter()
            out = ops[n]()
            dt = time.perf_counter() - t0
            if r == 0:
                results[n] = out
            else:
                times[n].append(dt)
            del out
    # the cases compute the same thing: capture's last state equals the blocks-only output at the sampled rows
    agreement = {}
    for bs in cfg["batch_sizes"]:
        states = results[f"capture-{bs}"]
        seq, pos = np.asarray(states.token_index).T  # (N,) each
        last = np.concatenate([h.numpy() for h in results[f"plain-blocks-{bs}"]])[seq, pos]  # (N, D)
        agreement[bs] = float(np.abs(states.states[-1] - last).max())
    return {"times": times, "median": {n: statistics.median(t) for n, t in times.items()},
            "n_tokens": int(results[names[2]].n_tokens), "n_states": len(results[names[2]].states),
            "agreement_last_state_vs_blocks_only": agreement}


def _yn(v: bool | None) -> str:
    return "—" if v is None else ("yes" if v else "**no**")


def _spread(xs: list[float]) -> str:
    return f"{mib(statistics.median(xs))} ({mib(min(xs))}–{mib(max(xs))})" if len(xs) > 1 else mib(xs[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median; default 5)")
    parser.add_argument("--mem-repeats", type=int, default=None,
                        help="fresh subprocesses per memory case and allocator setting (median; default 3, quick 1)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--quick", action="store_true", help="a tiny GPT-2 (smoke test, about 1 min)")
    parser.add_argument("--child", metavar="CASE", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mem_repeats is None:
        args.mem_repeats = 1 if args.quick else 3
    if args.repeats < 1 or args.mem_repeats < 1:
        parser.error("--repeats and --mem-repeats must be at least 1")
    cfg = QUICK if args.quick else FULL
    if args.child:
        print(json.dumps(child(args.child, cfg, args.trace)))
        return 0

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    env = environment()
    L, S, T, D, H = cfg["n_layer"], cfg["n_sequences"], cfg["length"], cfg["n_embd"], cfg["n_head"]
    t_start = time.perf_counter()
    # memory first: an exec'd child's ru_maxrss starts from the RSS of the parent it was forked from, so the
    # children must be spawned while this process is still small (before it builds the model)
    mem = memory(cfg, args.quick, args.mem_repeats, log)
    env["loadavg_after_memory"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    tim = timing(cfg, args.repeats, log)
    elapsed = time.perf_counter() - t_start
    env["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None

    import torch

    env["torch_threads"] = torch.get_num_threads()
    print("# koopscope capture benchmark (issue 3)\n")
    print(f"- command: `{env['command']}`")
    print(f"- mode: {'quick' if args.quick else 'full'}; GPT2Model, {L} layers, width {D}, {H} heads, at "
          f"initialisation (torch.manual_seed(0)), eval, float32; inputs {S} x {T} random tokens, "
          f"max_tokens={cfg['max_tokens']}; time: median of {args.repeats} interleaved rounds after 1 warm-up round; "
          f"memory: median of {args.mem_repeats} fresh subprocesses per case and allocator setting")
    print(f"- python {env['python']}, numpy {env['numpy']}, torch {env['torch']}, transformers {env['transformers']}, "
          f"koopscope {env['koopscope']}; {env['platform']}")
    print(f"- os.cpu_count() = {env['cpu_count']}; torch.get_num_threads() = {env['torch_threads']}; load average at "
          f"start {env['loadavg_start']}; thread env {env['thread_env'] or '(none set)'}")
    print()

    # ---- time table
    med = tim["median"]
    rows = []
    print("## Time\n")
    print("| case | forwards | time (s) | min–max (s) | ratio vs plain full forward | ratio vs plain forward "
          "through the same blocks | target | met? |")
    print("|---|---|---:|---:|---:|---:|---|---|")
    for bs in cfg["batch_sizes"]:
        n_fw = -(-S // bs)
        full, blocks = med[f"plain-full-{bs}"], med[f"plain-blocks-{bs}"]
        for name, label in ((f"plain-full-{bs}", "plain full forward (blocks + ln_f), no hooks"),
                            (f"plain-blocks-{bs}", "plain forward through the same blocks (ln_f → Identity)"),
                            (f"capture-{bs}", f"ks.capture(max_tokens={cfg['max_tokens']}, batch_size={bs})")):
            t, ts = med[name], tim["times"][name]
            is_cap = name.startswith("capture")
            met = (t / blocks <= OVERHEAD_TARGET) if is_cap else None
            rows.append({"case": name, "label": label, "batch_size": bs, "forwards": n_fw, "time_s": t,
                         "times": ts, "ratio_vs_full": t / full, "ratio_vs_blocks": t / blocks,
                         "target": OVERHEAD_TARGET if is_cap else None, "met": met})
            print(f"| {label} | {n_fw} × {bs} | {t:.3f} | {min(ts):.3f}–{max(ts):.3f} | {t / full:.3f} | "
                  f"{t / blocks:.3f} | {f'≤ {OVERHEAD_TARGET:.2f} (vs same blocks)' if is_cap else '—'} | "
                  f"{_yn(met)} |")
    print()
    print(f"Capture keeps N = {tim['n_tokens']} tokens x {tim['n_states']} states. Its last state equals the "
          "blocks-only forward's output at the same rows to "
          + ", ".join(f"{v:.1e} (batch {bs})" for bs, v in tim["agreement_last_state_vs_blocks_only"].items())
          + " max abs.")
    print()

    # ---- memory table
    N = tim["n_tokens"]
    states_bytes = (L + 1) * N * D * 4
    print("## Peak memory (one fresh subprocess per measurement)\n")
    print(f"States (L+1)·N·D·4 = {L + 1}·{N}·{D}·4 = {mib(states_bytes)} MiB. One layer's activations (estimate) "
          f"= B·T·({ACT_FACTOR}·D + H·T)·4 bytes. Peak extra = VmHWM during the operation minus VmRSS before it "
          "(model and inputs resident), median (min–max) over the subprocesses; ru_maxrss = getrusage peak of the "
          "subprocess (its whole life, model build included). All in MiB. met?: capture's peak extra ≤ states + "
          "one layer (est.); met? (measured): capture's peak extra ≤ states + the plain forward's measured peak "
          "extra (same batching), i.e. difference ≤ states.")
    print()
    print("| allocator | batch | plain forward peak extra | capture peak extra | difference | plain ru_maxrss | "
          "capture ru_maxrss | states | one layer (est.) | budget (states + one layer est.) | met? (est.) | "
          "met? (measured) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    mem_rows = []
    for allocator, runs in mem["runs"].items():
        for bs in cfg["batch_sizes"]:
            p, c = runs[f"plain-full-{bs}"], runs[f"capture-{bs}"]
            pe, ce = [r["peak_extra"] for r in p], [r["peak_extra"] for r in c]
            pm, cm = [r["ru_maxrss"] for r in p], [r["ru_maxrss"] for r in c]
            layer = bs * T * (ACT_FACTOR * D + H * T) * 4
            budget = states_bytes + layer
            ok = None not in pe + ce
            p_med = statistics.median(pe) if ok else None
            c_med = statistics.median(ce) if ok else None
            diff = c_med - p_med if ok else None
            met = c_med <= budget if ok else None
            strict = diff <= states_bytes if ok else None
            mem_rows.append({"allocator": allocator, "batch_size": bs, "plain_peak_extra": p_med,
                             "capture_peak_extra": c_med, "difference": diff,
                             "plain_ru_maxrss": statistics.median(pm), "capture_ru_maxrss": statistics.median(cm),
                             "states_bytes": states_bytes, "layer_bytes_estimate": layer, "budget": budget,
                             "met": met, "strict_met": strict, "plain_runs": p, "capture_runs": c})
            print(f"| {allocator} | {bs} | {_spread(pe) if ok else '—'} | {_spread(ce) if ok else '—'} | {mib(diff)} "
                  f"| {mib(statistics.median(pm))} | {mib(statistics.median(cm))} | {mib(states_bytes)} | "
                  f"{mib(layer)} | {mib(budget)} | {_yn(met)} | {_yn(strict)} |")
    print()
    print("tracemalloc (numpy allocations only; torch's CPU tensors, including the rows each hook gathers, are not "
          "traced), capture in its own subprocess, glibc default:")
    print()
    print("| batch | traced peak (MiB) | traced at end (MiB) | kept states nbytes (MiB) |")
    print("|---|---:|---:|---:|")
    for bs in cfg["batch_sizes"]:
        t = mem["traced"][f"capture-{bs}"]
        print(f"| {bs} | {mib(t['traced']['peak'])} | {mib(t['traced']['current'])} | {mib(t['kept']['bytes'])} |")
    print()
    first = mem["runs"]["glibc default"][f"plain-full-{cfg['batch_sizes'][0]}"][0]
    every = [r for runs in mem["runs"].values() for rs in runs.values() for r in rs]
    print(f"Baseline RSS (model + inputs, before the operation): {mib(first['rss_base'])} MiB; VmHWM reset by "
          f"/proc/self/clear_refs: {first['hwm_reset']}; child torch threads {first['torch_threads']}; "
          f"ru_maxrss within 1 MiB of the operation's VmHWM peak in "
          f"{sum(abs(r['ru_maxrss'] - r['rss_peak']) <= MiB for r in every)} of {len(every)} subprocesses (elsewhere "
          "the lifetime peak came before the operation: the model build, or the parent's RSS that an exec'd child "
          "inherits in ru_maxrss).")
    print()
    print(f"total benchmark time {elapsed:.1f} s; load average after the memory part {env['loadavg_after_memory']}, "
          f"at end {env['loadavg_end']}")

    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"environment": env, "mode": "quick" if args.quick else "full", "config": cfg,
                       "repeats": args.repeats, "mem_repeats": args.mem_repeats, "timing": {**tim, "rows": rows},
                       "memory": mem_rows, "tracemalloc": mem["traced"], "elapsed_s": elapsed}, fh, indent=2,
                      default=str)
        print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
