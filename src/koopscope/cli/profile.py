"""``koopscope profile``: the RKSP profile of a model from one forward pass, written as a KoopmanFingerprint.

MODEL is resolved offline as by ``koopscope extract`` (a demo name, a local directory, a cached hub id);
``demo`` is the built-in tiny GPT-2 (4 blocks, width 64) on random tokens, which profiles in seconds. Without
``--prompts`` the model reads ``--tokens`` uniform random token ids (the profile of the architecture on
no particular data, as at initialisation); ``--init`` re-initialises the weights with the model's own
initialiser (seeded) before profiling. The work is :func:`koopscope.profile`; this module prints the per-layer
table, the trust flags and the verdict, and writes the fingerprint (and the HTML report) atomically.
"""

from __future__ import annotations

import argparse
import math

from koopscope.cli._common import EXIT_OK, bounded, check_output_path, emit, emit_json, progress
from koopscope.errors import ParameterError

NAME = "profile"
HELP = "per-layer whitened Koopman spectra of a model, its divergence risk and trust flags (RKSP)"

DEMO = "demo"
DEMO_MODEL = "tiny-gpt2"
SEQUENCE_LENGTH = 128  # random-token sequences: --tokens are split into sequences of this length


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="'demo' (built-in tiny GPT-2), a demo name, a local model directory or a cached hub id")
    parser.add_argument("--out", default=None, metavar="PROFILE.json",
                        help="write the profile as a KoopmanFingerprint (kind 'model')")
    parser.add_argument("--html", default=None, metavar="REPORT.html", help="also write the HTML report")
    parser.add_argument("--prompts", default=None, metavar="PROMPTS.jsonl",
                        help='JSONL, one {"text": ...} per line (default: --tokens random token ids)')
    parser.add_argument("--tokens", type=bounded(int, 2), default=2048, metavar="N",
                        help="token states per transition (default: 2048, RKSP App. D)")
    parser.add_argument("--init", action="store_true",
                        help="re-initialise the weights with the model's own initialiser (seeded) first")
    parser.add_argument("--rank", type=bounded(int, 1), default=None, metavar="R",
                        help="rank-R randomized whitened DMD (RKSP's default is 32; default here: full rank)")
    parser.add_argument("--calibration", default=None, metavar="CALIBRATION.json",
                        help="a calibration from koopscope calibrate: report P(diverge) as the risk")
    parser.add_argument("--lr", type=float, default=None, metavar="X",
                        help="learning rate, for a calibration that takes it")
    parser.add_argument("--revision", default=None, metavar="REV", help="revision of a cached hub model")
    parser.add_argument("--n-boot", type=bounded(int, 0), default=200, metavar="B",
                        help="bootstrap replicates of the fingerprint's intervals (default: 200; each refits every "
                             "layer, so large models take B eigen-solves per layer)")
    parser.add_argument("--seed", type=bounded(int, 0), default=0, help="seed of every random choice (default: 0)")
    parser.add_argument("--json", action="store_true", help="print the per-layer features and verdict as JSON")


def _check_lr(lr: float | None) -> None:
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise ParameterError(f"--lr is {lr!r}, expected a positive finite learning rate such as 3e-4.")


def _reinitialise(model: object, seed: int) -> None:
    import torch

    init = getattr(model, "init_weights", None)
    if init is None:
        raise ParameterError(f"--init needs a model with an init_weights() method (a transformers model); "
                             f"{type(model).__name__} has none: profile it as trained, without --init.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        init()


def _inputs(args: argparse.Namespace, loaded: object) -> object:
    from koopscope.capture import random_tokens, read_prompts

    if args.prompts is not None:
        return read_prompts(args.prompts)
    vocab = int(loaded.model.config.vocab_size)  # type: ignore[attr-defined]
    n_seq = -(-args.tokens // SEQUENCE_LENGTH)
    return random_tokens(n_seq, SEQUENCE_LENGTH, vocab, seed=args.seed)


def run(args: argparse.Namespace) -> int:
    from koopscope.capture.loading import load_model, quiet_transformers
    from koopscope.profile import profile

    _check_lr(args.lr)
    out = None if args.out is None else check_output_path(args.out, "--out")
    html = None if args.html is None else check_output_path(args.html, "--html")
    calibration = None
    if args.calibration is not None:
        from koopscope.gate import Calibrator

        calibration = Calibrator.load(args.calibration)
    name = DEMO_MODEL if args.model == DEMO else args.model
    progress(f"profile: loading {args.model}")
    loaded = load_model(name, revision=args.revision)
    if args.init:
        _reinitialise(loaded.model, args.seed)
    source = {"model_id": args.model if args.model == DEMO else loaded.model_id,
              "revision_requested": loaded.revision_requested,
              "revision_resolved": None if args.init else loaded.revision_resolved,
              "weights": f"re-initialised (seed {args.seed})" if args.init else "as loaded"}
    with quiet_transformers():
        prof = profile(loaded.model, _inputs(args, loaded), tokenizer=loaded.tokenizer, max_tokens=args.tokens,
                       seed=args.seed, rank=args.rank, calibration=calibration, lr=args.lr, source=source)
    written = []
    if out is not None or html is not None:
        progress(f"profile: bootstrap intervals ({args.n_boot} replicates x {len(prof.layers)} transitions)")
        fp = prof.fingerprint(name=source["model_id"], n_boot=args.n_boot)
        if out is not None:
            fp.to_json(out)
            written.append(str(out))
        if html is not None:
            written.append(str(fp.to_html(html)))
    if args.json:
        emit_json({"model": source["model_id"], "risk": prof.risk, "calibrated": prof.calibrated,
                   "trusted": prof.trusted, "verdict": prof.verdict,
                   "summary": prof.summary,
                   "layers": [{"index": lp.index, **lp.features} for lp in prof.layers],
                   "flags": prof.flags, "written": written})
        return EXIT_OK
    emit(f"profile of {source['model_id']}: {len(prof.layers)} transitions, {prof.layers[0].n_pairs} tokens, "
         f"width {prof.layers[0].dim}, {'rank ' + str(args.rank) if args.rank else 'full rank'} whitened DMD")
    emit(prof.table())
    for flag in prof.flags:
        emit(f"  {flag['severity']}: {flag['message']}")
    emit(f"verdict: {prof.verdict}")
    if written:
        emit(f"wrote {', '.join(written)}")
    return EXIT_OK
