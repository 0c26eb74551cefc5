"""What the benchmarks share: a ``kiln serve`` child process with its own data directory,
and small helpers to upload, submit and time jobs through its REST API."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx


@dataclass
class Kiln:
    url: str
    key: str
    data_dir: Path

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=120, headers={"Authorization": f"Bearer {self.key}"}
        )


@contextmanager
def kiln_server(data_dir: Path, workers: int) -> Iterator[Kiln]:
    port = 8700 + os.getpid() % 200
    env = {**os.environ, "KILN_DATA_DIR": str(data_dir), "KILN_QUEUE_NAME": "bench-search"}
    log = (data_dir.parent / "serve.log").open("ab")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "kiln"),
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        yield Kiln(url, (data_dir / "admin.key").read_text().strip(), data_dir)
    finally:
        process.terminate()
        process.wait(timeout=60)


def upload(kiln: Kiln, name: str) -> int:
    from sklearn import datasets

    loaded = getattr(datasets, f"load_{name}")()
    header = ",".join([f"f{i}" for i in range(loaded.data.shape[1])] + ["label"])
    lines = [
        header,
        *(
            ",".join([*map(repr, map(float, row)), str(int(label))])
            for row, label in zip(loaded.data, loaded.target, strict=True)
        ),
    ]
    with kiln.client() as client:
        response = client.post(
            "/v1/datasets",
            data={"target": "label", "name": name},
            files={"file": (f"{name}.csv", io.BytesIO("\n".join(lines).encode()))},
        )
    response.raise_for_status()
    return int(response.json()["id"])


def submit(kiln: Kiln, dataset_id: int, model: str, **search: Any) -> int:
    with kiln.client() as client:
        response = client.post(
            "/v1/jobs",
            json={
                "kind": "search",
                "dataset_id": dataset_id,
                "model_name": model,
                "search": search,
            },
        )
    response.raise_for_status()
    return int(response.json()["id"])


def wait(kiln: Kiln, job_ids: list[int]) -> dict[int, dict[str, Any]]:
    done: dict[int, dict[str, Any]] = {}
    with kiln.client() as client:
        while len(done) < len(job_ids):
            for job_id in job_ids:
                if job_id in done:
                    continue
                job = client.get(f"/v1/jobs/{job_id}").json()
                if job["status"] in ("succeeded", "failed", "cancelled"):
                    job["trials"] = client.get(f"/v1/jobs/{job_id}/trials").json()
                    done[job_id] = job
            time.sleep(1.0)
    return done


def timestamp(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def trial_span(job: dict[str, Any]) -> float:
    """Seconds from the first trial's start to the last trial's end."""
    trials = job["trials"]
    return max(timestamp(t["finished_at"]) for t in trials) - min(
        timestamp(t["started_at"]) for t in trials
    )


def steady_per_trial(finished_at: list[float]) -> float:
    """Seconds per trial after the first one finished (the first pays one-time warm-up:
    torch's thread pools and allocator in a fresh process)."""
    ends = sorted(finished_at)
    return (ends[-1] - ends[0]) / (len(ends) - 1)


HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent


def gateway_command(port: int, grpc_port: int) -> list[str]:
    """``kiln serve`` as a gateway alone (no worker) on loopback, without an access log."""
    return [
        str(Path(sys.executable).parent / "kiln"),
        "serve",
        "--workers",
        "0",
        "--host",
        HOST,
        "--port",
        str(port),
        "--grpc-port",
        str(grpc_port),
        "--no-access-log",
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def pin(pid: int, cpu: int) -> None:
    """Pin a process to one CPU when there are at least two (no-op otherwise)."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(pid, {cpu})


@contextlib.contextmanager
def server(
    command: list[str],
    env: dict[str, str],
    port: int,
    ready_path: str | None,
    probe: bytes = b"",
    *,
    pinned: bool = True,
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process (pinned to CPU 1), once it answers ``ready_path`` (or a POST of
    ``probe`` to / when there is none)."""
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if pinned:
        pin(process.pid, 1)
    url = f"http://{HOST}:{port}"
    try:
        for _ in range(600):
            with contextlib.suppress(httpx.HTTPError):
                answer = (
                    httpx.get(url + ready_path, timeout=2)
                    if ready_path
                    else httpx.post(url + "/", content=probe, timeout=2)
                )
                if answer.status_code < 500:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"server {command} did not start")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def listening(command: list[str], port: int) -> Iterator[None]:
    """A server process that speaks no HTTP, pinned to CPU 1, once its port accepts."""
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    pin(process.pid, 1)
    try:
        for _ in range(300):
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 1):
                break
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)
