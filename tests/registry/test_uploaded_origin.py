"""Which versions serve a graph that came from an upload (and so run under the upload
guard): the upload itself and graph rewrites of it, never a graph exported from a torch
network, whatever its lineage."""

from __future__ import annotations

from app.contracts.networks import MLPConfig
from app.contracts.signature import Signature, VersionConfig
from app.core.config import Settings
from app.core.db import session_scope
from app.registry.service import VersionDraft, register_version, uploaded_origin
from app.storage import StoredArtifact
from app.tables import ModelVersion

SIGNATURE = Signature.of_tensors(input_name="input", row_shape=(4,), output_name="output", width=1)
ARTIFACT = StoredArtifact(key="test/m.onnx", sha256="0" * 64, size_bytes=1)
EXPORTED = VersionConfig(architecture=MLPConfig(n_inputs=4, n_outputs=1, hidden=(8,)))


def add(settings: Settings, source: str, parent: int | None = None, **config: object) -> int:
    with session_scope(settings.database_url) as session:
        draft = VersionDraft(
            task="regression",
            source=source,
            artifact=ARTIFACT,
            signature=SIGNATURE,
            config=VersionConfig.model_validate(config) if config else None,
            parent_version_id=parent,
        )
        return register_version(session, "lineage", draft).id


def origin(settings: Settings, version_id: int) -> int | None:
    with session_scope(settings.database_url) as session:
        version = session.get(ModelVersion, version_id)
        assert version is not None
        found = uploaded_origin(session, version)
        return None if found is None else found.id


def test_uploads_and_their_graph_rewrites_are_guarded(settings: Settings) -> None:
    uploaded = add(settings, "upload")
    quantized = add(settings, "compression", uploaded, compression={"method": "int8"})
    quantized_twice = add(settings, "compression", quantized)
    assert origin(settings, uploaded) == uploaded
    assert origin(settings, quantized) == uploaded
    assert origin(settings, quantized_twice) == uploaded


def test_graphs_exported_from_a_torch_network_are_not(settings: Settings) -> None:
    uploaded = add(settings, "upload")
    distilled = add(settings, "compression", uploaded, **EXPORTED.model_dump(mode="json"))
    quantized_student = add(settings, "compression", distilled)
    searched = add(settings, "search")
    assert origin(settings, distilled) is None
    assert origin(settings, quantized_student) is None
    assert origin(settings, searched) is None
