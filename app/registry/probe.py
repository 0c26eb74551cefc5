"""Running an uploaded ONNX model for the first time, in a subprocess the gateway can afford
to lose: ``python -m app.registry.probe MODEL_PATH THREADS MEMORY_MB``.

The child caps its own address space and file writes before it imports onnxruntime, works in
an empty directory, checks the model with ``onnx.checker``, loads it on CPU, runs a zero row
and random rows, times it, and prints one JSON line. What it prints never carries
onnxruntime's or the checker's raw text beyond one sanitised line of the checker: a model
must not be able to echo a file or a tensor back to its uploader. The parent
(``probe_model``) adds the wall-clock limit and turns the outcome into InvalidInput."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.errors import InvalidInput

RANDOM_ROWS = 4
TIMED_RUNS = 50
WARMUP_RUNS = 5

_LOAD_PROBLEMS = {
    "NotImplemented": "it uses an operator or data type that onnxruntime's CPU provider does "
    "not implement",
    "InvalidGraph": "onnxruntime found the graph invalid (types or shapes do not fit)",
    "InvalidProtobuf": "onnxruntime could not read the file",
}


@dataclass(frozen=True)
class ProbeResult:
    """What running the model taught: its measured latency at batch 1."""

    latency_p50_ms: float


def _limit_self(memory_mb: int) -> None:
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # no file writes at all
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _fail(stage: str, error: BaseException | None = None) -> dict[str, Any]:
    """A failed stage by name and exception type; an allocation failure is named as such."""
    if error is not None and (isinstance(error, MemoryError) or "alloc" in str(error).lower()):
        stage = "memory"
    return {"ok": False, "stage": stage, "kind": type(error).__name__ if error else ""}


def _checker_line(error: BaseException) -> str:
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return "".join(char for char in first if char.isprintable())[:200]


def _probe(data: bytes, threads: int) -> dict[str, Any]:
    import numpy as np
    import onnx
    import onnxruntime as ort

    model = onnx.ModelProto()
    model.ParseFromString(data)
    try:
        onnx.checker.check_model(model)
    except Exception as error:
        return {**_fail("checker", error), "detail": _checker_line(error)}
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 4  # nothing to stderr: it is not read anyway
    try:
        session = ort.InferenceSession(
            data, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:
        return _fail("load", error)
    source, output = session.get_inputs()[0], session.get_outputs()[0]
    row_shape = tuple(int(dim) for dim in source.shape[1:])
    zeros = np.zeros((1, *row_shape), dtype=np.float32)
    rows = np.random.default_rng(0).standard_normal((RANDOM_ROWS, *row_shape)).astype(np.float32)
    answers = []
    for stage, feed in (("zeros", zeros), ("random", rows)):
        try:
            answers.append(session.run([output.name], {source.name: feed})[0])
        except Exception as error:
            return _fail(stage, error)
    shapes = [list(np.shape(answer)) for answer in answers]
    timings = []
    for index in range(WARMUP_RUNS + TIMED_RUNS):
        started = time.perf_counter()
        session.run([output.name], {source.name: zeros})
        if index >= WARMUP_RUNS:
            timings.append(time.perf_counter() - started)
    return {"ok": True, "shapes": shapes, "latency_p50_ms": float(np.median(timings) * 1e3)}


def main() -> None:
    """The child's entry point (see the module docstring)."""
    path, threads, memory_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    data = Path(path).read_bytes()
    _limit_self(memory_mb)
    try:
        outcome = _probe(data, threads)
    except MemoryError as error:
        outcome = _fail("memory", error)
    print(json.dumps(outcome), flush=True)


def _child_environment() -> dict[str, str]:
    """The gateway's environment without ModelKiln's settings (credentials live there)."""
    return {name: value for name, value in os.environ.items() if not name.startswith("KILN_")}


def probe_model(
    path: Path, *, width: int, threads: int, memory_mb: int, timeout_s: float
) -> ProbeResult:
    """Run the probe child on ``path``; InvalidInput names the stage that failed."""
    with tempfile.TemporaryDirectory(prefix="kiln-probe-") as empty:
        try:
            finished = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "app.registry.probe",
                    str(path.resolve()),
                    str(threads),
                    str(memory_mb),
                ],
                cwd=empty,
                env=_child_environment(),
                capture_output=True,
                timeout=timeout_s,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise InvalidInput(
                f"model took longer than {timeout_s:g} s to load, run on test "
                "rows and time (KILN_PROBE_TIMEOUT_S)"
            ) from None
    outcome = _outcome(finished, memory_mb)
    expected = [[1, width], [RANDOM_ROWS, width]]
    if outcome["shapes"] != expected:
        raise InvalidInput(
            f"model declares output shape [batch, {width}] but gave "
            f"{outcome['shapes'][0]} for one row and {outcome['shapes'][1]} "
            f"for {RANDOM_ROWS}"
        )
    return ProbeResult(latency_p50_ms=float(outcome["latency_p50_ms"]))


def _outcome(finished: subprocess.CompletedProcess[bytes], memory_mb: int) -> dict[str, Any]:
    lines = finished.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        outcome: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        outcome = {}
    if finished.returncode != 0 or not outcome:
        raise InvalidInput(
            f"model could not be checked: onnxruntime used more than "
            f"{memory_mb} MB (KILN_PROBE_MEMORY_MB) or crashed while loading "
            "or running it"
        )
    if outcome.get("ok"):
        return outcome
    stage, kind = outcome.get("stage"), outcome.get("kind", "")
    if stage == "checker":
        raise InvalidInput(f"ONNX checker rejected the model: {outcome.get('detail', '')}")
    if stage == "memory":
        raise InvalidInput(
            f"model needed more than {memory_mb} MB (KILN_PROBE_MEMORY_MB) to run on a test row"
        )
    if stage == "load":
        problem = _LOAD_PROBLEMS.get(kind, "onnxruntime cannot load it on CPU")
        raise InvalidInput(f"model cannot be served: {problem}")
    rows = "a zero input row" if stage == "zeros" else f"{RANDOM_ROWS} random input rows"
    raise InvalidInput(f"model fails on {rows} (onnxruntime raised {kind or 'an error'})")


if __name__ == "__main__":
    main()
