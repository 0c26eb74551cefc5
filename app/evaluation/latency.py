"""Latency of an ONNX artifact in onnxruntime, measured the same way everywhere."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from app.evaluation.scores import Latency
from app.evaluation.sessions import open_session

WARMUP_RUNS = 20
TIMED_RUNS = 200
BLOCKS = 5


def rows_of(feeds: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """The first ``batch`` rows of every input (repeated when there are fewer)."""
    first = next(iter(feeds.values()))
    picked = np.arange(batch) % len(first)
    return {name: values[picked] for name, values in feeds.items()}


def latency_ms(
    path: Path,
    *,
    input_name: str = "",
    row_shape: tuple[int, ...] = (),
    batch: int = 1,
    threads: int = 1,
    runs: int = TIMED_RUNS,
    min_seconds: float = 0.0,
    feeds: dict[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """``timed`` as the JSON a search stores: ``{"p50": ms, "p95": ms}``."""
    latency = timed(
        path,
        input_name=input_name,
        row_shape=row_shape,
        batch=batch,
        threads=threads,
        runs=runs,
        min_seconds=min_seconds,
        feeds=feeds,
    )
    return {"p50": latency.p50, "p95": latency.p95}


def timed(
    path: Path,
    *,
    input_name: str = "",
    row_shape: tuple[int, ...] = (),
    batch: int = 1,
    threads: int = 1,
    runs: int = TIMED_RUNS,
    min_seconds: float = 0.0,
    feeds: dict[str, np.ndarray] | None = None,
) -> Latency:
    """p50 and p95 milliseconds per call at ``batch`` rows, after warm-up, fixed threads.

    With ``min_seconds`` (used where variants are compared), fast models get more timed runs
    (up to 20x ``runs``), so microsecond calls are not judged on a millisecond of samples,
    and the runs are cut into blocks: p50 is the lowest block median (as ``timeit`` takes
    the best repeat), so a burst of load from another process does not decide a comparison.
    p95 is taken over every run. ``feeds`` (real rows, for models that take raw columns)
    replaces the random rows of ``input_name`` shaped ``row_shape``."""
    session = open_session(path, threads)
    feed = (
        rows_of(feeds, batch)
        if feeds is not None
        else {
            input_name: np.random.default_rng(0)
            .standard_normal((batch, *row_shape))
            .astype(np.float32)
        }
    )
    started = time.perf_counter()
    for _ in range(WARMUP_RUNS):
        session.run(None, feed)
    if min_seconds > 0:
        per_call = (time.perf_counter() - started) / WARMUP_RUNS
        runs = int(min(runs * 20, max(runs, min_seconds / max(per_call, 1e-7))))
    timings = np.empty(runs)
    for index in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        timings[index] = time.perf_counter() - start
    p50 = np.percentile(timings, 50)
    if min_seconds > 0:
        p50 = min(np.median(block) for block in np.array_split(timings, BLOCKS))
    return Latency(p50=float(p50 * 1e3), p95=float(np.percentile(timings, 95) * 1e3))
