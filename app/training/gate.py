"""An authenticated way into rank 0's rendezvous store.

torch's ``TCPStore`` admits any process that reaches its port, and any client may list,
read and write every key, so a stranger could join a trial, read its weights and feed it
gradients. Here the store listens on loopback only. Rank 0 runs a ``Gate`` on the
advertised address: each connection is sent a random challenge and must answer with
HMAC-SHA256 of it under the trial's secret (which travels only in the broker message
that recruits members) within ``ANSWER_S`` in all; only then is it relayed to the store. A
member runs a ``Tunnel``: a loopback port that its own store client connects to (on Linux a
connection from any other process is refused), each connection answered through the gate.
A process without the secret never reaches the store, so it can neither join nor hold up
the join deadline, which rank 0 alone keeps.

Each side is one thread (``Loop``) with a selector: it accepts (backing off while the
process is out of file handles), runs at most ``MAX_PENDING`` handshakes at once (more
connections are closed at once), each against one total deadline, and relays admitted
connections. ``close()`` ends the thread and closes every socket it opened."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import logging
import os
import secrets
import socket
import struct
import time

from app.training.gate_loop import BACKOFF_S, Handshake, Loop, read_exactly

logger = logging.getLogger(__name__)

CHALLENGE_BYTES = 32
ANSWER_BYTES = hashlib.sha256().digest_size
ANSWER_S = 5.0  # a connection that has not proven the secret by then, in all, is closed
MAX_PENDING = 64  # connections in their handshake at once; past it new ones are closed


def new_secret() -> str:
    """A per-trial secret: 256 random bits, hex."""
    return secrets.token_hex(32)


def _answer(secret: str, challenge: bytes) -> bytes:
    return hmac.new(bytes.fromhex(secret), challenge, hashlib.sha256).digest()


def listening_socket(host: str, port: int = 0) -> socket.socket:
    """A TCP socket listening on ``host`` (an address or a name of this machine) only."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
        listener.listen(64)
    except OSError:
        listener.close()
        raise
    return listener


def from_this_process(connection: socket.socket) -> bool | None:
    """Whether the other end of a loopback IPv4 connection is a socket of this process
    (Linux: its inode, in /proc/self/net/tcp or, for an IPv6 socket on a mapped address,
    tcp6, is one of /proc/self/fd); None where that cannot be told."""

    def entries(address: tuple[str, int]) -> tuple[str, str]:
        (v4,) = struct.unpack("=I", socket.inet_aton(address[0]))
        v6 = struct.unpack("=4I", socket.inet_pton(socket.AF_INET6, f"::ffff:{address[0]}"))
        return f"{v4:08X}:{address[1]:04X}", "".join(f"{w:08X}" for w in v6) + f":{address[1]:04X}"

    try:
        peer, local = entries(connection.getpeername()), entries(connection.getsockname())
        inodes = set()
        for table, version in (("tcp", 0), ("tcp6", 1)):
            with open(f"/proc/self/net/{table}") as rows:
                inodes |= {
                    f"socket:[{fields[9]}]"
                    for fields in (row.split() for row in rows.readlines()[1:])
                    if fields[1] == peer[version] and fields[2] == local[version]
                }
        descriptors = os.listdir("/proc/self/fd")
    except (OSError, ValueError):
        return None
    for descriptor in descriptors:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{descriptor}") in inodes:
                return True
    return False


class Gate(Loop):
    """Rank 0: admits a connection on ``host`` to the store at ``127.0.0.1:store_port``
    once it answers the challenge under ``secret``, all within ``answer_s``."""

    def __init__(
        self,
        host: str,
        store_port: int,
        secret: str,
        *,
        answer_s: float = ANSWER_S,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.store_port, self.secret = store_port, secret
        self._warned = -float("inf")
        super().__init__(listening_socket(host), "rendezvous-gate", answer_s, max_pending)

    def _start(self, connection: socket.socket) -> None:
        challenge = secrets.token_bytes(CHALLENGE_BYTES)
        if connection.send(challenge) < CHALLENGE_BYTES:
            raise ConnectionError("the challenge did not fit a fresh socket's buffer")
        self._expect(
            connection,
            Handshake(
                ANSWER_BYTES,
                time.monotonic() + self.answer_s,
                done=lambda answer: self._check(connection, challenge, answer),
                fail=lambda error: self._refuse(connection, error),
            ),
        )

    def _check(self, connection: socket.socket, challenge: bytes, answer: bytes) -> None:
        if not hmac.compare_digest(answer, _answer(self.secret, challenge)):
            self._refuse(connection, PermissionError("wrong answer to the challenge"))
            return
        try:
            store = socket.create_connection(("127.0.0.1", self.store_port), self.answer_s)
        except OSError as error:
            logger.warning("data-parallel rendezvous: the store did not answer (%s)", error)
            self._drop(connection)
            return
        self._relay(connection, self._own(store))

    def _refuse(self, connection: socket.socket, reason: OSError) -> None:
        self.refused += 1
        self._drop(connection)
        if time.monotonic() - self._warned >= 10:  # one line per 10 s under a flood
            self._warned = time.monotonic()
            logger.warning(
                "data-parallel rendezvous: refused a connection without the trial's secret "
                "(%s; %s refused so far, %s closed unanswered past %s pending)",
                reason,
                self.refused,
                self.shed,
                self.max_pending,
            )


class Tunnel(Loop):
    """A member: a loopback port whose connections from this process (others are refused)
    reach rank 0's store through its gate at ``host:port``, answering the challenge under
    ``secret``; a gate that closes a connection unanswered (too busy) is dialled again
    for up to ``patience_s``."""

    def __init__(
        self,
        host: str,
        port: int,
        secret: str,
        *,
        patience_s: float = 30.0,
        answer_s: float = ANSWER_S,
        max_pending: int = MAX_PENDING,
    ) -> None:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        self.target, self.secret, self.patience_s = (host, port), secret, patience_s
        self._family, self._address = family, address
        self._told_unchecked = False
        super().__init__(listening_socket("127.0.0.1"), "rendezvous-tunnel", answer_s, max_pending)

    def reachable(self) -> bool:
        """Whether rank 0's gate still answers (a trial that ended has closed it)."""
        give_up, delay = time.monotonic() + self.patience_s, BACKOFF_S[0]
        while True:
            try:
                with socket.socket(self._family, socket.SOCK_STREAM) as remote:
                    deadline = time.monotonic() + self.answer_s
                    remote.settimeout(self.answer_s)
                    remote.connect(self._address)
                    remote.sendall(
                        _answer(self.secret, read_exactly(remote, CHALLENGE_BYTES, deadline))
                    )
                return True
            except ConnectionRefusedError:
                return False
            except OSError:
                if self._closing or time.monotonic() + delay > give_up:
                    return False
                time.sleep(delay)
                delay = min(delay * 2, BACKOFF_S[1])

    def _start(self, local: socket.socket) -> None:
        own = from_this_process(local)
        if own is False:
            self.refused += 1
            logger.warning(
                "data-parallel member: refused a loopback connection from another process"
            )
            self._drop(local)
            return
        if own is None and not self._told_unchecked:
            self._told_unchecked = True
            logger.warning(
                "data-parallel member: this system has no /proc/self/net/tcp, so the tunnel "
                "cannot tell which process connected; any local user can reach rank 0's store"
            )
        self._dial(local, time.monotonic() + self.patience_s, 0)

    def _dial(self, local: socket.socket, give_up: float, attempt: int) -> None:
        try:
            remote = self._own(socket.socket(self._family, socket.SOCK_STREAM))
        except OSError as error:
            self._redial(local, give_up, attempt, error)
            return
        if (code := remote.connect_ex(self._address)) not in (0, errno.EINPROGRESS):
            self._drop(remote)
            self._redial(local, give_up, attempt, OSError(code, os.strerror(code)))
            return

        def fail(error: OSError) -> None:
            self._drop(remote)
            self._redial(local, give_up, attempt, error)

        self._expect(
            remote,
            Handshake(
                CHALLENGE_BYTES,
                time.monotonic() + self.answer_s,
                done=lambda challenge: self._relay(local, remote, _answer(self.secret, challenge)),
                fail=fail,
                connecting=True,
            ),
        )

    def _redial(self, local: socket.socket, give_up: float, attempt: int, error: OSError) -> None:
        delay = min(BACKOFF_S[0] * 2**attempt, BACKOFF_S[1])
        if isinstance(error, ConnectionRefusedError) or time.monotonic() + delay > give_up:
            logger.warning(
                "data-parallel member: rank 0's gate at %s:%s did not answer (%s)",
                *self.target,
                error,
            )
            self._drop(local)
            return
        self._later(delay, lambda: self._dial(local, give_up, attempt + 1))
