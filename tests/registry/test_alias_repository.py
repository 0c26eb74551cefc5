"""An alias is written in a savepoint: a writer that read the alias as missing while
another created it loses (``point`` answers False, its savepoint undone) and its own
transaction goes on; a first version takes ``production`` unless a registration beside it
took it first."""

from __future__ import annotations

from app.contracts.signature import Signature
from app.core.config import Settings
from app.core.db import session_scope, utcnow
from app.registry import traffic
from app.registry.repository import AliasRepository, ModelRepository, VersionRepository
from app.registry.service import PRODUCTION_ALIAS, VersionDraft, register_version
from app.storage import StoredArtifact

SIGNATURE = Signature.of_tensors(input_name="input", row_shape=(4,), output_name="output", width=1)
ARTIFACT = StoredArtifact(key="test/m.onnx", sha256="0" * 64, size_bytes=1)


def _register(settings: Settings, name: str = "racing") -> int:
    with session_scope(settings.database_url) as session:
        draft = VersionDraft(
            task="regression", source="upload", artifact=ARTIFACT, signature=SIGNATURE
        )
        return register_version(session, name, draft).version


def test_a_writer_that_read_the_alias_as_missing_loses_and_its_transaction_goes_on(
    settings: Settings,
) -> None:
    _register(settings)
    _register(settings)
    with session_scope(settings.database_url) as session:
        model = ModelRepository(session).get_by_name("racing")
        assert model is not None
        second = VersionRepository(session).get(model.id, 2)
        assert second is not None
        aliases = AliasRepository(session)
        # production exists (the first version took it): creating it again is refused
        assert not aliases.point(
            model.id, PRODUCTION_ALIAS, None, version_id=second.id, now=utcnow()
        )
        assert aliases.point(model.id, "staging", None, version_id=second.id, now=utcnow())
    with session_scope(settings.database_url) as session:
        model = ModelRepository(session).get_by_name("racing")
        assert model is not None
        policy = traffic.alias_policy(session, model, PRODUCTION_ALIAS)
        staging = traffic.alias_policy(session, model, "staging")
        assert policy is not None and policy.version == 1
        assert staging is not None and staging.version == 2
        history = AliasRepository(session).history(model.id, PRODUCTION_ALIAS)
        assert [number for _, number in history] == [1]


def test_moving_an_alias_closes_its_history_entry_and_opens_one(settings: Settings) -> None:
    _register(settings, "moving")
    _register(settings, "moving")
    with session_scope(settings.database_url) as session:
        traffic.set_traffic(session, name="moving", alias=PRODUCTION_ALIAS, version=2)
    with session_scope(settings.database_url) as session:
        model = ModelRepository(session).get_by_name("moving")
        assert model is not None
        history = AliasRepository(session).history(model.id, PRODUCTION_ALIAS)
        assert [number for _, number in history] == [2, 1]
        assert history[0][0].removed_at is None and history[1][0].removed_at is not None
