"""One sandboxed model's queue and its runs: the half of ``app.serving.sandbox`` that a request
touches. ``SandboxPool`` (in ``sandbox``) owns the children and the counts; a model asks it for
its child and hands it back through the pool's lock-guarded bookkeeping."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING

import numpy as np

from app.core.errors import BrokenInvariant, Busy, Unavailable
from app.serving.sandbox_process import (
    REPLY_BYTES,
    START_TIMEOUT_S,
    InputPlans,
    Layout,
    SandboxCrashed,
    SandboxDeadlinePassed,
    SandboxMemoryExceeded,
    SandboxProcess,
)

if TYPE_CHECKING:
    from app.serving.sandbox import SandboxPool

Feeds = dict[str, np.ndarray]
CLOSED = "the sandbox pool was closed (the server is stopping)"


def _expire(waiter: asyncio.Future[bytes | None]) -> None:
    if not waiter.done():
        waiter.set_result(None)  # None: the deadline passed


def _readable(process: SandboxProcess, waiter: asyncio.Future[bytes | None]) -> None:
    if waiter.done():
        return
    try:
        reply = process.sock.recv(REPLY_BYTES)
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        reply = b""
    waiter.set_result(reply)


class SandboxedModel:
    """One graph served in the sandbox, with its own queue (made by ``SandboxPool.model``).

    Thread-safe: ``run`` from any thread but the attached loop's; ``run_async`` on that loop.
    One run at a time reaches the child, in arrival order on the loop; at most
    ``limits.queue`` wait, and more are refused (503). Feeds are numeric arrays (any other
    is a bug upstream: BrokenInvariant); the array a run returns is a copy the caller owns."""

    def __init__(
        self,
        pool: SandboxPool,
        key: Hashable,
        onnx: bytes,
        *,
        input_name: str,
        output_name: str,
        label: str | None = None,
    ) -> None:
        self.key, self.input_name, self.output_name = key, input_name, output_name
        self.label = (label or f"model {key}")[:120]
        self.onnx = onnx
        self._pool = pool
        self.process: SandboxProcess | None = None  # the child; set and cleared by the pool
        self.starting: Future[SandboxProcess] | None = None  # its start, while in flight
        self.active = 0  # runs admitted and not finished (waiting + running); pool lock
        self.waiting = 0  # runs admitted that wait for their turn; pool lock
        self.alock = asyncio.Lock()  # the queue on the loop (FIFO)
        self._tlock = threading.Lock()  # the queue without a loop
        self._plans = InputPlans(pool.limits)

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (for diagnostics and tests)."""
        process = self.process
        return process.pid if process is not None else None

    def run(self, feeds: Feeds) -> np.ndarray:
        """The graph's output on ``feeds`` (blocking). With a loop attached, the run goes
        through the loop, so it shares the model's queue with ``run_async``."""
        pool = self._pool
        loop = pool.loop
        if loop is None:
            return self._run_blocking(feeds)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise BrokenInvariant("SandboxedModel.run blocks: call run_async on the event loop")
        if not loop.is_running():
            raise Unavailable("the sandbox's event loop is not running (the server is stopping)")
        limits = pool.limits
        bound = (limits.queue + 1) * (limits.run_timeout_s + START_TIMEOUT_S) + 10
        handed = asyncio.run_coroutine_threadsafe(self.run_async(feeds), loop)
        try:
            return handed.result(bound)
        except FutureTimeout:
            handed.cancel()
            raise Unavailable(
                f"{self.label}'s sandbox queue did not answer within {bound:g} s"
            ) from None

    async def run_async(self, feeds: Feeds) -> np.ndarray:
        """The graph's output on ``feeds``, awaited on the attached loop without blocking it."""
        loop = asyncio.get_running_loop()
        if loop is not self._pool.loop:
            raise BrokenInvariant("SandboxedModel.run_async runs on the pool's attached loop")
        layout = self._plans.plan(feeds)
        self._admit()
        try:
            await self.alock.acquire()
        except BaseException:
            self._leave(waiting=True)
            raise
        try:
            self._turn()
            return await self._exchange_async(loop, layout, feeds)
        finally:
            self.alock.release()
            self._leave()

    # -- the queue ----------------------------------------------------------------------

    def _admit(self) -> None:
        pool = self._pool
        with pool.lock:
            if pool.closed:
                raise Unavailable(CLOSED)
            if self.waiting >= pool.limits.queue:
                pool.counts["queue_full"] += 1
                raise Busy(
                    f"{self.label} already has {pool.limits.queue} requests waiting for "
                    "its sandbox (KILN_SANDBOX_QUEUE); retry shortly"
                )
            self.waiting += 1
            self.active += 1

    def _turn(self) -> None:
        with self._pool.lock:
            self.waiting -= 1

    def _leave(self, *, waiting: bool = False) -> None:
        pool = self._pool
        with pool.lock:
            self.waiting -= waiting
            self.active -= 1
            if self in pool.lru:
                pool.lru.move_to_end(self)

    # -- runs on the loop ---------------------------------------------------------------

    async def _process_async(self) -> SandboxProcess:
        started = self._pool.start(self)
        if not isinstance(started, SandboxProcess):
            # shield: a cancelled request must not cancel a start the next request uses
            started = await asyncio.shield(asyncio.wrap_future(started))
        started.use(self._pool.limits, blocking=False)
        return started

    async def _exchange_async(
        self, loop: asyncio.AbstractEventLoop, layout: Layout, feeds: Feeds
    ) -> np.ndarray:
        pool = self._pool
        process = self.process
        if process is None or process.blocking is not False:
            process = await self._process_async()
        for attempt in range(2):
            try:
                process.send(layout, feeds)
                break
            except OSError:  # it died while idle: start another, once
                await asyncio.wrap_future(pool.discard(self, process))
                if attempt:
                    raise self._ended(process, deadline=False) from None
                process = await self._process_async()
        pool.count("runs")
        try:  # a small run on a shared core is often done already: no need to wait
            reply: bytes | None = process.sock.recv(REPLY_BYTES)
        except (BlockingIOError, InterruptedError):
            reply = await self._wait(loop, process)
        except OSError:
            reply = b""
        if not reply:
            await asyncio.wrap_future(pool.discard(self, process))
            raise self._ended(process, deadline=reply is None)
        return self._answer(process, reply)

    async def _wait(self, loop: asyncio.AbstractEventLoop, process: SandboxProcess) -> bytes | None:
        """The reply, b"" at EOF, or None once the run's deadline passed."""
        waiter: asyncio.Future[bytes | None] = loop.create_future()
        loop.add_reader(process.fileno, _readable, process, waiter)
        timer = loop.call_later(self._pool.limits.run_timeout_s, _expire, waiter)
        try:
            try:
                return await waiter
            finally:
                loop.remove_reader(process.fileno)
                timer.cancel()
        except asyncio.CancelledError:  # the request went away mid-run: its child goes too
            self._pool.discard(self, process)
            raise

    # -- runs without a loop ------------------------------------------------------------

    def _run_blocking(self, feeds: Feeds) -> np.ndarray:
        pool = self._pool
        layout = self._plans.plan(feeds)
        self._admit()
        try:
            self._tlock.acquire()
        except BaseException:
            self._leave(waiting=True)
            raise
        try:
            self._turn()
            process = self._process_blocking()
            for attempt in range(2):
                try:
                    process.send(layout, feeds)
                    break
                except OSError:  # it died while idle: start another, once
                    pool.discard(self, process).result()
                    if attempt:
                        raise self._ended(process, deadline=False) from None
                    process = self._process_blocking()
            pool.count("runs")
            deadline = False
            try:
                reply = process.sock.recv(REPLY_BYTES)  # the socket's timeout is the deadline
            except TimeoutError:
                reply, deadline = b"", True
            except OSError:
                reply = b""
            if not reply:
                pool.discard(self, process).result()
                raise self._ended(process, deadline=deadline)
            return self._answer(process, reply)
        finally:
            self._tlock.release()
            self._leave()

    def _process_blocking(self) -> SandboxProcess:
        started = self._pool.start(self)
        process = started if isinstance(started, SandboxProcess) else started.result()
        process.use(self._pool.limits, blocking=True)
        return process

    # -- answers ------------------------------------------------------------------------

    def _ended(self, process: SandboxProcess, *, deadline: bool) -> Exception:
        """The error for a child that gave no answer: killed at the deadline, or died."""
        pool = self._pool
        if deadline:
            pool.count("deadline_kills")
            return SandboxDeadlinePassed(
                f"the model did not finish within {pool.limits.run_timeout_s:g} s on this "
                "request (KILN_UPLOAD_RUN_TIMEOUT_S); its sandbox process was stopped"
            )
        if pool.closed:
            return Unavailable(CLOSED)
        pool.count("crashes")
        return process.died("during this request", pool.limits)

    def _answer(self, process: SandboxProcess, reply: bytes) -> np.ndarray:
        try:
            return process.answer(reply, self._pool.limits)
        except SandboxMemoryExceeded:
            self._pool.count("memory_failures")
            raise
        except SandboxCrashed:
            self._pool.discard(self, process)
            raise
