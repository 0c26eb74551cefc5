"""KILN_STUDY_URL must not name the registry's database: Optuna's tables (``trials``,
``alembic_version``) collide with the registry's, and Optuna fails on them with a
traceback. Refused by the URL (however it is spelt) or, for another name of the same
database, by the registry's tables in it; ``kiln serve`` and ``kiln worker`` say so in one
line at start-up (tests/test_cli.py), and a search opening the storage says the same."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import make_url

from app.core.config import load_settings
from app.core.db import get_engine
from app.core.study_storage import StudyStorageClash, check_apart, open_storage

REGISTRY = "postgresql+psycopg://kiln:pw-9d2f@db.invalid:5432/kiln"


@pytest.mark.parametrize(
    "study",
    [
        REGISTRY,
        "postgresql://kiln:pw-7c1e@DB.invalid/kiln",  # another driver, the default port
        "postgresql+psycopg://optuna@db.invalid:5432/kiln?options=-csearch_path%3Dpublic",
    ],
)
def test_the_registrys_database_by_its_url_is_refused(tmp_path: Path, study: str) -> None:
    settings = load_settings(data_dir=tmp_path, database_url=REGISTRY, study_url=study)
    with pytest.raises(StudyStorageClash) as refused:
        check_apart(settings)
    message = str(refused.value)
    assert message.startswith("KILN_STUDY_URL: ") and "\n" not in message
    assert "is the registry's database (KILN_DATABASE_URL)" in message
    assert "pw-" not in message  # passwords are not shown


CLOSED = "postgresql+psycopg://kiln@127.0.0.1:1/kiln"  # nothing listens on port 1


@pytest.mark.parametrize(
    "study",
    [
        "postgresql+psycopg://kiln@127.0.0.1:1/kiln?options=-csearch_path%3Doptuna",
        "postgresql+psycopg://kiln@127.0.0.1:1/studies",
        "postgresql+psycopg://kiln@127.0.0.1:2/kiln",
    ],
)
def test_another_database_or_schema_is_apart(tmp_path: Path, study: str) -> None:
    settings = load_settings(data_dir=tmp_path, database_url=CLOSED, study_url=study)
    check_apart(settings)  # not the registry by its URL, and nothing answers to say more


def test_the_same_sqlite_file_by_another_path_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = f"sqlite:///{tmp_path / 'kiln.db'}"
    monkeypatch.chdir(tmp_path)
    settings = load_settings(
        data_dir=tmp_path, database_url=registry, study_url="sqlite:///./sub/../kiln.db"
    )
    with pytest.raises(StudyStorageClash, match="is the registry's database"):
        check_apart(settings)
    check_apart(load_settings(data_dir=tmp_path, database_url=registry))  # unset: apart


def another_name_of(database_url: str, tmp_path: Path) -> str:
    """The same registry database under a name its URL does not give away."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        assert url.database
        with get_engine(database_url).connect() as connection:  # the tables into the file
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        os.link(url.database, tmp_path / "alias.db")
        return f"sqlite:///{tmp_path / 'alias.db'}"
    host = "localhost" if url.host in ("127.0.0.1", None) else "127.0.0.1"
    return url.set(host=host).render_as_string(hide_password=False)


def test_the_registrys_database_by_another_name_is_refused_by_its_tables(
    tmp_path: Path, database_url: str
) -> None:
    """``localhost`` for ``127.0.0.1``, a hard link to the file: the URL cannot tell, the
    registry's tables in it do, and a search opening the storage is told the same."""
    settings = load_settings(
        data_dir=tmp_path,
        database_url=database_url,
        study_url=another_name_of(database_url, tmp_path),
    )
    with pytest.raises(StudyStorageClash) as refused:
        check_apart(settings)
    assert "holds the registry's tables (api_keys, datasets, jobs)" in str(refused.value)
    with pytest.raises(StudyStorageClash):
        open_storage(settings)


def test_a_study_storage_of_its_own_opens(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'kiln.db'}",
        study_url=f"sqlite:///{tmp_path / 'studies-elsewhere.db'}",
    )
    check_apart(settings)
    open_storage(settings)
