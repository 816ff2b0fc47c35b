"""Smoke test of the Koopman-layer benchmark (benchmarks/koopman_layer): corpus -> training -> evaluation -> timing
-> JSON and tables, end to end, in seconds, with a width-16 two-block model on the docstrings of a few files."""

from __future__ import annotations

import json
import math
import sysconfig
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benchmarks.koopman_layer import corpus, run  # noqa: E402

TINY = ["--steps", "10", "--batch-size", "2", "--seq-len", "16", "--d-model", "16", "--layers", "2", "--heads", "2",
        "--koopman-dim", "8", "--capacity", "32", "--rows-per-step", "8", "--update-every", "2", "--eval-windows",
        "4", "--timing-repeats", "2", "--max-files", "12"]


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("koopman_layer")
    out = root / "result.json"
    assert run.main([*TINY, "--corpus-cache", str(root / "corpus.npz"), "--out", str(out),
                     "--fingerprints", str(root / "fp")]) == 0
    assert (root / "fp" / "K_koopman_block0.html").is_file() and (root / "fp" / "K_no-dmd_block1.json").is_file()
    return json.loads(out.read_text())


def test_result_has_every_measurement(result: dict) -> None:
    ev = result["evaluation"]
    assert {v: set(modes) for v, modes in ev.items()} == {
        "plain": {"standard"}, "koopman": {"standard", "koopman"}, "design-rcond": {"standard", "koopman"},
        "no-dmd": {"standard", "koopman"}}
    for entry in (e for modes in ev.values() for e in modes.values()):
        assert math.isfinite(entry["perplexity"]) and entry["perplexity"] > 1.0 and entry["tokens"] == 4 * 16
        assert entry["bits_per_byte"] == pytest.approx(math.log2(entry["perplexity"]), rel=1e-12)
    runs = result["runs"]
    assert runs["plain"]["metrics"]["phases"]["hybrid"]["koopman_loss"] is None  # no Koopman blocks
    koop = runs["koopman"]["metrics"]["phases"]
    assert {p: koop[p]["steps"] for p in koop} == {"warmup": 2, "hybrid": 6, "koopman": 2}
    assert koop["hybrid"]["updates_applied"] + koop["hybrid"]["updates_skipped"] == 3 * 2  # steps 4, 6, 8; 2 layers
    no_dmd = runs["no-dmd"]["metrics"]["phases"]
    assert sum(p["updates_applied"] + p["updates_skipped"] for p in no_dmd.values()) == 0
    forward = result["forward"]
    assert forward["model_speedup"] > 0 and forward["layer_speedup"] > 0 and forward["claimed_speedup"] == [8.0, 10.0]
    assert set(result["spectra"]) == {"koopman", "design-rcond", "no-dmd"}
    assert [s["block"] for s in result["spectra"]["koopman"]] == [0, 1]
    assert all(s["buffered_pairs"] == 32 for s in result["spectra"]["koopman"])


def test_markdown_names_the_claim(result: dict) -> None:
    text = run.markdown(result)
    assert "| whole model |" in text and "8–10×" in text and "| design-rcond | koopman |" in text


def test_macs_per_token_at_the_reference_size() -> None:
    macs = run.macs_per_token(64, 256, 128)
    assert macs["block"] == 12 * 64 * 64 + 64 * 129  # 57,408
    assert macs["koopman_branch"] == 2 * 64 * 256 + 3 * 256 * 256  # 229,376: four times the block
    assert macs["operator_only"] == 65_536


def test_corpus_is_deterministic_disjoint_and_cached(tmp_path) -> None:
    a = corpus.build(seed=0, max_files=12)
    b = corpus.build(seed=0, max_files=12)
    c = corpus.build(seed=1, max_files=12)
    assert a.meta["sha256"] == b.meta["sha256"] != c.meta["sha256"]
    assert a.meta["documents"] > 10 and a.meta["held_documents"] == round(0.1 * a.meta["documents"])
    train_docs = set(bytes(a.train).split(b"\n\n"))
    held_docs = bytes(a.held).split(b"\n\n")
    assert held_docs and not any(d in train_docs for d in held_docs if len(d) >= corpus.MIN_CHARS)
    cache = tmp_path / "c.npz"
    first = corpus.load(cache, max_files=12)
    np.testing.assert_array_equal(first.train, a.train)
    stamp = cache.stat().st_mtime_ns
    again = corpus.load(cache, max_files=12)  # read back, not rebuilt
    assert cache.stat().st_mtime_ns == stamp and again.meta == first.meta
    assert corpus.load(cache, max_files=13).meta["max_files"] == 13  # other settings: rebuilt


def test_stdlib_files_skip_tests() -> None:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = corpus.stdlib_files(root)
    assert files == sorted(files) and len(files) > 100
    assert not any({"test", "tests", "site-packages"} & set(f.relative_to(root).parts) for f in files)
