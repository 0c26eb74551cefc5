"""Running an uploaded ONNX model for the first time, in a subprocess the gateway can afford
to lose: ``python -m app.registry.probe MODEL_PATH THREADS MEMORY_MB RUN_TIMEOUT_S``.

The child caps its own address space and file writes before it imports onnxruntime, works in
an empty directory, checks the model with ``onnx.checker``, classifies the graph as bounded
or sandboxed (``app.onnx_graphs.classify``: static analysis, before anything runs), loads it
on CPU the way the gateway serves uploads (no memory arena), and runs it: a zero row, random
rows, rows at float32's extremes (each run stopped at the gateway's per-run deadline), then
batches of growing size to measure the memory one more row takes, and finally times it, at
one row and at the largest batch measured. It prints one JSON line. What it prints never
carries onnxruntime's or the checker's raw text beyond one sanitised line of the checker
(and the classification's reason: names cut to 80 printable characters, shape inference's
error to 120): a model must not be able to echo a file or a tensor back to its uploader.
The parent (``probe_model``) adds the wall-clock limit and turns the outcome into
InvalidInput."""

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
from typing import Any, Literal

from app.core.deadlines import DeadlinePassed, run_until
from app.core.errors import InvalidInput

RANDOM_ROWS = 4
TIMED_RUNS = 50
WARMUP_RUNS = 5
# Batches the memory per row is measured at, after the first runs.
MEMORY_BATCHES = (16, 64)
# Runs timed at the largest of them, within a budget of seconds (slow models run fewer).
BATCH_TIMED_RUNS = 9
BATCH_TIMING_S = 1.0
MEMORY_SHARE = 0.6
FLOAT32_MAX = 3.4028234663852886e38

_LOAD_PROBLEMS = {
    "NotImplemented": "it uses an operator or data type that onnxruntime's CPU provider does "
    "not implement",
    "InvalidGraph": "onnxruntime found the graph invalid (types or shapes do not fit)",
    "InvalidProtobuf": "onnxruntime could not read the file",
}
_STAGE_ROWS = {
    "zeros": "a zero input row",
    "random": f"{RANDOM_ROWS} random input rows",
    "extremes": "rows at float32's extremes (±3.4e38)",
    "batches": "batches of up to 64 rows",
}


GraphLabel = Literal["bounded", "sandboxed"]


@dataclass(frozen=True)
class ProbeResult:
    """What checking and running the model taught: its latency at batch 1, the memory one
    more row of a request takes (None: too little to measure), the seconds one row takes in
    a batch (None: too little to measure), and whether static analysis proved its cost
    linear in the rows ("bounded": it may run in the gateway) or not ("sandboxed"), why."""

    latency_p50_ms: float
    bytes_per_row: int | None
    graph_class: GraphLabel
    graph_class_reason: str
    seconds_per_row: float | None


def _limit_self(memory_mb: int) -> None:
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # no file writes at all
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _fail(stage: str, error: BaseException | None = None) -> dict[str, Any]:
    """A failed stage by name and exception type; an allocation failure is named as such."""
    if isinstance(error, DeadlinePassed):
        return {"ok": False, "stage": "deadline", "rows": stage, "kind": ""}
    if error is not None and (isinstance(error, MemoryError) or "alloc" in str(error).lower()):
        stage = "memory"
    return {"ok": False, "stage": stage, "kind": type(error).__name__ if error else ""}


def _checker_line(error: BaseException) -> str:
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return "".join(char for char in first if char.isprintable())[:200]


def _peak_bytes() -> int:
    """This process's peak resident memory since its exec: Linux's VmHWM. (``ru_maxrss``
    is no use here: it starts at the forking parent's size, so a child of a large gateway
    would see no growth until it outgrew its parent.)"""
    try:
        with open("/proc/self/status", encoding="utf-8", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


class _Runner:
    """One session's runs, each stopped at the deadline the gateway would give it."""

    def __init__(self, session: Any, run_timeout_s: float) -> None:
        import onnxruntime as ort

        self.session, self.run_timeout_s, self._options = session, run_timeout_s, ort.RunOptions
        source, output = session.get_inputs()[0], session.get_outputs()[0]
        self.input_name, self.output_name = source.name, output.name
        self.row_shape = tuple(int(dim) for dim in source.shape[1:])

    def run(self, feed: Any) -> Any:
        options = self._options()
        feeds = {self.input_name: feed}
        outputs = run_until(
            options,
            self.run_timeout_s,
            lambda: self.session.run([self.output_name], feeds, options),
        )
        return outputs[0]


def _bytes_per_row(
    runner: _Runner, loaded_peak: int, limit_bytes: int
) -> tuple[int | None, tuple[int, float] | None]:
    """The growth of peak memory per added row from the first runs (up to RANDOM_ROWS rows)
    to each measured batch; None when it is under a page per row. A batch whose projected
    peak would pass MEMORY_SHARE of the address space is not run: the estimate so far (at
    first, all the first runs' growth counted as per row) stands, as it does when a batch
    passes the per-run deadline. With it, the largest batch run and the seconds it took
    (None: no batch ran)."""
    import numpy as np

    estimate = max(_peak_bytes() - loaded_peak, 0) / RANDOM_ROWS
    rows, peak = RANDOM_ROWS, _peak_bytes()
    largest: tuple[int, float] | None = None
    for batch in MEMORY_BATCHES:
        if peak + estimate * (batch - rows) > MEMORY_SHARE * limit_bytes:
            break
        started = time.perf_counter()
        try:
            runner.run(np.ones((batch, *runner.row_shape), dtype=np.float32))
        except DeadlinePassed:  # a batch slower than one request may be: the estimate stands
            break
        largest = (batch, time.perf_counter() - started)
        grown = _peak_bytes()
        slope = max(grown - peak, 0) / (batch - rows)
        # The first measured slope replaces the rough estimate; later ones only raise it.
        estimate = slope if rows == RANDOM_ROWS else max(estimate, slope)
        rows, peak = batch, grown
    per_row = int(estimate) if estimate >= 4096 else None  # under a page per row: noise
    return per_row, largest


def _seconds_per_row(
    runner: _Runner, largest: tuple[int, float] | None, p50_s: float
) -> float | None:
    """The median of up to BATCH_TIMED_RUNS runs (within BATCH_TIMING_S) of the largest
    batch the memory was measured at, over its rows (the memory run's own time if none
    finishes); the batch-1 median when no batch ran. None when too quick to measure."""
    import numpy as np

    if largest is None:
        return p50_s if p50_s > 0 else None
    batch, first = largest
    feed = np.ones((batch, *runner.row_shape), dtype=np.float32)
    timings: list[float] = []
    budget = time.perf_counter() + BATCH_TIMING_S
    while len(timings) < BATCH_TIMED_RUNS and time.perf_counter() < budget:
        started = time.perf_counter()
        try:
            runner.run(feed)
        except Exception:  # it passed once: a later deadline leaves the times so far
            break
        timings.append(time.perf_counter() - started)
    seconds = float(np.median(timings)) if timings else first
    return seconds / batch if seconds > 0 else None


def _probe(data: bytes, threads: int, run_timeout_s: float, limit_bytes: int) -> dict[str, Any]:
    import numpy as np
    import onnx
    import onnxruntime as ort

    model = onnx.ModelProto()
    model.ParseFromString(data)
    try:
        onnx.checker.check_model(model)
    except Exception as error:
        return {**_fail("checker", error), "detail": _checker_line(error)}
    from app.onnx_graphs.classify import classify

    graph_class = classify(model)  # before anything runs; a MemoryError fails the probe
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = False  # as the gateway serves uploads
    options.log_severity_level = 4  # nothing to stderr: it is not read anyway
    try:
        session = ort.InferenceSession(
            data, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:
        return _fail("load", error)
    runner = _Runner(session, run_timeout_s)
    loaded_peak = _peak_bytes()
    shape = runner.row_shape
    feeds: dict[str, Any] = {
        "zeros": np.zeros((1, *shape)),
        "random": np.random.default_rng(0).standard_normal((RANDOM_ROWS, *shape)),
        "extremes": np.stack([np.full(shape, FLOAT32_MAX), np.full(shape, -FLOAT32_MAX)]),
    }
    feeds = {stage: feed.astype(np.float32) for stage, feed in feeds.items()}
    answers = []
    for stage, feed in feeds.items():
        try:
            answers.append(runner.run(feed))
        except Exception as error:
            return _fail(stage, error)
    try:
        per_row, largest = _bytes_per_row(runner, loaded_peak, limit_bytes)
    except Exception as error:
        return _fail("batches", error)
    timings = []
    for index in range(WARMUP_RUNS + TIMED_RUNS):
        started = time.perf_counter()
        runner.run(feeds["zeros"])
        if index >= WARMUP_RUNS:
            timings.append(time.perf_counter() - started)
    p50_s = float(np.median(timings))
    return {
        "ok": True,
        "shapes": [list(np.shape(answer)) for answer in answers],
        "latency_p50_ms": p50_s * 1e3,
        "bytes_per_row": per_row,
        "seconds_per_row": _seconds_per_row(runner, largest, p50_s),
        "graph_class": graph_class.label,
        "graph_class_reason": graph_class.reason,
    }


def main() -> None:
    """The child's entry point (see the module docstring)."""
    path, threads, memory_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    run_timeout_s = float(sys.argv[4])
    data = Path(path).read_bytes()
    _limit_self(memory_mb)
    try:
        outcome = _probe(data, threads, run_timeout_s, memory_mb * 1024 * 1024)
    except MemoryError as error:
        outcome = _fail("memory", error)
    print(json.dumps(outcome), flush=True)


def _child_environment() -> dict[str, str]:
    """The gateway's environment without ModelKiln's settings (credentials live there)."""
    return {name: value for name, value in os.environ.items() if not name.startswith("KILN_")}


def probe_model(
    path: Path, *, width: int, threads: int, memory_mb: int, timeout_s: float, run_timeout_s: float
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
                    repr(run_timeout_s),
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
    outcome = _outcome(finished, memory_mb, run_timeout_s)
    expected = [[1, width], [RANDOM_ROWS, width], [2, width]]
    if outcome["shapes"] != expected:
        given = ", ".join(
            f"{shape} for {rows}"
            for shape, rows in zip(
                outcome["shapes"],
                ("one row", f"{RANDOM_ROWS}", "2 (float32's extremes)"),
                strict=False,
            )
        )
        raise InvalidInput(f"model declares output shape [batch, {width}] but gave {given}")
    per_row, per_row_s = outcome.get("bytes_per_row"), outcome.get("seconds_per_row")
    bounded = outcome.get("graph_class") == "bounded"
    return ProbeResult(
        latency_p50_ms=float(outcome["latency_p50_ms"]),
        bytes_per_row=int(per_row) if per_row is not None else None,
        graph_class="bounded" if bounded else "sandboxed",
        graph_class_reason=str(outcome.get("graph_class_reason") or "not classified"),
        seconds_per_row=float(per_row_s) if per_row_s is not None else None,
    )


def _outcome(
    finished: subprocess.CompletedProcess[bytes], memory_mb: int, run_timeout_s: float
) -> dict[str, Any]:
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
            f"model needed more than {memory_mb} MB (KILN_PROBE_MEMORY_MB) to run on test rows"
        )
    if stage == "load":
        problem = _LOAD_PROBLEMS.get(kind, "onnxruntime cannot load it on CPU")
        raise InvalidInput(f"model cannot be served: {problem}")
    if stage == "deadline":
        rows = _STAGE_ROWS.get(str(outcome.get("rows")), "test rows")
        raise InvalidInput(
            f"model did not finish one run on {rows} within {run_timeout_s:g} s "
            "(KILN_UPLOAD_RUN_TIMEOUT_S, the most one request may run it)"
        )
    rows = _STAGE_ROWS.get(str(stage), "test rows")
    raise InvalidInput(f"model fails on {rows} (onnxruntime raised {kind or 'an error'})")


if __name__ == "__main__":
    main()
