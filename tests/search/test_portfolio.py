"""The starting points that fit the table (``app.search.portfolio``): the traits a worker
computes from the dataset row are the learner's, the nearest suite tables decide, every
searched family gets a point early and inside an overridden space, the learned file
validates, and different tables get different points."""

from __future__ import annotations

import io
import random
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select

from app.contracts.enums import JobStatus, Task
from app.core.config import Settings
from app.core.db import session_scope
from app.datasets.service import load_arrays
from app.datasets.splits import split_indices
from app.jobs.runner import run_job
from app.kinds import JOB_KINDS
from app.search.families import CHEAP_FIRST, starting_points
from app.search.portfolio import (
    PORTFOLIO_PATH,
    Portfolio,
    TableTraits,
    clipped,
    dataset_traits,
    load_portfolio,
    portfolio_points,
    ranked,
    table_weights,
    trait_distances,
)
from app.search.space import apply_overrides, default_space, fits
from app.storage import get_store
from app.tables import Dataset, Job, Trial
from app.training.families.registry import FAMILIES, Family
from tests.helpers import csv_bytes

GBDT, LINEAR, MLP, FOREST = (Family(name) for name in ("gbdt", "linear", "mlp", "forest"))
SMALL_NUMERIC = TableTraits(rows=500, columns=8, categorical_share=0.0, classes=2, target_skew=0.55)
LARGE_CATEGORICAL = TableTraits(
    rows=40_000, columns=30, categorical_share=0.8, classes=2, target_skew=0.95
)


def rows_csv(rows: int = 150, regression: bool = False) -> bytes:
    generator = random.Random(5)
    lines = []
    for index in range(rows):
        x = generator.gauss(0.0, 1.0)
        colour = ["red", "green", "blue", "grey"][index % 4]
        size = "" if index % 11 == 3 else f"{generator.uniform(0, 5):.2f}"
        label = f"{x * 3 + (colour == 'red') + generator.gauss(0, 0.3):.3f}"
        if not regression:
            label = "yes" if x > 0.3 else "no"
        lines.append([f"{x:.3f}", size, colour, label])
    return csv_bytes(["x", "size", "colour", "label"], lines)


def _upload(client: TestClient, admin: dict[str, str], body: bytes, task: str) -> int:
    answer = client.post(
        "/v1/datasets",
        headers=admin,
        data={"target": "label", "task": task},
        files={"file": ("rows.csv", body, "text/csv")},
    )
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def _worker_traits(settings: Settings, dataset_id: int, seed: int) -> TableTraits:
    """The traits as a search worker computes them (``search_traits``)."""
    with session_scope(settings.database_url) as session:
        dataset = session.get(Dataset, dataset_id)
        assert dataset is not None
        session.expunge(dataset)
    arrays = load_arrays(get_store(settings), dataset)
    splits = split_indices(arrays.target, Task(dataset.task), seed, features=arrays.features)
    return dataset_traits(
        dataset,
        rows=len(splits.train) + len(splits.validation),
        train_target=arrays.target[splits.train],
    )


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_a_worker_and_the_learner_compute_the_same_traits(
    client: TestClient, admin: dict[str, str], settings: Settings, task: str
) -> None:
    pandas = pytest.importorskip("pandas")
    from bench.portfolio_suite import frame_traits

    body = rows_csv(regression=task == "regression")
    dataset_id = _upload(client, admin, body, task)
    worker = _worker_traits(settings, dataset_id, seed=0)
    learner = frame_traits(pandas.read_csv(io.BytesIO(body)), "label", Task(task))
    assert worker == learner
    assert worker.rows == pytest.approx(150 * 0.85, abs=2)  # less the test rows
    assert worker.columns == 3
    assert worker.categorical_share == pytest.approx(1 / 3)
    assert worker.classes == (2 if task == "classification" else 0)


def test_the_suite_tables_nearest_the_traits_count_most() -> None:
    portfolio = load_portfolio()
    for index, table in enumerate(portfolio.tables):
        distances = trait_distances(portfolio, table.traits.traits())
        assert distances[index] == 0.0 and int(np.argmin(distances)) == index
    regression = TableTraits(rows=5000, columns=10, categorical_share=0.2, classes=0, target_skew=2)
    distances = trait_distances(portfolio, regression)
    nearest = portfolio.tables[int(np.argmin(distances))]
    assert nearest.traits.classes == 0  # the task is a trait: regression is nearest regression
    weights = table_weights(distances, 1.0)
    assert weights.max() == 1.0 and np.all(np.diff(weights[np.argsort(distances)]) <= 0)
    assert np.all(table_weights(distances, None) == 1.0)


def test_the_ranking_tries_the_best_cheap_point_then_what_the_first_misses() -> None:
    regret = np.array(
        [
            [0.00, 0.30, 0.10, 0.50],
            [0.00, 0.30, 0.40, 0.00],
        ]
    )
    seconds = np.array([[10.0, 1.0, 1.0, 5.0], [10.0, 1.0, 1.0, 5.0]])
    # the cheaper half: 1 and 2; 2 has the lower mean regret; then 0, best where 2 misses
    # (expensive as it is); then, nothing left to gain, the lower mean regret
    assert ranked(regret, seconds, 3) == [2, 0, 3]
    assert ranked(regret, seconds, 1) == [2]
    # the second table counting most: 1 is the better cheap one there
    assert ranked(regret, seconds, 1, weights=np.array([0.01, 1.0])) == [1]


def test_every_searched_family_gets_a_point_each_round_cheapest_family_first() -> None:
    space = default_space(None, 60, families=(MLP, GBDT, LINEAR, FOREST), table=True)
    points = starting_points(space, SMALL_NUMERIC)
    families = [point["family"] for point in points]
    assert families[:4] == ["linear", "gbdt", "forest", "mlp"]
    assert families.count("linear") == 1  # one dimension: one point
    assert all(1 <= families.count(name) <= 3 for name in ("gbdt", "forest", "mlp"))
    assert all(fits(space, point) for point in points)
    first_network = next(point for point in points if point["family"] == "mlp")
    assert first_network["epochs"] == 10  # the search's fewest: a cheap network first
    assert starting_points(default_space(None, 60, families=(GBDT,), table=True)) == []


def test_points_stay_inside_an_overridden_space() -> None:
    space = apply_overrides(
        default_space(None, 60, families=(MLP, GBDT, LINEAR), table=True),
        {
            "gbdt_num_leaves": {"low": 4, "high": 8},
            "gbdt_rounds": 150,
            "linear_c": 0.5,
            "n_layers": {"low": 3, "high": 4},
            "width": {"low": 16, "high": 24},
            "epochs": 12,
            "numeric_embedding": "none",
        },
    )
    for traits in (SMALL_NUMERIC, LARGE_CATEGORICAL, None):
        points = starting_points(space, traits)
        assert {point["family"] for point in points} == {"linear", "gbdt", "mlp"}
        for point in points:
            assert fits(space, point), point
        networks = [point for point in points if point["family"] == "mlp"]
        assert all(point["n_layers"] >= 3 and 16 <= point["width_2"] <= 24 for point in networks)
        assert next(p for p in points if p["family"] == "linear")["linear_c"] == 0.5


def test_a_layer_count_clipped_up_repeats_the_last_width() -> None:
    dimensions = default_space(None, 60).dimensions_of(MLP)
    dimensions["n_layers"] = apply_overrides(default_space(None, 60), {"n_layers": 3}).dimensions[
        "n_layers"
    ]
    point: dict[str, Any] = {"n_layers": 1, "width_0": 48, "numeric_embedding": "periodic"}
    inside = clipped(point, dimensions)
    assert inside == {"n_layers": 3, "width_0": 48, "width_1": 48, "width_2": 48}


def test_the_learned_file_validates_and_its_points_fit_the_default_spaces() -> None:
    portfolio = Portfolio.model_validate_json(PORTFOLIO_PATH.read_text())
    assert {"gbdt", "mlp", "linear"} <= set(portfolio.candidates)
    assert len(portfolio.tables) >= 20
    for family, candidates in portfolio.candidates.items():
        space = default_space(None, 60, families=(Family(family),), table=True)
        for candidate in candidates:
            assert fits(space, candidate.params), (family, candidate.id)
            FAMILIES[family].params(candidate.params)  # typed at the family's door
        assert all(family in table.families for table in portfolio.tables)
    broken = portfolio.model_dump()
    broken["tables"][0]["families"]["gbdt"]["regret"].pop()
    with pytest.raises(ValidationError, match=r"families\.gbdt: \d+ regrets"):
        Portfolio.model_validate(broken)


def test_different_tables_get_different_points() -> None:
    space = default_space(None, 60, families=(MLP, GBDT, LINEAR), table=True)
    seen = {str(starting_points(space, table.traits.traits())) for table in load_portfolio().tables}
    assert len(seen) >= 3  # not one fixed list
    assert starting_points(space, SMALL_NUMERIC) != starting_points(space, LARGE_CATEGORICAL)
    suite_wide = portfolio_points(None, "gbdt", 3)
    gbdt_space = default_space(None, 60, families=(GBDT,))
    assert len(suite_wide) == 3 and all(fits(gbdt_space, point) for point in suite_wide)


def test_a_search_job_tries_the_points_for_its_table_first(
    client: TestClient, admin: dict[str, str], settings: Settings
) -> None:
    dataset_id = _upload(client, admin, rows_csv(), "classification")
    search = {
        "families": ["mlp", "gbdt", "linear"],
        "max_trials": 3,
        "max_ensemble": 1,
        "validation": "holdout",
        "seed": 1,
    }
    body = {"kind": "search", "dataset_id": dataset_id, "model_name": "p", "search": search}
    queued = client.post("/v1/jobs", headers=admin, json=body)
    assert queued.status_code == 202, queued.text
    job_id = int(queued.json()["id"])
    run_job(settings, job_id, JOB_KINDS["search"].load_handler())
    space = default_space(None, 60, families=(MLP, GBDT, LINEAR), table=True)
    expected = starting_points(space, _worker_traits(settings, dataset_id, seed=1))
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        assert job is not None and (job.status, job.error) == (JobStatus.SUCCEEDED, None)
        trials = sorted(
            session.scalars(select(Trial).where(Trial.job_id == job_id)), key=lambda t: t.number
        )
        assert [t.params for t in trials] == expected[:3]
        assert [t.params["family"] for t in trials] == ["linear", "gbdt", "mlp"]


def test_each_familys_first_point_is_cheap_whatever_the_portfolio_learned() -> None:
    space = default_space(None, 20, families=(Family("mlp"), Family("gbdt"), Family("linear")))
    points = starting_points(space)
    first_gbdt = next(point for point in points if point["family"] == "gbdt")
    bounds = CHEAP_FIRST["gbdt"]
    assert first_gbdt["gbdt_learning_rate"] >= bounds["gbdt_learning_rate"][1]
    assert first_gbdt["gbdt_rounds"] <= bounds["gbdt_rounds"][1]
    # an override the bound would cross wins: the point stays inside the space
    narrow = apply_overrides(space, {"gbdt_learning_rate": {"low": 0.01, "high": 0.05}})
    first = next(point for point in starting_points(narrow) if point["family"] == "gbdt")
    assert first["gbdt_learning_rate"] == 0.05
