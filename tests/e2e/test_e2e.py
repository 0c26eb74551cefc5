"""End to end: a real ``kiln serve`` with real worker processes, driven over HTTP.

Runs on the embedded default (SQLite + server-less broker), and on PostgreSQL + Redis when
KILN_TEST_DATABASE_URL and KILN_TEST_BROKER_URL are set."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.servers import KilnServer, ServerFactory
from tests.helpers import blobs_csv, digits_split

# Its subject is the queue, leases, claims or the database: run on every backend.
pytestmark = pytest.mark.backends


@pytest.fixture
def server(kiln_server: ServerFactory) -> Iterator[KilnServer]:
    kiln = kiln_server(KILN_JOB_LEASE_S="6", KILN_TRIAL_HEARTBEAT_S="1")
    yield kiln


def upload_digits(kiln: KilnServer) -> tuple[int, np.ndarray, np.ndarray]:
    content, held_x, held_y = digits_split()
    return kiln.upload_dataset(content, name="digits"), held_x, held_y


def submit(kiln: KilnServer, dataset_id: int, **search: object) -> int:
    with kiln.client() as client:
        response = client.post(
            "/v1/jobs",
            json={
                "kind": "search",
                "dataset_id": dataset_id,
                "model_name": "digits",
                "search": {"algorithm": "random", "max_trials": 8, **search},
            },
        )
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def accuracy(kiln: KilnServer, rows: np.ndarray, labels: np.ndarray) -> float:
    with kiln.client() as client:
        response = client.post("/v1/models/digits/predict", json={"inputs": rows.tolist()})
    assert response.status_code == 200, response.text
    return float(np.mean(np.asarray(response.json()["predictions"]) == labels))


def process_gone(pid: int, timeout: float = 10) -> bool:
    """Whether ``pid`` has exited (allowing a moment for a killed child to be reaped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"):
            return True  # a zombie: exited, waiting only to be reaped by init
        time.sleep(0.2)
    return False


def test_csv_to_served_model_and_restart(server: KilnServer) -> None:
    dataset_id, held_x, held_y = upload_digits(server)
    # Scored on the validation split: cross-validation's own test is in test_search_jobs.
    job_id = submit(server, dataset_id, seed=0, validation="holdout", max_epochs=25)
    job = server.wait_for_job(job_id)
    assert job["status"] == "succeeded", (job["error"], server.log_tail())
    assert job["progress"]["done"] == 8
    assert job["result"]["model_name"] == "digits" and job["result"]["version"] == 1

    held_out_accuracy = accuracy(server, held_x, held_y)
    assert held_out_accuracy >= 0.95, held_out_accuracy

    with server.client() as client:
        version = client.get("/v1/models/digits/versions/1").json()
        trials = client.get(f"/v1/jobs/{job_id}/trials").json()
        artifact = client.get("/v1/models/digits/versions/1/artifact").content
        before = {
            path: client.get(path).json()
            for path in ("/v1/datasets", "/v1/jobs", "/v1/models", "/v1/models/digits/versions")
        }
    assert version["metrics"]["accuracy"] >= 0.9 and "f1_macro" in version["metrics"]
    assert version["latency_p50_ms"] > 0 and version["n_params"] > 0
    assert version["size_bytes"] == len(artifact)
    assert version["sha256"] == hashlib.sha256(artifact).hexdigest()
    assert version["lineage"]["job_id"] == job_id and version["lineage"]["dataset_id"] == 1
    assert version["class_labels"] == list(range(10))
    assert [trial["state"] for trial in trials] == ["complete"] * 8
    assert version["lineage"]["trial"] in [trial["number"] for trial in trials]

    worker_pid = int(server.wait_for_job(job_id)["worker"].rsplit(":", 1)[1])
    server.stop()
    assert process_gone(worker_pid)  # Ctrl-C stopped the worker processes too
    server.start()
    with server.client() as client:
        after = {path: client.get(path).json() for path in before}
    assert after == before
    assert accuracy(server, held_x, held_y) == held_out_accuracy


def read_response(sock: socket.socket, start: bytes) -> bytes:
    """Read one HTTP response whose first bytes are ``start``, up to its Content-Length."""
    sock.settimeout(5)
    reply = start
    while b"\r\n\r\n" not in reply:
        reply += sock.recv(65536)
    head, _, body = reply.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_oversized_upload_is_refused_mid_stream(kiln_server: ServerFactory) -> None:
    """Against real uvicorn: a chunked upload with no Content-Length gets its 413 while the
    client is still sending, long before the whole body has been read."""
    kiln = kiln_server(workers=0, KILN_MAX_UPLOAD_MB="0.05")
    boundary = "kiln"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="target"\r\n\r\n'
        f'label\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="big.csv"\r\n\r\n'
    ).encode()
    request = (
        f"POST /v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
        f"{kiln.key}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"1,2,3,4,5,6,7\n" * 1024  # 14 KiB
    sent = 0
    with socket.create_connection(("127.0.0.1", kiln.port), timeout=10) as sock:
        sock.sendall(request + f"{len(head):x}\r\n".encode() + head + b"\r\n")
        sock.settimeout(0.05)
        reply = b""
        try:
            for _ in range(2000):  # up to 28 MiB, far past the 50 KiB limit
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
                try:
                    reply = sock.recv(65536)
                except TimeoutError:
                    continue
                if reply:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = read_response(sock, reply)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"KILN_MAX_UPLOAD_MB" in reply
    assert sent < 2 * 1024 * 1024, sent
    with kiln.client() as client:  # the server keeps serving
        ok = client.post(
            "/v1/datasets", files={"file": ("b.csv", blobs_csv())}, data={"target": "label"}
        )
    assert ok.status_code == 201


def worker_pids(data_dir: Path) -> list[int]:
    """Processes whose environment names ``data_dir`` and that run a worker."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            env = environ.read_bytes()
            command = (environ.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if f"KILN_DATA_DIR={data_dir}".encode() in env.split(b"\0") and b"worker" in command:
            found.append(int(environ.parent.name))
    return found


def test_sigterm_stops_the_workers_too(kiln_server: ServerFactory) -> None:
    """``docker stop`` sends SIGTERM: the gateway must stop its worker processes first."""
    kiln = kiln_server(workers=2)
    deadline = time.monotonic() + 60
    while len(workers := worker_pids(kiln.data_dir)) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)  # the worker node and its two pool processes
    assert len(workers) >= 3, workers
    assert kiln.process is not None
    kiln.process.send_signal(signal.SIGTERM)
    kiln.process.wait(timeout=60)
    assert all(process_gone(pid) for pid in workers)
    log = kiln.log_path.read_text(errors="replace")
    assert "Warm shutdown" in log
    assert "ERROR" not in log, log[-3000:]  # a normal stop is not an error
