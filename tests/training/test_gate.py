"""The data-parallel rendezvous gate and tunnel (``app.training.gate``) under hostile
connections: a flood that exhausts the process's file handles, a client that trickles its
answer, more handshakes than the cap, another local process at a member's tunnel; and
nothing of either outlives it once closed."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.training.gate import (
    CHALLENGE_BYTES,
    Gate,
    Tunnel,
    _answer,
    listening_socket,
    new_secret,
)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")


def _exactly(connection: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = connection.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _closed(connection: socket.socket, within_s: float) -> bool:
    """Whether the other side closed ``connection`` within ``within_s`` (nothing sent)."""
    connection.settimeout(within_s)
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _join(gate: Gate, secret: str, patience_s: float) -> socket.socket:
    """A client with the secret, through ``gate``, dialling again while it is closed
    unanswered (the gate is full)."""
    give_up = time.monotonic() + patience_s
    while True:
        client = socket.create_connection(("127.0.0.1", gate.port), timeout=10)
        try:
            client.sendall(_answer(secret, _exactly(client, CHALLENGE_BYTES)))
            return client
        except ConnectionError:
            client.close()
            if time.monotonic() > give_up:
                raise
            time.sleep(0.05)


def _socket_fds() -> dict[int, str]:
    found = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if (link := os.readlink(f"/proc/self/fd/{name}")).startswith("socket:"):
                found[int(name)] = link
    return found


@pytest.fixture
def store() -> Iterator[socket.socket]:
    """Stands in for rank 0's store: a loopback listener the test accepts on itself."""
    listener = listening_socket("127.0.0.1")
    listener.settimeout(10)
    yield listener
    listener.close()


def test_a_trickling_client_is_cut_at_the_total_deadline(store: socket.socket) -> None:
    """One byte of a right answer every 0.25 s would take 8 s: the gate cuts it when its
    one deadline for the whole handshake passes, not per byte, and it never reaches the
    store."""
    secret = new_secret()
    gate = Gate("127.0.0.1", store.getsockname()[1], secret, answer_s=1.0)
    try:
        client = socket.create_connection(("127.0.0.1", gate.port), timeout=10)
        answer = _answer(secret, _exactly(client, CHALLENGE_BYTES))
        started = time.monotonic()
        for byte in answer:
            if select.select([client], [], [], 0.25)[0]:
                break
            client.send(bytes([byte]))
        cut_after = time.monotonic() - started
        assert _closed(client, 1.0)
        assert 0.5 <= cut_after < 3.0  # all 32 bytes would take 8 s
        assert gate.refused == 1
        store.settimeout(0.2)
        with pytest.raises(TimeoutError):
            store.accept()
    finally:
        gate.close()


def test_past_the_pending_cap_a_connection_is_closed_at_once(store: socket.socket) -> None:
    """At most max_pending connections are handshaked at once; the next is closed without
    a challenge, and a slot that frees up admits a client with the secret."""
    secret = new_secret()
    gate = Gate("127.0.0.1", store.getsockname()[1], secret, answer_s=30.0, max_pending=4)
    try:
        idle = [socket.create_connection(("127.0.0.1", gate.port), timeout=10) for _ in range(4)]
        for connection in idle:
            _exactly(connection, CHALLENGE_BYTES)  # each is in its handshake
        extra = socket.create_connection(("127.0.0.1", gate.port), timeout=10)
        assert _closed(extra, 5.0)
        assert gate.shed == 1
        idle.pop().close()  # its slot frees up, once the gate has seen it close
        member = _join(gate, secret, patience_s=5.0)
        relayed, _ = store.accept()
        member.sendall(b"ping")
        assert _exactly(relayed, 4) == b"ping"
        for connection in [*idle, extra, member, relayed]:
            connection.close()
    finally:
        gate.close()


_EXHAUSTED = """
import os, resource, sys, time
from app.training.gate import Gate, listening_socket

resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
store = listening_socket("127.0.0.1")
gate = Gate("127.0.0.1", store.getsockname()[1], sys.argv[1], answer_s=5.0)
print(gate.port, flush=True)
taken = []
while True:  # the rest of the worker's handles, in use
    try:
        taken.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        break
print("full", flush=True)
sys.stdin.readline()  # the flood has come: accepting fails with EMFILE
deadline = time.monotonic() + 10
while gate.accept_errors == 0 and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(0.3)  # a few more failed tries
for descriptor in taken:
    os.close(descriptor)
print(gate.accept_errors, flush=True)
relayed, _ = store.accept()
relayed.sendall(relayed.recv(4))
sys.stdin.readline()
gate.close()
"""


def test_the_gate_survives_a_flood_that_exhausts_file_handles() -> None:
    """With the process out of file handles (RLIMIT_NOFILE lowered, every one in use), a
    flood of connections makes accept() fail with EMFILE; the gate backs off and retries
    instead of ending, and once handles free up it admits a client with the secret."""
    secret = new_secret()
    child = subprocess.Popen(
        [sys.executable, "-c", _EXHAUSTED, secret],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    flood: list[socket.socket] = []
    try:
        port = int(child.stdout.readline())
        assert child.stdout.readline() == "full\n"
        flood = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(40)]
        child.stdin.write("flooded\n")
        child.stdin.flush()
        assert int(child.stdout.readline()) >= 1  # accept failed with EMFILE
        member = socket.create_connection(("127.0.0.1", port), timeout=10)
        member.sendall(_answer(secret, _exactly(member, CHALLENGE_BYTES)))
        member.sendall(b"ping")
        assert _exactly(member, 4) == b"ping"  # relayed to the store and back
        member.close()
        child.stdin.write("done\n")
        child.stdin.flush()
        assert child.wait(timeout=30) == 0
    finally:
        for connection in flood:
            connection.close()
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_tunnel_admits_only_its_own_process(store: socket.socket) -> None:
    """Another local process that connects to a member's tunnel is refused: the tunnel
    would answer the challenge for it. This process's own connection is relayed."""
    secret = new_secret()
    gate = Gate("127.0.0.1", store.getsockname()[1], secret)
    tunnel = Tunnel("127.0.0.1", gate.port, secret, patience_s=5.0)
    try:
        stranger = subprocess.run(
            [
                sys.executable,
                "-c",
                "import socket, sys\n"
                f"s = socket.create_connection(('127.0.0.1', {tunnel.port}), timeout=10)\n"
                "s.sendall(b'joined/1')\n"
                "try:\n    print(s.recv(1) == b'')\n"
                "except ConnectionResetError:\n    print(True)\n",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert stranger.stdout.strip() == "True", stranger.stderr
        assert tunnel.refused == 1
        store.settimeout(0.5)
        with pytest.raises(TimeoutError):
            store.accept()  # nothing reached the store
        store.settimeout(10)
        own = socket.create_connection(("127.0.0.1", tunnel.port), timeout=10)
        relayed, _ = store.accept()
        own.sendall(b"ping")
        assert _exactly(relayed, 4) == b"ping"
        relayed.sendall(b"pong")
        assert _exactly(own, 4) == b"pong"
        own.close()
        relayed.close()
    finally:
        tunnel.close()
        gate.close()


def test_a_member_dials_again_while_the_gate_is_full(store: socket.socket) -> None:
    """A gate with every handshake slot taken closes the tunnel's connection unanswered;
    the tunnel dials again (backing off) and gets through once a slot frees up."""
    secret = new_secret()
    gate = Gate("127.0.0.1", store.getsockname()[1], secret, max_pending=1)
    tunnel = Tunnel("127.0.0.1", gate.port, secret, patience_s=10.0)
    try:
        squatter = socket.create_connection(("127.0.0.1", gate.port), timeout=10)
        _exactly(squatter, CHALLENGE_BYTES)
        member = socket.create_connection(("127.0.0.1", tunnel.port), timeout=10)
        deadline = time.monotonic() + 10
        while gate.shed < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gate.shed >= 2  # turned away, and dialled again
        squatter.close()
        relayed, _ = store.accept()
        member.sendall(b"ping")
        assert _exactly(relayed, 4) == b"ping"
        member.close()
        relayed.close()
    finally:
        tunnel.close()
        gate.close()


def test_a_relay_carries_large_transfers_and_half_closes(store: socket.socket) -> None:
    """Megabytes each way through tunnel and gate (more than a relay buffers), with the
    client's end of writing passed on before the answer comes back."""
    secret = new_secret()
    gate = Gate("127.0.0.1", store.getsockname()[1], secret)
    tunnel = Tunnel("127.0.0.1", gate.port, secret)
    payload = os.urandom(3 << 20)

    def echo_reversed() -> None:
        relayed, _ = store.accept()
        with relayed:
            received = bytearray()
            while chunk := relayed.recv(1 << 16):
                received += chunk
            relayed.sendall(bytes(reversed(received)))

    server = threading.Thread(target=echo_reversed)
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", tunnel.port), timeout=30) as client:
            client.sendall(payload)
            client.shutdown(socket.SHUT_WR)
            back = bytearray()
            while chunk := client.recv(1 << 16):
                back += chunk
        assert bytes(back) == payload[::-1]
    finally:
        server.join(timeout=30)
        tunnel.close()
        gate.close()


def test_nothing_of_a_closed_gate_or_tunnel_remains(store: socket.socket) -> None:
    """While it serves a flood, a trickler and a relayed member, a gate is one thread and
    a tunnel another; once closed, both threads have ended and every socket they opened
    is closed (the clients see their connections end)."""
    before_fds, before_threads = _socket_fds(), set(threading.enumerate())
    secret = new_secret()
    gate = Gate("127.0.0.1", store.getsockname()[1], secret)
    tunnel = Tunnel("127.0.0.1", gate.port, secret)
    ours: list[socket.socket] = []
    try:
        ours += [socket.create_connection(("127.0.0.1", gate.port), timeout=10) for _ in range(30)]
        trickler = socket.create_connection(("127.0.0.1", gate.port), timeout=10)
        _exactly(trickler, CHALLENGE_BYTES)
        trickler.send(b"\0")
        member = socket.create_connection(("127.0.0.1", tunnel.port), timeout=10)
        relayed, _ = store.accept()
        member.sendall(b"ping")
        assert _exactly(relayed, 4) == b"ping"
        ours += [trickler, member, relayed]
        started = [t for t in threading.enumerate() if t not in before_threads]
        assert sorted(t.name for t in started) == ["rendezvous-gate", "rendezvous-tunnel"]
        held = {connection.fileno() for connection in ours}
        theirs = {
            (fd, link)
            for fd, link in _socket_fds().items()
            if fd not in held and before_fds.get(fd) != link
        }
        assert len(theirs) >= 30  # the gate's ends of the flood, at least
    finally:
        tunnel.close()
        gate.close()
    assert not [t for t in started if t.is_alive()]
    assert not theirs & set(_socket_fds().items())
    assert _closed(member, 5.0) and _closed(trickler, 5.0) and _closed(relayed, 5.0)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", gate.port), timeout=5)
    for connection in ours:
        connection.close()
