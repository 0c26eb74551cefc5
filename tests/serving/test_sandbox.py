"""The sandbox for untrusted ONNX graphs: real child processes with an OS memory limit, killed
at their deadline, one queue per model, a bounded pool; answers equal onnxruntime's own, in
blocking mode (a worker) and through an event loop (the gateway)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from app.core.config import load_settings
from app.core.errors import BrokenInvariant, InvalidInput, PayloadTooLarge, Unavailable
from app.serving.sandbox import (
    SandboxCrashed,
    SandboxDeadlinePassed,
    SandboxedModel,
    SandboxLimits,
    SandboxMemoryExceeded,
    SandboxPool,
)

try:
    import uvloop

    new_event_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
except ImportError:  # the gateway runs on uvloop where it is installed; asyncio otherwise
    new_event_loop = asyncio.new_event_loop

LIMITS = SandboxLimits(
    memory_mb=64,
    run_timeout_s=10,
    processes=4,
    queue=8,
    max_input_bytes=1 << 20,
    max_output_bytes=1 << 20,
)
FOREVER = 1e9  # Loop trips: far past any deadline here


def _model(nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: list[Any]) -> bytes:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def mlp_onnx(features: int = 64, hidden: int = 32, width: int = 10) -> bytes:
    """Gemm -> Relu -> Gemm, a batch of float32 rows in."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
        for name, shape in (
            ("w1", (features, hidden)),
            ("b1", (hidden,)),
            ("w2", (hidden, width)),
            ("b2", (width,)),
        )
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["y"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", features])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", width])
    return _model(nodes, [x], [y], inits)


def two_inputs_onnx() -> bytes:
    """y = a * float(b): a float32 and an int64 input."""
    nodes = [
        helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["a", "bf"], ["y"]),
    ]
    inputs = [
        helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 3]),
        helper.make_tensor_value_info("b", TensorProto.INT64, ["n", 3]),
    ]
    return _model(nodes, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [])


def allocating_onnx() -> bytes:
    """x[0] float32 zeros allocated (ConstantOfShape sized from the input), summed."""
    fill = helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
    nodes = [
        helper.make_node("Cast", ["x"], ["n"], to=TensorProto.INT64),
        helper.make_node("ConstantOfShape", ["n"], ["big"], value=fill),
        helper.make_node("ReduceSum", ["big"], ["y"], keepdims=0),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    return _model(nodes, [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])], [])


def looping_onnx() -> bytes:
    """A Loop of x[0] trips adding 1: its running time comes from the input."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["acc_in", "one"], ["acc_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [1]),
        ],
        [numpy_helper.from_array(np.ones(1, np.float32), "one")],
    )
    nodes = [
        helper.make_node("Cast", ["x"], ["trips"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["trips", "scalar"], ["trip"]),
        helper.make_node("Loop", ["trip", "true", "zero"], ["y"], body=body),
    ]
    inits = [
        numpy_helper.from_array(np.array(True), "true"),
        numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
        numpy_helper.from_array(np.array([], np.int64), "scalar"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    return _model(nodes, [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], inits)


MLP, LOOP, ALLOC = mlp_onnx(), looping_onnx(), allocating_onnx()


def trips(count: float) -> dict[str, np.ndarray]:
    return {"x": np.array([count], dtype=np.float32)}


def rows(count: int) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(count).standard_normal((count, 64)).astype(np.float32)}


def in_process(onnx: bytes, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    output: np.ndarray = session.run(["y"], feeds)[0]
    return output


def alive(pid: int) -> bool:
    """Whether ``pid`` still exists (a zombie counts as gone: it runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def exited(pid: int) -> bool:
    """Whether our child ``pid`` has wholly exited (a killed process's main thread is a zombie
    before its other threads are gone; only then is it waitable, and its sockets closed)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped
        return True


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def sandbox_children() -> set[int]:
    """This process's children that run the sandbox's entry point."""
    found = set()
    for task in Path("/proc/self/task").iterdir():
        try:  # a thread (or a child) may end while we look
            pids = (task / "children").read_text().split()
        except FileNotFoundError:
            continue
        for pid in pids:
            with contextlib.suppress(FileNotFoundError):
                if b"sandbox_child" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.add(int(pid))
    return found


def proc_limits(pid: int | None) -> dict[str, list[str]]:
    """A process's limits by name: [soft, hard]."""
    return {
        line[:26].strip(): line[26:].split()[:2]
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]
    }


def resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class LoopThread:
    """An event loop (uvloop when installed) running in its own thread, as in the gateway."""

    def __init__(self) -> None:
        self.loop = new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, np.ndarray]) -> Future[np.ndarray]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    running = LoopThread()
    yield running
    running.stop()


@pytest.fixture
def pools() -> Iterator[Callable[..., SandboxPool]]:
    """Pools made by a test, closed after it (and checked to leave no child behind)."""
    made: list[SandboxPool] = []

    def make(loop: asyncio.AbstractEventLoop | None = None, **changes: Any) -> SandboxPool:
        values = {**LIMITS.__dict__, **changes}
        made.append(SandboxPool(SandboxLimits(**values), loop=loop))
        return made[-1]

    yield make
    for pool in made:
        pool.close()
    assert not sandbox_children()


def started(model: SandboxedModel) -> bool:
    return model._pool.stats()["runs"] > 0 and model.pid is not None


# -- answers --------------------------------------------------------------------------------


def test_blocking_answers_equal_onnxruntime_in_process(pools: Callable[..., SandboxPool]) -> None:
    pool = pools()
    model = pool.model("mlp", MLP, input_name="x", output_name="y")
    for count in (1, 256, 1):
        output = model.run(rows(count))
        assert output.dtype == np.float32 and output.shape == (count, 10)
        np.testing.assert_allclose(output, in_process(MLP, rows(count)), rtol=1e-5, atol=1e-5)
    both = pool.model("two", two_inputs_onnx(), input_name="a", output_name="y")
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64)
    np.testing.assert_array_equal(both.run({"a": a, "b": b}), a * b)
    assert pool.stats()["processes"] == 2 and pool.stats()["starts"] == 2


def test_async_answers_equal_onnxruntime_with_runs_from_threads(
    pools: Callable[..., SandboxPool], loop_thread: LoopThread
) -> None:
    pool = pools(loop_thread.loop)
    model = pool.model("mlp", MLP, input_name="x", output_name="y")
    counts = [1, 256, 3, 1, 256, 17, 1, 64] * 3
    with ThreadPoolExecutor(max_workers=6) as threads:
        outputs = list(threads.map(lambda count: model.run(rows(count)), counts))
    for count, output in zip(counts, outputs, strict=True):
        np.testing.assert_allclose(output, in_process(MLP, rows(count)), rtol=1e-5, atol=1e-5)
    for count in (1, 256):
        output = loop_thread.submit(model.run_async(rows(count))).result(30)
        np.testing.assert_allclose(output, in_process(MLP, rows(count)), rtol=1e-5, atol=1e-5)
    assert pool.stats()["starts"] == 1 and pool.stats()["runs"] == len(counts) + 2


def test_misuse_is_a_bug_and_oversized_inputs_are_413(
    pools: Callable[..., SandboxPool], loop_thread: LoopThread
) -> None:
    pool = pools(loop_thread.loop)
    model = pool.model("mlp", MLP, input_name="x", output_name="y")
    with pytest.raises(BrokenInvariant, match="not a numeric array"):
        model.run({"x": np.array(["a", "b"], dtype=object)})
    with pytest.raises(PayloadTooLarge, match=r"2097152 bytes .* 1048576"):
        model.run({"x": np.zeros((8192, 64), dtype=np.float32)})

    async def on_the_loop() -> np.ndarray:
        return model.run(rows(1))

    with pytest.raises(BrokenInvariant, match="run_async"):
        loop_thread.submit(on_the_loop()).result(10)
    with pytest.raises(BrokenInvariant, match="attached loop"):
        asyncio.run(model.run_async(rows(1)))
    assert pool.stats()["starts"] == 0  # none of it reached a child


def test_bad_inputs_and_large_outputs_are_422_without_onnxruntime_text(
    pools: Callable[..., SandboxPool],
) -> None:
    pool = pools(max_output_bytes=4096)
    model = pool.model("mlp", MLP, input_name="x", output_name="y")
    with pytest.raises(InvalidInput) as refused:
        model.run({"x": np.full((2, 3), 123.25, dtype=np.float32)})  # 3 columns, not 64
    assert refused.value.message == "the request's inputs do not fit model mlp (INVALID_ARGUMENT)"
    with pytest.raises(InvalidInput) as refused:
        model.run(rows(256))  # 10240 bytes out
    assert "10240 bytes" in refused.value.message and "4096" in refused.value.message
    assert model.run(rows(2)).shape == (2, 10)
    assert pool.stats()["starts"] == 1  # none of it cost the process


# -- deadlines, memory, crashes --------------------------------------------------------------


@pytest.mark.parametrize("mode", ["blocking", "async"])
def test_a_run_past_its_deadline_kills_its_process(
    mode: str, pools: Callable[..., SandboxPool], loop_thread: LoopThread
) -> None:
    pool = pools(loop_thread.loop if mode == "async" else None, run_timeout_s=1)
    model = pool.model("loop", LOOP, input_name="x", output_name="y")
    assert model.run(trips(10))[0] == 10
    pid = model.pid
    assert pid is not None
    began = time.monotonic()
    with pytest.raises(SandboxDeadlinePassed) as refused:
        model.run(trips(FOREVER))
    assert time.monotonic() - began < 2.0
    assert refused.value.status_code == 422
    assert refused.value.message == (
        "the model did not finish within 1 s on this request (KILN_UPLOAD_RUN_TIMEOUT_S); "
        "its sandbox process was stopped"
    )
    assert not alive(pid) and not Path(f"/proc/{pid}").exists()  # killed and reaped
    assert model.run(trips(7))[0] == 7
    assert model.pid not in (None, pid)
    assert pool.stats()["deadline_kills"] == 1 and pool.stats()["starts"] == 2


@pytest.mark.parametrize("mode", ["blocking", "async"])
def test_a_run_past_its_memory_is_422_and_costs_this_process_nothing(
    mode: str, pools: Callable[..., SandboxPool], loop_thread: LoopThread
) -> None:
    pool = pools(loop_thread.loop if mode == "async" else None, memory_mb=64)
    model = pool.model("alloc", ALLOC, input_name="x", output_name="y")
    assert model.run(trips(1e6)) == 1e6  # 4 MB: well within
    soft, hard = proc_limits(model.pid)["Max address space"]
    assert soft == hard != "unlimited"  # the OS counts what a run allocates
    before = resident_bytes()
    with pytest.raises(SandboxMemoryExceeded) as refused:
        model.run(trips(1e8))  # 400 MB
    assert resident_bytes() - before < 8 * 1024 * 1024
    assert refused.value.status_code == 422
    assert "KILN_UPLOAD_REQUEST_MEMORY_MB" in refused.value.message
    assert "64 MB" in refused.value.message and "alloc" in refused.value.message
    assert model.run(trips(2e6)) == 2e6
    assert pool.stats()["memory_failures"] == 1


def test_a_child_killed_from_outside(
    pools: Callable[..., SandboxPool], loop_thread: LoopThread
) -> None:
    pool = pools(loop_thread.loop)
    model = pool.model("loop", LOOP, input_name="x", output_name="y")
    assert model.run(trips(3))[0] == 3
    idle = model.pid
    assert idle is not None
    os.kill(idle, signal.SIGKILL)  # while idle: the next run starts another, unnoticed
    wait_until(lambda: exited(idle))
    assert model.run(trips(4))[0] == 4
    busy = model.pid
    assert busy not in (None, idle)
    running = loop_thread.submit(model.run_async(trips(FOREVER)))
    wait_until(lambda: pool.stats()["runs"] == 3)
    time.sleep(0.1)
    os.kill(busy, signal.SIGKILL)  # mid-run: 503, naming the likely cause
    with pytest.raises(SandboxCrashed) as crashed:
        running.result(5)
    assert crashed.value.status_code == 503
    assert "died (signal SIGKILL)" in crashed.value.message
    assert "KILN_UPLOAD_REQUEST_MEMORY_MB" in crashed.value.message
    assert model.run(trips(5))[0] == 5
    assert pool.stats()["crashes"] == 1


def test_a_request_that_goes_away_mid_run_takes_its_child_along(
    pools: Callable[..., SandboxPool], loop_thread: LoopThread
) -> None:
    pool = pools(loop_thread.loop)
    model = pool.model("loop", LOOP, input_name="x", output_name="y")
    running = loop_thread.submit(model.run_async(trips(FOREVER)))
    wait_until(lambda: started(model))
    pid = model.pid
    assert pid is not None
    running.cancel()  # the client disconnected: the run cannot be taken back, so it is killed
    wait_until(lambda: not alive(pid), 5)
    assert model.run(trips(6))[0] == 6 and model.pid != pid


def test_a_graph_that_cannot_load_is_503(pools: Callable[..., SandboxPool]) -> None:
    model = pools().model("bad", b"not a graph", input_name="x", output_name="y")
    with pytest.raises(Unavailable, match="could not load model bad"):
        model.run(trips(1))
    missing = pools().model("mlp", MLP, input_name="x", output_name="nope")
    with pytest.raises(Unavailable, match="could not load model mlp"):
        missing.run(rows(1))


# -- queues and the pool ---------------------------------------------------------------------


def test_a_slow_model_does_not_delay_another(
    pools: Callable[..., SandboxPool], loop_thread: LoopThread
) -> None:
    pool = pools(loop_thread.loop)
    slow = pool.model("slow", LOOP, input_name="x", output_name="y")
    fast = pool.model("fast", MLP, input_name="x", output_name="y")
    hog = loop_thread.submit(slow.run_async(trips(FOREVER)))
    wait_until(lambda: started(slow))
    for count in (1, 256):
        output = loop_thread.submit(fast.run_async(rows(count))).result(10)
        np.testing.assert_allclose(output, in_process(MLP, rows(count)), rtol=1e-5, atol=1e-5)
    assert not hog.done()
    pool.close()
    with pytest.raises(Unavailable, match="closed"):
        hog.result(5)


def test_a_full_queue_is_503(pools: Callable[..., SandboxPool], loop_thread: LoopThread) -> None:
    pool = pools(loop_thread.loop, queue=2)
    model = pool.model("slow", LOOP, input_name="x", output_name="y")
    running = loop_thread.submit(model.run_async(trips(FOREVER)))
    wait_until(lambda: started(model))
    waiting = [loop_thread.submit(model.run_async(trips(1))) for _ in range(2)]
    with pytest.raises(Unavailable) as refused:
        loop_thread.submit(model.run_async(trips(1))).result(5)
    assert "KILN_SANDBOX_QUEUE" in refused.value.message and refused.value.status_code == 503
    with pytest.raises(Unavailable, match="KILN_SANDBOX_QUEUE"):
        model.run(trips(1))  # from a thread: the same queue
    assert not any(future.done() for future in (running, *waiting))
    assert pool.stats()["queue_full"] == 2
    pool.close()
    for future in (running, *waiting):
        with pytest.raises(Unavailable):
            future.result(5)


def test_a_full_pool_stops_the_idle_child_or_answers_503(
    pools: Callable[..., SandboxPool], loop_thread: LoopThread
) -> None:
    pool = pools(loop_thread.loop, processes=1)
    first = pool.model("first", LOOP, input_name="x", output_name="y")
    second = pool.model("second", MLP, input_name="x", output_name="y")
    assert first.run(trips(2))[0] == 2
    idle = first.pid
    assert idle is not None
    assert second.run(rows(1)).shape == (1, 10)  # the idle child made room
    assert not alive(idle) and first.pid is None and pool.stats()["processes"] == 1
    hog = loop_thread.submit(first.run_async(trips(FOREVER)))  # now second's is idle
    wait_until(lambda: first.pid is not None)
    time.sleep(0.1)
    with pytest.raises(Unavailable) as refused:
        second.run(rows(1))  # the only process is busy
    assert "KILN_SANDBOX_PROCESSES" in refused.value.message and refused.value.status_code == 503
    assert pool.stats()["pool_full"] == 1 and not hog.done()


# -- isolation and clean-up ------------------------------------------------------------------


def test_the_child_sees_no_credentials_an_empty_directory_and_its_limits(
    pools: Callable[..., SandboxPool], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KILN_S3_SECRET_ACCESS_KEY", "hunter2")
    model = pools().model("mlp", MLP, input_name="x", output_name="y")
    model.run(rows(1))
    pid = model.pid
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert environ and not [item for item in environ if item.startswith(b"KILN_")]
    assert b"hunter2" not in b"".join(environ)
    assert os.listdir(f"/proc/{pid}/cwd") == []
    assert b"HOME=/nonexistent" in environ  # onnxruntime's cache under ~ stays closed
    opened = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    assert not [path for path in opened if ".onnxruntime" in path or path.endswith(".db")]
    limits = proc_limits(pid)
    assert limits["Max file size"] == ["0", "0"] and limits["Max core file size"] == ["0", "0"]
    status = Path(f"/proc/{pid}/status").read_text()
    assert "\nPPid:\t" in status  # and it dies with us: see the next test


def test_close_leaves_no_child_and_the_child_dies_with_its_parent(
    pools: Callable[..., SandboxPool], loop_thread: LoopThread
) -> None:
    pool = pools(loop_thread.loop)
    models = [pool.model(name, MLP, input_name="x", output_name="y") for name in ("a", "b")]
    pids = []
    for model in models:
        model.run(rows(1))
        pids.append(model.pid)
    assert set(pids) <= sandbox_children()
    pool.close()
    pool.close()  # idempotent
    assert not any(alive(pid) for pid in pids if pid) and not sandbox_children()
    assert pool.stats()["processes"] == 0
    with pytest.raises(Unavailable, match="closed"):
        models[0].run(rows(1))
    pool.attach(loop_thread.loop)  # a gateway whose lifespan starts again
    assert models[0].run(rows(1)).shape == (1, 10)

    script = textwrap.dedent(
        """
        import os, numpy as np
        from tests.serving.test_sandbox import LIMITS, MLP
        from app.serving.sandbox import SandboxPool
        model = SandboxPool(LIMITS).model("m", MLP, input_name="x", output_name="y")
        model.run({"x": np.zeros((1, 64), np.float32)})
        print(model.pid, flush=True)
        os._exit(0)  # no close(): the kernel must kill the child
        """
    )
    orphan = int(subprocess.run([sys.executable, "-c", script], capture_output=True).stdout)
    wait_until(lambda: not alive(orphan), 5)


def test_limits_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(data_dir=tmp_path, sandbox_processes=2, sandbox_queue=5)
    limits = SandboxLimits.from_settings(settings)
    assert (limits.processes, limits.queue) == (2, 5)
    assert limits.memory_mb == settings.upload_request_memory_mb
    assert limits.run_timeout_s == settings.upload_run_timeout_s
    assert limits.max_input_bytes == 2 * settings.max_request_bytes
    assert limits.max_output_bytes == settings.max_predict_rows * 4000
    assert limits.threads == settings.ort_threads
    defaults = load_settings(data_dir=tmp_path)
    assert (defaults.sandbox_processes, defaults.sandbox_queue) == (4, 64)
    monkeypatch.setenv("KILN_SANDBOX_QUEUE", "0")
    with pytest.raises(Exception, match="KILN_SANDBOX_QUEUE"):
        load_settings(data_dir=tmp_path)


def test_errors_are_kiln_errors_with_statuses() -> None:
    assert issubclass(SandboxDeadlinePassed, InvalidInput)
    assert issubclass(SandboxMemoryExceeded, InvalidInput)
    assert issubclass(SandboxCrashed, Unavailable)
