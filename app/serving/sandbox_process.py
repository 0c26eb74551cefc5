"""One sandbox child process seen from its parent: its limits, how it is started, the run
protocol's parent half (inputs into the shared memory, the header, the output back out), and
the errors that tell a caller what happened. ``app.serving.sandbox`` schedules these processes;
``app.serving.sandbox_child`` is the other end (its docstring has the wire format)."""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.core.errors import BrokenInvariant, InvalidInput, KilnError, PayloadTooLarge, Unavailable
from app.serving import sandbox_child as wire

if TYPE_CHECKING:
    from app.core.config import Settings

MB = 1024 * 1024
START_TIMEOUT_S = 60.0  # spawn + imports + load + warm-up; past it the start is answered 503
REPLY_BYTES = 4096  # OUT and ERROR messages are far smaller
TRIM_BYTES = 1 * MB  # shared pages past this are handed back after a run that used them
PAGE = mmap.PAGESIZE
APP_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding the app package
_MEMORY_SIGNALS = {signal.SIGABRT, signal.SIGKILL, signal.SIGSEGV, signal.SIGBUS}
_EXITED = os.WEXITED | os.WNOHANG | os.WNOWAIT
_DETAIL = re.compile(r"[^A-Za-z0-9_ ]")
_DTYPES: dict[bytes, np.dtype[Any]] = {
    np.dtype(code).str.encode(): np.dtype(code) for code in "?bBhHiIlLqQefd"
}

if sys.byteorder != "little":  # the wire format writes native arrays as little-endian
    raise ImportError("the ONNX sandbox needs a little-endian machine")


@dataclass(frozen=True)
class SandboxLimits:
    """What one sandboxed run may use, and how many processes and waiting runs a pool keeps."""

    memory_mb: int  # what one run may allocate beyond the loaded model
    run_timeout_s: float  # past it the child is killed and the run answered 422
    processes: int  # most children a pool keeps (one per sandboxed model in use)
    queue: int  # runs waiting per sandboxed model; more are answered 503
    max_input_bytes: int  # the shared-memory input region; larger requests are answered 413
    max_output_bytes: int  # the shared-memory output region; larger outputs are answered 422
    threads: int = 1  # onnxruntime intra-op threads in the child

    @classmethod
    def from_settings(cls, settings: Settings) -> SandboxLimits:
        """The gateway's (or a worker's) limits: a JSON body's numbers take at least two
        bytes each ("0,") and become 4-byte floats, so inputs take at most twice the largest
        body; outputs are at most 1000 float32 columns per row."""
        return cls(
            memory_mb=settings.upload_request_memory_mb,
            run_timeout_s=settings.upload_run_timeout_s,
            processes=settings.sandbox_processes,
            queue=settings.sandbox_queue,
            max_input_bytes=2 * settings.max_request_bytes,
            max_output_bytes=settings.max_predict_rows * 1000 * 4,
            threads=settings.ort_threads,
        )

    @property
    def output_base(self) -> int:
        """Where the output region starts in the shared memory (page-aligned)."""
        return -(-self.max_input_bytes // PAGE) * PAGE


class SandboxMemoryExceeded(InvalidInput):
    """A run needed more memory than KILN_UPLOAD_REQUEST_MEMORY_MB allows (422)."""


class SandboxDeadlinePassed(InvalidInput):
    """A run passed KILN_UPLOAD_RUN_TIMEOUT_S; its process was killed (422)."""


class SandboxCrashed(Unavailable):
    """The child died without an answer (503); the next run starts a new one."""


# A RUN header, each input's (offset, dtype) in the shared memory, and the bytes they span.
Layout = tuple[bytes, tuple[tuple[int, np.dtype[Any]], ...], int]
CACHED_LAYOUTS = 64
MAX_NAME_BYTES = 1024


def plan_inputs(feeds: dict[str, np.ndarray], limits: SandboxLimits) -> Layout:
    """The RUN header and where each input goes; refuses non-numeric arrays (a bug upstream)
    and inputs larger than the shared input region (413)."""
    if not feeds or len(feeds) > 255:
        raise BrokenInvariant(f"a sandboxed run takes 1 to 255 inputs, not {len(feeds)}")
    parts = [wire.RUN, bytes((len(feeds),))]
    places: list[tuple[int, np.dtype[Any]]] = []
    offset = end = 0
    for name, array in feeds.items():
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
            kind = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
            raise BrokenInvariant(f"sandbox input {name!r} is {kind}, not a numeric array")
        if not isinstance(name, str):
            raise BrokenInvariant(f"sandbox input names are strings, not {name!r}")
        dtype = array.dtype if array.dtype.isnative else array.dtype.newbyteorder("=")
        encoded = name.encode()
        if len(encoded) > MAX_NAME_BYTES:
            raise BrokenInvariant(f"sandbox input name {name[:40]!r}... is too long")
        shape = array.shape
        parts += (
            wire.NAME.pack(len(encoded)),
            encoded,
            wire.INPUT.pack(dtype.str.encode(), len(shape), offset),
            struct.pack(f"<{len(shape)}q", *shape),
        )
        places.append((offset, dtype))
        end = offset + array.nbytes
        offset += -(-array.nbytes // wire.ALIGN) * wire.ALIGN
    if end > limits.max_input_bytes:
        raise PayloadTooLarge(
            f"the request's inputs take {end} bytes as tensors, more than the "
            f"{limits.max_input_bytes} bytes a sandboxed model takes (twice KILN_MAX_REQUEST_MB)"
        )
    header = b"".join(parts)
    if len(header) >= wire.MAX_MESSAGE:
        raise BrokenInvariant(f"a sandbox run header of {len(header)} bytes (names too long)")
    return header, tuple(places), end


class InputPlans:
    """``plan_inputs`` remembered by the inputs' names, dtypes and shapes, so a request shaped
    like an earlier one costs a dict lookup. Thread-safe (single dict operations)."""

    def __init__(self, limits: SandboxLimits) -> None:
        self.limits = limits
        self._known: dict[tuple[tuple[str, Any, tuple[int, ...]], ...], Layout] = {}

    def plan(self, feeds: dict[str, np.ndarray]) -> Layout:
        try:
            key = tuple([(name, array.dtype, array.shape) for name, array in feeds.items()])
        except AttributeError:  # not arrays: plan_inputs says so
            return plan_inputs(feeds, self.limits)
        layout = self._known.get(key)
        if layout is None:
            layout = plan_inputs(feeds, self.limits)
            if len(self._known) >= CACHED_LAYOUTS:
                self._known.clear()
            self._known[key] = layout
        return layout


class SandboxProcess:
    """One child: its process, control socket and shared memory. Not thread-safe: the pool
    lets one run use it at a time; ``kill`` alone may be called from any thread."""

    def __init__(
        self, proc: subprocess.Popen[bytes], sock: socket.socket, shm: mmap.mmap, label: str
    ) -> None:
        self.proc, self.sock, self.shm, self.label = proc, sock, shm, label
        self.pid = proc.pid
        self.fileno = sock.fileno()
        self.blocking: bool | None = None
        self._touched = 0  # shared input bytes the last run wrote (past TRIM_BYTES: handed back)
        self._replies: dict[bytes, tuple[tuple[int, ...], np.dtype[Any], int]] = {}

    def use(self, limits: SandboxLimits, *, blocking: bool) -> None:
        """Blocking sockets wait at most the run's deadline; the event loop's never block."""
        if self.blocking is not blocking:
            self.sock.settimeout(limits.run_timeout_s if blocking else 0.0)
            self.blocking = blocking

    def send(self, layout: Layout, feeds: dict[str, np.ndarray]) -> None:
        """Lay the inputs into the shared memory and send the RUN header; OSError when the
        child is gone. (A send to a dead child's SEQPACKET socket may well succeed, so its
        exit is checked first: one waitid, ~0.5 us, leaving the zombie for ``reap``.)"""
        try:
            gone = os.waitid(os.P_PID, self.pid, _EXITED) is not None
        except ChildProcessError:  # reaped already
            gone = True
        if gone:
            raise BrokenPipeError(f"the sandbox process {self.pid} has exited")
        header, places, self._touched = layout
        shm = self.shm
        for (offset, dtype), array in zip(places, feeds.values(), strict=True):
            np.ndarray(array.shape, dtype, shm, offset)[...] = array
        self.sock.send(header)

    def answer(self, reply: bytes, limits: SandboxLimits) -> np.ndarray:
        """The output of an OUT reply, copied out (the caller owns it); an ERROR as KilnError."""
        known = self._replies.get(reply)
        if known is None:
            known = self._read_out(reply, limits)
            if len(self._replies) >= CACHED_LAYOUTS:
                self._replies.clear()
            self._replies[reply] = known
        shape, dtype, size = known
        output = np.ndarray(shape, dtype, self.shm, limits.output_base).copy()
        if size > TRIM_BYTES or self._touched > TRIM_BYTES:
            self._trim(limits, size)
        return output

    def _read_out(
        self, reply: bytes, limits: SandboxLimits
    ) -> tuple[tuple[int, ...], np.dtype[Any], int]:
        """An OUT reply's shape, dtype and size, checked; an ERROR as the KilnError it means."""
        if reply[:1] != wire.OUT:
            self._trim(limits, 0)
            raise self._refusal(reply, limits)
        try:
            code, ndim, offset, size = wire.OUTPUT.unpack_from(reply, 1)
            shape = struct.unpack_from(f"<{ndim}q", reply, 1 + wire.OUTPUT.size)
        except struct.error:
            raise SandboxCrashed(f"the sandbox process of {self.label} misspoke") from None
        dtype = _DTYPES.get(code.rstrip(b"\0"))
        if dtype is None or offset != limits.output_base or min(shape, default=0) < 0:
            raise SandboxCrashed(f"the sandbox process of {self.label} misspoke")
        if size != math.prod(shape) * dtype.itemsize or size > limits.max_output_bytes:
            raise SandboxCrashed(f"the sandbox process of {self.label} misspoke")
        return shape, dtype, size

    def _trim(self, limits: SandboxLimits, output_bytes: int) -> None:
        """Hand back the shared pages a large run touched, so they do not stay resident."""
        if self._touched > TRIM_BYTES:
            self.shm.madvise(mmap.MADV_REMOVE, TRIM_BYTES, self._touched - TRIM_BYTES)
        if output_bytes > TRIM_BYTES:
            start = limits.output_base + TRIM_BYTES
            self.shm.madvise(mmap.MADV_REMOVE, start, output_bytes - TRIM_BYTES)
        self._touched = 0

    def _refusal(self, reply: bytes, limits: SandboxLimits) -> KilnError:
        report = wire.error_report(reply)
        kind = str(report.kind)
        detail = _DETAIL.sub("", str(report.detail))[:80]
        label = self.label
        if kind == "memory":
            return SandboxMemoryExceeded(
                f"{label} needed more than the {limits.memory_mb} MB one run may use "
                "(KILN_UPLOAD_REQUEST_MEMORY_MB) on this request, and its run was stopped: a "
                "sandboxed graph's memory depends on the request's rows and values"
            )
        if kind == "input":
            return InvalidInput(f"the request's inputs do not fit {label} ({detail})")
        if kind == "runtime":
            return InvalidInput(f"{label} failed on this request (onnxruntime: {detail})")
        if kind == "output_too_large":
            size = int(report.bytes)
            return InvalidInput(
                f"{label}'s output on this request takes {size} bytes, more than the "
                f"{limits.max_output_bytes} a sandboxed model may return (KILN_MAX_PREDICT_ROWS "
                "rows of 1000 float32 columns); send fewer rows"
            )
        if kind == "output_type":
            return InvalidInput(f"{label}'s output {detail} is not a numeric tensor")
        return SandboxCrashed(f"the sandbox process of {label} misspoke")

    def died(self, during: str, limits: SandboxLimits) -> SandboxCrashed:
        """Why the (reaped) child ended, as an error naming the likely cause."""
        code = self.proc.returncode
        how = "its exit was not seen" if code is None else f"exit status {code}"
        likely = ""
        if code is not None and code < 0:
            try:
                signum = signal.Signals(-code)
                how = f"signal {signum.name}"
            except ValueError:
                signum, how = None, f"signal {-code}"
            if signum in _MEMORY_SIGNALS:
                likely = (
                    "; the likely cause is an allocation past the memory a run may use "
                    f"({limits.memory_mb} MB, KILN_UPLOAD_REQUEST_MEMORY_MB)"
                )
        return SandboxCrashed(
            f"the sandbox process running {self.label} died ({how}) {during}{likely}; "
            "the next request starts a new one"
        )

    def kill(self) -> None:
        """SIGKILL the child (from any thread; a reaped child is left alone)."""
        with contextlib.suppress(OSError):  # already gone
            self.proc.kill()

    def reap(self) -> None:
        """Wait for the killed child's exit, so no zombie stays (blocking, briefly)."""
        with contextlib.suppress(subprocess.TimeoutExpired):  # not killed: leave it
            self.proc.wait(timeout=30)

    def release(self) -> None:
        """Close the socket and unmap the shared memory (after the child is gone)."""
        self.sock.close()
        with contextlib.suppress(BufferError):  # a view still alive: the GC unmaps it
            self.shm.close()

    def stop(self) -> None:
        """Kill, reap and release (blocking, briefly)."""
        self.kill()
        self.reap()
        self.release()


def child_environment() -> dict[str, str]:
    """The gateway's environment without KILN_* (credentials live there); ``app`` importable
    from any directory; one malloc arena, so the address-space limit is not spent on the
    64 MB each extra arena reserves; no BLAS thread pool (numpy only views and copies there);
    a home that does not exist (onnxruntime keeps a cache database under ~/.cache, which a
    child would otherwise open read-write)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("KILN_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (APP_ROOT, env.get("PYTHONPATH"))))
    env.update(MALLOC_ARENA_MAX="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env.update(HOME="/nonexistent", XDG_CACHE_HOME="/nonexistent")
    env["MKL_NUM_THREADS"] = "1"
    return env


def launch(
    limits: SandboxLimits, graph: bytes, *, input_name: str, output_name: str, label: str
) -> SandboxProcess:
    """Start a child on ``graph`` (not waiting for it to load: see ``wait_ready``). Call it
    from a thread that lives as long as the pool: the child's PR_SET_PDEATHSIG follows the
    thread that spawned it."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    shm_fd = os.memfd_create("kiln-sandbox-io", os.MFD_CLOEXEC)
    graph_fd = os.memfd_create("kiln-sandbox-graph", os.MFD_CLOEXEC)
    workdir = tempfile.mkdtemp(prefix="kiln-sandbox-")
    try:
        os.ftruncate(shm_fd, limits.output_base + limits.max_output_bytes)
        shm = mmap.mmap(shm_fd, limits.output_base + limits.max_output_bytes)
        with os.fdopen(os.dup(graph_fd), "wb") as sink:
            sink.write(graph)
        os.lseek(graph_fd, 0, os.SEEK_SET)
        fds = (theirs.fileno(), shm_fd, graph_fd)
        parent = str(os.getpid())
        proc = subprocess.Popen(
            [sys.executable, "-B", "-m", "app.serving.sandbox_child", *map(str, fds), parent],
            pass_fds=fds,
            close_fds=True,
            cwd=workdir,
            env=child_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C at the gateway's terminal is not the child's
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
        os.close(shm_fd)
        os.close(graph_fd)
        shutil.rmtree(workdir, ignore_errors=True)  # the child keeps a deleted, empty cwd
    process = SandboxProcess(proc, ours, shm, label)
    config = wire.LoadConfig(
        input_name=input_name,
        output_name=output_name,
        memory_mb=limits.memory_mb,
        threads=limits.threads,
        input_bytes=limits.output_base,
        output_bytes=limits.max_output_bytes,
        graph_bytes=len(graph),
    )
    with contextlib.suppress(OSError):  # it died at once: wait_ready says so
        ours.sendall(wire.load_message(config))
    return process


def wait_ready(process: SandboxProcess, limits: SandboxLimits) -> None:
    """Wait (blocking, at most START_TIMEOUT_S) for the child's READY; on anything else kill
    and reap it and raise Unavailable naming what happened."""
    process.sock.settimeout(START_TIMEOUT_S)
    try:
        reply = process.sock.recv(REPLY_BYTES)
    except TimeoutError:
        process.stop()
        raise Unavailable(
            f"the sandbox process for {process.label} did not load the graph within "
            f"{START_TIMEOUT_S:g} s and was stopped"
        ) from None
    except OSError:
        reply = b""
    if reply[:1] == wire.READY:
        return
    process.stop()
    if not reply:
        raise process.died("while loading the graph", limits)
    report = wire.error_report(reply)
    detail = _DETAIL.sub("", str(report.detail))[:80]
    if report.kind == "memory":
        raise Unavailable(
            f"loading {process.label} in its sandbox needed more memory than the load "
            f"cap ({wire.LOAD_HEADROOM // MB} MB + {wire.LOAD_GRAPH_FACTOR} x the graph)"
        )
    raise Unavailable(f"onnxruntime could not load {process.label} ({detail})")
