"""The shared repository queries (add, remove, get, get-or-404, read again, a page) on a
real database."""

from __future__ import annotations

import pytest

from app.core.config import Settings
from app.core.db import session_scope
from app.core.errors import NotFound
from app.registry.repository import ModelRepository
from app.tables import Model


def test_add_get_page_and_not_found(settings: Settings) -> None:
    with session_scope(settings.database_url) as session:
        repo = ModelRepository(session)
        for name in ("zeta", "alpha", "mid"):
            repo.add(Model(name=name, task="regression", latest_version=0, tags={}))
        first = repo.get_by_name("alpha")
        assert first is not None and repo.get_or_raise(first.id) is first
        rows, total = repo.by_name(limit=2, offset=0)
        assert [row.name for row in rows] == ["alpha", "mid"] and total == 3
        rows, _ = repo.page(limit=5, offset=1, order_by=Model.name, where=[Model.name != "mid"])
        assert [row.name for row in rows] == ["zeta"]
        with pytest.raises(NotFound, match="model 999999 not found"):
            repo.get_or_raise(999_999)


def test_remove_and_read_again(settings: Settings) -> None:
    with session_scope(settings.database_url) as session:
        repo = ModelRepository(session)
        kept = repo.add(Model(name="kept", task="regression", latest_version=0, tags={}))
        gone = repo.add(Model(name="gone", task="regression", latest_version=0, tags={}))
        repo.remove(gone)
        assert repo.get_by_name("gone") is None
        number = repo.next_version(kept.id)  # a statement: the copy held is not updated
        assert kept.latest_version == 0 and repo.refresh(kept).latest_version == number == 1
