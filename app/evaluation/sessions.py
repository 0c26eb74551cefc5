"""onnxruntime CPU sessions made one way for every caller: serving, latency measurement,
compression and export checks."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def session_options(threads: int, *, arena: bool = True) -> ort.SessionOptions:
    """Fixed thread counts so latency numbers and serving behave the same everywhere.
    ``arena=False``: memory a run allocates is returned when it ends, not kept for the next
    (how uploaded graphs are served, so one request cannot leave the gateway holding it)."""
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = arena
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def open_session(path: Path | bytes, threads: int, *, arena: bool = True) -> ort.InferenceSession:
    """An onnxruntime CPU session for a model file or its bytes."""
    source = str(path) if isinstance(path, Path) else path
    return ort.InferenceSession(
        source,
        sess_options=session_options(threads, arena=arena),
        providers=["CPUExecutionProvider"],
    )
