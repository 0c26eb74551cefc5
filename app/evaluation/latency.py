"""Latency of an ONNX artifact in onnxruntime, measured the same way everywhere."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from app.serving.runtime import open_session

WARMUP_RUNS = 20
TIMED_RUNS = 200


def latency_ms(path: Path, *, input_name: str, row_shape: tuple[int, ...], batch: int = 1,
               threads: int = 1, runs: int = TIMED_RUNS) -> dict[str, float]:
    """p50 and p95 milliseconds per call at ``batch`` rows, after warm-up, fixed threads."""
    session = open_session(path, threads)
    feed = {input_name: np.random.default_rng(0).standard_normal(
        (batch, *row_shape)).astype(np.float32)}
    for _ in range(WARMUP_RUNS):
        session.run(None, feed)
    timings = np.empty(runs)
    for index in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        timings[index] = time.perf_counter() - start
    return {"p50": float(np.percentile(timings, 50) * 1e3),
            "p95": float(np.percentile(timings, 95) * 1e3)}
