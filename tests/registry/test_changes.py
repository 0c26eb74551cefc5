"""Committed writes that change what serves are published after their commit, whoever made
them: a flush that touched a model, version, alias or key, or an UPDATE/DELETE statement on
their tables; a rolled-back transaction, or a write to anything else, publishes nothing.
Through the gateway: a write made without any route (a service call in this process) shows
on the very next request."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import update

from app.core.config import Settings
from app.core.db import session_scope
from app.registry import aliases, changes
from app.tables import Model, RequestLogPart
from tests.conftest import register

ROW = {"inputs": [[6.0, 6.0, 6.0, 6.0]]}


class Told:
    def __init__(self) -> None:
        self.times = 0

    def __call__(self) -> None:
        self.times += 1


def test_a_committed_write_is_published_once_and_a_rollback_never(
    settings: Settings, classifier_onnx: Path
) -> None:
    told = Told()
    changes.subscribe(told)
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    assert told.times == 1  # the model (in a savepoint), the version: one commit, one notice
    try:
        with session_scope(settings.database_url) as session:
            aliases.set_alias(session, name="flowers", alias="production", version=1)
            raise RuntimeError("the transaction fails")
    except RuntimeError:
        pass
    assert told.times == 1
    with session_scope(settings.database_url) as session:
        session.execute(update(Model).where(Model.name == "flowers").values(serving={}))
    assert told.times == 2  # a bulk statement on a watched table
    with session_scope(settings.database_url) as session:
        session.execute(update(RequestLogPart).values(rows=0))
    assert told.times == 2  # not what serves


def test_a_write_made_without_any_route_shows_on_the_next_request(
    client: TestClient, admin: dict[str, str], settings: Settings, classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    register(settings, classifier_onnx, labels=["x", "y", "z"])
    with session_scope(settings.database_url) as session:
        aliases.set_alias(session, name="flowers", alias="production", version=1)
    first = client.post("/v1/models/flowers/predict", headers=admin, json=ROW)
    assert first.json()["predictions"] == ["c"]
    with session_scope(settings.database_url) as session:  # no route, no invalidate call
        aliases.set_alias(session, name="flowers", alias="production", version=2)
    second = client.post("/v1/models/flowers/predict", headers=admin, json=ROW)
    assert second.json()["predictions"] == ["z"] and second.headers["x-kiln-version"] == "2"


def test_a_savepoint_publishes_nothing_until_the_outer_commit(
    settings: Settings, classifier_onnx: Path
) -> None:
    """A released savepoint is not a commit (a reader could cache what the outer transaction
    may still roll back), and a savepoint rolled back keeps the outer writes' notice."""
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    told = Told()
    changes.subscribe(told)
    with session_scope(settings.database_url) as session:
        aliases.set_alias(session, name="flowers", alias="staging", version=1)
        session.flush()
        savepoint = session.begin_nested()
        session.execute(update(RequestLogPart).values(rows=0))
        savepoint.rollback()
        assert told.times == 0
    assert told.times == 1
