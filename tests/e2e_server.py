"""Starting and stopping a real ``kiln serve`` for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, make_url, text

PG_URL = os.environ.get("KILN_TEST_DATABASE_URL", "")
BROKER_URL = os.environ.get("KILN_TEST_BROKER_URL", "")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fresh_database(data_dir: Path) -> str:
    """SQLite in the data dir (the embedded default), or a new PostgreSQL database."""
    if not PG_URL:
        return ""
    name = f"kiln_e2e_{uuid.uuid4().hex[:12]}"
    engine = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def stop_process(process: subprocess.Popen[bytes], grace_s: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace_s``."""
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class KilnServer:
    """A ``kiln serve`` child process on a free port, with its own data dir and queue."""

    def __init__(self, data_dir: Path, *, workers: int = 1, database: str = "",
                 serve_args: tuple[str, ...] = (), **env: str) -> None:
        self.data_dir = data_dir
        self.workers = workers
        self.serve_args = serve_args
        self.port = free_port()
        self.log_path = data_dir.parent / f"serve-{self.port}.log"
        self.grpc_port = free_port()
        self.env = {**os.environ, "KILN_DATA_DIR": str(data_dir),
                    "KILN_QUEUE_NAME": f"e2e-{uuid.uuid4().hex[:8]}",
                    "KILN_REAPER_INTERVAL_S": "1", "KILN_GRPC_PORT": str(self.grpc_port),
                    **env}
        # A database the caller runs (a fault test's own server) is the caller's to drop.
        self.made_database = not database
        self.database = database or fresh_database(data_dir)
        if self.database:
            self.env["KILN_DATABASE_URL"] = self.database
        if BROKER_URL:
            self.env["KILN_BROKER_URL"] = BROKER_URL
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def key(self) -> str:
        return (self.data_dir / "admin.key").read_text().strip()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60,
                            headers={"Authorization": f"Bearer {self.key}"})

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def start(self, timeout: float = 90) -> None:
        kiln = Path(sys.executable).with_name("kiln")
        command = [str(kiln), "serve", "--port", str(self.port), "--workers", str(self.workers),
                   *self.serve_args]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kiln serve exited early:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"kiln serve did not become ready:\n{self.log_tail()}")

    def stop(self) -> None:
        """Ctrl-C, as a user would; the server stops its workers and exits."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"kiln serve ignored Ctrl-C:\n{self.log_tail()}") from None

    def close(self) -> None:
        """Stop the server and drop its PostgreSQL database, if it made one."""
        self.stop()
        if not (self.database and self.made_database):
            return
        engine = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        name = make_url(self.database).database
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()

    def upload_dataset(self, content: bytes, **form: str) -> int:
        """Upload a CSV (target column ``label``) and return the new dataset's id."""
        with self.client() as client:
            response = client.post("/v1/datasets", files={"file": ("data.csv", content)},
                                   data={"target": "label", **form})
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    def wait_for_job(self, job_id: int, timeout: float = 400,
                     until: tuple[str, ...] = ("succeeded", "failed", "cancelled")) -> Any:
        with self.client() as client:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                job = client.get(f"/v1/jobs/{job_id}").json()
                if job["status"] in until:
                    return job
                time.sleep(0.5)
        raise AssertionError(f"job {job_id} still {job['status']}:\n{self.log_tail()}")
