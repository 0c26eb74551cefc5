"""Memory and energy, measured and searchable: an uploaded version and a search's version
carry both, labelled 'rapl' or 'estimate' (here an estimate at the server's
KILN_CPU_WATTS_PER_CORE: its powercap folder is empty); a search optimises peak_memory_mb
with its trials measured on their served file, a constraint on energy refuses the trials
over it, and a malformed objective or constraint is a 422 naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.contracts.enums import TrialState
from app.core.config import Settings
from app.core.db import session_scope
from app.jobs.runner import run_job
from app.kinds import JOB_KINDS
from app.main import create_app
from app.tables import Trial
from tests.conftest import make_settings
from tests.helpers import blobs_csv, ui_sign_in
from tests.ui.test_pages import figures_of

WATTS = 6.5


@pytest.fixture
def measured(settings: Settings, tmp_path: Path) -> Settings:
    """The test's settings, with no RAPL to read and its own watts per core."""
    return make_settings(
        settings.data_dir,
        settings.database_url,
        powercap_dir=tmp_path / "no-powercap",
        cpu_watts_per_core=WATTS,
    )


@pytest.fixture
def kiln(measured: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(measured, run_reaper=False), raise_server_exceptions=False) as app:
        yield app


@pytest.fixture
def dataset_id(kiln: TestClient, admin: dict[str, str]) -> int:
    answer = kiln.post(
        "/v1/datasets",
        headers=admin,
        data={"target": "label"},
        files={"file": ("blobs.csv", blobs_csv(n_rows=120, n_features=4))},
    )
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def assert_labelled(footprint: dict[str, Any]) -> None:
    assert footprint["energy_source"] == "estimate"
    assert footprint["energy_watts_per_core"] == WATTS  # the setting, honoured
    assert footprint["energy_mj_per_1k_rows"] > 0
    assert footprint["peak_memory_mb"] >= 0 and footprint["peak_memory_b256_mb"] >= 0


def test_an_uploaded_version_has_its_memory_and_energy_labelled(
    kiln: TestClient, admin: dict[str, str], keys: dict[str, str], classifier_onnx: Path
) -> None:
    answer = kiln.post(
        "/v1/models/up/versions",
        headers=admin,
        files={"file": ("m.onnx", classifier_onnx.read_bytes())},
        data={"labels": '["a", "b", "c"]'},
    )
    assert answer.status_code == 201, answer.text
    version = kiln.get("/v1/models/up/versions/1", headers=admin).json()
    assert_labelled(version["footprint"])
    assert {name: version["metrics"][name] for name in version["footprint"]} == version["footprint"]
    ui_sign_in(kiln, keys["read"])
    page = kiln.get("/ui/models/up?version=1")
    assert page.status_code == 200
    assert "an estimate: CPU-seconds \u00d7 6.5 W per core" in page.text
    assert "(estimate)" in page.text  # the versions table's energy column


def search(kiln: TestClient, admin: dict[str, str], dataset_id: int, **spec: Any) -> Any:
    body = {
        "kind": "search",
        "dataset_id": dataset_id,
        "model_name": "lean",
        "search": {
            "families": ["linear"],
            "max_trials": 2,
            "validation": "holdout",
            "seed": 1,
            **spec,
        },
    }
    return kiln.post("/v1/jobs", headers=admin, json=body)


def run(measured: Settings, answer: Any) -> tuple[int, list[Trial]]:
    assert answer.status_code == 202, answer.text
    job_id = int(answer.json()["id"])
    run_job(measured, job_id, JOB_KINDS["search"].load_handler())
    with session_scope(measured.database_url) as session:
        trials = list(session.scalars(select(Trial).where(Trial.job_id == job_id)))
        session.expunge_all()
    return job_id, sorted(trials, key=lambda trial: trial.number)


def test_a_search_minimises_peak_memory_measured_on_each_trial(
    kiln: TestClient,
    admin: dict[str, str],
    keys: dict[str, str],
    measured: Settings,
    dataset_id: int,
) -> None:
    objectives = [{"metric": "accuracy"}, {"metric": "peak_memory_mb", "direction": "minimize"}]
    answer = search(kiln, admin, dataset_id, algorithm="nsga2", objectives=objectives)
    job_id, trials = run(measured, answer)
    job = kiln.get(f"/v1/jobs/{job_id}", headers=admin).json()
    assert job["status"] == "succeeded", job["error"]
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for trial in trials:
        assert trial.values is not None and trial.metrics is not None
        assert trial.values[1] == trial.metrics["peak_memory_mb"]
        assert_labelled(trial.metrics)
    front = kiln.get(f"/v1/jobs/{job_id}/pareto", headers=admin).json()
    assert [o["metric"] for o in front["objectives"]] == ["accuracy", "peak_memory_mb"]
    first = front["trials"][0]
    version = kiln.get(f"/v1/models/lean/versions/{first['version']}", headers=admin).json()
    assert_labelled(version["footprint"])  # measured again as registered, on the test rows
    assert version["metrics"]["validation"]["peak_memory_mb"] == first["values"]["peak_memory_mb"]
    ui_sign_in(kiln, keys["read"])
    chart = figures_of(kiln.get(f"/ui/jobs/{job_id}").text)["pareto"]
    x_menu, y_menu = chart["layout"]["updatemenus"]
    titles = [button["args"][1]["yaxis.title.text"] for button in y_menu["buttons"]]
    assert titles[:2] == ["accuracy", "peak_memory_mb"]  # the objectives, then the costs
    assert {"peak_memory_b256_mb", "energy_mj_per_1k_rows (estimate)"} <= set(titles)
    assert len(x_menu["buttons"]) == len(titles)


def test_an_energy_constraint_refuses_the_trials_over_it(
    kiln: TestClient, admin: dict[str, str], measured: Settings, dataset_id: int
) -> None:
    limit = {"energy_mj_per_1k_rows": {"max": 1e-9}}  # the form: no model is that lean
    _, trials = run(measured, search(kiln, admin, dataset_id, constraints=limit))
    assert trials and all(t.state == TrialState.INFEASIBLE for t in trials)
    assert all("> max_energy_mj_per_1k_rows 1e-09" in (t.error or "") for t in trials)
    assert all("(estimate)" in (t.error or "") for t in trials)


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ({"objectives": [{"metric": "peak_memory"}]}, "metric"),
        (
            {"objectives": [{"metric": "peak_memory_mb"}, {"metric": "peak_memory_mb"}]},
            "search.objectives[1].metric: peak_memory_mb is listed twice",
        ),
        ({"constraints": {"max_peak_memory_mb": -1.0}}, "max_peak_memory_mb"),
        ({"constraints": {"energy_mj_per_1k_rows": {"max": -3}}}, "energy_mj_per_1k_rows.max"),
        ({"constraints": {"energy_mj_per_1k_rows": 3}}, "energy_mj_per_1k_rows"),
        ({"constraints": {"energy_joules": {"max": 3}}}, "energy_joules"),
        (
            {"constraints": {"peak_memory_mb": {"max": 3}, "max_peak_memory_mb": 2.0}},
            "peak_memory_mb: given twice",
        ),
    ],
)
def test_a_malformed_objective_or_limit_is_a_422_naming_it(
    kiln: TestClient, admin: dict[str, str], dataset_id: int, spec: dict[str, Any], named: str
) -> None:
    answer = search(kiln, admin, dataset_id, **spec)
    assert answer.status_code == 422, answer.text
    assert named in answer.text
    assert kiln.get("/v1/jobs", headers=admin).json()["total"] == 0


def test_a_searchs_compression_variants_have_theirs(
    kiln: TestClient, admin: dict[str, str], measured: Settings, dataset_id: int
) -> None:
    body = {
        "kind": "search",
        "dataset_id": dataset_id,
        "model_name": "squeezed",
        "search": {"families": ["mlp"], "max_trials": 1, "max_epochs": 2, "seed": 1},
        "compression": {"methods": ["quantize_dynamic"]},
    }
    job_id, _ = run(measured, kiln.post("/v1/jobs", headers=admin, json=body))
    job = kiln.get(f"/v1/jobs/{job_id}", headers=admin).json()
    assert job["status"] == "succeeded", job["error"]
    versions = kiln.get("/v1/models/squeezed/versions", headers=admin).json()["items"]
    assert {v["source"] for v in versions} == {"search", "compression"}
    for version in versions:
        assert_labelled(version["footprint"])
