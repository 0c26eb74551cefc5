"""The ``kiln`` command: loud settings errors, key creation, migrations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.auth import authenticate
from app.contracts.enums import Scope
from app.core.config import SettingsError, load_settings
from app.core.db import session_scope

KILN = str(Path(sys.executable).with_name("kiln"))


def run_kiln(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KILN, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("KILN_MAX_UPLOAD_MB", "lots", "KILN_MAX_UPLOAD_MB: Input should be a valid number"),
        (
            "KILN_JOB_MAX_ATTEMPTS",
            "0",
            "KILN_JOB_MAX_ATTEMPTS: Input should be greater than or equal to 1",
        ),
        (
            "KILN_ARTIFACT_URL",
            "ftp://host/x",
            "KILN_ARTIFACT_URL: expected file://PATH or s3://BUCKET",
        ),
        ("KILN_DEVICE", "tpu", "KILN_DEVICE: Input should be 'auto', 'cpu' or 'cuda'"),
        ("KILN_DATABASE_URL", "kiln.db", "KILN_DATABASE_URL: expected a SQLAlchemy URL"),
    ],
)
def test_bad_setting_stops_serve_naming_the_variable(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    result = run_kiln("serve", KILN_DATA_DIR=str(tmp_path), **{variable: value})
    assert result.returncode == 2
    assert message in result.stderr
    with pytest.raises(SettingsError, match=variable):
        os.environ[variable] = value
        try:
            load_settings()
        finally:
            del os.environ[variable]


@pytest.mark.parametrize("worker", [False, True])
def test_an_unreachable_object_store_stops_serve_and_worker(tmp_path: Path, worker: bool) -> None:
    from tests.fixtures.servers import free_port

    env = {
        "KILN_DATA_DIR": str(tmp_path),
        "KILN_ARTIFACT_URL": "s3://kiln-down/a",
        "KILN_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "KILN_S3_ACCESS_KEY_ID": "id",
        "KILN_S3_SECRET_ACCESS_KEY": "never-shown-9d2f",
    }
    result = (
        run_kiln("worker", **env)
        if worker
        else run_kiln("serve", "--port", str(free_port()), "--grpc-port", "0", **env)
    )
    assert result.returncode == 2
    assert (
        "kiln: artifact store: the artifact store s3://kiln-down/a cannot be reached"
        in result.stderr
    )
    assert "never-shown-9d2f" not in result.stderr + result.stdout


def test_an_object_store_without_credentials_says_so(tmp_path: Path) -> None:
    from tests.fixtures.servers import free_port

    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(
        KILN_DATA_DIR=str(tmp_path),
        KILN_ARTIFACT_URL="s3://kiln-x/a",
        KILN_S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    result = subprocess.run([KILN, "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert (
        "has no credentials: set KILN_S3_ACCESS_KEY_ID and KILN_S3_SECRET_ACCESS_KEY"
        in result.stderr
    )


@pytest.mark.parametrize(
    ("taken", "message"),
    [
        (
            "http",
            "kiln serve: HTTP port {port} on 127.0.0.1 is in use; choose another with "
            "--port N or KILN_PORT=N",
        ),
        (
            "grpc",
            "kiln serve: gRPC inference port {port} on 127.0.0.1 is in use; choose another "
            "with --grpc-port N or KILN_GRPC_PORT=N (0: no gRPC)",
        ),
    ],
)
def test_a_taken_port_is_one_line_naming_the_flag(tmp_path: Path, taken: str, message: str) -> None:
    import socket

    from tests.fixtures.servers import free_port

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        http, grpc = (port, free_port()) if taken == "http" else (free_port(), port)
        result = run_kiln(
            "serve",
            "--port",
            str(http),
            KILN_DATA_DIR=str(tmp_path / "data"),
            KILN_GRPC_PORT=str(grpc),
        )
    assert result.returncode == 1
    assert result.stderr.strip() == message.format(port=port)
    assert not (tmp_path / "data").exists()  # nothing started, nothing migrated


def test_kiln_port_sets_the_http_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_kiln(
            "serve", KILN_DATA_DIR=str(tmp_path), KILN_PORT=str(port), KILN_GRPC_PORT="0"
        )
    assert result.returncode == 1 and f"HTTP port {port} " in result.stderr


def test_defaults_live_in_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'kiln.db'}"
    assert settings.broker_url == f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    assert settings.admin_key_path == tmp_path / "admin.key"


def test_keys_create_prints_a_working_key_once(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'kiln.db'}"
    result = run_kiln(
        "keys",
        "create",
        "--name",
        "ci",
        "--scope",
        "infer",
        KILN_DATA_DIR=str(tmp_path),
        KILN_DATABASE_URL=database,
    )
    assert result.returncode == 0, result.stderr
    secret = result.stdout.strip()
    assert secret.startswith("kiln_")
    with session_scope(database) as session:
        principal = authenticate(session, secret)
    assert (principal.name, principal.scope) == ("ci", Scope.INFER)
    refused = run_kiln(
        "keys",
        "create",
        "--name",
        "x",
        "--scope",
        "root",
        KILN_DATA_DIR=str(tmp_path),
        KILN_DATABASE_URL=database,
    )
    assert refused.returncode == 2 and "invalid choice: 'root'" in refused.stderr


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    for _ in range(2):
        result = run_kiln("migrate", KILN_DATA_DIR=str(tmp_path))
        assert result.returncode == 0, result.stderr
        assert "database at head" in result.stdout


def test_files_kiln_creates_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    result = run_kiln("migrate", KILN_DATA_DIR=str(data))
    assert result.returncode == 0, result.stderr
    assert data.stat().st_mode & 0o777 == 0o700
    created = [path for path in data.rglob("*") if path.is_file()]
    assert any(path.name == "kiln.db" for path in created)
    assert all(path.stat().st_mode & 0o077 == 0 for path in created), created


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_study_url_naming_the_registry_stops_serve_and_worker(
    tmp_path: Path, command: str
) -> None:
    """Optuna's tables (trials, alembic_version) collide with the registry's: one line
    naming KILN_STUDY_URL at start-up, not Optuna's traceback from the first search."""
    from tests.fixtures.servers import free_port

    data = tmp_path / "data"
    env = {
        "KILN_DATA_DIR": str(data),
        "KILN_STUDY_URL": f"sqlite:///{data / 'kiln.db'}",  # the default registry's file
        "KILN_DATABASE_URL": "",
    }
    args = ["--port", str(free_port()), "--grpc-port", "0", "--workers", "0"]
    result = run_kiln(command, *(args if command == "serve" else []), **env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"kiln: KILN_STUDY_URL: sqlite:///{data / 'kiln.db'} is the registry")
    assert "leave it unset" in line


def test_a_study_url_reaching_the_registrys_tables_by_another_name_stops_the_worker(
    tmp_path: Path,
) -> None:
    """Another path to the same file (a hard link) is seen by the registry's tables."""
    data = tmp_path / "data"
    migrated = run_kiln("migrate", KILN_DATA_DIR=str(data), KILN_DATABASE_URL="")
    assert migrated.returncode == 0, migrated.stderr
    os.link(data / "kiln.db", tmp_path / "alias.db")
    result = run_kiln(
        "worker",
        KILN_DATA_DIR=str(data),
        KILN_DATABASE_URL="",
        KILN_STUDY_URL=f"sqlite:///{tmp_path / 'alias.db'}",
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"kiln: KILN_STUDY_URL: sqlite:///{tmp_path / 'alias.db'} holds the registry's "
        "tables (api_keys, datasets, jobs), where Optuna's would collide with them; leave "
        "it unset (studies then go to the registry database's schema optuna, or to "
        "DATA_DIR/studies.db) or name another database"
    )


CLOSED_BROKER = "redis://:never-shown@127.0.0.1:1/0"  # nothing listens on port 1
BROKER_LINE = (
    "kiln worker: the broker at redis://:***@127.0.0.1:1/0 (KILN_BROKER_URL) does not answer: "
)


def test_a_worker_whose_broker_does_not_answer_exits_naming_it(tmp_path: Path) -> None:
    """After its start-up window (KILN_BROKER_STARTUP_S), not retrying forever in silence."""
    result = run_kiln(
        "worker",
        KILN_DATA_DIR=str(tmp_path),
        KILN_BROKER_URL=CLOSED_BROKER,
        KILN_BROKER_STARTUP_S="2",
    )
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(BROKER_LINE), result.stderr
    assert last.endswith(
        ", for 2 s (KILN_BROKER_STARTUP_S); check the URL and that the broker runs"
    )
    assert "never-shown" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_serve_on_a_broker_that_does_not_answer_is_not_ready_and_its_workers_say_why(
    tmp_path: Path,
) -> None:
    """The gateway runs (its readiness is 503 naming the broker) and the worker it starts
    exits naming KILN_BROKER_URL after its window, and is started again."""
    import signal
    import time

    import httpx

    from tests.fixtures.servers import free_port

    port = free_port()
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "KILN_DATA_DIR": str(tmp_path / "data"),
        "KILN_BROKER_URL": CLOSED_BROKER,
        "KILN_BROKER_STARTUP_S": "1",
    }
    with log.open("wb") as out:
        serve = subprocess.Popen(
            [KILN, "serve", "--port", str(port), "--grpc-port", "0", "--workers", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        ready = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5)
            except httpx.TransportError:
                ready = None
            text = log.read_text(errors="replace")
            if ready is not None and BROKER_LINE in text and "restarting in 2 s" in text:
                break
            time.sleep(0.5)
        text = log.read_text(errors="replace")
        assert ready is not None and ready.status_code == 503, text
        assert "(KILN_BROKER_URL) does not answer" in ready.json()["error"]
        assert BROKER_LINE in text and "worker exited with code 1; restarting in 2 s" in text
        assert "never-shown" not in text + ready.text
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
