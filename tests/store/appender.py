"""Test helper: deterministic states, a fixed provenance, and a script that appends them slowly.

Run as a script (``python appender.py PATH DELAY``) it opens or resumes the store at PATH, appends the remaining
batches of :func:`make_states` one by one, printing ``rows <k>`` after each and sleeping DELAY seconds, so that
a test can kill it with SIGKILL part-way through. Imported, it gives the same data and provenance to the test.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from koopscope.store import TrajectoryStore, sha256_text, sha256_token_ids

N_STATES, N_ROWS, WIDTH, BATCH = 3, 10_000, 64, 1_000  # 2.56 MB per state: three 1 MiB-plus chunks


def make_states(n_states: int = N_STATES, n_rows: int = N_ROWS, width: int = WIDTH, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n_rows, width), dtype=np.float32) for _ in range(n_states)]


def provenance(**overrides: Any) -> dict[str, Any]:
    """A complete provenance record with a fixed timestamp, so two stores can be compared byte for byte."""
    record = {
        "model_id": "sshleifer/tiny-gpt2", "revision_requested": "main",
        "revision_resolved": "5f91d94bd9cd7190a9f3216ff93cd1dd95f2c7be", "tokenizer": "sshleifer/tiny-gpt2",
        "prompt_sha256": sha256_text(["Hello world", "Koopman"]),
        "token_ids_sha256": sha256_token_ids([[15496, 995], [42, 11224, 805]]),
        "seed": 0, "max_tokens": N_ROWS, "layers": None, "tool_version": "0.1.0",
        "library_versions": {"python": "3.11.7", "numpy": "2.0.0"}, "capture_convention": {"name": "test"},
        "created_at": "2025-01-31T12:00:00Z",
    }
    record.update(overrides)
    return record


def open_store(path: Path, *, resume: bool = True, **overrides: Any) -> TrajectoryStore:
    return TrajectoryStore.create(path, n_states=N_STATES, width=WIDTH, n_rows=N_ROWS,
                                  provenance=provenance(**overrides), source_dtype="float32", resume=resume)


def append_rest(store: TrajectoryStore, states: list[np.ndarray], delay: float = 0.0, report: bool = False) -> None:
    """Append the batches of ``states`` from ``store.rows_written`` on, BATCH rows at a time."""
    while not store.is_complete:
        k = store.rows_written
        store.append([s[k:k + BATCH] for s in states])
        if report:
            print(f"rows {store.rows_written}", flush=True)
        time.sleep(delay)


if __name__ == "__main__":
    append_rest(open_store(Path(sys.argv[1])), make_states(), delay=float(sys.argv[2]), report=True)
