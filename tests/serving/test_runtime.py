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


def test_an_uploaded_graph_is_batched_off_the_loop_within_its_row_cap(
    tmp_path: Path, classifier_onnx: Path
) -> None:
    """Merged batches of a guarded model never run on the event loop, and hold no more rows
    than one of its requests may."""
    from app.serving.batching import BatchPolicy, DynamicBatcher
    from app.serving.runtime import UploadLimits

    store = LocalArtifactStore(tmp_path)
    stored = store.put_file("v1.onnx", classifier_onnx)
    guard = UploadLimits(run_timeout_s=5, request_memory_mb=16).guard(4 * 1024 * 1024)
    model = SessionCache(store, threads=1, capacity=2).get(
        version_id=1,
        artifact_key=stored.key,
        sha256=stored.sha256,
        signature=SIGNATURE,
        task="classification",
        labels=[0, 1, 2],
        guard=guard,
    )
    assert model.max_rows(10_000) == 4 and "at most 4 rows" in model.rows_note(10_000)
    batcher = DynamicBatcher(model, BatchPolicy(max_batch_size=32, max_queue_delay_ms=1.0))
    assert batcher.batch_rows == 4 and batcher.inline_elements < 0
