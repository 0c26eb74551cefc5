"""Uploaded graphs that pass the probe and then blow memory or time when a client triggers
them (tests/fixtures/hostile_graphs.py: ConstantOfShape, Expand, Tile, Resize and Range
sized from the input, an N x N intermediate, an n x n MatMul with n from the input, a Loop
whose trip count is an input) are classified sandboxed at upload and run only in a sandbox
process. Sent to /v1, /v2, gRPC, as a shadow and in a batch job, each is stopped at the
limit it passes (KILN_UPLOAD_REQUEST_MEMORY_MB, by the OS; KILN_UPLOAD_RUN_TIMEOUT_S, by
killing its process) within the deadline plus one second, the answer is a 4xx/503 naming
that limit, and the gateway's resident memory stays within 50 MB of where it started."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.fixtures.hostile_graphs import CASES, Hostile
from tests.fixtures.servers import KilnServer, ServerFactory
from tests.triton_grpc_peer import TritonGrpcPeer

DEADLINE_S = 2.0
MEMORY_MB = 128
MAX_ROWS = 10_000  # the gateway's rows per request (the quadratic graph's trigger)
RSS_SLACK_MB = 50
LIMITS = ("KILN_UPLOAD_RUN_TIMEOUT_S", "KILN_UPLOAD_REQUEST_MEMORY_MB", "sandbox")
NAMES = sorted(CASES)


def plain_graph() -> bytes:
    """A bounded graph with the hostile graphs' signature: x [batch, 4] -> y [batch, 2]."""
    weights = numpy_helper.from_array(
        np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=np.float32), "w"
    )
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model.SerializeToString()


def trigger(case: Hostile) -> list[list[float]]:
    """The request that blows ``case``, within the gateway's rows per request."""
    rows = case.trigger()
    return rows[:MAX_ROWS]


def rss_mb(kiln: KilnServer) -> float:
    """The gateway's resident memory (``kiln serve`` runs its one gateway in-process)."""
    assert kiln.process is not None
    status = Path(f"/proc/{kiln.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def names_a_limit(message: str) -> bool:
    return any(limit in message for limit in LIMITS)


@pytest.fixture(scope="module")
def kiln(module_kiln_server: ServerFactory) -> Iterator[KilnServer]:
    """A gateway and a worker; each hostile graph is version 2 of its own model, beside a
    plain version 1 that serves with it as its shadow."""
    server = module_kiln_server(
        workers=1,
        KILN_UPLOAD_RUN_TIMEOUT_S=str(DEADLINE_S),
        KILN_UPLOAD_REQUEST_MEMORY_MB=str(MEMORY_MB),
        KILN_MONITOR_FLUSH_S="0.5",
        KILN_MAX_PREDICT_ROWS=str(MAX_ROWS),
    )
    with server.client() as client:
        for name in NAMES:
            for version, content in ((1, plain_graph()), (2, CASES[name].build())):
                answer = client.post(
                    f"/v1/models/{name}/versions",
                    files={"file": ("m.onnx", content)},
                    data={"labels": '["a", "b"]'},
                )
                assert answer.status_code == 201, answer.text
                assert answer.json()["version"] == version
            hostile = client.get(f"/v1/models/{name}/versions/2").json()
            assert hostile["runs_in"] == "sandbox", hostile
            assert hostile["config"]["graph_class"] == "sandboxed"
            assert client.get(f"/v1/models/{name}/versions/1").json()["runs_in"] == "gateway"
            moved = client.put(
                f"/v1/models/{name}/aliases/production", json={"version": 1, "shadow": 2}
            )
            assert moved.status_code == 200, moved.text
    yield server


@pytest.fixture(scope="module")
def grpc_peer(kiln: KilnServer) -> Iterator[TritonGrpcPeer]:
    peer = TritonGrpcPeer(kiln.grpc_port)
    yield peer
    peer.close()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("protocol", ["v1", "v2", "grpc"])
def test_a_triggered_graph_is_stopped_at_its_limit_and_the_gateway_keeps_its_memory(
    kiln: KilnServer, grpc_peer: TritonGrpcPeer, name: str, protocol: str
) -> None:
    rows = trigger(CASES[name])
    before = rss_mb(kiln)
    started = time.monotonic()
    if protocol == "grpc":
        answer = grpc_peer.infer(
            np.asarray(rows, dtype=np.float32),
            model=name,
            version="2",
            key=kiln.key,
            name="x",
            output="y",
        )
        elapsed = time.monotonic() - started
        assert not answer["ok"], answer
        codes = ("DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "UNAVAILABLE")
        assert any(code in answer["status"] for code in codes), answer
        message = answer["message"]
    else:
        with kiln.client() as client:
            if protocol == "v1":
                response = client.post(
                    f"/v1/models/{name}/predict", params={"version": 2}, json={"inputs": rows}
                )
                message = response.json().get("detail", "")
            else:
                tensor = {"name": "x", "shape": [len(rows), 4], "datatype": "FP32", "data": rows}
                response = client.post(
                    f"/v2/models/{name}/versions/2/infer", json={"inputs": [tensor]}
                )
                message = response.json().get("error", "")
        elapsed = time.monotonic() - started
        assert response.status_code in (422, 503), response.text
    assert names_a_limit(str(message)), message
    assert elapsed <= DEADLINE_S + 1 + 1, f"{name} over {protocol} took {elapsed:.1f} s"
    assert rss_mb(kiln) <= before + RSS_SLACK_MB
    with kiln.client() as client:  # the model's sandbox serves again, and so does the gateway
        calm = client.post(f"/v1/models/{name}/predict", json={"inputs": [[1, 2, 3, 4]]})
        assert calm.status_code == 200, calm.text
        again = client.post(
            f"/v1/models/{name}/predict", params={"version": 2}, json={"inputs": [[0, 0, 0, 0]]}
        )
        assert again.status_code == 200, again.text


@pytest.mark.parametrize("name", NAMES)
def test_as_a_shadow_the_triggered_graph_fails_in_its_sandbox_never_the_client(
    kiln: KilnServer, name: str
) -> None:
    rows = trigger(CASES[name])
    before = rss_mb(kiln)
    with kiln.client() as client:
        failures = shadow_failures(client, name)
        started = time.monotonic()
        answer = client.post(f"/v1/models/{name}/predict", json={"inputs": rows})
        assert answer.status_code == 200, answer.text  # version 1 answers
        assert answer.headers["x-kiln-version"] == "1"
        while shadow_failures(client, name) == failures:
            assert time.monotonic() - started < DEADLINE_S + 20, "the shadow's copy was lost"
            time.sleep(0.25)
    assert rss_mb(kiln) <= before + RSS_SLACK_MB


def shadow_failures(client: object, name: str) -> int:
    traffic = client.get(f"/v1/models/{name}/traffic").json()  # type: ignore[attr-defined]
    return sum(int(stats["failures"]) for stats in traffic["shadows"])


@pytest.mark.parametrize("name", NAMES)
def test_in_a_batch_job_the_triggered_graph_fails_the_job_naming_its_limit(
    kiln: KilnServer, name: str
) -> None:
    rows = trigger(CASES[name])
    lines = ["a,b,c,d", *(",".join(repr(float(value)) for value in row) for row in rows)]
    with kiln.client() as client:
        submitted = client.post(
            "/v1/jobs/predict",
            data={"model": name, "version": "2"},
            files={"file": ("rows.csv", io.BytesIO("\n".join(lines).encode()))},
        )
        assert submitted.status_code == 202, submitted.text
    job = kiln.wait_for_job(int(submitted.json()["id"]), timeout=120)
    assert job["status"] == "failed", job
    assert names_a_limit(job["error"]), job["error"]
    # The worker lives on: the plain version's job over the same rows runs to its end.
    with kiln.client() as client:
        plain = client.post(
            "/v1/jobs/predict",
            data={"model": name, "version": "1"},
            files={"file": ("rows.csv", io.BytesIO("\n".join(lines[:5]).encode()))},
        )
        assert plain.status_code == 202, plain.text
    assert kiln.wait_for_job(int(plain.json()["id"]), timeout=120)["status"] == "succeeded"


def test_a_hostile_upload_says_where_it_runs_and_why(kiln: KilnServer) -> None:
    with kiln.client() as client:
        for name in NAMES:
            version = client.get(f"/v1/models/{name}/versions/2").json()
            assert version["runs_in"] == "sandbox"
            assert version["runs_in_reason"] == version["config"]["graph_class_reason"]
            assert version["runs_in_reason"]
