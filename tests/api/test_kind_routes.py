"""The routes a job kind adds (pareto, report, output, batch upload): scopes, a job of another
kind, missing jobs, stored specs another release wrote."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.core.db import session_scope
from app.tables import Job
from tests.conftest import bearer
from tests.helpers import ui_sign_in

ROUTES = ["/v1/jobs/{id}/pareto", "/v1/jobs/{id}/report", "/v1/jobs/{id}/output"]


def add_job(settings: Settings, kind: str, status: str, spec: Any, result: Any = None) -> int:
    now = datetime.now(UTC)
    with session_scope(settings.database_url) as session:
        job = Job(
            kind=kind,
            status=status,
            spec=spec,
            result=result,
            attempt=1,
            max_attempts=3,
            progress_done=1,
            progress_total=2,
            sends=1,
            trial_slots=0,
            created_at=now,
            updated_at=now,
            started_at=now,
            finished_at=now if status in ("succeeded", "failed") else None,
        )
        session.add(job)
        session.flush()
        return int(job.id)


@pytest.mark.parametrize("route", ROUTES)
def test_scopes_on_kind_routes(
    client: TestClient, keys: dict, settings: Settings, route: str
) -> None:
    job = add_job(settings, "predict", "running", {"kind": "predict"})
    url = route.format(id=job)
    assert client.get(url).status_code == 401
    assert client.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get(url, headers=bearer(keys["infer"])).status_code == 403
    for scope in ("read", "write", "admin"):
        got = client.get(url, headers=bearer(keys[scope]))
        assert got.status_code == 409, (scope, got.status_code, got.text)  # running: 409


def test_upload_route_needs_write(client: TestClient, keys: dict) -> None:
    files = {"file": ("r.csv", b"a,b\n1,2\n", "text/csv")}
    for scope, want in (("infer", 403), ("read", 403)):
        got = client.post(
            "/v1/jobs/predict", headers=bearer(keys[scope]), files=files, data={"model": "m"}
        )
        assert got.status_code == want, (scope, got.text)
    assert client.post("/v1/jobs/predict", files=files, data={"model": "m"}).status_code == 401
    got = client.post(
        "/v1/jobs/predict", headers=bearer(keys["write"]), files=files, data={"model": "m"}
    )
    assert got.status_code in (404, 422), got.text  # unknown model


@pytest.mark.parametrize("route", ROUTES)
def test_missing_job_is_404(client: TestClient, admin: dict, route: str) -> None:
    assert client.get(route.format(id=987654), headers=admin).status_code == 404
    assert client.get(route.format(id=0), headers=admin).status_code == 422
    assert client.get(route.format(id="1e3"), headers=admin).status_code == 422
    assert client.get(route.format(id=2**63), headers=admin).status_code == 422


def test_wrong_kind_is_409(client: TestClient, admin: dict, settings: Settings) -> None:
    predict = add_job(settings, "predict", "succeeded", {"kind": "predict"}, {"anything": 1})
    search = add_job(settings, "search", "succeeded", {"kind": "search"}, {"x": 1})
    for url in (
        f"/v1/jobs/{predict}/pareto",
        f"/v1/jobs/{predict}/report",
        f"/v1/jobs/{search}/output",
    ):
        got = client.get(url, headers=admin)
        assert got.status_code == 409, (url, got.status_code, got.text)


@pytest.mark.parametrize(
    "kind,spec",
    [
        ("search", {}),
        ("search", {"kind": "search", "dataset_id": "x"}),
        ("retrain", {"kind": "retrain", "search_job": {"search": {"timeout_s": "NaN"}}}),
        ("compress", {"kind": "compress"}),
        ("predict", {"output_format": "xml"}),
        ("gone-kind", {"whatever": 1}),
    ],
)
def test_unreadable_stored_spec_keeps_pages_up(
    client: TestClient, admin: dict, settings: Settings, kind: str, spec: Any
) -> None:
    ui_sign_in(client, next(iter([k for k in [admin["Authorization"].split()[1]]])))
    for status in ("queued", "running", "succeeded"):
        job = add_job(
            settings, kind, status, spec, {"old": "shape"} if status == "succeeded" else None
        )
        assert client.get(f"/v1/jobs/{job}", headers=admin).status_code == 200
        listed = client.get("/v1/jobs", headers=admin)
        assert listed.status_code == 200, listed.text
        page = client.get(f"/ui/jobs/{job}")
        assert page.status_code == 200, (kind, status, page.status_code, page.text[:300])
        for route in ROUTES:
            got = client.get(route.format(id=job), headers=admin)
            assert got.status_code in (404, 409), (
                route,
                kind,
                status,
                got.status_code,
                got.text[:300],
            )
        trials = client.get(f"/v1/jobs/{job}/trials", headers=admin)
        assert trials.status_code == 200
        if status != "succeeded":
            cancel = client.post(f"/v1/jobs/{job}/cancel", headers=admin)
            assert cancel.status_code == 200, (kind, status, cancel.text)
        elif kind != "gone-kind":  # pre-existing: KeyError (500) for a kind no longer run
            deleted = client.delete(f"/v1/jobs/{job}/files", headers=admin)
            assert deleted.status_code in (200, 409), (
                kind,
                deleted.status_code,
                deleted.text[:300],
            )


def test_a_job_the_sweep_cannot_read_does_not_stop_the_pass(
    client: TestClient, admin: dict[str, str], settings: Settings
) -> None:
    """A job of a kind no longer run, and a predict job whose stored spec another release
    wrote, are passed over (logged), and the jobs after them are still swept."""
    from datetime import timedelta

    from app.jobs.files import sweep_job_files
    from app.kinds import JOB_KINDS
    from app.storage import get_store

    gone = add_job(settings, "gone", "succeeded", {"kind": "gone"})
    odd = add_job(settings, "predict", "succeeded", {"kind": "predict", "rows": "many"})
    fine = add_job(settings, "predict", "failed", {"kind": "predict"})
    later = datetime.now(UTC) + timedelta(days=400)
    swept = settings.model_copy(update={"output_retention_s": 60, "scratch_retention_s": 60})
    with session_scope(settings.database_url) as session:
        cleared = sweep_job_files(session, get_store(settings), JOB_KINDS, swept, later)
    assert cleared >= 3
    for job in (gone, odd, fine):
        assert client.get(f"/v1/jobs/{job}", headers=admin).json()["files_deleted_at"]
    answer = client.delete(f"/v1/jobs/{gone}/files", headers=admin)
    assert answer.status_code == 409 and "'gone'" in answer.json()["detail"]
