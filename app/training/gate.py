"""An authenticated way into rank 0's rendezvous store.

torch's ``TCPStore`` admits any process that reaches its port, and any client may list,
read and write every key, so a stranger could join a trial, read its weights and feed it
gradients. Here the store listens on loopback only. Rank 0 runs a ``Gate`` on the
advertised address: each connection is sent a random challenge and must answer with
HMAC-SHA256 of it under the trial's secret (which travels only in the broker message
that recruits members) within ``ANSWER_S``; only then is it relayed to the store. A member
runs a ``Tunnel``: a loopback port its store client connects to, each connection answered
through the gate. A process without the secret never reaches the store, so it can neither
join nor hold up the join deadline, which rank 0 alone keeps."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
import socket
import threading

logger = logging.getLogger(__name__)

CHALLENGE_BYTES = 32
ANSWER_S = 5.0  # a connection that has not proven the secret by then is closed
_CHUNK = 1 << 16


def new_secret() -> str:
    """A per-trial secret: 256 random bits, hex."""
    return secrets.token_hex(32)


def _answer(secret: str, challenge: bytes) -> bytes:
    return hmac.new(bytes.fromhex(secret), challenge, hashlib.sha256).digest()


def _read_exactly(connection: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = connection.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed before the handshake ended")
        data += chunk
    return data


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy bytes one way until either side closes, then close both."""
    try:
        while chunk := source.recv(_CHUNK):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()


def _relay(first: socket.socket, second: socket.socket) -> None:
    threading.Thread(target=_pump, args=(first, second), daemon=True).start()
    threading.Thread(target=_pump, args=(second, first), daemon=True).start()


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


class _Acceptor:
    """Accepts connections on a listening socket in a daemon thread until closed."""

    def __init__(self, listener: socket.socket, name: str) -> None:
        self.listener = listener
        self.port = int(listener.getsockname()[1])
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name=name, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()


class Gate(_Acceptor):
    """Rank 0: admits a connection on ``host`` to the store at ``127.0.0.1:store_port``
    once it answers the challenge under ``secret``."""

    def __init__(self, host: str, store_port: int, secret: str) -> None:
        self.store_port, self.secret = store_port, secret
        self.refused = 0
        super().__init__(listening_socket(host), "rendezvous-gate")

    def _serve(self, connection: socket.socket) -> None:
        challenge = secrets.token_bytes(CHALLENGE_BYTES)
        try:
            connection.settimeout(ANSWER_S)
            connection.sendall(challenge)
            answer = _read_exactly(connection, hashlib.sha256().digest_size)
            if not hmac.compare_digest(answer, _answer(self.secret, challenge)):
                raise PermissionError("wrong answer to the challenge")
            connection.settimeout(None)
            store = socket.create_connection(("127.0.0.1", self.store_port))
        except (OSError, PermissionError) as refused:
            self.refused += 1
            logger.warning(
                "data-parallel rendezvous: refused a connection without the trial's secret (%s)",
                refused,
            )
            connection.close()
            return
        _relay(connection, store)


class Tunnel(_Acceptor):
    """A member: a loopback port whose connections reach rank 0's store through its gate
    at ``host:port``, answering the challenge under ``secret``."""

    def __init__(self, host: str, port: int, secret: str) -> None:
        self.target, self.secret = (host, port), secret
        super().__init__(listening_socket("127.0.0.1"), "rendezvous-tunnel")

    def _through_gate(self) -> socket.socket:
        remote = socket.create_connection(self.target, timeout=ANSWER_S)
        try:
            challenge = _read_exactly(remote, CHALLENGE_BYTES)
            remote.sendall(_answer(self.secret, challenge))
            remote.settimeout(None)
        except OSError:
            remote.close()
            raise
        return remote

    def reachable(self) -> bool:
        """Whether rank 0's gate still answers (a trial that ended has closed it)."""
        try:
            self._through_gate().close()
        except OSError:
            return False
        return True

    def _serve(self, local: socket.socket) -> None:
        try:
            remote = self._through_gate()
        except OSError as error:
            logger.warning(
                "data-parallel member: rank 0's gate at %s:%s did not answer (%s)",
                *self.target,
                error,
            )
            local.close()
            return
        _relay(local, remote)
