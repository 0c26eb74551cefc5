"""Shared fixtures: a real registry database (SQLite, or PostgreSQL when
KILN_TEST_DATABASE_URL is set), built with ``alembic upgrade head``; settings in a temp dir;
an app and client; API keys of every scope."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, delete, make_url, text

from app.auth import create_key
from app.contracts.enums import Scope
from app.contracts.signature import Signature, VersionConfig
from app.core.config import Settings, load_settings
from app.core.db import dispose_engines, session_scope
from app.core.migrate import upgrade_to_head
from app.main import create_app
from app.registry.service import VersionDraft, register_version
from app.storage import get_store
from app.tables import (
    Alias,
    AliasHistory,
    ApiKey,
    Dataset,
    DriftProgressRow,
    DriftWindow,
    IdempotentRequest,
    Job,
    Model,
    ModelEventRow,
    ModelVersion,
    RequestLogPart,
    ShadowComparison,
    Trial,
)

pytest_plugins = ["tests.fixtures.servers"]  # kiln_server, module_kiln_server

PG_URL = os.environ.get("KILN_TEST_DATABASE_URL", "")
BROKER_URL = os.environ.get("KILN_TEST_BROKER_URL", "")
SERVER_FIXTURES = frozenset({"kiln_server", "module_kiln_server"})


def _is_e2e(item: pytest.Item) -> bool:
    module = getattr(item, "module", None)
    return (module is not None and "KilnServer" in vars(module)) or bool(
        SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``e2e`` every test that starts real servers (its module uses KilnServer, or it
    uses the kiln_server fixtures), and ``backends`` every test that touches the registry
    database or the broker: one that uses the ``database_url`` fixture (directly or through
    settings, app, client), or an e2e test whose module declares ``pytestmark =
    pytest.mark.backends`` (its subject is the queue, leases, the shared study or the
    database). The PostgreSQL + Redis pass of .ci/run runs ``-m backends``; the embedded
    pass runs everything.

    Tests run in two pytest-xdist workers, a file at a time (``-n 2 --dist loadfile
    --no-loadscope-reorder`` in pyproject's addopts), so a module's servers start once.
    xdist hands out files in the order they are collected, so the slow files go first:
    those with e2e or ``network`` tests (minutes each), then the rest (seconds each), which
    fill both workers' last minutes evenly. Each file keeps its tests' order."""
    slow_files: set[str] = set()
    for item in items:
        if _is_e2e(item):
            item.add_marker(pytest.mark.e2e)
        elif "database_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.backends)
        if item.get_closest_marker("e2e") or item.get_closest_marker("network"):
            slow_files.add(str(item.path))
    order = {path: index for index, path in enumerate(dict.fromkeys(str(i.path) for i in items))}
    items.sort(key=lambda item: (str(item.path) not in slow_files, order[str(item.path)]))


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated, empty registry database for this test session."""
    if not PG_URL:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'kiln.db'}"
        upgrade_to_head(url)
        yield url
        return
    name = f"kiln_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    upgrade_to_head(url)
    yield url
    dispose_engines()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def make_settings(data_dir: Path, database_url: str, **overrides: object) -> Settings:
    """Settings for a test: its own data dir and queue, the shared test database."""
    values: dict[str, object] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "queue_name": f"kiln-test-{uuid.uuid4().hex[:8]}",
    }
    if BROKER_URL:
        values["broker_url"] = BROKER_URL
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Iterator[Settings]:
    yield make_settings(tmp_path / "data", database_url)
    with session_scope(database_url) as session:
        for table in (
            ShadowComparison,
            RequestLogPart,
            DriftWindow,
            DriftProgressRow,
            ModelEventRow,
            AliasHistory,
            Alias,
            ModelVersion,
            Model,
            Trial,
            Job,
            Dataset,
            IdempotentRequest,
            ApiKey,
        ):
            session.execute(delete(table))


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings, run_reaper=False)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def keys(settings: Settings) -> dict[str, str]:
    """One API key secret per scope."""
    with session_scope(settings.database_url) as session:
        return {
            scope.value: create_key(session, name=f"test-{scope.value}", scope=scope).secret
            for scope in Scope
        }


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def admin(keys: dict[str, str]) -> dict[str, str]:
    """Authorization headers of an admin key."""
    return bearer(keys["admin"])


@pytest.fixture(scope="session")
def classifier_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small trained 4-feature, 3-class classifier exported by the real export code."""
    from app.contracts.networks import MLPConfig
    from app.training.export import export_onnx
    from app.training.models import Network
    from app.training.train import TrainConfig, TrainData, train

    rng = np.random.default_rng(0)
    y = np.arange(150) % 3
    x = (rng.normal(size=(150, 4)) + y[:, None] * 3.0).astype(np.float32)
    network = Network(MLPConfig(4, 3, (16,)), classification=True)
    train(
        network,
        TrainData(x[:120], y[:120], x[120:], y[120:]),
        TrainConfig(epochs=20, learning_rate=0.02),
    )
    path = tmp_path_factory.mktemp("onnx") / "classifier.onnx"
    export_onnx(network, path)
    return path


BOUNDED = VersionConfig(
    graph_class="bounded", graph_class_reason="dense layers (a test graph)", rows_independent=True
)


def register(
    settings: Settings,
    onnx: Path,
    *,
    name: str = "flowers",
    labels: list | None = None,
    task: str = "classification",
    source: str = "upload",
    config: VersionConfig | None = None,
    dataset_id: int | None = None,
) -> int:
    """Store ``onnx`` and register it as the next version of ``name`` (as ``source``
    registers it: upload, search or compression). An upload is registered as the upload
    route classifies a graph of dense layers: bounded (it runs in the gateway), each row
    answered from that row alone (requests may share a run)."""
    store = get_store(settings)
    with session_scope(settings.database_url) as session:
        artifact = store.put_file(f"test/{name}/{onnx.stat().st_mtime_ns}.onnx", onnx)
        outputs = 3 if task == "classification" else 1
        version = register_version(
            session,
            name,
            VersionDraft(
                task=task,
                source=source,
                artifact=artifact,
                class_labels=labels,
                signature=Signature.model_validate(
                    {
                        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
                        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, outputs]}],
                    }
                ),
                config=config or (BOUNDED if source == "upload" else None),
                dataset_id=dataset_id,
            ),
        )
        return version.version


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3-compatible server (moto's, standalone) on a loopback port, for the session."""
    from tests.s3_server import s3_server

    with s3_server(tmp_path_factory.mktemp("s3")) as endpoint:
        yield endpoint
