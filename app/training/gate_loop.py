"""The one thread each side of the rendezvous gate runs (``app.training.gate``): a
selector that accepts connections (backing off while the process is out of file handles:
EMFILE, ENFILE and the like), runs at most ``max_pending`` handshakes at once, each against
one total deadline (more connections are closed at once), and relays admitted connections
both ways. ``close()`` ends the thread and closes every socket it opened."""

from __future__ import annotations

import contextlib
import errno
import functools
import heapq
import itertools
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

_CHUNK = 1 << 16
_BUFFERED = 1 << 20  # bytes a relay holds one way before it stops reading that side
_ACCEPT_BATCH = 16  # connections accepted per turn, so that handshakes that ended free up
BACKOFF_S = (0.01, 1.0)  # first and longest pause of accepting (or re-dialling)
_SKIPPABLE = {errno.ECONNABORTED, errno.EPROTO, errno.EINTR}  # that one connection is lost
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
Handler = Callable[[socket.socket, int], None]


@dataclass(eq=False)
class Handshake:
    """A connection that must deliver ``need`` bytes (after connecting, if ``connecting``)
    before ``deadline``."""

    need: int
    deadline: float
    done: Callable[[bytes], None]
    fail: Callable[[OSError], None]
    connecting: bool = False
    got: bytearray = field(default_factory=bytearray)


@dataclass(eq=False)
class _End:
    """One side of a relay: ``outbox`` waits to be written to ``sock``."""

    sock: socket.socket
    peer: _End | None = None
    outbox: bytearray = field(default_factory=bytearray)
    ended: bool = False  # sock sent EOF
    shut: bool = False  # writing to sock was shut down after the peer's EOF


class Loop:
    """One daemon thread serving a listening socket: accepting, handshakes against a total
    deadline, relays. Subclasses start each accepted connection's handshake in ``_start``
    (on the loop's thread); ``close`` may be called from any thread, more than once."""

    def __init__(
        self, listener: socket.socket, name: str, answer_s: float, max_pending: int
    ) -> None:
        self.listener, self.answer_s, self.max_pending = listener, answer_s, max_pending
        self.port = int(listener.getsockname()[1])
        self.refused = self.shed = self.accept_errors = 0
        self._closing = False
        self._close_lock = threading.Lock()
        self._sockets: set[socket.socket] = set()  # every socket open besides these three
        self._pending: dict[socket.socket, Handshake] = {}
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._backoff = BACKOFF_S[0]
        try:
            self._selector = selectors.DefaultSelector()
            self._wake_r, self._wake_w = socket.socketpair()
        except OSError:
            listener.close()
            raise
        for sock in (listener, self._wake_r, self._wake_w):
            sock.setblocking(False)
        self._selector.register(listener, READ, self._on_accept)
        self._selector.register(self._wake_r, READ, self._on_wake)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _start(self, connection: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop: the thread ends and every socket it holds (listening, in a handshake,
        relayed) is closed before this returns."""
        with self._close_lock:
            self._closing = True
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\0")
            if self._thread is not threading.current_thread():
                self._thread.join(timeout=10)
                if self._thread.is_alive():
                    logger.error("%s did not stop within 10 s", self._thread.name)
                    return
            self._wake_w.close()

    def _run(self) -> None:
        try:
            while not self._closing:
                for key, events in self._selector.select(self._timeout()):
                    sock, handler = key.fileobj, key.data
                    assert isinstance(sock, socket.socket)
                    if self._closing:
                        break
                    if not self._watched(sock) or self._selector.get_key(sock).data != handler:
                        continue  # closed, or its role changed, earlier in this turn
                    self._safely(functools.partial(handler, sock, events), sock)
                self._expire()
        except Exception:
            logger.exception("%s stopped", self._thread.name)
        finally:
            for sock in [*self._sockets, self.listener, self._wake_r]:
                with contextlib.suppress(OSError):
                    sock.close()
            self._sockets.clear()
            self._pending.clear()
            self._selector.close()

    def _safely(self, action: Callable[[], None], sock: socket.socket | None = None) -> None:
        """Run ``action``; a bug in it costs its connection (``sock``), not the loop."""
        try:
            action()
        except Exception:
            logger.exception("%s: closing a connection", self._thread.name)
            if sock is not None:
                with contextlib.suppress(Exception):
                    self._drop(sock)

    def _timeout(self) -> float | None:
        soonest = [h.deadline for h in self._pending.values()] + [t[0] for t in self._timers[:1]]
        return max(0.0, min(soonest) - time.monotonic()) if soonest else None

    def _expire(self) -> None:
        now = time.monotonic()
        for sock, handshake in list(self._pending.items()):
            if handshake.deadline <= now:
                self._end_handshake(sock)
                late = TimeoutError(f"no answer within {self.answer_s:g} s in all")
                self._safely(functools.partial(handshake.fail, late), sock)
        while self._timers and self._timers[0][0] <= now and not self._closing:
            self._safely(heapq.heappop(self._timers)[2])

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._order), action))

    def _on_wake(self, sock: socket.socket, events: int) -> None:
        with contextlib.suppress(OSError):
            sock.recv(64)

    def _want(self, sock: socket.socket, events: int, handler: Handler) -> None:
        """Watch ``sock`` for ``events`` (none: stop watching it)."""
        if self._watched(sock):
            if events:
                self._selector.modify(sock, events, handler)
            else:
                self._selector.unregister(sock)
        elif events:
            self._selector.register(sock, events, handler)

    def _own(self, sock: socket.socket) -> socket.socket:
        sock.setblocking(False)
        self._sockets.add(sock)
        return sock

    def _watched(self, sock: socket.socket) -> bool:
        return sock.fileno() >= 0 and sock in self._selector.get_map()

    def _drop(self, sock: socket.socket) -> None:
        if self._watched(sock):
            self._selector.unregister(sock)
        self._pending.pop(sock, None)
        self._sockets.discard(sock)
        sock.close()

    def _on_accept(self, listener: socket.socket, events: int) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                connection, _ = listener.accept()
            except BlockingIOError:
                return
            except OSError as error:
                if error.errno in _SKIPPABLE:
                    continue
                self._pause_accepting(error)  # EMFILE, ENFILE, ENOBUFS, ENOMEM, ...
                return
            self._backoff = BACKOFF_S[0]
            if len(self._pending) >= self.max_pending:
                self.shed += 1
                connection.close()
                continue
            try:
                self._start(self._own(connection))
            except OSError:
                self._drop(connection)

    def _pause_accepting(self, error: OSError) -> None:
        self.accept_errors += 1
        if self._backoff == BACKOFF_S[0]:
            logger.warning("%s: cannot accept (%s); retrying", self._thread.name, error)
        self._want(self.listener, 0, self._on_accept)
        self._later(self._backoff, lambda: self._want(self.listener, READ, self._on_accept))
        self._backoff = min(self._backoff * 2, BACKOFF_S[1])

    def _expect(self, sock: socket.socket, handshake: Handshake) -> None:
        self._pending[sock] = handshake
        self._want(sock, WRITE if handshake.connecting else READ, self._on_handshake)

    def _end_handshake(self, sock: socket.socket) -> None:
        self._pending.pop(sock, None)
        self._want(sock, 0, self._on_handshake)

    def _on_handshake(self, sock: socket.socket, events: int) -> None:
        handshake = self._pending.get(sock)
        if handshake is None:
            return
        try:
            if handshake.connecting:
                if code := sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    raise OSError(code, os.strerror(code))
                handshake.connecting = False
                self._want(sock, READ, self._on_handshake)
                return
            chunk = sock.recv(handshake.need - len(handshake.got))
            if not chunk:
                raise ConnectionError("closed before the handshake ended")
        except BlockingIOError:
            return
        except OSError as error:
            self._end_handshake(sock)
            handshake.fail(error)
            return
        handshake.got += chunk
        if len(handshake.got) == handshake.need:
            self._end_handshake(sock)
            handshake.done(bytes(handshake.got))

    def _relay(self, first: socket.socket, second: socket.socket, opening: bytes = b"") -> None:
        """Copy bytes both ways until both sides have closed (or either fails); ``opening``
        goes to ``second`` first."""
        one, two = _End(first), _End(second, outbox=bytearray(opening))
        one.peer, two.peer = two, one
        self._sync(one)

    def _on_relay(self, end: _End, sock: socket.socket, events: int) -> None:
        assert end.peer is not None
        try:
            if events & READ:
                data = sock.recv(_CHUNK)
                end.peer.outbox += data
                end.ended = not data
            if events & WRITE and end.outbox:
                del end.outbox[: sock.send(end.outbox)]
        except BlockingIOError:
            pass
        except OSError:
            self._drop(end.peer.sock)
            self._drop(sock)
            return
        self._sync(end)

    def _sync(self, end: _End) -> None:
        """Watch a relay's two sockets for what each can do next; half-close a side whose
        peer ended once its bytes are out; close both once both ended."""
        peer = end.peer
        assert peer is not None
        for side, other in ((end, peer), (peer, end)):
            if other.ended and not side.outbox and not side.shut:
                side.shut = True
                with contextlib.suppress(OSError):
                    side.sock.shutdown(socket.SHUT_WR)
        if end.ended and peer.ended and not end.outbox and not peer.outbox:
            self._drop(end.sock)
            self._drop(peer.sock)
            return
        for side, other in ((end, peer), (peer, end)):
            reading = not side.ended and len(other.outbox) < _BUFFERED
            events = (READ if reading else 0) | (WRITE if side.outbox else 0)
            self._want(side.sock, events, functools.partial(self._on_relay, side))


def read_exactly(connection: socket.socket, count: int, deadline: float) -> bytes:
    data = b""
    while len(data) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no challenge in time")
        connection.settimeout(left)
        chunk = connection.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed before the handshake ended")
        data += chunk
    return data
