"""The session cache: bounded by count and by bytes, least recently used out first; how
uploads are served (bounded in process with a row cap, anything else in a sandbox)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.contracts.signature import Signature, VersionConfig
from app.serving.batching import BatchPolicy, DynamicBatcher
from app.serving.runtime import ModelSource, SessionCache, UploadLimits
from app.serving.sandbox import SandboxLimits, SandboxPool
from app.storage import LocalArtifactStore

SIGNATURE = Signature.of_tensors(input_name="input", row_shape=(4,), output_name="output", width=3)


def load(cache: SessionCache, store: LocalArtifactStore, version_id: int, onnx: Path) -> None:
    stored = store.put_file(f"v{version_id}.onnx", onnx)
    cache.get(
        ModelSource(
            version_id=version_id,
            artifact_key=stored.key,
            sha256=stored.sha256,
            signature=SIGNATURE,
            task="classification",
            labels=[0, 1, 2],
        )
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


def bounded(**measured: float) -> VersionConfig:
    return VersionConfig(graph_class="bounded", graph_class_reason="static", **measured)


def test_a_bounded_upload_is_capped_by_its_measured_memory_and_time_per_row() -> None:
    limits = UploadLimits(run_timeout_s=5, request_memory_mb=16)
    by_memory = limits.plan(bounded(bytes_per_row=4 * 1024 * 1024))
    assert not by_memory.sandboxed and by_memory.cap is not None
    assert by_memory.cap.rows == 4 and "KILN_UPLOAD_REQUEST_MEMORY_MB" in by_memory.cap.why
    by_time = limits.plan(bounded(bytes_per_row=1024, seconds_per_row=0.01))
    assert by_time.cap is not None and by_time.cap.rows == 250  # half of 5 s at 10 ms a row
    assert "KILN_UPLOAD_RUN_TIMEOUT_S" in by_time.cap.why
    assert limits.plan(bounded()).cap is None  # too little to measure: the gateway's limit


def test_an_upload_that_is_not_bounded_runs_only_in_a_sandbox() -> None:
    limits = UploadLimits(run_timeout_s=5, request_memory_mb=16)
    plan = limits.plan(VersionConfig(graph_class="sandboxed", graph_class_reason="a Loop"))
    assert plan.sandboxed and plan.reason == "a Loop"
    legacy = limits.plan(VersionConfig(bytes_per_row=1024))  # uploaded before classes
    assert legacy.sandboxed and "before graphs were classified" in legacy.reason
    assert not limits.plan(None).sandboxed  # not an upload


def test_a_bounded_upload_is_batched_within_its_row_cap(
    tmp_path: Path, classifier_onnx: Path
) -> None:
    """Merged batches of a capped model hold no more rows than one of its requests may."""
    store = LocalArtifactStore(tmp_path)
    stored = store.put_file("v1.onnx", classifier_onnx)
    plan = UploadLimits(run_timeout_s=5, request_memory_mb=16).plan(
        bounded(bytes_per_row=4 * 1024 * 1024)
    )
    model = SessionCache(store, threads=1, capacity=2).get(
        ModelSource(
            version_id=1,
            artifact_key=stored.key,
            sha256=stored.sha256,
            signature=SIGNATURE,
            task="classification",
            labels=[0, 1, 2],
            plan=plan,
        )
    )
    assert model.max_rows(10_000) == 4 and "at most 4 rows" in model.rows_note(10_000)
    batcher = DynamicBatcher(model, BatchPolicy(max_batch_size=32, max_queue_delay_ms=1.0))
    assert batcher.batch_rows == 4


def test_a_sandboxed_model_has_no_session_in_this_process(
    tmp_path: Path, classifier_onnx: Path
) -> None:
    store = LocalArtifactStore(tmp_path)
    stored = store.put_file("v1.onnx", classifier_onnx)
    pool = SandboxPool(
        SandboxLimits(
            memory_mb=256,
            run_timeout_s=5,
            processes=1,
            queue=4,
            max_input_bytes=1 << 20,
            max_output_bytes=1 << 20,
        )
    )
    try:
        plan = UploadLimits(run_timeout_s=5, request_memory_mb=256).plan(
            VersionConfig(graph_class="sandboxed", graph_class_reason="a Loop")
        )
        model = SessionCache(store, threads=1, capacity=2, sandboxes=pool).get(
            ModelSource(
                version_id=1,
                artifact_key=stored.key,
                sha256=stored.sha256,
                signature=SIGNATURE,
                task="classification",
                labels=[0, 1, 2],
                plan=plan,
            )
        )
        assert model.session is None and model.sandboxed
        output = model.run({"input": np.full((2, 4), 6.0, dtype=np.float32)})
        assert output.shape == (2, 3)
    finally:
        pool.close()


def test_a_shadow_runs_on_fewer_threads_than_the_primary(
    tmp_path: Path, classifier_onnx: Path
) -> None:
    store = LocalArtifactStore(tmp_path)
    stored = store.put_file("v1.onnx", classifier_onnx)
    source = ModelSource(
        version_id=1,
        artifact_key=stored.key,
        sha256=stored.sha256,
        signature=SIGNATURE,
        task="classification",
        labels=[0, 1, 2],
    )
    cache = SessionCache(store, threads=2, capacity=2)
    primary, shadow = cache.get(source), cache.get_for_shadow(source)
    assert primary.session is not None and shadow.session is not None
    assert primary.session.get_session_options().intra_op_num_threads == 2
    assert shadow.session.get_session_options().intra_op_num_threads == 1
    assert cache.get_for_shadow(source) is shadow  # kept
    one = SessionCache(store, threads=1, capacity=2)
    assert one.get_for_shadow(source) is one.get(source)  # one thread already: shared


def test_an_upload_runs_without_the_arena_and_off_the_loop_when_slow(
    tmp_path: Path, classifier_onnx: Path
) -> None:
    """An upload never keeps a run's peak memory for the next (no arena), and one whose
    measured run is slow never runs on the event loop."""
    limits = UploadLimits(run_timeout_s=5, request_memory_mb=64)
    quick = limits.plan(bounded(seconds_per_row=1e-6), latency_ms=0.02)
    assert not quick.arena and quick.inline_rows is not None and quick.inline_rows >= 400
    slow = limits.plan(bounded(seconds_per_row=1e-6), latency_ms=585.0)
    assert slow.inline_rows == 0
    assert limits.plan(bounded(), latency_ms=None).inline_rows == 0  # never measured
    assert limits.plan(None).arena and limits.plan(None).inline_rows is None
    store = LocalArtifactStore(tmp_path)
    stored = store.put_file("v1.onnx", classifier_onnx)
    model = SessionCache(store, threads=1, capacity=2).get(
        ModelSource(
            version_id=1,
            artifact_key=stored.key,
            sha256=stored.sha256,
            signature=SIGNATURE,
            task="classification",
            labels=[0, 1, 2],
            plan=quick,
        )
    )
    assert model.session is not None
    assert not model.session.get_session_options().enable_cpu_mem_arena
