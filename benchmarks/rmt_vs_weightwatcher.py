"""Benchmark koopscope's weight-spectrum readings against WeightWatcher and the repeated-full-SVD guard.

Issue 7, "Speed": same model, one run: WeightWatcher ``analyze()`` against koopscope's readings on a GPT-2-small
configuration and on MiniLM, ≥ 10× faster for the same σ_max (1e-4 relative); and the baseline-vs-edit check
against the repeated-full-SVD approach of the guard we replace.

Models: ``GPT2LMHeadModel(GPT2Config())`` with ``torch.manual_seed(0)`` (GPT-2 small at initialisation: 48
Conv1D matrices, 768 × 768 to 3072 × 768), the real all-MiniLM-L6-v2 (37 linears, 384 × 384 to 1536 × 384;
needs the ``minilm`` extra), and ``llama2048`` (``--models``; not in the default list): two LLaMA-style blocks
at width 2048 (intermediate 5504) at initialisation, 15 matrices, to show how the ratio grows with size.
Cases, in one process, each the median of ``--repeats`` runs after a warm-up (one run for ``llama2048``):

- *WeightWatcher*: ``WeightWatcher(model=model).analyze()`` with its defaults (a full SVD per layer and a
  power-law fit with the KS x_min scan; it also reads GPT-2's ``wpe``, one 1024 × 768 matrix more than ours);
- *koopscope readings*: ``matrix_statistics(find_matrices(model, split_fused=False))`` (the whole spectrum from the
  Gram matrix for short sides up to ``FULL_SPECTRUM_MAX`` = 1024, σ_max and the top 8 by block Lanczos above; noise
  level, MP/TW edges, spike count, stable rank, α where the ESD is computed); fused ``c_attn`` unsplit so every
  matrix matches one of WW's;
- *σ_max agreement*: the largest relative difference between koopscope's σ_max and WW's ``sv_max`` over the
  matched matrices;
- *repeated-full-SVD guard* (the invarlock 0.2.0 pattern, ``reference/anchors_rmt.md`` §1): four full CPU
  ``torch.linalg.svdvals`` per matrix for a baseline-vs-edit check (baseline capture, baseline detect, after the
  edit, re-statistics), against ``RMTGuard.prepare(base)`` + ``RMTGuard.check(int8 RTN edit)``.

    .venv/bin/python benchmarks/rmt_vs_weightwatcher.py [--repeats 3] [--models gpt2,minilm] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _environment import environment  # type: ignore[import-not-found]  # noqa: E402


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    result = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def load(name: str, config: dict[str, Any] | None = None) -> Any:
    import torch
    import transformers

    if name == "gpt2":
        torch.manual_seed(0)
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(**(config or {}))).eval()
    if name == "llama2048":  # two LLaMA-7B-style blocks at width 2048: where full SVDs start to hurt
        torch.manual_seed(0)
        cfg = transformers.LlamaConfig(hidden_size=2048, intermediate_size=5504, num_hidden_layers=2,
                                       num_attention_heads=16, num_key_value_heads=16, vocab_size=1000)
        return transformers.LlamaForCausalLM(cfg).eval()
    from koopscope.capture.loading import load_model

    return load_model(name).model


def weightwatcher(model: Any) -> Any:
    import weightwatcher as ww

    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return ww.WeightWatcher(model=model).analyze()


def readings(model: Any) -> list[Any]:
    from koopscope.rmt import find_matrices, matrix_statistics

    return matrix_statistics(find_matrices(model, split_fused=False))


def full_svd_guard(base: Any, edited: Any) -> float:
    """The replaced guard's cost pattern: four full svdvals per matrix for one baseline-vs-edit check."""
    import torch

    from koopscope.rmt import find_matrices

    top = 0.0
    for model, passes in ((base, 2), (edited, 2)):  # capture + detect on the baseline, after-edit + re-stats
        for wm in find_matrices(model, split_fused=False):
            for _ in range(passes):
                top = max(top, float(torch.linalg.svdvals(wm.matrix().detach().float())[0]))
    return top


def our_guard(base: Any, edited: Any) -> Any:
    from koopscope.rmt import RMTGuard

    guard = RMTGuard()
    guard.prepare(base)
    return guard.check(edited)


def sigma_agreement(df: Any, stats: list[Any]) -> tuple[float, int]:
    """Largest relative |σ_ours − sv_max| over matrices matched in order of appearance by shape and module leaf."""
    ours = [(s.name.rsplit(".", 2)[-2], tuple(sorted(s.shape)), s.sigma_max) for s in stats]
    theirs = [(str(r["name"]).rsplit(".", 1)[-1], tuple(sorted((int(r["N"]), int(r["M"])))), float(r["sv_max"]))
              for _, r in df.iterrows()]
    worst, matched, j = 0.0, 0, 0
    for leaf, shape, sigma in ours:
        while j < len(theirs) and (theirs[j][0] != leaf or theirs[j][1] != shape):
            j += 1
        if j == len(theirs):
            break
        worst, matched, j = max(worst, abs(sigma - theirs[j][2]) / theirs[j][2]), matched + 1, j + 1
    return worst, matched


def bench(name: str, repeats: int, config: dict[str, Any] | None = None) -> dict[str, Any]:
    from koopscope.rmt import quantize_model

    model = load(name, config)
    edited = quantize_model(copy.deepcopy(model), 8)
    t_ww, df = median_time(lambda: weightwatcher(model), repeats)
    t_ks, stats = median_time(lambda: readings(model), repeats)
    worst, matched = sigma_agreement(df, stats)
    t_naive, _ = median_time(lambda: full_svd_guard(model, edited), repeats)
    t_guard, report = median_time(lambda: our_guard(model, edited), repeats)
    row = {"model": name, "matrices": len(stats), "ww_layers": len(df), "ww_s": t_ww, "koopscope_s": t_ks,
           "speedup_vs_ww": t_ww / t_ks, "sigma_max_max_rel_diff": worst, "sigma_matched": matched,
           "full_svd_guard_s": t_naive, "koopscope_guard_s": t_guard, "speedup_vs_full_svd_guard": t_naive / t_guard,
           "int8_verdict": report.verdict}
    print(json.dumps(row, indent=1), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="gpt2,minilm", help="comma list of gpt2, minilm, llama2048")
    parser.add_argument("--gpt2-config", default=None, help="JSON GPT2Config overrides (the smoke test's tiny model)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    import torch

    env = environment("torch", "transformers", "weightwatcher")
    env["torch_threads"] = torch.get_num_threads()
    print(json.dumps(env, indent=1))
    config = None if args.gpt2_config is None else json.loads(args.gpt2_config)
    rows = [bench(name, 1 if name == "llama2048" else args.repeats, config if name == "gpt2" else None)
            for name in args.models.split(",")]
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env, "results": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
