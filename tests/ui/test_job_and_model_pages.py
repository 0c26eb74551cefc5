"""The job, jobs, models and dataset pages against the real database, through the app: a
search's registered version scored beside its best single trial, an average's members and
weights (and "members not recorded" for an older one), the models list's routes and main
metric, the trial charts' short tick labels and learning curves without tree or linear
trials, and a date column's range."""

from __future__ import annotations

import math
import re
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.schemas import TrialRead
from app.contracts.enums import JobStatus
from app.contracts.signature import AverageMember, Signature, VersionConfig
from app.core.config import Settings
from app.core.db import session_scope, utcnow
from app.registry.service import VersionDraft, register_version
from app.storage import get_store
from app.tables import Dataset, Job, Trial
from app.ui import charts
from app.ui.parallel import axis, nice_ticks, parallel_coordinates
from tests.helpers import csv_bytes, ui_sign_in
from tests.ui.test_pages import figures_of

SIGNATURE = Signature.model_validate(
    {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 3]}],
    }
)
SEARCHED: list[tuple[int, str, float, dict[str, Any]]] = [  # number, family, value, params
    (0, "linear", 0.6512, {"linear_c": 0.01}),
    (1, "gbdt", 0.6694, {"gbdt_learning_rate": 0.05, "gbdt_num_leaves": 31}),
    (2, "gbdt", 0.6601, {"gbdt_learning_rate": 0.2, "gbdt_num_leaves": 8}),
    (3, "mlp", 0.6420, {"width": 64}),
]


def seed_search(settings: Settings, name: str, config: VersionConfig, score: float) -> int:
    """A finished search over three families whose registered version (``config``) scored
    ``score`` on the search's evidence, its best single trial 0.6694 (trial 1)."""
    with session_scope(settings.database_url) as session:
        job = Job(
            kind="search",
            status=JobStatus.SUCCEEDED,
            model_name=name,
            spec={"search": {"max_trials": 4}},
            attempt=1,
            max_attempts=3,
            progress_done=4,
            progress_total=4,
            best_value=0.6694,
            started_at=utcnow(),
            finished_at=utcnow(),
            result={
                "plan": {"objectives": [{"metric": "accuracy", "direction": "maximize"}]},
                "selection": {"validation": "5-fold cross-validation", "validation_rows": 2295},
                "versions": [1],
                "version": 1,
                "model_name": name,
                "trial": 1,
                "metrics": {"accuracy": 0.671, "validation": {"accuracy": score}},
            },
        )
        session.add(job)
        session.flush()
        for number, family, value, params in SEARCHED:
            session.add(
                Trial(
                    job_id=job.id,
                    number=number,
                    attempt=1,
                    state="complete",
                    params={"family": family, **params},
                    value=value,
                    values=[value],
                    intermediate=[0.5, 0.6, value] if family == "mlp" else [value],
                    metrics={"refit_epochs": 137} if family == "gbdt" else {},
                )
            )
        job_id = int(job.id)
    register_searched(settings, name, job_id, config, {"accuracy": 0.671})
    return job_id


def register_searched(
    settings: Settings,
    name: str,
    job_id: int | None,
    config: VersionConfig | None,
    metrics: dict[str, Any],
    onnx: Path | None = None,
) -> int:
    store = get_store(settings)
    with session_scope(settings.database_url) as session:
        artifact = store.put_bytes(f"test/{name}/{utcnow().timestamp()}.onnx", b"not read here")
        if onnx is not None:
            artifact = store.put_file(f"test/{name}/{onnx.stat().st_mtime_ns}.onnx", onnx)
        version = register_version(
            session,
            name,
            VersionDraft(
                task="classification",
                source="search",
                artifact=artifact,
                signature=SIGNATURE,
                class_labels=["a", "b", "c"],
                metrics=metrics,
                config=config,
                job_id=job_id,
            ),
        )
        return version.version


AVERAGE = VersionConfig(
    family="average",
    members=[
        AverageMember(trial=1, family="gbdt", weight=0.5, score=0.6694),
        AverageMember(trial=0, family="linear", weight=0.3, score=0.6512),
        AverageMember(trial=3, family="mlp", weight=0.2, score=0.6420),
    ],
)


def test_a_registered_average_is_scored_as_itself_beside_the_best_trial(
    client: TestClient, keys: dict[str, str], admin: dict[str, str], settings: Settings
) -> None:
    job_id = seed_search(settings, "survey", AVERAGE, score=0.6780)
    progress = client.get(f"/v1/jobs/{job_id}", headers=admin).json()["progress"]
    assert progress["registered_value"] == 0.6780 and progress["registered_version"] == 1
    assert progress["best_value"] == 0.6694 and progress["best_metric"] == "accuracy"
    ui_sign_in(client, keys["read"])
    jobs = unescape(client.get("/ui/jobs").text)
    assert "<th>Registered version</th><th>Best single trial</th>" in jobs
    assert re.search(r'class="registered">v1 0\.678 <small class="metric">accuracy', jobs)
    assert re.search(r'class="best">0\.6694 <small class="metric">accuracy', jobs)
    page = unescape(client.get(f"/ui/jobs/{job_id}").text)
    registered = re.search(r'<dd id="registered-score">(.*?)</dd>', page, re.S)
    assert registered, page
    text = re.sub(r"<[^>]+>", "", registered[1])
    assert text == "v1: 0.678 accuracy (5-fold cross-validation), an average of 3 trials"
    best_trial = re.search(r'<dd id="best-trial">(.*?)</dd>', page, re.S)
    assert best_trial, page
    best = re.sub(r"<[^>]+>", "", best_trial[1])
    assert best == "0.6694 (accuracy, maximize), trial 1"
    members = re.findall(
        r'<tr data-trial="(\d+)">.*?class="family">(\w+)</td><td class="weight">(\d+)%', page
    )
    assert members == [("1", "gbdt", "50"), ("0", "linear", "30"), ("3", "mlp", "20")]
    assert f'href="/ui/jobs/{job_id}#trial-0"' in page and 'id="trial-0"' in page
    model = unescape(client.get("/ui/models/survey").text)
    assert 'id="average" data-version="1"' in model and "weighted average of 3 trials" in model
    assert re.findall(r'class="weight">(\d+)%', model) == ["50", "30", "20"]
    assert f"average of trials 1, 0, 3 of job #{job_id}" in re.sub(r"<[^>]+>", "", model)


@pytest.mark.parametrize(
    ("config", "shown"),
    [
        (  # what releases before VersionConfig.members stored: the params alone
            VersionConfig(
                family="average",
                params={
                    "ensemble_of_trials": [1, 0],
                    "members": [{"family": "gbdt"}, {"family": "linear"}],
                    "weights": [0.75, 0.25],
                },
            ),
            [("1", "gbdt", "75"), ("0", "linear", "25")],
        ),
        (VersionConfig(family="average"), None),  # nothing kept: said so
    ],
)
def test_an_older_average_shows_what_was_kept(
    client: TestClient,
    keys: dict[str, str],
    settings: Settings,
    config: VersionConfig,
    shown: list[tuple[str, str, str]] | None,
) -> None:
    job_id = seed_search(settings, "older", config, score=0.6780)
    ui_sign_in(client, keys["read"])
    for page in (client.get(f"/ui/jobs/{job_id}").text, client.get("/ui/models/older").text):
        page = unescape(page)
        found = re.findall(
            r'<tr data-trial="(\d+)">.*?class="family">(\w+)</td><td class="weight">(\d+)%', page
        )
        if shown is None:
            assert 'id="members-not-recorded"' in page and "members not recorded" in page
            assert found == []
        else:
            assert found == shown and "members not recorded" not in page


def test_a_single_winner_shows_no_members_and_a_running_search_its_best_so_far(
    client: TestClient, keys: dict[str, str], admin: dict[str, str], settings: Settings
) -> None:
    job_id = seed_search(settings, "alone", VersionConfig(family="gbdt"), score=0.6694)
    with session_scope(settings.database_url) as session:
        running = Job(
            kind="search",
            status=JobStatus.RUNNING,
            model_name="later",
            spec={"search": {"max_trials": 4}},
            attempt=1,
            max_attempts=3,
            progress_done=1,
            progress_total=4,
            best_value=0.6,
            started_at=utcnow(),
        )
        session.add(running)
        session.flush()
        running_id = int(running.id)
    ui_sign_in(client, keys["read"])
    page = unescape(client.get(f"/ui/jobs/{job_id}").text)
    assert "v1: 0.6694 accuracy (5-fold cross-validation)</dd>" in re.sub(r"</?a[^>]*>", "", page)
    assert 'id="average"' not in page
    live = unescape(client.get(f"/ui/jobs/{running_id}").text)
    assert "<dt>Best single trial so far</dt>" in live and 'id="registered-score"' not in live
    progress = client.get(f"/v1/jobs/{running_id}", headers=admin).json()["progress"]
    assert progress["registered_value"] is None and progress["registered_version"] is None


def test_tree_and_linear_trials_are_left_out_of_the_learning_curves_and_said_so(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    job_id = seed_search(settings, "curves", AVERAGE, score=0.6780)
    ui_sign_in(client, keys["read"])
    page = unescape(client.get(f"/ui/jobs/{job_id}").text)
    curves = figures_of(page)["curves"]["data"]
    assert [trace["name"] for trace in curves] == ["trial 3"]  # the network alone
    assert "Not drawn: 2 gbdt and 1 linear trials, which train without epochs" in page
    epochs = re.findall(
        r'<tr data-state="complete" id="trial-(\d)">.*?class="epochs">([^<]*)<', page, re.S
    )
    assert epochs == [("0", "\u2013"), ("1", "137 rounds"), ("2", "137 rounds"), ("3", "3")]


def trial(number: int, value: float, **params: Any) -> TrialRead:
    now = utcnow()
    return TrialRead(
        number=number,
        attempt=1,
        state="complete",
        params=params,
        value=value,
        values=[value],
        metrics={},
        intermediate=[],
        retry_of=None,
        error=None,
        worker=None,
        started_at=now,
        finished_at=now,
        duration_s=1.0,
    )


def test_a_search_of_tables_alone_draws_no_learning_curve() -> None:
    trials = [trial(0, 0.6, family="gbdt", gbdt_num_leaves=4)]
    trials.append(trial(1, 0.5, linear_c=1.0))  # a one-family search has no family param
    assert charts.learning_curves(trials, "accuracy")["data"] == []
    assert charts.epochless_note(trials) == (
        "Not drawn: 1 gbdt and 1 linear trials, which train without epochs (a GBDT boosts "
        "until its validation rows stop improving, a linear model is fitted in one go); their "
        "scores are in the optimisation history and the trials table."
    )
    assert charts.epochless_note([trial(0, 0.6, width=8)]) is None


def is_short_number(label: str) -> bool:
    try:
        float(label)
    except ValueError:
        return False
    return len(label) <= 6


def test_parallel_coordinates_ticks_are_short_round_numbers() -> None:
    rates = [1.234567e-5, 3.3e-4, 0.0123456, 0.0871234]
    trials = [
        trial(i, 0.66943 + i * 0.00217, learning_rate=rate, dropout=0.1 + 0.0731 * i, layers=i + 1)
        for i, rate in enumerate(rates)
    ]
    figure = parallel_coordinates(trials, "accuracy", ["learning_rate", "dropout", "layers"])
    dimensions = {d["label"]: d for d in figure["data"][0]["dimensions"]}
    assert list(dimensions) == ["learning_rate (log)", "dropout", "layers", "accuracy"]
    log = dimensions["learning_rate (log)"]
    assert log["ticktext"] == ["1e-4", "0.001", "0.01"]  # the powers of ten inside
    assert log["values"] == pytest.approx([math.log10(r) for r in rates])
    assert log["tickvals"] == [-4.0, -3.0, -2.0]
    assert dimensions["dropout"]["ticktext"] == ["0.10", "0.15", "0.20", "0.25", "0.30"]
    assert dimensions["layers"]["ticktext"] == ["1", "2", "3", "4"]
    assert dimensions["accuracy"]["ticktext"] == ["0.670", "0.672", "0.674"]
    for dimension in dimensions.values():
        assert all(is_short_number(label) for label in dimension["ticktext"]), dimension
        low, high = dimension["range"]
        assert all(low <= value <= high for value in dimension["tickvals"])


def test_a_parameter_other_families_lack_sits_below_at_a_dash() -> None:
    dimension = axis("gbdt_reg_lambda", [None, 1e-8, 2.5, None, 7e-3])
    assert dimension.label == "gbdt_reg_lambda (log)"
    assert dimension.ticktext[0] == "\u2013" and dimension.values[0] == dimension.values[3]
    assert dimension.values[0] < math.log10(1e-8)
    assert dimension.ticktext[1:] == ["1e-8", "1e-6", "1e-4", "0.01", "1"]  # every second
    assert all(is_short_number(label) for label in dimension.ticktext[1:])
    words = axis("activation", ["relu", None, "tanh"])
    assert words.ticktext == ["relu", "tanh", "\u2013"] and words.values == [0, 2, 1]
    assert nice_ticks(-0.05, 0.05)[1] == ["-0.04", "-0.02", "0", "0.02", "0.04"]
    assert nice_ticks(120_000.0, 980_000.0)[1] == ["2e5", "4e5", "6e5", "8e5"]


def test_the_models_list_shows_split_shadow_and_the_serving_versions_metric(
    client: TestClient,
    keys: dict[str, str],
    admin: dict[str, str],
    settings: Settings,
    classifier_onnx: Path,
) -> None:
    for accuracy in (0.91, 0.93, 0.95):
        metrics = {"accuracy": accuracy, "f1_macro": 0.5}
        register_searched(settings, "routed", None, None, metrics, onnx=classifier_onnx)
    register_searched(settings, "plain", None, None, {}, onnx=classifier_onnx)
    split = {"versions": [{"version": 1, "weight": 70}, {"version": 2, "weight": 30}], "shadow": 3}
    answer = client.put("/v1/models/routed/aliases/production", headers=admin, json=split)
    assert answer.is_success, answer.text
    assert client.put(
        "/v1/models/routed/aliases/staging", headers=admin, json={"version": 3}
    ).is_success
    ui_sign_in(client, keys["read"])
    page = unescape(client.get("/ui/models").text)
    row = re.search(r'<tr data-model="routed">(.*?)</tr>', page, re.S)
    assert row, page
    cells = [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row[1])]
    assert cells[3] == "production → v1 70% / v2 30%, shadow v3; staging → v3"
    assert cells[4] == "accuracy 0.9100 (v1)"  # the version the alias names: the largest share
    plain = re.search(r'<tr data-model="plain">(.*?)</tr>', page, re.S)
    assert plain and "v1: no test metrics recorded" in plain[1]


def test_the_dataset_page_shows_a_date_columns_range_or_says_it_was_not_kept(
    client: TestClient, keys: dict[str, str], admin: dict[str, str], settings: Settings
) -> None:
    rows = [[f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}", i % 5, "ab"[i % 2]] for i in range(60)]
    rows[7][0] = "2023-11-30"
    rows[8][0] = ""
    upload = client.post(
        "/v1/datasets",
        headers=admin,
        files={"file": ("d.csv", csv_bytes(["day", "x", "label"], rows))},
        data={"target": "label"},
    )
    assert upload.status_code == 201, upload.text
    dataset_id = upload.json()["id"]
    ui_sign_in(client, keys["read"])
    page = client.get(f"/ui/datasets/{dataset_id}").text
    row = re.search(r'<tr data-column="day">(.*?)</tr>', page, re.S)
    assert row, page
    assert '<td class="earliest">2023-11-30</td>' in row[1]
    assert '<td class="latest">2024-12-24</td>' in row[1]
    with session_scope(settings.database_url) as session:  # as an older release profiled it
        dataset = session.get(Dataset, dataset_id)
        assert dataset is not None and dataset.profile is not None
        columns = [
            c.model_copy(update={"earliest": None, "latest": None}) for c in dataset.profile.columns
        ]
        dataset.profile = dataset.profile.model_copy(update={"columns": columns})
    page = client.get(f"/ui/datasets/{dataset_id}").text
    row = re.search(r'<tr data-column="day">(.*?)</tr>', page, re.S)
    assert row and "range not recorded" in row[1]
