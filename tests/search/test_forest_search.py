"""The forest family in a real search job (``run_job`` with the search's handler, in this
process): its starting point runs after the linear model's, its trials are scored like any
family's, and a forest (or an average with one) is registered behind the table's
preprocessing with the export check the other families get."""

from __future__ import annotations

import random

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.contracts.enums import JobStatus, TrialState
from app.core.config import Settings
from app.core.db import session_scope
from app.jobs.runner import run_job
from app.kinds import JOB_KINDS
from app.tables import Job, ModelVersion, Trial
from tests.helpers import csv_bytes


def table_csv(rows: int = 120) -> bytes:
    """Numbers (one with gaps), a category and a date; the label is the first number's sign
    flipped for one category: trees find it, a linear model does not."""
    generator = random.Random(3)
    colours = ["red", "green", "blue"]
    lines = []
    for index in range(rows):
        colour = colours[index % 3]
        x = generator.gauss(0.0, 1.0)
        label = int((x > 0) != (colour == "red"))
        size = "" if index % 9 == 4 else f"{generator.uniform(0, 5):.2f}"
        day = f"2024-{1 + index % 12:02d}-{1 + index % 28:02d}"
        lines.append([f"{x:.3f}", size, colour, day, "yes" if label else "no"])
    return csv_bytes(["x", "size", "colour", "day", "label"], lines)


def test_a_search_with_the_forest_registers_a_checked_version(
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
        "families": ["linear", "forest"],
        "max_trials": 3,
        "max_ensemble": 2,
        "validation": "holdout",
        "space": {"forest_trees": 30},
        "seed": 1,
    }
    body = {
        "kind": "search",
        "dataset_id": answer.json()["id"],
        "model_name": "f",
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
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
        # the starting points, cheapest first: the linear model, then extra trees
        assert trials[0].params["family"] == "linear"  # its strength: the portfolio's
        assert trials[1].params["family"] == "forest"
        assert trials[1].params["forest_kind"] == "extra_trees"
        assert trials[1].params["forest_trees"] == 30
        version = session.scalars(select(ModelVersion).where(ModelVersion.job_id == job_id)).one()
        assert version.config is not None and version.config.family in ("forest", "average")
        assert version.metrics["onnx_max_abs_diff"] < 1e-4  # served file vs fitted model
        assert version.config.untrainable  # no torch weights: fine-tuning says why
        assert job.result is not None
        families = {entry["family"] for entry in job.result["selection"]["families"]}
        assert families == {"linear", "forest"}
