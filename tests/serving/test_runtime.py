"""The session cache: bounded by count and by bytes, least recently used out first."""

from __future__ import annotations

from pathlib import Path

from app.contracts.signature import Signature
from app.serving.runtime import SessionCache
from app.storage import LocalArtifactStore

SIGNATURE = Signature.of_tensors(input_name="input", row_shape=(4,), output_name="output", width=3)


def load(cache: SessionCache, store: LocalArtifactStore, version_id: int, onnx: Path) -> None:
    stored = store.put_file(f"v{version_id}.onnx", onnx)
    cache.get(
        version_id=version_id,
        artifact_key=stored.key,
        sha256=stored.sha256,
        signature=SIGNATURE,
        task="classification",
        labels=[0, 1, 2],
    )


def test_byte_bound_evicts_least_recently_used(tmp_path: Path, classifier_onnx: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    size = classifier_onnx.stat().st_size
    cache = SessionCache(store, threads=1, capacity=10, max_bytes=int(size * 2.5))
    for version_id in (1, 2):
        load(cache, store, version_id, classifier_onnx)
    load(cache, store, 1, classifier_onnx)  # touch 1: now 2 is least recently used
    load(cache, store, 3, classifier_onnx)
    assert [model.version_id for model in cache.loaded()] == [1, 3]


def test_count_bound(tmp_path: Path, classifier_onnx: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    cache = SessionCache(store, threads=1, capacity=2)
    for version_id in (1, 2, 3):
        load(cache, store, version_id, classifier_onnx)
    assert [model.version_id for model in cache.loaded()] == [2, 3]
