"""The sandbox that untrusted ONNX graphs run in: graphs whose cost cannot be proven linear in
the batch never run in the gateway (nor in a worker) itself. Each sandboxed model in use gets
one child process (``app.serving.sandbox_child``) with a real address-space limit, set by the
OS after the graph is loaded; a run past its deadline has its process killed (so even one long
kernel stops) and the next run starts a fresh one. Inputs and outputs travel through shared
memory, a short header through a socketpair (``app.serving.sandbox_process``).

Each model has its own queue (``app.serving.sandbox_model``: one run at a time, at most
``queue`` waiting), so a slow model delays only its own requests; a pool keeps at most
``processes`` children and stops the least recently used idle one to make room. Every failure
is a KilnError naming the setting at fault: 422 for a run past its deadline or its memory,
503 for a crash, a full queue or a full pool, 413 for inputs larger than the shared memory.

With an event loop attached (the gateway), every run of a model goes through that loop: the
socket is non-blocking and waited on with ``add_reader`` and a ``call_later`` deadline, so the
loop never blocks; ``run`` from another thread hands the run to the loop. Without one (a
worker process), ``run`` does the exchange itself, one run per model at a time."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from app.core.errors import BrokenInvariant, Busy, Unavailable
from app.serving.sandbox_model import CLOSED, SandboxedModel
from app.serving.sandbox_process import (
    SandboxCrashed,
    SandboxDeadlinePassed,
    SandboxLimits,
    SandboxMemoryExceeded,
    SandboxProcess,
    launch,
    wait_ready,
)

__all__ = [
    "SandboxCrashed",
    "SandboxDeadlinePassed",
    "SandboxLimits",
    "SandboxMemoryExceeded",
    "SandboxPool",
    "SandboxedModel",
]

COUNTS = ("runs", "starts", "deadline_kills", "memory_failures", "crashes", "queue_full")


class SandboxPool:
    """The sandboxed models of one process and the children that run them.

    Thread-safe: ``model``, ``forget``, ``stats``, ``close`` and a model's ``run`` may be
    called from any thread; a model's ``run_async`` only on the attached loop. A caller may
    rely on: at most ``limits.processes`` children at a time; no child outliving ``close``
    (nor this process: each dies with its parent); every refusal being a KilnError whose
    message names the setting. Children are spawned from the pool's own threads, which live
    until ``close``. ``lock`` guards ``lru``, ``counts``, ``closed`` and each model's
    ``process``/``starting``/``active``/``waiting``: the bookkeeping ``SandboxedModel``
    shares; nothing else should touch them."""

    def __init__(
        self, limits: SandboxLimits, *, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self.limits = limits
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lru: OrderedDict[SandboxedModel, None] = OrderedDict()  # models with a child
        self.counts = dict.fromkeys((*COUNTS, "pool_full"), 0)
        self.closed = False
        # Weak: a model the caller (the session cache) dropped is forgotten; its idle child
        # is the first to go when the pool needs room.
        self._models: weakref.WeakValueDictionary[Hashable, SandboxedModel] = (
            weakref.WeakValueDictionary()
        )
        self._reserved = 0  # children being started
        self._launching: set[SandboxProcess] = set()
        self._executor: ThreadPoolExecutor | None = self._new_executor()
        if loop is not None:
            self.attach(loop)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Route every run through ``loop`` (the gateway does this at start-up, before any
        run). Attaching a closed pool opens it again (an app whose lifespan starts again); a
        pool serves one running loop at a time."""
        with self.lock:
            if self.loop is not None and self.loop is not loop and self.loop.is_running():
                raise BrokenInvariant("a sandbox pool serves one running event loop")
            self.loop = loop
            for model in self._models.values():
                model.alock = asyncio.Lock()
            if self.closed:
                self.closed = False
                self._executor = self._new_executor()

    def model(
        self,
        key: Hashable,
        onnx: bytes,
        *,
        input_name: str,
        output_name: str,
        label: str | None = None,
    ) -> SandboxedModel:
        """The sandboxed model ``key`` names (cheap: spawns nothing; the child starts on the
        first run), called ``label`` in its errors (e.g. "version 2 of 'churn'"). A key
        names one graph: while the caller holds the model, another call with the same key
        returns it, queue included."""
        with self.lock:
            model = self._models.get(key)
            if model is None:
                model = SandboxedModel(
                    self, key, onnx, input_name=input_name, output_name=output_name, label=label
                )
                self._models[key] = model
            return model

    def forget(self, key: Hashable) -> None:
        """Drop a model the caller no longer serves; its child stops now if it is idle (else
        it goes first when the pool needs room)."""
        with self.lock:
            model = self._models.pop(key, None)
            idle = model is not None and model.active == 0
            process = self._detach_locked(model) if model is not None and idle else None
        if process is not None:
            process.kill()
            self._in_thread(process.stop)

    def stats(self) -> dict[str, int]:
        """Counts for /metrics: processes running now; runs, starts, kills at the deadline,
        memory failures, crashes, queue-full and pool-full refusals since the pool began."""
        with self.lock:
            return {"processes": len(self.lru), **self.counts}

    def close(self) -> None:
        """Kill every child and release its shared memory (idempotent); runs in flight end
        with Unavailable, and runs refused until ``attach`` opens the pool again."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            idle = [self._detach_locked(m) for m in list(self.lru) if m.active == 0]
            busy = [m.process for m in self.lru if m.process is not None]
            launching = list(self._launching)
            executor, self._executor = self._executor, None
        for process in (*launching, *busy):
            process.kill()  # their runs (and starts) see EOF, then release them
        for process in busy:
            process.reap()  # gone when close() returns, whatever their runs are doing
        for stopped in idle:
            if stopped is not None:
                stopped.stop()
        if executor is not None:
            executor.shutdown(wait=True)

    # -- bookkeeping shared with SandboxedModel -------------------------------------------

    def count(self, name: str) -> None:
        with self.lock:
            self.counts[name] += 1

    def discard(self, model: SandboxedModel, process: SandboxProcess) -> Future[Any]:
        """Take a failed child from its model and kill it now; reaping and releasing it
        happen on a pool thread (the future says when)."""
        with self.lock:
            if model.process is process:
                self._detach_locked(model)
        process.kill()
        return self._in_thread(process.stop)

    def start(self, model: SandboxedModel) -> SandboxProcess | Future[SandboxProcess]:
        """The model's child, or the start of one (joined if already under way): a slot,
        freed by stopping the least recently used idle child when the pool is full."""
        with self.lock:
            if self.closed:
                raise Unavailable(CLOSED)
            if model.process is not None:
                return model.process
            if model.starting is not None:
                return model.starting
            victim = None
            if len(self.lru) + self._reserved >= self.limits.processes:
                idle = next((m for m in self.lru if m.active == 0), None)
                if idle is None:
                    self.counts["pool_full"] += 1
                    raise Busy(
                        f"all {self.limits.processes} sandbox processes are running other "
                        "models (KILN_SANDBOX_PROCESSES); retry shortly"
                    )
                victim = self._detach_locked(idle)
            if self._executor is None:
                raise BrokenInvariant("an open sandbox pool without its threads")
            self._reserved += 1
            model.starting = self._executor.submit(self._launch, model, victim)
            return model.starting

    # -- inside -------------------------------------------------------------------------

    def _new_executor(self) -> ThreadPoolExecutor:
        # Children are spawned from these threads, which live until close(): a child's
        # PR_SET_PDEATHSIG fires when the thread that spawned it ends.
        workers = max(2, min(self.limits.processes, 8))
        return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kiln-sandbox")

    def _detach_locked(self, model: SandboxedModel) -> SandboxProcess | None:
        process, model.process = model.process, None
        self.lru.pop(model, None)
        return process

    def _in_thread(self, work: Callable[[], Any]) -> Future[Any]:
        """Run blocking work on the pool's threads (inline once the pool is closed)."""
        executor = self._executor
        if executor is not None:
            with contextlib.suppress(RuntimeError):  # shut down meanwhile
                return executor.submit(work)
        done: Future[Any] = Future()
        done.set_result(work())
        return done

    def _launch(self, model: SandboxedModel, victim: SandboxProcess | None) -> SandboxProcess:
        """On a pool thread: stop the victim, start and load the model's child, register it."""
        registered = False
        try:
            if victim is not None:
                victim.stop()
            if self.closed:
                raise Unavailable(CLOSED)
            process = launch(
                self.limits,
                model.onnx,
                input_name=model.input_name,
                output_name=model.output_name,
                label=model.label,
            )
            with self.lock:
                self._launching.add(process)
                if self.closed:
                    process.kill()  # wait_ready sees it end at once
            try:
                wait_ready(process, self.limits)
            finally:
                with self.lock:
                    self._launching.discard(process)
            with self.lock:
                if not self.closed:
                    self._reserved -= 1
                    model.process, model.starting = process, None
                    self.lru[model] = None
                    self.counts["starts"] += 1
                    registered = True
                    return process
            process.stop()
            raise Unavailable(CLOSED)
        finally:
            if not registered:
                with self.lock:
                    self._reserved -= 1
                    model.starting = None
