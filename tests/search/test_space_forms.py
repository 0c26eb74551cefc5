"""Every form ``search.space`` takes (a fixed value, ``{"choices": [...]}``, a
``{"low", "high"}`` range, a ``"log": true`` range) for every name of the MLP, table and
CNN spaces: ``POST /v1/jobs`` accepts it with every algorithm, and jobs of each form run
to the end: the issue #42 search (a categorical width) answered 500 at submit.

"Runs" is the real job: ``run_job`` with the search's handler, in this process (what a
worker's task calls), on a tiny dataset; trials of one or two epochs, the winner exported
and registered. Nine jobs, one per algorithm, cover every name in every form."""

from __future__ import annotations

import random
import re
from typing import Any, get_args

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.contracts.enums import JobStatus, TrialState
from app.core.config import Settings
from app.core.db import session_scope
from app.jobs.runner import run_job
from app.kinds import JOB_KINDS
from app.search.space import CNN_SPACE, MLP_SPACE, TABLE_MLP_SPACE, training_space
from app.search.spec import Algorithm
from app.tables import Job, Trial
from tests.helpers import blobs_csv, csv_bytes

ALGORITHMS: tuple[str, ...] = get_args(Algorithm)
MAX_EPOCHS = 2
FIXED, CHOICES, RANGE, LOG = "fixed", "choices", "range", "log"
FORM_NAMES = (FIXED, CHOICES, RANGE, LOG)

# Each name in each form it takes: a range only for numbers (a categorical name such as
# ``activation`` refuses one with a 422; see ``test_a_range_of_a_categorical_is_named``).
# Values stay small: the runs below train these networks.
FORMS: dict[str, dict[str, Any]] = {
    # the MLP
    "n_layers": {
        FIXED: 2,
        CHOICES: {"choices": [1, 2]},
        RANGE: {"low": 1, "high": 2},
        LOG: {"low": 1, "high": 3, "log": True},
    },
    "width": {
        FIXED: 8,
        CHOICES: {"choices": [8, 16]},
        RANGE: {"low": 4, "high": 12},
        LOG: {"low": 4, "high": 16, "log": True},
    },
    "activation": {FIXED: "gelu", CHOICES: {"choices": ["relu", "tanh"]}},
    "dropout": {
        FIXED: 0.1,
        CHOICES: {"choices": [0.0, 0.2]},
        RANGE: {"low": 0.0, "high": 0.3},
        LOG: {"low": 0.01, "high": 0.3, "log": True},
    },
    "batch_norm": {FIXED: True, CHOICES: {"choices": [False, True]}},
    # what a table's MLP adds
    "scaling": {FIXED: "robust", CHOICES: {"choices": ["standard", "robust"]}},
    "numeric_embedding": {FIXED: "periodic", CHOICES: {"choices": ["none", "piecewise"]}},
    "embedding_width": {
        FIXED: 4,
        CHOICES: {"choices": [2]},
        RANGE: {"low": 2, "high": 4},
        LOG: {"low": 2, "high": 8, "log": True},
    },
    "embedding_size": {
        FIXED: 3,
        CHOICES: {"choices": [2, 4]},
        RANGE: {"low": 2, "high": 4},
        LOG: {"low": 2, "high": 6, "log": True},
    },
    "embedding_sigma": {
        FIXED: 0.5,
        CHOICES: {"choices": [0.1, 1.0]},
        RANGE: {"low": 0.05, "high": 1.0},
        LOG: {"low": 0.05, "high": 1.0, "log": True},
    },
    "category_width": {
        FIXED: 4,
        CHOICES: {"choices": [0, 4]},
        RANGE: {"low": 0, "high": 4},
        LOG: {"low": 2, "high": 4, "log": True},
    },
    # the CNN
    "n_blocks": {
        FIXED: 2,
        CHOICES: {"choices": [1, 2]},
        RANGE: {"low": 1, "high": 2},
        LOG: {"low": 1, "high": 2, "log": True},
    },
    "channels": {
        FIXED: 4,
        CHOICES: {"choices": [4, 6]},
        RANGE: {"low": 2, "high": 6},
        LOG: {"low": 2, "high": 8, "log": True},
    },
    "kernel": {FIXED: 5, CHOICES: {"choices": [3, 5]}},
    "pooling": {FIXED: "avg", CHOICES: {"choices": ["max", "none"]}},
    "head_width": {
        FIXED: 8,
        CHOICES: {"choices": [4, 8]},
        RANGE: {"low": 4, "high": 8},
        LOG: {"low": 4, "high": 16, "log": True},
    },
    # training, in every space
    "optimizer": {FIXED: "adamw", CHOICES: {"choices": ["sgd", "adam"]}},
    "learning_rate": {
        FIXED: 0.01,
        CHOICES: {"choices": [0.003, 0.03]},
        RANGE: {"low": 0.001, "high": 0.05},
        LOG: {"low": 0.001, "high": 0.05, "log": True},
    },
    "weight_decay": {
        FIXED: 0,
        CHOICES: {"choices": [0.0, 0.001]},
        RANGE: {"low": 0.0, "high": 0.01},
        LOG: {"low": 1e-6, "high": 0.01, "log": True},
    },
    "l1": {
        FIXED: 1e-6,
        CHOICES: {"choices": [0, 1e-6]},
        RANGE: {"low": 0.0, "high": 1e-5},
        LOG: {"low": 1e-7, "high": 1e-5, "log": True},
    },
    "batch_size": {
        FIXED: 16,
        CHOICES: {"choices": [8, 16]},
        RANGE: {"low": 8, "high": 32},
        LOG: {"low": 4, "high": 32, "log": True},
    },
    "epochs": {
        FIXED: 1,
        CHOICES: {"choices": [1, 2]},
        RANGE: {"low": 1, "high": 2},
        LOG: {"low": 1, "high": 2, "log": True},
    },
    "lr_schedule": {FIXED: "cosine", CHOICES: {"choices": ["none", "step"]}},
    "patience": {
        FIXED: 0,
        CHOICES: {"choices": [0, 2]},
        RANGE: {"low": 0, "high": 3},
        LOG: {"low": 1, "high": 4, "log": True},
    },
}
TRAINING = list(training_space(MAX_EPOCHS))
NAMES: dict[str, list[str]] = {
    "mlp": [*MLP_SPACE, *TRAINING],
    "table": [*MLP_SPACE, *TABLE_MLP_SPACE, *TRAINING],
    "cnn": [*CNN_SPACE, *TRAINING],
}
CATEGORICAL = sorted(name for name, forms in FORMS.items() if RANGE not in forms)


def test_every_name_of_every_space_has_its_forms_here() -> None:
    assert set(FORMS) == {name for names in NAMES.values() for name in names}
    for name, forms in FORMS.items():
        assert set(forms) in ({FIXED, CHOICES}, set(FORM_NAMES)), name


def row(kind: str, form: str) -> dict[str, Any]:
    """Every name of ``kind``'s space in ``form`` (a categorical name's choices in a
    range's place)."""
    return {name: FORMS[name].get(form, FORMS[name][CHOICES]) for name in NAMES[kind]}


def table_csv(rows: int = 48) -> bytes:
    """A table: numbers (one with gaps), a category of six values (its one-hot slots are
    embedded), a date; the label follows the first number."""
    generator = random.Random(5)
    colours = ["red", "green", "blue", "black", "white", "grey"]
    lines = []
    for index in range(rows):
        label = index % 2
        x = (1.0 if label else -1.0) + generator.gauss(0.0, 0.5)
        size = "" if index % 7 == 3 else f"{generator.uniform(0, 5):.2f}"
        day = f"2024-{1 + index % 12:02d}-{1 + index % 28:02d}"
        lines.append([f"{x:.3f}", size, colours[index % 6], day, "yes" if label else "no"])
    return csv_bytes(["x", "size", "colour", "day", "label"], lines)


def upload(client: TestClient, admin: dict[str, str], kind: str) -> int:
    """The dataset whose space ``kind`` is: rows of numbers, a table, or images."""
    content, form = {
        "mlp": (blobs_csv(n_rows=40, n_features=4), {}),
        "table": (table_csv(), {}),
        "cnn": (blobs_csv(n_rows=40, n_features=16), {"input_shape": "1,4,4"}),
    }[kind]
    answer = client.post(
        "/v1/datasets",
        headers=admin,
        data={"target": "label", **form},
        files={"file": ("rows.csv", content, "text/csv")},
    )
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def post_search(client: TestClient, admin: dict[str, str], dataset_id: int, **search: Any) -> Any:
    search = {"max_trials": 2, "max_epochs": MAX_EPOCHS, "validation": "holdout", **search}
    return client.post(
        "/v1/jobs",
        headers=admin,
        json={"kind": "search", "dataset_id": dataset_id, "model_name": "m", "search": search},
    )


def accepted(answer: Any, what: str) -> int:
    assert answer.status_code == 202, f"{what}: {answer.status_code} {answer.text}"
    assert answer.json()["status"] == "queued"
    return int(answer.json()["id"])


@pytest.mark.parametrize("kind", sorted(NAMES))
def test_every_form_of_every_name_is_accepted_by_every_algorithm(
    client: TestClient, admin: dict[str, str], kind: str
) -> None:
    dataset_id = upload(client, admin, kind)
    # Every name in one form at once, with each algorithm but grid (whose grid of so many
    # searched names is larger than any max_trials: a 422 of its own).
    for form in FORM_NAMES:
        for algorithm in ALGORITHMS:
            if algorithm != "grid":
                answer = post_search(
                    client, admin, dataset_id, algorithm=algorithm, space=row(kind, form)
                )
                accepted(answer, f"{kind} {form} {algorithm}")
    fixed = row(kind, FIXED)
    others = [algorithm for algorithm in ALGORITHMS if algorithm != "grid"]
    pairs = [(name, form) for name in NAMES[kind] for form in FORMS[name]]
    for index, (name, form) in enumerate(pairs):
        value = FORMS[name][form]
        # One name in this form, the rest fixed: a grid of a few points.
        answer = post_search(
            client, admin, dataset_id, algorithm="grid", max_trials=4, space={**fixed, name: value}
        )
        accepted(answer, f"{kind} grid {name} {form}")
        # One name in this form, the rest the default space.
        algorithm = others[index % len(others)]
        answer = post_search(client, admin, dataset_id, algorithm=algorithm, space={name: value})
        accepted(answer, f"{kind} {algorithm} {name} {form} alone")


def test_the_issues_grid_over_a_categorical_width_is_accepted(
    client: TestClient, admin: dict[str, str]
) -> None:
    dataset_id = upload(client, admin, "mlp")
    space = {
        **row("mlp", FIXED),
        "n_layers": {"low": 1, "high": 2},
        "width": {"choices": [32, 64]},
    }
    answer = post_search(client, admin, dataset_id, algorithm="grid", max_trials=4, space=space)
    accepted(answer, "issue #42")
    assert answer.json()["progress"]["total"] == 4


@pytest.mark.parametrize("name", CATEGORICAL)
def test_a_range_of_a_categorical_is_named(
    client: TestClient, admin: dict[str, str], name: str
) -> None:
    kind = next(kind for kind, names in NAMES.items() if name in names)
    dataset_id = upload(client, admin, kind)
    answer = post_search(client, admin, dataset_id, space={name: {"low": 1, "high": 2}})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(
        f"search.space.{name}: a categorical dimension takes a value or choices"
    )


# (dataset, form, algorithm): every algorithm once; every name in every form once. The
# first is issue #42's own search: a grid over a categorical width.
RUNS = [
    ("mlp", "issue", "grid"),
    ("table", FIXED, "nsga2"),
    ("table", CHOICES, "tpe"),
    ("table", RANGE, "cmaes"),
    ("table", LOG, "gp"),
    ("cnn", FIXED, "random"),
    ("cnn", CHOICES, "evolution"),
    ("cnn", RANGE, "hillclimb"),
    ("cnn", LOG, "anneal"),
]


def test_the_runs_cover_every_algorithm_and_every_form() -> None:
    assert sorted(algorithm for _, _, algorithm in RUNS) == sorted(ALGORITHMS)
    for kind in ("table", "cnn"):
        assert {form for run_kind, form, _ in RUNS if run_kind == kind} == set(FORM_NAMES)
    assert set(NAMES["mlp"]) <= set(NAMES["table"])


def _values(params: dict[str, Any], name: str) -> list[Any]:
    """A trial's values of ``name``: one, or one per layer (``width_0``, ...)."""
    if name in params:
        return [params[name]]
    return [value for key, value in params.items() if re.fullmatch(rf"{name}_\d+", key)]


def _obeys(value: Any, form: Any) -> bool:
    if isinstance(form, dict) and "choices" in form:
        return value in form["choices"]
    if isinstance(form, dict):
        return bool(form["low"] <= value <= form["high"])
    return bool(value == form)


@pytest.mark.parametrize(("kind", "form", "algorithm"), RUNS)
def test_a_search_of_each_form_runs(
    client: TestClient,
    admin: dict[str, str],
    settings: Settings,
    kind: str,
    form: str,
    algorithm: str,
) -> None:
    dataset_id = upload(client, admin, kind)
    if form == "issue":
        space = {
            **row(kind, FIXED),
            "n_layers": {"low": 1, "high": 2},
            "width": {"choices": [4, 8]},
        }
        trials = 4
    else:
        space, trials = row(kind, form), 2
    answer = post_search(
        client, admin, dataset_id, algorithm=algorithm, max_trials=trials, space=space
    )
    job_id = accepted(answer, f"{kind} {form} {algorithm}")
    run_job(settings, job_id, JOB_KINDS["search"].load_handler())
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.status, job.error) == (JobStatus.SUCCEEDED, None)
        done = list(session.scalars(select(Trial).where(Trial.job_id == job_id)))
        assert len(done) == trials
        for trial in done:
            assert trial.state == TrialState.COMPLETE, trial.error
            for name, wanted in space.items():
                values = _values(trial.params, name)
                assert values and all(_obeys(value, wanted) for value in values), (
                    name,
                    trial.params,
                )
