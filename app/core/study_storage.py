"""Where Optuna keeps the studies that worker processes share.

Optuna's tables (``trials``, ``alembic_version``, ...) would collide with the registry's, so
they live apart: on PostgreSQL in the registry database's ``optuna`` schema, on the
embedded default in ``DATA_DIR/studies.db`` (WAL journal and a long busy timeout, so that
several worker processes can write to it at once). ``KILN_STUDY_URL`` overrides both."""

from __future__ import annotations

import functools
import re
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
import sqlalchemy as sa
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial

from app.core.config import Settings

SCHEMA = "optuna"
# Tables only the registry has: a study storage that holds them is the registry itself.
REGISTRY_TABLES = frozenset({"datasets", "jobs", "api_keys"})


class StudyStorageClash(Exception):
    """``KILN_STUDY_URL`` names the registry's database; the message says so, one line."""


# The search drives trials with ask/tell and records heartbeats itself (app.search.trials).
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
# Trial heartbeats are an experimental argument of RDBStorage since Optuna 2.9; stable for us.
warnings.filterwarnings(
    "ignore",
    category=optuna.exceptions.ExperimentalWarning,
    message=".*(heartbeat_interval|grace_period|heartbeat_stale)",
)
StaleCallback = Callable[[optuna.Study, FrozenTrial], None]


def study_url(settings: Settings) -> tuple[str, dict[str, object]]:
    """The SQLAlchemy URL of the study storage and the engine options it needs."""
    if settings.study_url:
        return settings.study_url, {}
    url = sa.make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        path = settings.data_dir / "studies.db"
        return f"sqlite:///{path}", {"connect_args": {"timeout": 60}}
    if url.get_backend_name() == "postgresql":
        return settings.database_url, {
            "connect_args": {"options": f"-csearch_path={SCHEMA}"},
            "pool_pre_ping": True,
        }
    return settings.database_url, {}


def check_apart(settings: Settings) -> None:
    """StudyStorageClash when ``KILN_STUDY_URL`` reaches the registry's database: by its
    URL (the same file, or host, port, database and search_path), or, when that database
    answers, by the registry's tables in it. Optuna's tables (``trials``,
    ``alembic_version``) would collide with the registry's, and Optuna fail on them."""
    if not settings.study_url:
        return
    shown = _shown(settings.study_url)
    if _place(settings.study_url) == _place(settings.database_url):
        raise StudyStorageClash(
            f"KILN_STUDY_URL: {shown} is the registry's database (KILN_DATABASE_URL), "
            f"where Optuna's tables collide with the registry's; {_INSTEAD}"
        )
    tables = _tables(settings.study_url)
    if tables >= REGISTRY_TABLES:
        raise StudyStorageClash(
            f"KILN_STUDY_URL: {shown} holds the registry's tables "
            f"({', '.join(sorted(REGISTRY_TABLES))}), where Optuna's would collide with "
            f"them; {_INSTEAD}"
        )


@functools.lru_cache(maxsize=4)
def _tables(url: str) -> frozenset[str]:
    """The tables the database at ``url`` shows in its default schema, read once per
    process (none when it does not answer: a search opening it reports why)."""
    try:
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            return frozenset(sa.inspect(engine).get_table_names())
        finally:
            engine.dispose()
    except (sa.exc.SQLAlchemyError, ImportError):
        return frozenset()


_INSTEAD = (
    "leave it unset (studies then go to the registry database's schema optuna, or to "
    "DATA_DIR/studies.db) or name another database"
)


def _shown(url: str) -> str:
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(not a URL)"


def _place(url: str) -> tuple[object, ...] | str:
    """What a URL names: a SQLite file, or host, port, database and schema."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        return url
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            return (backend, object())  # one connection's own: never the same as another
        return (backend, str(Path(parsed.database).expanduser().resolve()))
    options = parsed.query.get("options", "")
    path = re.search(
        r"search_path\s*=\s*([^\s,]+)", " ".join(options) if isinstance(options, tuple) else options
    )
    port = parsed.port or {"postgresql": 5432, "mysql": 3306}.get(backend)
    schema = path.group(1) if path else "public"  # PostgreSQL's, with no schema of the user's
    return (backend, (parsed.host or "").lower(), port, parsed.database, schema)


@functools.lru_cache(maxsize=4)
def _prepared(url: str) -> None:
    """Create the schema (PostgreSQL) or switch the file to WAL (SQLite), once per process."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
            elif engine.dialect.name == "sqlite":
                connection.execute(sa.text("PRAGMA journal_mode=WAL"))
    finally:
        engine.dispose()


def open_storage(settings: Settings, *, on_stale: StaleCallback | None = None) -> RDBStorage:
    """The shared study storage, with trial heartbeats: a trial whose worker stops
    heartbeating for ``3 x KILN_TRIAL_HEARTBEAT_S`` is failed (and ``on_stale`` decides
    whether it runs again)."""
    url, engine_kwargs = study_url(settings)
    check_apart(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _prepared(url if not settings.study_url else settings.study_url)
    heartbeat = max(1, round(settings.trial_heartbeat_s))
    for attempt in range(3):
        try:
            return RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat,
                grace_period=3 * heartbeat,
                heartbeat_stale_trial_callback=on_stale,
            )
        except sa.exc.DBAPIError:  # another process was creating the tables at this moment
            if attempt == 2:
                raise
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")
