"""The ``kiln`` command: loud settings errors, key creation, migrations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.auth import authenticate
from app.config import SettingsError, load_settings
from app.db import session_scope
from app.tables import Scope

KILN = str(Path(sys.executable).with_name("kiln"))


def run_kiln(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KILN, *args], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("KILN_MAX_UPLOAD_MB", "lots", "KILN_MAX_UPLOAD_MB: Input should be a valid number"),
    ("KILN_JOB_MAX_ATTEMPTS", "0", "KILN_JOB_MAX_ATTEMPTS: Input should be greater than or "
                                   "equal to 1"),
    ("KILN_ARTIFACT_URL", "s3://bucket", "KILN_ARTIFACT_URL: only file:// artifact stores"),
    ("KILN_DATABASE_URL", "kiln.db", "KILN_DATABASE_URL: expected a SQLAlchemy URL"),
])
def test_bad_setting_stops_serve_naming_the_variable(tmp_path: Path, variable: str, value: str,
                                                     message: str) -> None:
    result = run_kiln("serve", "--port", "1", KILN_DATA_DIR=str(tmp_path), **{variable: value})
    assert result.returncode == 2
    assert message in result.stderr
    with pytest.raises(SettingsError, match=variable):
        os.environ[variable] = value
        try:
            load_settings()
        finally:
            del os.environ[variable]


def test_defaults_live_in_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'kiln.db'}"
    assert settings.broker_url == f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    assert settings.admin_key_path == tmp_path / "admin.key"


def test_keys_create_prints_a_working_key_once(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'kiln.db'}"
    result = run_kiln("keys", "create", "--name", "ci", "--scope", "infer",
                      KILN_DATA_DIR=str(tmp_path), KILN_DATABASE_URL=database)
    assert result.returncode == 0, result.stderr
    secret = result.stdout.strip()
    assert secret.startswith("kiln_")
    with session_scope(database) as session:
        principal = authenticate(session, secret)
    assert (principal.name, principal.scope) == ("ci", Scope.INFER)
    refused = run_kiln("keys", "create", "--name", "x", "--scope", "root",
                       KILN_DATA_DIR=str(tmp_path), KILN_DATABASE_URL=database)
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
