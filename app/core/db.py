"""Engine, sessions and the declarative base with a fixed constraint naming convention."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    CursorResult,
    DateTime,
    Engine,
    Executable,
    MetaData,
    Table,
    create_engine,
    event,
    make_url,
    text,
)
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.orm import DeclarativeBase, ORMExecuteState, UOWTransaction, sessionmaker

# The unit of work the layers above pass around; they name it from here and leave the
# queries to the repositories (a contract lets only the repositories, this module, the
# tables and the study storage import SQLAlchemy).
from sqlalchemy.orm import Session as Session
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator

logger = logging.getLogger(__name__)
_AFTER_COMMIT = "kiln_after_commit"

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base of every table; the metadata Alembic compares against."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class PydanticJSON(TypeDecorator[Any]):
    """A JSON column read back as a pydantic model (and written from one, or from a dict
    it validates)."""

    impl = JSON
    cache_ok = True

    def __init__(self, model: type[BaseModel]) -> None:
        super().__init__()
        self.model = model

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        return self.model.model_validate(value).model_dump(mode="json", exclude_none=True)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return None if value is None else self.model.model_validate(value)


# The registry database cannot answer (down, restarting, locked past its timeout): what
# was asked may be asked again once it is back.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
# The database refused a value it cannot store (out of range for its column type): the
# client's to fix.
VALUE_UNSTORABLE = (DataError,)


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error``, or an error that caused it (a library may wrap the database's,
    as Optuna's storage does), is the database not answering."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, DATABASE_UNAVAILABLE):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def ping(url: str) -> None:
    """Ask the database at ``url`` for one row; raises when it does not answer."""
    with get_engine(url).connect() as connection:
        connection.execute(text("SELECT 1"))


def ping_once(url: str, timeout_s: float) -> None:
    """Ask the database at ``url`` for one row on a connection of its own (no pool stays
    behind), waiting about ``timeout_s`` to connect; raises when it does not answer. For a
    database that is not the registry's (kombu's SQLAlchemy transport behind the broker)."""
    backend = make_url(url).get_backend_name()
    connect_args = {
        "sqlite": {"timeout": timeout_s},
        "postgresql": {"connect_timeout": max(1, round(timeout_s))},
    }
    engine = create_engine(url, poolclass=NullPool, connect_args=connect_args.get(backend, {}))
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    finally:
        engine.dispose()


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside one writer; busy_timeout makes writers queue instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _ensure_sqlite_dir(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def get_engine(url: str) -> Engine:
    """One engine per URL per process (thread-safe, pooled)."""
    engine = _engines.get(url)
    if engine is not None:
        return engine
    with _engines_lock:
        if url not in _engines:
            if url.startswith("sqlite"):
                _ensure_sqlite_dir(url)
                engine = create_engine(
                    url, connect_args={"check_same_thread": False, "timeout": 30}
                )
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
            _engines[url] = engine
        return _engines[url]


@functools.lru_cache(maxsize=8)
def get_sessionmaker(url: str) -> sessionmaker[Session]:
    """A session factory bound to the engine for ``url``."""
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


def rows_changed(session: Session, statement: Executable) -> int:
    """Run an UPDATE or DELETE; how many rows it changed. The conditional updates behind
    claims, leases and slots read this to learn whether they won."""
    result = cast(CursorResult[Any], session.execute(statement))
    return int(result.rowcount or 0)


def defer_until_commit(session: Session, action: Callable[[], None]) -> None:
    """Run ``action`` once the transaction owning ``session`` has committed (e.g. enqueue)."""
    session.info.setdefault(_AFTER_COMMIT, []).append(action)


def run_deferred(session: Session) -> None:
    """Run the actions deferred on ``session``; called by transaction owners after commit."""
    actions: list[Callable[[], None]] = session.info.pop(_AFTER_COMMIT, [])
    for action in actions:
        try:
            action()
        except Exception:  # the transaction stands; callers must tolerate a lost side effect
            logger.exception("post-commit action failed")


def discard_deferred(session: Session) -> None:
    """Drop deferred actions of a rolled-back transaction."""
    session.info.pop(_AFTER_COMMIT, None)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """The one transaction owner outside requests: commit on success, roll back on error."""
    session = get_sessionmaker(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        discard_deferred(session)
        raise
    finally:
        session.close()
    run_deferred(session)


class WriteWatch:
    """Calls ``publish`` once after each committed transaction that wrote rows of the
    ``watched`` tables: a flush that added, changed or deleted one, or an UPDATE or DELETE
    statement on one of their tables (or a session ``mark``-ed by hand). A rolled-back
    transaction publishes nothing; a savepoint is not a commit (what the outer transaction
    may still roll back is not published), and a savepoint rolled back keeps the outer
    transaction's mark. Listens on every session of the process from construction on."""

    def __init__(
        self, flag: str, watched: tuple[type[Base], ...], publish: Callable[[], None]
    ) -> None:
        self._flag = flag  # the session.info key that marks a session
        self._watched = watched
        self._tables = frozenset(row.__tablename__ for row in watched)
        self._publish = publish
        event.listen(Session, "after_flush", self._after_flush)
        event.listen(Session, "do_orm_execute", self._on_statement)
        event.listen(Session, "after_commit", self._after_commit)
        event.listen(Session, "after_rollback", self._after_rollback)

    def mark(self, session: Session) -> None:
        """Publish after this session's commit even if no watched row was flushed."""
        session.info[self._flag] = True

    def _after_flush(self, session: Session, _context: UOWTransaction) -> None:
        touched = (session.new, session.dirty, session.deleted)
        if any(isinstance(row, self._watched) for group in touched for row in group):
            self.mark(session)

    def _on_statement(self, state: ORMExecuteState) -> None:
        if not (state.is_update or state.is_delete):
            return
        table = getattr(state.statement, "table", None)
        if isinstance(table, Table) and table.name in self._tables:
            self.mark(state.session)

    def _after_commit(self, session: Session) -> None:
        if session.in_nested_transaction():
            return  # a savepoint released: nothing is committed until the outer transaction is
        if session.info.pop(self._flag, False):
            self._publish()

    def _after_rollback(self, session: Session) -> None:
        if session.in_nested_transaction():
            return  # a savepoint rolled back: what the outer transaction wrote still stands
        session.info.pop(self._flag, None)


def dispose_engines() -> None:
    """Close every pooled connection (after fork, at shutdown, between tests)."""
    for engine in list(_engines.values()):
        engine.dispose()
