"""Where Optuna keeps the studies that worker processes share.

Optuna's tables (``trials``, ``alembic_version``, ...) would collide with the registry's, so
they live apart: on PostgreSQL in the registry database's ``optuna`` schema, on the
embedded default in ``DATA_DIR/studies.db`` (WAL journal and a long busy timeout, so that
several worker processes can write to it at once). ``KILN_STUDY_URL`` overrides both."""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable

import optuna
import sqlalchemy as sa
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial

from app.core.config import Settings

SCHEMA = "optuna"

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
