"""A dataset from the request log names its columns as the model knows them (a tensor
model learnt from a table: that table's columns; an upload without one: input_0, ...), and
says how many joined rows repeat an earlier row's inputs, which every split keeps together."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.contracts.enums import Task
from app.core.config import Settings
from app.core.db import session_scope
from app.datasets.service import load_arrays
from app.datasets.splits import split_indices
from app.registry.service import get_version
from app.storage import get_store
from app.tables import Dataset
from modelkiln import loop_commands
from modelkiln.loop_answers import LogDataset
from tests.conftest import register
from tests.helpers import csv_bytes
from tests.serving.test_request_log import from_log, labelled, log_requests, logging_app

NAMES = ["px0", "px1", "px2", "px3"]


@pytest.fixture
def logged(settings: Settings, classifier_onnx: Path) -> Iterator[TestClient]:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    with TestClient(logging_app(settings), raise_server_exceptions=False) as client:
        yield client


def learnt_from_a_table(client: TestClient, admin: dict[str, str], settings: Settings) -> None:
    """Version 1 of 'flowers' becomes one a search made from a table of px0..px3."""
    rows = [[i, i * 2, i % 7, i % 3, "ab"[i % 2]] for i in range(30)]
    answer = client.post(
        "/v1/datasets",
        headers=admin,
        data={"target": "label"},
        files={"file": ("pixels.csv", csv_bytes([*NAMES, "label"], rows), "text/csv")},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["feature_names"] == NAMES  # a table of numbers: one tensor
    with session_scope(settings.database_url) as session:
        get_version(session, "flowers", 1).dataset_id = int(answer.json()["id"])


def test_a_tensor_models_log_keeps_its_tables_column_names(
    logged: TestClient, admin: dict[str, str], settings: Settings
) -> None:
    learnt_from_a_table(logged, admin, settings)
    ids = log_requests(logged, admin, [f"r{index}" for index in range(12)])
    body = from_log(logged, admin, labelled(ids))
    assert body["feature_names"] == NAMES
    assert [column["name"] for column in body["profile"]["columns"]] == NAMES


def test_an_upload_without_a_table_gets_input_names_and_repeats_are_counted(
    logged: TestClient, admin: dict[str, str], settings: Settings
) -> None:
    # Twelve requests of six distinct rows (the helper cycles them): six repeats.
    ids = log_requests(logged, admin, [f"r{index}" for index in range(12)])
    body = from_log(logged, admin, labelled(ids))
    assert body["feature_names"] == ["input_0", "input_1", "input_2", "input_3"]
    assert (body["joined"], body["duplicates"], body["profile"]["duplicate_rows"]) == (12, 6, 6)
    with session_scope(settings.database_url) as session:
        dataset = session.get(Dataset, body["id"])
        assert dataset is not None
        arrays = load_arrays(get_store(settings), dataset)
    for seed in range(20):  # no seed puts one of the six rows on two sides
        splits = split_indices(arrays.target, Task(body["task"]), seed, features=arrays.features)
        sides = [
            {tuple(arrays.features[row]) for row in part}
            for part in (splits.train, splits.validation, splits.test)
        ]
        assert sum(len(side) for side in sides) == 6 == len(set().union(*sides))


class Answered:
    """The client's side of from-log, holding the answer the real route gave."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer

    def dataset_from_log(self, *_: Any, **__: Any) -> LogDataset:
        return LogDataset.from_json(self.answer)


def test_the_cli_says_how_many_rows_repeat(
    logged: TestClient, admin: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    ids = log_requests(logged, admin, [f"r{index}" for index in range(12)])
    body = from_log(logged, admin, labelled(ids))
    args = argparse.Namespace(name="flowers", labels="labels.csv", target="label", newest=False)
    assert loop_commands.from_log(args, Answered(body)) == 0  # type: ignore[arg-type]
    assert capsys.readouterr().out == (
        f"dataset {body['id']}: 12 labelled rows from 'flowers''s request log (0 labels matched "
        "no logged request; 6 repeat an earlier row's inputs)\n"
    )
