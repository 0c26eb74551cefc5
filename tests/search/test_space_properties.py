"""Whatever ``search.space`` a client sends (any names, each in a valid form or as junk:
numbers of the wrong type, empty ranges and choices, NaN and infinities, nested values,
unknown keys), ``POST /v1/jobs`` answers 202 or a 422 whose detail names the path of the
problem, never a 5xx. A space of valid forms is accepted (unless its grid outgrows
``max_trials``), and what is accepted the worker can sample with the job's algorithm and
build: the trials' parameters lie in the space and make a network configuration."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import optuna
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from app.core.config import Settings
from app.core.db import session_scope
from app.search.build import candidate, front_for
from app.search.plan import make_plan
from app.search.space import Dimension, default_space, fits, suggest
from app.search.spec import SearchJobCreate
from app.search.strategy import make_sampler
from app.tables import Dataset, Job
from app.training.size import size_of
from tests.search.test_space_forms import ALGORITHMS, NAMES, upload

MAX_EPOCHS = 10
DIMENSIONS: dict[str, dict[str, Dimension]] = {
    "mlp": default_space(None, MAX_EPOCHS).dimensions,
    "table": default_space(None, MAX_EPOCHS, table=True).dimensions,
    "cnn": default_space([1, 4, 4], MAX_EPOCHS).dimensions,
}
assert {kind: list(dims) for kind, dims in DIMENSIONS.items()} == NAMES
# Names no space of these datasets has (or not that one), and ones that look like names.
STRANGERS = ["depth", "", "width_0", "Width", "gbdt_num_leaves", "family", "kernel", "scaling"]
PROPERTIES = hypothesis_settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-3, 600)
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=4)
)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


def _numbers(dimension: Dimension) -> st.SearchStrategy[Any]:
    """Values a numeric dimension allows (an integer one's as ints)."""
    if dimension.kind == "float":
        return st.floats(dimension.minimum, dimension.maximum, allow_nan=False)
    return st.integers(int(dimension.minimum), int(min(dimension.maximum, 2**16)))


def _range(numbers: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    def form(bounds: list[Any], log: bool) -> dict[str, Any]:
        low, high = sorted(bounds)
        return {"low": low, "high": high, **({"log": True} if log and low > 0 else {})}

    return st.builds(form, st.lists(numbers, min_size=2, max_size=2), st.booleans())


def valid_form(dimension: Dimension) -> st.SearchStrategy[Any]:
    """A fixed value, choices or (numbers only) a range, log or not."""
    if dimension.kind == "categorical" and not dimension.open_choices:
        values: st.SearchStrategy[Any] = st.sampled_from(dimension.choices)
        return values | st.lists(values, min_size=1, max_size=3).map(lambda c: {"choices": c})
    numbers = _numbers(dimension)
    return (
        numbers
        | st.lists(numbers, min_size=1, max_size=3).map(lambda c: {"choices": c})
        | _range(numbers)
    )


def any_form(dimension: Dimension | None) -> st.SearchStrategy[Any]:
    """A valid form or junk in the shape of one."""
    bound = scalars | (
        _numbers(dimension) if dimension and dimension.kind != "categorical" else scalars
    )
    shaped = (
        st.fixed_dictionaries({}, optional={"low": bound, "high": bound, "log": junk})
        | st.fixed_dictionaries({"choices": st.lists(bound, max_size=3) | junk})
        | st.dictionaries(st.sampled_from(["low", "high", "log", "choices", "step"]), junk)
    )
    return (valid_form(dimension) if dimension else st.nothing()) | shaped | junk


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, dict[str, Any], str, int, bool]:
    """(dataset kind, space, algorithm, max_trials, whether every form is valid): half of
    the spaces are valid, the other half mix valid forms, junk and unknown names."""
    kind = draw(st.sampled_from(sorted(DIMENSIONS)))
    dimensions = DIMENSIONS[kind]
    clean = draw(st.booleans())
    pool = list(dimensions) if clean else [*dimensions, *STRANGERS]
    names = draw(st.lists(st.sampled_from(pool), unique=True, max_size=6))
    space = {
        name: draw(valid_form(dimensions[name]) if clean else any_form(dimensions.get(name)))
        for name in names
    }
    algorithm = draw(st.sampled_from(ALGORITHMS))
    return kind, space, algorithm, draw(st.sampled_from([1, 3, 200])), clean


@pytest.fixture
def datasets(client: TestClient, admin: dict[str, str]) -> Iterator[dict[str, int]]:
    yield {kind: upload(client, admin, kind) for kind in DIMENSIONS}


BUDGET_REFUSALS = ("search.algorithm: the grid has", "search.space: the smallest network")


def _names_its_path(detail: Any, space: dict[str, Any]) -> bool:
    """Whether a 422's detail starts with the path of one of the space's names (or of the
    whole space, or of the algorithm whose grid it outgrew)."""
    if not isinstance(detail, str):
        return False
    if detail.startswith(BUDGET_REFUSALS):
        return True
    return any(
        detail.startswith((f"search.space.{name}:", f"search.space.{name}.")) for name in space
    )


def _samples_and_builds(settings: Settings, job_id: int) -> None:
    """What a worker does with the accepted job's space, short of training: two trials of
    its algorithm's sampler, each inside the space and a buildable network."""
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        assert job is not None
        dataset = session.get(Dataset, job.dataset_id)
        assert dataset is not None
        spec = SearchJobCreate.model_validate(job.spec).search
        plan = make_plan(spec, dataset)
        session.expunge(dataset)
    sampler = make_sampler(
        spec.algorithm, seed=0, space=plan.space, max_trials=spec.max_trials, parallel=False
    )
    study = optuna.create_study(sampler=sampler, direction="maximize")
    n_outputs = len(dataset.class_labels or []) or 1
    for number in range(2):
        trial = study.ask()
        params = suggest(trial, plan.space, tied_layers=spec.algorithm == "grid")
        assert fits(plan.space, params), params
        front = front_for(params, dataset.encoding)
        size = size_of(
            params,
            n_inputs=len(dataset.feature_names),
            n_outputs=n_outputs,
            input_shape=dataset.input_shape,
            front=front,
        )
        assert size.params > 0
        candidate(
            params,
            n_inputs=len(dataset.feature_names),
            n_outputs=n_outputs,
            input_shape=dataset.input_shape,
            seed=0,
            encoding=dataset.encoding,
        )
        study.tell(trial, 0.5 + number / 10)


@PROPERTIES
@given(request=requests())
def test_any_space_is_accepted_or_named_never_a_server_error(
    client: TestClient,
    admin: dict[str, str],
    settings: Settings,
    datasets: dict[str, int],
    request: tuple[str, dict[str, Any], str, int, bool],
) -> None:
    kind, space, algorithm, max_trials, clean = request
    body = {
        "kind": "search",
        "dataset_id": datasets[kind],
        "model_name": "m",
        "search": {
            "algorithm": algorithm,
            "max_trials": max_trials,
            "max_epochs": MAX_EPOCHS,
            "space": space,
        },
    }
    answer = client.post(
        "/v1/jobs",
        headers={**admin, "content-type": "application/json"},
        content=json.dumps(body),  # NaN and infinities as Python's json writes them
    )
    assert answer.status_code in (202, 422), (answer.status_code, answer.text, space)
    event(f"{'valid' if clean else 'mixed'} space: {answer.status_code}")
    if answer.status_code == 422:
        detail = answer.json()["detail"]
        assert _names_its_path(detail, space), (detail, space)
        if clean:  # refused only as a whole: a grid too large, or networks too big
            assert detail.startswith(BUDGET_REFUSALS), (detail, space)
        return
    _samples_and_builds(settings, int(answer.json()["id"]))
