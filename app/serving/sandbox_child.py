"""The sandbox's child process: runs one untrusted ONNX graph for its parent
(``app.serving.sandbox``), ``python -m app.serving.sandbox_child SOCK_FD SHM_FD GRAPH_FD PPID``.

It imports only the standard library until its limits are set, then numpy and onnxruntime:
nothing of the gateway (no settings, no credentials), so it starts in a few hundred ms
(``app/__init__`` and ``app/serving/__init__`` are imported on the way: keep them empty).

Before loading anything it asks the kernel to SIGKILL it when its parent dies
(``PR_SET_PDEATHSIG``), turns off core dumps and file writes (RLIMIT_CORE, RLIMIT_FSIZE = 0)
and caps its address space for loading at what Python had mapped + ``LOAD_HEADROOM`` +
``LOAD_GRAPH_FACTOR`` x the graph's size (parsing, optimising and laying out a graph takes a
few copies of it; 4 GiB on top covers onnxruntime's own start-up with room to spare). It
loads the graph (CPU provider, no memory arena: what a run allocates is returned when it
ends), runs it once on zeros, returns freed heap to the system (``malloc_trim``) and only then
lowers RLIMIT_AS to its current size + the per-run allowance + ``RUN_SLACK``: from there on,
every run may allocate at most that much, counted by the OS, whatever the graph does.

Wire format: one message per ``send`` on a SOCK_SEQPACKET socketpair (the kernel keeps the
boundaries, so no framing), tensors in a shared memfd both sides map once (SHM_FD), the graph's
bytes in a memfd of their own (GRAPH_FD, read once at load):

    parent -> child  LOAD  b"L" + JSON {input_name, output_name, memory_mb, threads,
                                        input_bytes, output_bytes, graph_bytes}
    child -> parent  READY b"K" + JSON {"vm_bytes", "limit_bytes"} | ERROR
    parent -> child  RUN   b"R" + u8 n, then n x (u16 name length, name, INPUT, i64 x ndim)
    child -> parent  OUT   b"O" + OUTPUT + i64 x ndim                | ERROR
    ERROR            b"E" + JSON {"kind", "detail", "bytes"}

``INPUT``/``OUTPUT`` are ``<4sBQ``/``<4sBQQ``: dtype (numpy's ``dtype.str``), ndim, offset
into the memfd (and the output's size). Inputs lie from offset 0, the output at
``input_bytes``. Error kinds: ``load``, ``memory``, ``runtime``, ``input``,
``output_too_large``, ``output_type``. ``detail`` is at most a sanitised error category and
operator name from onnxruntime's message, never the message itself: a graph must not be able to
echo a tensor or a file back through its errors. The child exits on EOF."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import mmap
import os
import re
import resource
import signal
import socket
import struct
import sys
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # imported once the limits are set
    import numpy as np

LOAD = b"L"
READY = b"K"
RUN = b"R"
OUT = b"O"
ERROR = b"E"
INPUT = struct.Struct("<4sBQ")  # dtype, ndim, offset
OUTPUT = struct.Struct("<4sBQQ")  # dtype, ndim, offset, bytes
NAME = struct.Struct("<H")
MAX_MESSAGE = 65_536  # a RUN header is far smaller: the parent refuses one this large
ALIGN = 64  # tensors start on cache-line (and SIMD) boundaries in the shared memory
CACHED_SHAPES = 64  # input layouts and output shapes remembered (then forgotten at once)

LOAD_HEADROOM = 4 * 1024**3
LOAD_GRAPH_FACTOR = 4
RUN_SLACK = 16 * 1024 * 1024  # Python's own small allocations between and around runs
PR_SET_PDEATHSIG = 1

_CATEGORY = re.compile(r"\[ONNXRuntimeError\] : \d+ : ([A-Z_]{1,40}) :")
_OPERATOR = re.compile(r"while running ([A-Za-z0-9_]{1,40}) node")
_ORT_TYPES = {
    "tensor(float)": "<f4",
    "tensor(double)": "<f8",
    "tensor(float16)": "<f2",
    "tensor(int8)": "|i1",
    "tensor(int16)": "<i2",
    "tensor(int32)": "<i4",
    "tensor(int64)": "<i8",
    "tensor(uint8)": "|u1",
    "tensor(uint16)": "<u2",
    "tensor(uint32)": "<u4",
    "tensor(uint64)": "<u8",
    "tensor(bool)": "|b1",
}


class LoadConfig(NamedTuple):
    """The LOAD message: the graph's tensors, the child's limits and the layout of the
    shared memory (inputs from 0, the output at ``input_bytes``)."""

    input_name: str
    output_name: str
    memory_mb: int
    threads: int
    input_bytes: int
    output_bytes: int
    graph_bytes: int


def load_message(config: LoadConfig) -> bytes:
    return LOAD + json.dumps(config._asdict()).encode()


class ErrorReport(NamedTuple):
    """An ERROR message: the error's kind (see the module docstring), a sanitised detail,
    and the bytes an output too large would have taken. The fields are the wire's names."""

    kind: str
    detail: str = ""
    bytes: int = 0


def error(kind: str, detail: str = "", size: int = 0) -> bytes:
    """An ERROR message (also used by the parent's tests of the format)."""
    return ERROR + json.dumps(ErrorReport(kind, detail, size)._asdict()).encode()


def error_report(reply: bytes) -> ErrorReport:
    """What an ERROR reply reports; an empty report (no kind) for any other reply, or one
    that is not a report (a child that misspoke)."""
    if reply[:1] != ERROR:
        return ErrorReport("")
    try:
        return ErrorReport(**json.loads(reply[1:]))
    except (ValueError, TypeError):  # not JSON, not an object, or not these fields
        return ErrorReport("")


def sanitised(exc: BaseException) -> str:
    """onnxruntime's error category and the failing operator's type, nothing else."""
    text = str(exc)
    category = _CATEGORY.search(text)
    operator = _OPERATOR.search(text)
    parts = [category.group(1) if category else type(exc).__name__[:40]]
    if operator:
        parts.append(f"in {operator.group(1)}")
    return " ".join(parts)


def is_memory(exc: BaseException) -> bool:
    """An allocation that failed (onnxruntime says 'alloc' in its message, or bad_alloc)."""
    return isinstance(exc, MemoryError) or "alloc" in str(exc).lower()


def vm_bytes() -> int:
    """This process's virtual size (VmSize): what RLIMIT_AS is compared with."""
    with open("/proc/self/status", encoding="ascii", errors="replace") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def cap_address_space(limit: int) -> int:
    """Lower RLIMIT_AS (soft and hard: the graph's runs can never raise it) to ``limit``."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return limit


def harden(parent_pid: int) -> None:
    """Die with the parent; no core dumps, no file writes."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl: nobody would kill us
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this process ends
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class Child:
    """The loaded graph and the shared memory; serves RUN messages until EOF."""

    def __init__(self, sock: socket.socket, shm: mmap.mmap, config: LoadConfig) -> None:
        self.sock, self.shm = sock, shm
        self.output_name = config.output_name
        self.out_base = config.input_bytes
        self.out_bytes = config.output_bytes
        self.session: Any = None
        self._inputs: dict[bytes, dict[str, np.ndarray]] = {}  # RUN header -> its input views
        self._outputs: dict[tuple[Any, Any], tuple[Any, bytes]] = {}  # (dtype, shape) -> view, OUT

    def load(self, graph: bytes, threads: int) -> None:
        """Create the session the way the gateway serves uploads, and run it once on zeros."""
        import numpy as np
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.enable_cpu_mem_arena = False
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 4
        self.session = ort.InferenceSession(
            graph, sess_options=options, providers=["CPUExecutionProvider"]
        )
        if self.output_name not in {output.name for output in self.session.get_outputs()}:
            raise LookupError("no such output")
        zeros = {}
        for source in self.session.get_inputs():
            shape = [dim if isinstance(dim, int) and dim >= 0 else 1 for dim in source.shape]
            zeros[source.name] = np.zeros(shape, dtype=_ORT_TYPES.get(source.type, "<f4"))
        # a graph may refuse zeros: the warm-up only brings in what a run sets up lazily
        with contextlib.suppress(Exception):
            self.session.run([self.output_name], zeros)

    def serve(self) -> None:
        """Answer RUN messages, one at a time, until the parent closes the socket. Requests
        of a shape seen before reuse its parsed inputs (views on the shared memory) and its
        reply: the hot path is a dict lookup, the run, one copy and two syscalls."""
        recv, send, run = self.sock.recv, self.sock.send, self.session.run
        outputs = [self.output_name]
        while True:
            message = recv(MAX_MESSAGE)
            if not message:
                return
            try:
                feeds = self._inputs.get(message) or self.parse(message)
                output = run(outputs, feeds)[0]
                placed = self._outputs.get((output.dtype, output.shape))
                if placed is None:
                    reply = self.place(output)
                else:
                    placed[0][...] = output
                    reply = placed[1]
            except Exception as exc:
                if is_memory(exc):
                    reply = error("memory", sanitised(exc))
                else:
                    kind = "input" if "INVALID_ARGUMENT" in str(exc) else "runtime"
                    reply = error(kind, sanitised(exc))
            send(reply)

    def parse(self, message: bytes) -> dict[str, np.ndarray]:
        """A RUN header's inputs as arrays viewing the shared memory (remembered by header)."""
        import numpy as np

        feeds: dict[str, np.ndarray] = {}
        count, position = message[1], 2
        for _ in range(count):
            (size,) = NAME.unpack_from(message, position)
            position += NAME.size
            name = message[position : position + size].decode()
            position += size
            dtype, ndim, offset = INPUT.unpack_from(message, position)
            position += INPUT.size
            shape = struct.unpack_from(f"<{ndim}q", message, position)
            position += 8 * ndim
            feeds[name] = np.ndarray(shape, dtype.rstrip(b"\0").decode(), self.shm, offset)
        if len(self._inputs) >= CACHED_SHAPES:
            self._inputs.clear()
        self._inputs[message] = feeds
        return feeds

    def place(self, output: Any) -> bytes:
        """Lay an output of a new dtype/shape into the shared memory; its OUT reply, and the
        view it was written through, are remembered for the next output like it."""
        import numpy as np

        if not isinstance(output, np.ndarray) or output.dtype.kind not in "biuf":
            return error("output_type", type(output).__name__)
        size = int(output.nbytes)
        if size > self.out_bytes:
            return error("output_too_large", "", size)
        view = np.ndarray(output.shape, output.dtype.newbyteorder("<"), self.shm, self.out_base)
        view[...] = output
        shape = output.shape
        reply = (
            OUT
            + OUTPUT.pack(view.dtype.str.encode(), len(shape), self.out_base, size)
            + struct.pack(f"<{len(shape)}q", *shape)
        )
        if len(self._outputs) >= CACHED_SHAPES:
            self._outputs.clear()
        self._outputs[(output.dtype, shape)] = (view, reply)
        return reply


def main(argv: list[str]) -> int:
    """Harden, load, serve. Exit status 0 on EOF; anything else is reported as ERROR first."""
    sock_fd, shm_fd, graph_fd, parent_pid = (int(arg) for arg in argv)
    harden(parent_pid)
    sock = socket.socket(fileno=sock_fd)
    message = sock.recv(MAX_MESSAGE)
    if not message.startswith(LOAD):
        return 2
    config = LoadConfig(**json.loads(message[1:]))
    cap_address_space(vm_bytes() + LOAD_HEADROOM + LOAD_GRAPH_FACTOR * config.graph_bytes)
    shm = mmap.mmap(shm_fd, config.input_bytes + config.output_bytes)
    os.close(shm_fd)
    child = Child(sock, shm, config)
    try:
        with os.fdopen(graph_fd, "rb") as source:
            graph = source.read()
        child.load(graph, config.threads)
        del graph
    except Exception as exc:
        sock.send(error("memory" if is_memory(exc) else "load", sanitised(exc)))
        return 3
    gc.collect()
    with contextlib.suppress(AttributeError):  # glibc: hand freed load buffers back first
        ctypes.CDLL(None).malloc_trim(0)
    vm = vm_bytes()
    limit = cap_address_space(vm + config.memory_mb * 1024 * 1024 + RUN_SLACK)
    sock.send(READY + json.dumps({"vm_bytes": vm, "limit_bytes": limit}).encode())
    child.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
