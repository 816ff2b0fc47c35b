"""ResidualStates: the container's contract, provenance, and the package's own import rules."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import koopscope.capture as cap
from koopscope.errors import DataError, ParameterError


def _states(n=5, d=3, layers=(0, 1, 2)):
    rng = np.random.default_rng(0)
    arrays = tuple(rng.standard_normal((n, d)).astype(np.float32) for _ in layers)
    index = np.stack([np.zeros(n, int), np.arange(n)], axis=1)
    return cap.ResidualStates(arrays, layers, index, "bfloat16", {"model_class": "Toy"})


def test_pairs_state_len_and_read_only():
    s = _states()
    assert len(s) == 3 and s.n_tokens == 5 and s.dim == 3 and s.transitions == (0, 1)
    X, Y = s.pairs(1)
    assert X is s.states[1] and Y is s.states[2] and s.state(2) is s.states[2]
    with pytest.raises(ValueError, match="read-only"):
        s.states[0][0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        s.token_index[0, 0] = 1
    with pytest.raises(ParameterError, match=r"Transition 2 \(state 2 -> 3\) is not available"):
        s.pairs(2)
    with pytest.raises(ParameterError, match=r"State 7 was not captured; the kept states are \[0, 1, 2\]"):
        s.state(7)
    assert repr(s) == "ResidualStates(model=Toy, layers=[0, 1, 2], n_tokens=5, dim=3, source_dtype='bfloat16')"


def test_the_callers_arrays_stay_writable():
    a = np.zeros((2, 2), np.float32)
    cap.ResidualStates((a,), (0,), np.zeros((2, 2), int), "float32")
    a[0, 0] = 1.0


@pytest.mark.parametrize("kwargs,match", [
    ({"layers": (0, 1)}, "one array per kept layer"),
    ({"layers": (2, 1, 0)}, "ascending"),
    ({"states": (np.zeros((5, 3), np.float64),) * 3}, "State 0 .* float64"),
    ({"token_index": np.zeros((4, 2), int)}, r"token_index must be an integer array of shape \(N, 2\) = \(5, 2\)"),
])
def test_invalid_states_are_refused(kwargs, match):
    s = _states()
    fields = {"states": s.states, "layers": s.layers, "token_index": s.token_index, "source_dtype": "float32"}
    with pytest.raises(DataError, match=match):
        cap.ResidualStates(**{**fields, **kwargs})


def test_provenance_is_json_and_complete():
    from tests.capture.models import tiny, token_ids

    states = cap.capture(tiny("rwkv"), token_ids(), max_tokens=10)
    p = json.loads(json.dumps(states.provenance))
    assert p["convention"] == cap.CONVENTION and "before final norm" in p["convention"]
    for key in ("model_class", "name_or_path", "n_blocks", "adapter", "seed", "max_tokens", "n_tokens_available",
                "rescale", "token_ids_sha256", "layers", "final_norm", "versions"):
        assert key in p
    assert p["model_class"] == "RwkvForCausalLM" and p["adapter"] == "rwkv" and p["final_norm"] == "rwkv.ln_out"
    assert p["n_tokens"] == 10 and p["n_tokens_available"] == 36 and p["max_tokens"] == 10


def test_the_package_is_callable_and_streams_chunks():
    from tests.capture.models import tiny, token_ids

    model, ids = tiny("gpt2"), token_ids(5, 6)
    states = cap(model, ids, max_tokens=20, batch_size=2)
    run = cap.prepare(model, ids, max_tokens=20, batch_size=2)
    assert run.n_batches == 3 and run.n_tokens == 20
    assert_array_equal(run.token_index, states.token_index)
    chunks = list(run.chunks(start=1))
    assert [c.batch for c in chunks] == [1, 2] and chunks[0].source_dtype == "float32"
    for chunk in chunks:
        for kept, rows in zip(states.states, chunk.states, strict=True):
            assert_array_equal(kept[chunk.rows], rows)
    assert chunks[-1].rows.stop == 20
    with pytest.raises(ParameterError, match="'start' parameter of CaptureRun.chunks"):
        next(run.chunks(start=4))


def test_importing_capture_does_not_import_torch():
    code = ("import sys, koopscope.capture as c\n"
            "c.random_tokens(2, 3, 10); c.read_prompts\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_missing_torch_gives_the_install_line(monkeypatch):
    from koopscope.capture import _deps
    from koopscope.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(MissingDependencyError, match=r'`pip install -c constraints.txt -e "\.\[transformers\]"`'):
        _deps.require_torch("capture")
