"""Faults that are not a worker SIGKILL, with real processes: each test runs its own
redis-server on a free loopback port in a temp dir (never the shared one), and its own
``kiln serve``.

- redis-server SIGKILLed mid-job and restarted: the job still succeeds, with one version;
- Redis down while a job is submitted: 202 once the job is committed, and it runs when
  Redis is back (the reaper re-sends it), never a silent drop;
- the gateway SIGKILLed during an upload: no dataset is half stored, and the next start
  removes the killed upload's spool file."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.servers import REDIS, RedisServer
from tests.fixtures.servers import KilnServer, ServerFactory
from tests.helpers import blobs_csv

pytestmark = [
    pytest.mark.backends,
    pytest.mark.skipif(REDIS is None, reason="redis-server is not installed"),
]
QUICK_RESEND = {
    "KILN_QUEUED_RESEND_S": "2",
    "KILN_REAPER_INTERVAL_S": "1",
    "KILN_JOB_LEASE_S": "10",
}
SEARCH = {
    "max_trials": 3,
    "max_epochs": 4,
    "validation": "holdout",
    "space": {"n_layers": 1, "width": 16, "epochs": 4, "batch_size": 16},
}


def serve(kiln_server: ServerFactory, redis: RedisServer) -> KilnServer:
    # This test's own Redis, whatever CI's default broker is.
    return kiln_server(workers=1, env=QUICK_RESEND, KILN_BROKER_URL=redis.url)


def submit(kiln: KilnServer, dataset_id: int, model: str) -> httpx.Response:
    with kiln.client() as client:
        return client.post(
            "/v1/jobs",
            json={
                "kind": "search",
                "dataset_id": dataset_id,
                "model_name": model,
                "search": SEARCH,
            },
        )


def versions(kiln: KilnServer, model: str) -> list[int]:
    with kiln.client() as client:
        return [v["version"] for v in client.get(f"/v1/models/{model}/versions").json()["items"]]


def test_a_job_survives_redis_killed_mid_job(
    kiln_server: ServerFactory, redis: RedisServer
) -> None:
    kiln = serve(kiln_server, redis)
    dataset_id = kiln.upload_dataset(blobs_csv(n_rows=200))
    response = submit(kiln, dataset_id, "through-redis-restart")
    assert response.status_code == 202, response.text
    job_id = int(response.json()["id"])
    kiln.wait_for_job(job_id, until=("running", "succeeded"), timeout=120)
    redis.kill()
    time.sleep(2)
    redis.start()
    job = kiln.wait_for_job(job_id, timeout=300)
    assert job["status"] == "succeeded", (job["error"], kiln.log_tail())
    assert versions(kiln, "through-redis-restart") == [1]


def test_a_job_submitted_while_redis_is_down_is_refused_and_runs_once_it_returns(
    kiln_server: ServerFactory, redis: RedisServer
) -> None:
    """The gateway knows its broker is down: readiness says so naming KILN_BROKER_URL, a
    submission is refused (503) and records nothing; once Redis is back, the same
    submission is accepted and runs."""
    kiln = serve(kiln_server, redis)
    dataset_id = kiln.upload_dataset(blobs_csv(n_rows=200))
    redis.kill()
    deadline = time.monotonic() + 30
    while True:
        ready = httpx.get(f"{kiln.url}/v2/health/ready", timeout=10)
        if ready.status_code == 503:
            break
        assert time.monotonic() < deadline, "readiness never noticed the broker was down"
        time.sleep(0.5)
    assert "KILN_BROKER_URL" in ready.json()["error"]
    refused = submit(kiln, dataset_id, "sent-later")
    assert refused.status_code == 503 and "KILN_BROKER_URL" in refused.text, refused.text
    with kiln.client() as client:
        assert client.get("/v1/jobs").json()["total"] == 0  # nothing was recorded
    redis.start()
    deadline = time.monotonic() + 60
    while httpx.get(f"{kiln.url}/v2/health/ready", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "readiness never saw the broker again"
        time.sleep(0.5)
    response = submit(kiln, dataset_id, "sent-later")
    assert response.status_code == 202, response.text
    job = kiln.wait_for_job(int(response.json()["id"]), timeout=300)
    assert job["status"] == "succeeded", (job["error"], kiln.log_tail())
    assert versions(kiln, "sent-later") == [1]


def test_a_job_longer_than_the_visibility_timeout_runs_once(
    kiln_server: ServerFactory, redis: RedisServer
) -> None:
    """Redis hands an unacknowledged message to another worker after the visibility
    timeout: with two worker processes and a job far longer than it, the second delivery
    finds the job running and leaves it; exactly one set of versions is registered."""
    kiln = kiln_server(
        workers=2, env=QUICK_RESEND, KILN_BROKER_VISIBILITY_S="2", KILN_BROKER_URL=redis.url
    )
    dataset_id = kiln.upload_dataset(blobs_csv(n_rows=200))
    with kiln.client() as client:
        response = client.post(
            "/v1/jobs",
            json={
                "kind": "search",
                "dataset_id": dataset_id,
                "model_name": "redelivered",
                "search": {**SEARCH, "max_trials": 1000, "timeout_s": 25},
            },
        )
    assert response.status_code == 202, response.text
    job = kiln.wait_for_job(int(response.json()["id"]), timeout=300)
    assert job["status"] == "succeeded", (job["error"], kiln.log_tail())
    assert job["attempt"] == 1 and versions(kiln, "redelivered") == [1]
    log = kiln.log_path.read_text(errors="replace")
    # The second delivery came while the job ran, and was left alone.
    assert f"job {job['id']} is running; nothing to do" in log, kiln.log_tail()


def test_a_gateway_killed_mid_upload_stores_nothing(kiln_server: ServerFactory) -> None:
    kiln = kiln_server(workers=0)
    spool = kiln.data_dir / "tmp"
    row = b"1.0,2.0,3.0,4.0,a\n"
    sent = threading.Event()

    def body() -> Iterator[bytes]:
        boundary = b"--kiln-boundary\r\n"
        yield (
            boundary
            + b'Content-Disposition: form-data; name="target"\r\n\r\nlabel\r\n'
            + boundary
            + b'Content-Disposition: form-data; name="file"; '
            b'filename="slow.csv"\r\nContent-Type: text/csv\r\n\r\nf0,f1,f2,f3,label\n'
        )
        for _ in range(400):
            yield row * 2000  # 36 kB at a time, slowly
            sent.set()
            time.sleep(0.05)

    def upload() -> None:
        try:
            with kiln.client() as client:
                client.post(
                    "/v1/datasets",
                    content=body(),
                    headers={"Content-Type": "multipart/form-data; boundary=kiln-boundary"},
                )
        except httpx.HTTPError:
            pass  # the gateway died under it

    thread = threading.Thread(target=upload, daemon=True)
    thread.start()
    assert sent.wait(30)
    time.sleep(1.0)  # mid-stream
    assert kiln.process is not None
    kiln.process.send_signal(signal.SIGKILL)
    kiln.process.wait()
    thread.join(timeout=30)
    kiln.start()
    with kiln.client() as client:
        assert client.get("/v1/datasets").json()["items"] == []
    assert list(spool.glob("upload-*")) == []
    assert not [p for p in (kiln.data_dir / "artifacts").rglob("*") if p.is_file()]


def test_spool_files_of_dead_processes_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    """Uploads, dataset parsing and batch outputs spool under data_dir/tmp, and the local
    store writes through artifacts/.writing; what a killed process (gateway or worker) left
    in either goes at the next start, and nothing else."""
    from app.api.uploads import remove_orphaned_spools
    from app.core.config import load_settings
    from app.core.scratch import owner_prefix

    settings = load_settings(data_dir=tmp_path / "data")
    spool = settings.data_dir / "tmp"
    spool.mkdir(parents=True)
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead = [spool / f"{owner_prefix(tag, finished.pid)}x" for tag in ("upload", "parse", "batch")]
    writing = settings.data_dir / "artifacts" / ".writing"
    writing.mkdir(parents=True)
    dead.append(writing / f"{owner_prefix('.tmp', finished.pid)}part")
    live = spool / f"{owner_prefix('upload')}def.csv"
    elsewhere = spool / "upload-otherhost-1-ghi.csv"  # another host's: not ours to judge
    unrelated = spool / "notes.txt"
    for path in (*dead, live, elsewhere, unrelated):
        path.write_bytes(b"x")
    assert remove_orphaned_spools(settings) == 4
    assert not any(path.exists() for path in dead)
    assert live.exists() and elsewhere.exists() and unrelated.exists()
