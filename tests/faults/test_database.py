"""PostgreSQL stopped in the middle of a search and started again, with a PostgreSQL and a
redis-server of the test's own: the gateway answers 503 with Retry-After while the
database is away (never a 500, never a hang), keeps running, and the job converges when it
returns, with exactly one registered version."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.faults.jobs import submit_slow_search, wait_for_trials
from tests.faults.servers import INITDB, POSTGRES, REDIS, PostgresServer, RedisServer
from tests.fixtures.servers import ServerFactory
from tests.helpers import blobs_csv

pytestmark = pytest.mark.skipif(
    None in (INITDB, POSTGRES, REDIS),
    reason="PostgreSQL's initdb/postgres or redis-server is not installed",
)


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.remove()


def test_a_search_converges_when_postgresql_stops_mid_job_and_returns(
    kiln_server: ServerFactory, postgres: PostgresServer, redis: RedisServer
) -> None:
    kiln = kiln_server(
        workers=1,
        database=postgres.url,
        KILN_BROKER_URL=redis.url,
        KILN_JOB_LEASE_S="6",
        KILN_QUEUED_RESEND_S="2",
        KILN_REAPER_INTERVAL_S="1",
    )
    dataset_id = kiln.upload_dataset(blobs_csv(n_rows=300))
    job_id = submit_slow_search(kiln, dataset_id, "through-outage", trials=3, epochs=20, seed=4)
    with kiln.client() as client:
        wait_for_trials(client, job_id, {"complete", "running"})

        postgres.stop()
        away_until = time.monotonic() + 8
        while time.monotonic() < away_until:
            for answer in (
                client.get(f"/v1/jobs/{job_id}"),
                client.post(
                    "/v1/jobs",
                    json={"kind": "search", "dataset_id": dataset_id, "model_name": "while-away"},
                ),
            ):
                assert answer.status_code == 503, answer.text
                assert answer.headers.get("Retry-After"), answer.headers
                assert "database" in answer.json()["detail"].lower()
            time.sleep(0.5)
        postgres.start()

    job = kiln.wait_for_job(job_id, timeout=400)
    assert job["status"] == "succeeded", (job["error"], kiln.log_tail())
    with kiln.client() as client:
        versions = client.get("/v1/models/through-outage/versions").json()["items"]
        jobs = client.get("/v1/jobs").json()["items"]
    assert [v["version"] for v in versions] == [1]
    # Nothing was accepted while the database was away.
    assert [j["id"] for j in jobs] == [job_id]
    assert kiln.process is not None and kiln.process.poll() is None
