"""Measuring a model the way it will serve: its ONNX bytes in onnxruntime, on the held-out
test split, with fixed threads; the same for the parent and every variant."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np

from app.compression.base import Candidate, CompressionData
from app.compression.measures import Measured, Timings
from app.contracts.enums import Task
from app.evaluation.latency import timed
from app.evaluation.metrics import task_scores
from app.evaluation.sessions import open_session

LATENCY_SECONDS = 0.15  # per batch size and pass, so variants are compared on enough samples
ROUNDS = 4  # round-robin passes; each model keeps its best


def agreement(task: str, output: np.ndarray, parent: np.ndarray) -> float:
    """How closely a variant follows its parent on the test rows: the share of rows with the
    same predicted class, or (regression) R² of the variant's values against the parent's."""
    if task == Task.CLASSIFICATION:
        return float(np.mean(output.argmax(axis=1) == parent.argmax(axis=1)))
    residual = float(np.sum((output - parent) ** 2))
    spread = float(np.sum((parent - parent.mean()) ** 2))
    return 1.0 - residual / spread if spread > 0 else float(residual == 0)


def measure(
    candidate: Candidate, data: CompressionData, parent_output: np.ndarray | None
) -> tuple[Measured, np.ndarray]:
    """Task metrics on the test split, file and gzip bytes, and agreement with the parent's
    outputs; also the outputs. Measured on the file that would serve (with the
    preprocessing in front, for a table with one). Latency is timed apart (``time_all``)."""
    onnx = data.served(candidate)
    session = open_session(onnx, data.threads)
    output = np.asarray(session.run([candidate.output_name], data.test_feeds(candidate))[0])
    measured = Measured(
        scores=task_scores(data.task, output, data.y_test),
        test_rows=len(data.x_test),
        size_bytes=len(onnx),
        gzip_bytes=len(gzip.compress(onnx, compresslevel=9)),
        agreement=None if parent_output is None else agreement(data.task, output, parent_output),
    )
    return measured, output


def timing(candidate: Candidate, data: CompressionData) -> Timings:
    """p50 and p95 latency at batch 1 and 64 of the file that would serve, on test rows,
    after warm-up, with the job's threads."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        path.write_bytes(data.served(candidate))
        feeds = data.test_feeds(candidate)
        single, batch64 = (
            timed(path, feeds=feeds, batch=batch, threads=data.threads, min_seconds=LATENCY_SECONDS)
            for batch in (1, 64)
        )
    return Timings(single=single, batch64=batch64)


def time_all(models: list[Candidate], data: CompressionData) -> list[Timings]:
    """Latency of every model, timed in ``ROUNDS`` round-robin
    passes keeping each model's best: whichever model is timed first in a fresh process
    would otherwise pay for its warm-up, and a burst of load would hit one model only."""
    best: list[Timings | None] = [None for _ in models]
    for _ in range(ROUNDS):
        for index, candidate in enumerate(models):
            timings = timing(candidate, data)
            kept = best[index]
            best[index] = timings if kept is None else kept.faster_of(timings)
    return [timings for timings in best if timings is not None]
