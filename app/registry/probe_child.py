"""The probe's child process: ``python -m app.registry.probe_child MODEL_PATH THREADS
MEMORY_MB RUN_TIMEOUT_S POWERCAP_DIR WATTS_PER_CORE``. Everything that reads an uploaded
file happens here, in a process the gateway can afford to lose, never in the gateway
itself.

It caps its own address space and file writes before it reads the file, works in an empty
directory, decodes the protobuf and checks it as data (``app.onnx_graphs.checks``: no
external data anywhere, a bounded declared signature), runs ``onnx.checker``, classifies
the graph as bounded or sandboxed (``app.onnx_graphs.classify``: static analysis, before
anything runs), reads whether it is a stack of layers a worker can train
(``app.onnx_graphs.layers``), then loads it on CPU the way the gateway serves uploads (no
memory arena), measuring the memory the loaded session holds (constants onnxruntime folds
at load included), and runs it: a zero row, random rows, rows at float32's extremes (each
run stopped at the gateway's per-run deadline), then batches of growing size to measure
the memory one more row takes, and finally times it, at one row and at the largest batch
measured, and last its footprint: the memory one run takes at batch 1 and 256 and the
energy per 1,000 rows (``app.evaluation.footprint``). It prints one JSON line. What it
prints never carries onnxruntime's or the checker's raw text beyond one sanitised line of
the checker, the classification's reason and our own checks' refusals (names cut to 80
characters): a model must not be able to echo a file or a tensor back to its uploader."""

from __future__ import annotations

import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter

from app.contracts.signature import VersionConfig
from app.core.deadlines import DeadlinePassed, run_until
from app.core.errors import InvalidInput
from app.evaluation.energy import EnergySettings
from app.evaluation.footprint import LARGE_BATCH, Footprint

RANDOM_ROWS = 4
TIMED_RUNS = 50
WARMUP_RUNS = 5
# Latency runs stop at this many seconds (at least MIN_TIMED_RUNS are timed): a model of
# half a second a run would otherwise keep an upload waiting half a minute for its p50.
TIMING_S = 3.0
MIN_TIMED_RUNS = 3
# Batches the memory per row is measured at, after the first runs.
MEMORY_BATCHES = (16, 64)
# Runs timed at the largest of them, within a budget of seconds (slow models run fewer).
BATCH_TIMED_RUNS = 9
BATCH_TIMING_S = 1.0
MEMORY_SHARE = 0.6
FLOAT32_MAX = 3.4028234663852886e38


class Declared(BaseModel):
    """What the upload declares, checked as data: its tensors, parameters and trainable
    form (or why it has none)."""

    input_name: str
    row_shape: list[int]
    output_name: str
    width: int
    n_params: int
    form: VersionConfig


class ProbeFailed(BaseModel):
    """The stage that failed and the exception's type; ``detail`` our own refusal or the
    checker's first line, ``rows`` the rows a run passed its deadline on."""

    ok: Literal[False] = False
    stage: str
    kind: str = ""
    detail: str | None = None
    rows: str | None = None


class ProbeMeasured(BaseModel):
    """A probe that ran the model through: what it declared and what running it measured
    (see ``ProbeResult`` for each measure)."""

    ok: Literal[True] = True
    declared: Declared
    shapes: list[list[int]]
    latency_p50_ms: float
    bytes_per_row: int | None = None
    seconds_per_row: float | None = None
    load_bytes: int
    graph_class: Literal["bounded", "sandboxed"]
    graph_class_reason: str
    rows_independent: bool
    footprint: Footprint | None = None  # None: a run at batch 1 failed while measuring it


ProbeOutcome = ProbeFailed | ProbeMeasured
# The child's one JSON line, read back by the parent (``ok`` tells the two apart).
PROBE_OUTCOME: TypeAdapter[ProbeOutcome] = TypeAdapter(ProbeOutcome)


def _limit_self(memory_mb: int) -> None:
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # no file writes at all
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _fail(stage: str, error: BaseException | None = None, detail: str | None = None) -> ProbeFailed:
    """A failed stage by name and exception type; an allocation failure is named as such."""
    if isinstance(error, DeadlinePassed):
        return ProbeFailed(stage="deadline", rows=stage, detail=detail)
    if error is not None and (isinstance(error, MemoryError) or "alloc" in str(error).lower()):
        stage = "memory"
    return ProbeFailed(stage=stage, kind=type(error).__name__ if error else "", detail=detail)


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


def _read(data: bytes) -> tuple[Any, Declared]:
    """The decoded model and what it declares, checked as data (InvalidInput names the
    first problem); whether a worker can rebuild it as a trainable network, or why not."""
    from app.contracts.signature import Signature
    from app.onnx_graphs.checks import declared_signature, decode_model, refuse_external_data
    from app.onnx_graphs.layers import UnsupportedGraph, read_layers

    model = decode_model(data)
    refuse_external_data(model)
    declared = declared_signature(model)
    signature = Signature.of_tensors(
        input_name=declared.input_name,
        row_shape=declared.row_shape,
        output_name=declared.output_name,
        width=declared.width,
    )
    try:
        plan = read_layers(model, list(signature.row_shape))
        form = VersionConfig(architecture=plan.architecture, weights_in_onnx=True)
    except UnsupportedGraph as unsupported:
        form = VersionConfig(untrainable=unsupported.message)
    return model, Declared(
        input_name=declared.input_name,
        row_shape=list(declared.row_shape),
        output_name=declared.output_name,
        width=declared.width,
        n_params=declared.n_params,
        form=form,
    )


def _probe(
    data: bytes, threads: int, run_timeout_s: float, limit_bytes: int, energy: EnergySettings
) -> ProbeOutcome:
    import numpy as np
    import onnx
    import onnxruntime as ort

    try:
        model, declared = _read(data)
    except InvalidInput as refused:
        return ProbeFailed(stage="refused", detail=refused.message)
    try:
        onnx.checker.check_model(model)
    except Exception as error:
        return _fail("checker", error, detail=_checker_line(error))
    from app.onnx_graphs.classify import classify

    graph_class = classify(model)  # before anything runs; a MemoryError fails the probe
    del model  # what the loaded session holds is measured on its own
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = False  # as the gateway serves uploads
    options.log_severity_level = 4  # nothing to stderr: it is not read anyway
    before_load = _peak_bytes()
    try:
        session = ort.InferenceSession(
            data, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:
        return _fail("load", error)
    runner = _Runner(session, run_timeout_s)
    shape = runner.row_shape
    zeros = np.zeros((1, *shape), dtype=np.float32)
    generator = np.random.default_rng(0)
    random_rows = generator.standard_normal((RANDOM_ROWS, *shape)).astype(np.float32)
    extremes = np.stack([np.full(shape, FLOAT32_MAX), np.full(shape, -FLOAT32_MAX)])
    # Each stage's rows, by the name a failure reports (the parent's _STAGE_ROWS).
    stages = (("zeros", zeros), ("random", random_rows), ("extremes", extremes.astype(np.float32)))
    answers = []
    loaded_peak = 0
    for stage, feed in stages:
        try:
            answers.append(runner.run(feed))
        except Exception as error:
            return _fail(stage, error)
        if stage == "zeros":  # loaded and run once: what serving it holds, at least
            loaded_peak = _peak_bytes()
    try:
        per_row, largest = _bytes_per_row(runner, loaded_peak, limit_bytes)
    except Exception as error:
        return _fail("batches", error)
    timings: list[float] = []
    budget = time.perf_counter() + TIMING_S
    for index in range(WARMUP_RUNS + TIMED_RUNS):
        started = time.perf_counter()
        runner.run(zeros)
        if index >= WARMUP_RUNS or started > budget - TIMING_S / 2:  # a slow model: fewer
            timings.append(time.perf_counter() - started)
        if len(timings) >= MIN_TIMED_RUNS and time.perf_counter() > budget:
            break
    p50_s = float(np.median(timings))
    measured = ProbeMeasured(
        declared=declared,
        shapes=[list(np.shape(answer)) for answer in answers],
        latency_p50_ms=p50_s * 1e3,
        bytes_per_row=per_row,
        seconds_per_row=_seconds_per_row(runner, largest, p50_s),
        load_bytes=max(loaded_peak - before_load, 0),
        graph_class=graph_class.label,
        graph_class_reason=graph_class.reason,
        rows_independent=graph_class.rows_independent
        and _rows_answered_alone(runner, random_rows, answers[1]),
    )
    # Last: measuring resets the peak the measures above read.
    footprint = _footprint(runner, measured, limit_bytes, energy)
    return measured.model_copy(update={"footprint": footprint})


def _footprint(
    runner: _Runner, measured: ProbeMeasured, limit_bytes: int, energy: EnergySettings
) -> Footprint | None:
    """Memory a run takes and energy per 1,000 rows (``app.evaluation.footprint``), on
    rows of ones. A batch of LARGE_BATCH rows runs only where the memory and time per row
    measured above say it fits in MEMORY_SHARE of the address space and half the per-run
    deadline; else memory at batch 1 only, and energy at batch 1. None when a run fails."""
    import numpy as np

    from app.evaluation.footprint import measure

    per_row, seconds = measured.bytes_per_row or 0, measured.seconds_per_row or 0.0
    fits = (
        _peak_bytes() + per_row * LARGE_BATCH <= MEMORY_SHARE * limit_bytes
        and seconds * LARGE_BATCH <= runner.run_timeout_s / 2
    )
    feeds: dict[int, Any] = {}

    def run_rows(count: int) -> Any:
        if count not in feeds:
            feeds[count] = np.ones((count, *runner.row_shape), dtype=np.float32)
        return runner.run(feeds[count])

    try:
        return measure(run_rows, energy, large_batch=fits)
    except Exception:  # it ran these rows before: a deadline or memory at the margin
        return None


def _rows_answered_alone(runner: _Runner, rows: Any, together: Any) -> bool:
    """What static analysis proved, seen run: each row answered alone as it
    was in the batch (a disagreement, a rule's mistake, keeps requests apart)."""
    import numpy as np

    if np.shape(together)[:1] != (len(rows),):
        return False  # the probe refuses it for its shape anyway
    for index in range(len(rows)):
        try:
            alone = runner.run(rows[index : index + 1])
            same = np.allclose(alone[0], together[index], rtol=1e-4, atol=1e-5, equal_nan=True)
        except Exception:
            return False
        if not same:
            return False
    return True


def main() -> None:
    """The child's entry point (see the module docstring)."""
    path, threads, memory_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    run_timeout_s = float(sys.argv[4])
    energy = EnergySettings(Path(sys.argv[5]), float(sys.argv[6]))
    _limit_self(memory_mb)
    data = Path(path).read_bytes()
    try:
        outcome = _probe(data, threads, run_timeout_s, memory_mb * 1024 * 1024, energy)
    except MemoryError as error:
        outcome = _fail("memory", error)
    print(outcome.model_dump_json(exclude_none=True), flush=True)


if __name__ == "__main__":
    main()
