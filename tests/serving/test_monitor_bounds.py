"""The request path's watchers are bounded in real bytes: a slow shadow's copies of large
requests wait in a queue of KILN_MONITOR_QUEUE_MB, the rest dropped and counted, so the
gateway's peak memory grows by that queue (and the sandbox's shared input region), not by
the traffic; the request log's buffer counts text by its length, so requests of long
strings past KILN_LOG_BUFFER_MB are dropped and counted, never kept."""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper

from app.api.state import gateway_of
from app.contracts.signature import Signature, TensorSpec
from app.core.config import Settings
from app.core.db import session_scope
from app.main import create_app
from app.registry.service import VersionDraft, register_version
from app.serving.observations import observation_bytes
from app.storage import get_store
from tests.conftest import make_settings
from tests.fixtures.servers import KilnServer, ServerFactory

FEATURES = 400
ROWS = 10_000
QUEUE_MB = 32
REQUESTS = 40


def _model(nodes: list, initializers: list, features: int) -> bytes:
    graph = helper.make_graph(
        nodes,
        "bounds",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model.SerializeToString()


def plain(features: int = FEATURES) -> bytes:
    """y = x @ W: bounded, fast."""
    weights = numpy_helper.from_array(np.full((features, 2), 0.01, np.float32), "w")
    return _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [weights], features)


def slow(features: int = FEATURES, trips: int = 100_000) -> bytes:
    """The same answer after a Loop of ``trips`` 64 x 64 products (about half a second):
    sandboxed (a Loop), and slow whatever its rows."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["state_in", "m"], ["state_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state_in", TensorProto.FLOAT, [64, 64]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [64, 64]),
        ],
        [numpy_helper.from_array(np.eye(64, dtype=np.float32), "m")],
    )
    constants = [
        numpy_helper.from_array(np.full((features, 2), 0.01, np.float32), "w"),
        numpy_helper.from_array(np.array(trips, np.int64), "trips"),
        numpy_helper.from_array(np.array(True), "go"),
        numpy_helper.from_array(np.zeros((64, 64), np.float32), "state"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("Loop", ["trips", "go", "state"], ["final"], body=body),
        helper.make_node("ReduceSum", ["final"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("MatMul", ["x", "w"], ["raw"]),
        helper.make_node("Add", ["raw", "nothing"], ["y"]),
    ]
    return _model(nodes, constants, features)


def binary_request(rows: np.ndarray) -> tuple[bytes, dict[str, str]]:
    blob = rows.astype(np.float32).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(blob)},
                }
            ]
        }
    ).encode()
    return header + blob, {
        "Inference-Header-Content-Length": str(len(header)),
        "Content-Type": "application/octet-stream",
    }


def peak_mb(kiln: KilnServer) -> float:
    """The gateway's peak resident memory so far (VmHWM)."""
    assert kiln.process is not None
    status = Path(f"/proc/{kiln.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


@pytest.fixture(scope="module")
def kiln(module_kiln_server: ServerFactory) -> Iterator[KilnServer]:
    server = module_kiln_server(
        workers=0, KILN_MONITOR_QUEUE_MB=str(QUEUE_MB), KILN_MONITOR_FLUSH_S="0.5"
    )
    with server.client() as client:
        for content in (plain(), slow()):
            answer = client.post(
                "/v1/models/wide/versions",
                files={"file": ("m.onnx", content)},
                data={"labels": '["a", "b"]'},
            )
            assert answer.status_code == 201, answer.text
        assert client.get("/v1/models/wide/versions/2").json()["runs_in"] == "sandbox"
    yield server


def send_all(kiln: KilnServer, count: int) -> list[int]:
    body, headers = binary_request(np.random.default_rng(0).normal(size=(ROWS, FEATURES)))

    def one(_: int) -> int:
        with httpx.Client(timeout=120) as client:
            return client.post(
                f"{kiln.url}/v2/models/wide/infer",
                content=body,
                headers={**headers, "Authorization": f"Bearer {kiln.key}"},
            ).status_code

    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # concurrency 2
        return list(pool.map(one, range(count)))


def test_a_slow_shadow_holds_the_gateway_to_its_queue_bytes(kiln: KilnServer) -> None:
    with kiln.client() as client:
        moved = client.put("/v1/models/wide/aliases/production", json={"version": 1})
        assert moved.status_code == 200, moved.text
    assert set(send_all(kiln, 6)) == {200}  # the primary alone: the in-flight peak
    before = peak_mb(kiln)
    with kiln.client() as client:
        moved = client.put("/v1/models/wide/aliases/production", json={"version": 1, "shadow": 2})
        assert moved.status_code == 200, moved.text
    assert set(send_all(kiln, REQUESTS)) == {200}  # the slow shadow never reaches a client
    grown = peak_mb(kiln) - before
    # The queue's bytes, the sandbox's shared input region (up to two requests' bytes),
    # and room for the allocator: not 40 copies of 16 MB.
    assert grown <= QUEUE_MB + 2 * 16 + 24, f"the gateway grew {grown:.0f} MB"
    with kiln.client() as client:
        deadline = time.monotonic() + 60
        stats = {"requests": 0, "dropped": 0}
        while stats["requests"] + stats["dropped"] < REQUESTS and time.monotonic() < deadline:
            time.sleep(0.5)
            shadows = client.get("/v1/models/wide/traffic").json()["shadows"]
            stats = shadows[0] if shadows else stats
    assert stats["requests"] + stats["dropped"] == REQUESTS, stats
    assert stats["dropped"] > 0 and stats["requests"] > 0, stats


# -- the request log, in process ----------------------------------------------------------


def text_model(settings: Settings) -> None:
    """A model of one text column 'word' (its length, as a regression value)."""
    graph = helper.make_graph(
        [
            helper.make_node(
                "LabelEncoder",
                ["word"],
                ["code"],
                domain="ai.onnx.ml",
                keys_strings=["a"],
                values_floats=[1.0],
                default_float=0.0,
            ),
        ],
        "words",
        [helper.make_tensor_value_info("word", TensorProto.STRING, ["batch", 1])],
        [helper.make_tensor_value_info("code", TensorProto.FLOAT, ["batch", 1])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    model.ir_version = 9
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / "words.onnx"
    path.write_bytes(model.SerializeToString())
    store = get_store(settings)
    signature = Signature(
        inputs=[
            TensorSpec(
                name="word",
                datatype="BYTES",
                shape=[-1, 1],
                kind="categorical",
                allows_missing=True,
            )
        ],
        outputs=[TensorSpec(name="code", datatype="FP32", shape=[-1, 1])],
    )
    with session_scope(settings.database_url) as session:
        artifact = store.put_file("test/words.onnx", path)
        draft = VersionDraft(
            task="regression", source="search", artifact=artifact, signature=signature
        )
        register_version(session, "words", draft)


def test_text_is_counted_by_its_length() -> None:
    words = np.full((1000, 1), "x" * 7000, dtype=object)
    size = observation_bytes({"word": words}, np.zeros((1000, 1), np.float32), 7_100_000)
    assert size >= 1000 * 7000


def test_the_log_buffer_counts_text_by_its_length(
    settings: Settings, admin: dict[str, str]
) -> None:
    text_model(settings)
    logged = make_settings(
        settings.data_dir,
        settings.database_url,
        log_sample=1.0,
        log_buffer_mb=16,
        monitor_flush_s=3600,  # nothing is written while the test looks
        drift_sample=0,
    )
    app = create_app(logged, run_reaper=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        monitors = gateway_of(app).monitors
        records = [{"word": "x" * 7000} for _ in range(1000)]  # 7 MB of text a request
        for _ in range(4):
            answer = client.post(
                "/v1/models/words/predict", headers=admin, json={"inputs": records}
            )
            assert answer.status_code == 200, answer.text
        assert monitors.wait_idle(30)
        kept = sum(len(entries) for entries in monitors.log.take().values())
        assert kept == 2  # two requests' 14 MB fit in 16 MB; a third does not
        assert monitors.log.dropped == 2
        metrics = client.get("/metrics").text
        assert "kiln_request_log_dropped_total 2.0" in metrics
