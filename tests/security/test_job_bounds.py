"""Job specs beyond the server's ceilings are refused with a 422 that names the field and
the setting, before anything is stored or built; specs within them are accepted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from tests.api.test_search_spec import post_search
from tests.conftest import make_settings
from tests.helpers import blobs_csv

BIG_MLP = {"n_layers": 8, "width": 4096}
BIG_CNN = {"n_blocks": 6, "channels": 4096, "head_width": 4096, "batch_size": 65_536}


@pytest.fixture
def bounded(settings: Settings) -> Iterator[TestClient]:
    """A gateway whose job ceilings are set low enough to test both sides of them."""
    limited = make_settings(
        settings.data_dir, settings.database_url, max_job_s=600, max_trial_s=60, max_parallelism=4
    )
    with TestClient(create_app(limited, run_reaper=False)) as client:
        yield client


def _dataset(client: TestClient, admin: dict, **form: str) -> int:
    content = blobs_csv(n_rows=60, n_features=16 if form else 4)
    response = client.post(
        "/v1/datasets",
        headers=admin,
        data={"target": "label", **form},
        files={"file": ("blobs.csv", content)},
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


@pytest.mark.parametrize(
    ("search", "message"),
    [
        (
            {"parallelism": 32},
            "search.parallelism: 32 is over this server's limit of 4 (KILN_MAX_PARALLELISM)",
        ),
        (
            {"timeout_s": 601},
            "search.timeout_s: 601 is over this server's limit of 600 (KILN_MAX_JOB_S)",
        ),
        ({"trial_timeout_s": 61}, "search.trial_timeout_s: 61 is over this server's limit of 60"),
        (
            {"constraints": {"max_params": 10**9}},
            "search.constraints.max_params: 1000000000 is over this server's limit of",
        ),
        (
            {"space": BIG_MLP, "max_trials": 1000, "max_epochs": 1000},
            "search.space: the smallest network this space allows needs 117",
        ),
    ],
)
def test_search_beyond_the_ceilings_is_refused(
    bounded: TestClient, admin: dict, search: dict[str, Any], message: str
) -> None:
    response = post_search(bounded, admin, _dataset(bounded, admin), **search)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"] and "KILN_" in response.json()["detail"]
    assert bounded.get("/v1/jobs", headers=admin).json()["total"] == 0


def test_an_image_search_of_billions_of_parameters_is_refused(
    bounded: TestClient, admin: dict
) -> None:
    dataset = _dataset(bounded, admin, input_shape="1,4,4")
    response = post_search(bounded, admin, dataset, space=BIG_CNN)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("search.space: the smallest network this space allows needs")
    assert "(KILN_MAX_PARAMS)" in detail


def test_a_space_reaching_past_the_ceiling_is_accepted(bounded: TestClient, admin: dict) -> None:
    """Its small networks fit; trials that sample a too-big one are refused before they are
    built (``app.search.trials``)."""
    response = post_search(
        bounded,
        admin,
        _dataset(bounded, admin),
        space={"n_layers": {"low": 1, "high": 8}, "width": 4096},
        parallelism=4,
        timeout_s=600,
        trial_timeout_s=60,
    )
    assert response.status_code == 202, response.text


def test_a_huge_distillation_student_is_refused(bounded: TestClient, admin: dict) -> None:
    response = bounded.post(
        "/v1/jobs",
        headers=admin,
        json={
            "kind": "search",
            "dataset_id": _dataset(bounded, admin),
            "model_name": "m",
            "compression": {
                "methods": [{"method": "distill", "student_hidden": [4096] * 8, "epochs": 1000}]
            },
        },
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith(
        "compression.methods[0][0].student_hidden: this student needs 117"
    )
