"""A gateway whose broker does not answer (a Redis URL on a closed port): readiness says
so, naming KILN_BROKER_URL, and a submitted job is refused (503) with nothing recorded,
rather than accepted to wait, queued, for a broker a wrong URL never reaches. The answer
is asked of the broker at most every couple of seconds, and a send that fails after a
job's commit turns it at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.core.db import session_scope
from app.jobs.broker_check import broker_probe
from app.main import create_app
from app.tables import Job
from tests.api.test_deletion import search, upload_dataset
from tests.conftest import make_settings

DOWN = "redis://:never-shown@127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def down(tmp_path: Path, database_url: str, settings: Settings) -> Iterator[TestClient]:
    """A gateway on the test database whose broker is down (``settings`` cleans up)."""
    broken = make_settings(tmp_path / "down", database_url, broker_url=DOWN)
    broker_probe(DOWN).record(OSError("not asked yet"))  # whatever an earlier test left
    with TestClient(create_app(broken, run_reaper=False), raise_server_exceptions=False) as c:
        yield c


def ask_again() -> None:
    """Forget the probe's answer: the next question asks the broker."""
    broker_probe(DOWN).expire()


def jobs_recorded(settings: Settings) -> list[tuple[int, str]]:
    with session_scope(settings.database_url) as session:
        return [(int(row.id), str(row.status)) for row in session.query(Job.id, Job.status)]


def test_readiness_names_the_broker_that_does_not_answer(down: TestClient) -> None:
    ask_again()
    answer = down.get("/v2/health/ready")
    assert answer.status_code == 503
    body = answer.json()
    assert body["ready"] is False
    assert body["error"].startswith(
        "the broker at redis://:***@127.0.0.1:1/0 (KILN_BROKER_URL) does not answer: "
    )
    assert "never-shown" not in answer.text


def test_readiness_reuses_a_recent_answer(down: TestClient) -> None:
    """Probes come often: the broker is asked at most every couple of seconds, so an
    answer a moment old stands (here: it answered, say, a second ago)."""
    broker_probe(DOWN).record(None)
    assert down.get("/v2/health/ready").json() == {"ready": True}
    broker_probe(DOWN).record(ConnectionError("refused"))
    assert down.get("/v2/health/ready").status_code == 503


def test_a_job_is_refused_while_the_broker_is_down(
    down: TestClient, admin: dict, settings: Settings
) -> None:
    dataset_id = upload_dataset(down, admin)  # needs no broker
    ask_again()
    refused = search(down, admin, dataset_id)
    assert refused.status_code == 503, refused.text
    detail = refused.json()["detail"]
    assert "(KILN_BROKER_URL) does not answer" in detail
    assert detail.endswith("; no job was recorded: submit it again once it answers")
    assert "never-shown" not in refused.text
    assert jobs_recorded(settings) == []
    keyed = down.post(
        "/v1/jobs",
        headers={**admin, "Idempotency-Key": "broker-down-1"},
        json={"kind": "search", "dataset_id": dataset_id, "model_name": "m", "search": {}},
    )
    assert keyed.status_code == 503 and jobs_recorded(settings) == []  # nothing remembered


def test_a_send_that_fails_after_the_commit_turns_the_answer_at_once(
    down: TestClient, admin: dict, settings: Settings
) -> None:
    """The broker went away after it last answered: the job is committed (202) and its
    send fails; it stays queued for the reaper to send again, and readiness and the next
    submission know the broker is down without waiting for the next probe."""
    dataset_id = upload_dataset(down, admin)
    broker_probe(DOWN).record(None)  # it answered a moment ago
    accepted = search(down, admin, dataset_id)
    assert accepted.status_code == 202, accepted.text
    assert jobs_recorded(settings) == [(accepted.json()["id"], "queued")]
    assert down.get("/v2/health/ready").status_code == 503
    assert search(down, admin, dataset_id).status_code == 503
    assert len(jobs_recorded(settings)) == 1


def test_a_gateway_on_a_broker_that_answers_is_ready_and_takes_jobs(
    client: TestClient, admin: dict
) -> None:
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert search(client, admin, upload_dataset(client, admin)).status_code == 202
