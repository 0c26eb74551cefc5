"""The forest family in a real (in-process) search job on numbers near float32's limit (the
export check's stress rows multiply them by 1000, to inf), beside gbdt; and its size
bound, which makes a trial that could hold too many nodes infeasible before it fits."""

from __future__ import annotations

import random

import pytest
from fastapi.testclient import TestClient

from app.contracts.enums import JobStatus
from app.core.config import Settings
from app.core.db import session_scope
from app.jobs.runner import run_job
from app.kinds import JOB_KINDS
from app.tables import Job
from tests.helpers import csv_bytes


def big_csv(rows: int = 120, scale: float = 1e36) -> bytes:
    generator = random.Random(5)
    lines = []
    for _ in range(rows):
        x = generator.gauss(0.0, 1.0)
        colour = generator.choice(["red", "green", "blue"])
        lines.append(
            [f"{x * scale:.6e}", f"{generator.uniform(0, 5):.2f}", colour, "yes" if x > 0 else "no"]
        )
    return csv_bytes(["x", "size", "colour", "label"], lines)


@pytest.mark.parametrize("family", ["forest", "gbdt"])
def test_forest_search_on_large_but_finite_numbers(
    family: str, client: TestClient, admin: dict[str, str], settings: Settings
) -> None:
    answer = client.post(
        "/v1/datasets",
        headers=admin,
        data={"target": "label"},
        files={"file": ("rows.csv", big_csv(), "text/csv")},
    )
    assert answer.status_code == 201, answer.text
    body = {
        "kind": "search",
        "dataset_id": answer.json()["id"],
        "model_name": "big",
        "search": {
            "families": [family],
            "max_trials": 1,
            "validation": "holdout",
            "space": {"forest_trees": 10} if family == "forest" else {},
            "seed": 1,
        },
    }
    queued = client.post("/v1/jobs", headers=admin, json=body)
    assert queued.status_code == 202, queued.text
    job_id = int(queued.json()["id"])
    run_job(settings, job_id, JOB_KINDS["search"].load_handler())
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.status, job.error) == (JobStatus.SUCCEEDED, None), job.error


def test_a_forest_that_could_hold_too_many_nodes_is_infeasible_before_it_fits() -> None:
    import numpy as np

    from app.training.families.forest import MAX_NODE_VALUES, ForestParams, _check_size
    from app.training.table_models import Infeasible

    _check_size(ForestParams(), rows=20_000, n_outputs=100)  # 100 x 1,023 x 100: fits
    largest = ForestParams(trees=2_000, max_leaves=65_536, min_samples_leaf=1)
    with pytest.raises(Infeasible, match="forest_trees or forest_max_leaves"):
        _check_size(largest, rows=1_000_000, n_outputs=2)
    # the rows bound the leaves: few rows keep even the largest space's trees small
    few = int(np.sqrt(MAX_NODE_VALUES // 2_000))
    _check_size(largest, rows=few, n_outputs=1)
