"""The family scheduler in a real search job (``run_job`` with the search's handler, in this
process) on a table large enough to subsample: after the starting points, the scheduler
chooses each trial's family; trials fit on 10,000 training rows (scored on every validation
row) until every family has a result, then the better families are promoted to every
training row, and each trial's metrics say how many rows it was fitted on."""

from __future__ import annotations

import numpy as np
import optuna
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.contracts.enums import JobStatus, TrialState
from app.core.config import Settings
from app.core.db import session_scope
from app.core.study_storage import open_storage
from app.jobs.runner import run_job
from app.kinds import JOB_KINDS
from app.search.families import SEEDED_ATTR
from app.search.schedule import SUBSAMPLE_ROWS
from app.search.schedule_study import CHOSEN_ATTR
from app.search.study import study_name
from app.tables import Job, Trial
from tests.helpers import csv_bytes

ROWS = 24_000  # 20,400 non-test rows: a large table; 16,800 training rows


def table_csv() -> bytes:
    """Six numbers; the label is a noisy threshold of a mix of them."""
    generator = np.random.default_rng(5)
    features = generator.normal(size=(ROWS, 6))
    score = features @ np.array([1.0, -0.5, 0.8, 0.0, 0.3, 0.0]) + np.sin(3 * features[:, 3])
    label = score + generator.normal(scale=0.7, size=ROWS) > 0
    rows = [
        [f"{v:.3f}" for v in row] + ["yes" if y else "no"]
        for row, y in zip(features, label, strict=True)
    ]
    return csv_bytes([f"x{i}" for i in range(6)] + ["label"], rows)


def test_a_large_table_gets_subsampled_evidence_then_full_data_trials(
    client: TestClient, admin: dict[str, str], settings: Settings
) -> None:
    answer = client.post(
        "/v1/datasets",
        headers=admin,
        data={"target": "label"},
        files={"file": ("rows.csv", table_csv(), "text/csv")},
    )
    assert answer.status_code == 201, answer.text
    search = {
        "families": ["mlp", "gbdt", "linear"],
        "algorithm": "tpe",
        "max_trials": 12,
        "max_epochs": 3,
        "validation": "holdout",
        "space": {"gbdt_rounds": 100},
        "seed": 1,
    }
    body = {
        "kind": "search",
        "dataset_id": answer.json()["id"],
        "model_name": "s",
        "search": search,
    }
    queued = client.post("/v1/jobs", headers=admin, json=body)
    assert queued.status_code == 202, queued.text
    job_id = int(queued.json()["id"])
    run_job(settings, job_id, JOB_KINDS["search"].load_handler())
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        assert job is not None and (job.status, job.error) == (JobStatus.SUCCEEDED, None)
        trials = sorted(
            session.scalars(select(Trial).where(Trial.job_id == job_id)), key=lambda t: t.number
        )
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 12
        families = [(t.params or {})["family"] for t in trials]
        rows = [(t.metrics or {})["train_rows"] for t in trials]
    study = optuna.load_study(study_name=study_name(job_id), storage=open_storage(settings))
    chosen = {t.number: t.user_attrs.get(CHOSEN_ATTR) for t in study.trials}
    seeded = int(study.user_attrs[SEEDED_ATTR])
    # The starting points run first; every later trial's family was the scheduler's.
    assert all(chosen[number] for number in range(max(seeded, 0), 12)), chosen
    assert set(families) == {"mlp", "gbdt", "linear"}
    # Until every family has a result, every trial fits on the subsample (one at a time:
    # trial order is the order they ended).
    results = [set(families[:index]) for index in range(12)]
    for index, count in enumerate(rows):
        if results[index] != {"mlp", "gbdt", "linear"}:
            assert count == SUBSAMPLE_ROWS, (index, families, rows)
    # Then the promoted families fit on every training row (16,800 of them).
    full = {family for family, count in zip(families, rows, strict=True) if count == 16_800}
    assert full and set(rows) == {SUBSAMPLE_ROWS, 16_800}, rows
    assert len(full) <= 2  # the better half of three families (or within the margin)
    # A network the scheduler starts has a cheap first configuration.
    for trial in trials:
        reason = chosen[trial.number] or ""
        if (trial.params or {})["family"] == "mlp" and "no result yet" in reason:
            assert (trial.params or {})["n_layers"] == 1 and trial.params["width_0"] == 64
