"""``kiln serve --gateways 2``: two gateway processes share the HTTP and gRPC ports, each
with its own session cache; /metrics and the per-second serving stats in either sum both;
a write made through one (an alias moved, a key revoked) shows at once whichever process
serves the next request."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.servers import KilnServer, ServerFactory
from tests.triton_grpc_peer import TritonGrpcPeer

# Its subject is the queue, leases, claims or the database: run on every backend.
pytestmark = pytest.mark.backends

ROW = {"inputs": [[6.0, 6.0, 6.0, 6.0]]}


@pytest.fixture(scope="module")
def kiln(module_kiln_server: ServerFactory, classifier_onnx: Path) -> Iterator[KilnServer]:
    server = module_kiln_server(
        workers=0, serve_args=("--gateways", "2"), KILN_SERVING_CACHE_S="3600"
    )
    with server.client() as client:
        for labels in ('["a1", "b1", "c1"]', '["a2", "b2", "c2"]'):
            response = client.post(
                "/v1/models/flowers/versions",
                data={"labels": labels},
                files={"file": ("m.onnx", classifier_onnx.read_bytes())},
            )
            assert response.status_code == 201, response.text
    yield server


def fresh_connection_predicts(kiln: KilnServer, count: int, key: str | None = None) -> list[int]:
    """``count`` predicts, each on a new connection (so the kernel spreads them over the
    processes); their versions, or status codes for refusals."""
    answers = []
    for _ in range(count):
        with httpx.Client(base_url=kiln.url, timeout=30) as client:
            response = client.post(
                "/v1/models/flowers/predict",
                json=ROW,
                headers={"Authorization": f"Bearer {key or kiln.key}"},
            )
        answers.append(
            response.json()["version"] if response.status_code == 200 else response.status_code
        )
    return answers


def metric(kiln: KilnServer, name: str, **labels: str) -> float:
    text = httpx.get(kiln.url + "/metrics", timeout=30).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def test_both_processes_serve_and_metrics_sum_them(kiln: KilnServer) -> None:
    assert set(fresh_connection_predicts(kiln, 60)) == {1}  # the first upload took production
    for _ in range(10):  # a new channel (so a new connection) per call
        peer = TritonGrpcPeer(kiln.grpc_port)
        assert peer.infer(np.full((1, 4), 6.0, np.float32), key=kiln.key)["ok"]
        peer.close()
    # Each process pushes its counts to the shared files every second (PUSH_S): within a
    # few seconds, any process answers /metrics with the sum of both.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        metric(kiln, "kiln_inference_requests_total", protocol="v1", outcome="ok") != 60
        or metric(kiln, "kiln_inference_requests_total", protocol="grpc") != 10
    ):
        time.sleep(0.2)
    for _ in range(5):  # and then every scrape, whichever process answers it
        assert metric(kiln, "kiln_inference_requests_total", protocol="v1", outcome="ok") == 60
        assert metric(kiln, "kiln_inference_requests_total", protocol="grpc") == 10
    # Each process loaded the model into its own session cache.
    assert metric(kiln, "kiln_models_loaded") == 2


def test_the_per_second_stats_sum_both_processes(kiln: KilnServer, classifier_onnx: Path) -> None:
    """Each process writes its per-second counters for the other within a second;
    whichever answers the stats route sums both."""
    kiln.upload_model("counted", classifier_onnx, labels='["a", "b", "c"]')
    for _ in range(40):  # each on a new connection: spread over both processes
        with httpx.Client(base_url=kiln.url, timeout=30) as client:
            answer = client.post(
                "/v1/models/counted/predict",
                json=ROW,
                headers={"Authorization": f"Bearer {kiln.key}"},
            )
        assert answer.status_code == 200, answer.text

    def stats() -> dict[str, Any]:
        with httpx.Client(base_url=kiln.url, timeout=30) as client:  # a new connection
            answer = client.get(
                "/v1/models/counted/serving/stats?seconds=900",
                headers={"Authorization": f"Bearer {kiln.key}"},
            )
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def counted(answer: dict[str, Any]) -> int:
        return sum(s["totals"]["requests"] for s in answer["series"])

    def both_counted() -> bool:  # five answers in a row, whichever process gives each
        return all(
            (answer["processes"], counted(answer)) == (2, 40)
            for answer in (stats() for _ in range(5))
        )

    # Each process sees the other's counts within a second or two (a file a second, of
    # complete seconds only), on a loaded machine later: wait for it, within a deadline.
    deadline = time.monotonic() + 20
    while not both_counted():
        assert time.monotonic() < deadline, stats()
        time.sleep(0.3)
    answered = stats()
    assert answered["processes"] == 2 and counted(answered) == 40  # never more than sent


def test_a_write_through_one_process_shows_in_all_at_once(kiln: KilnServer) -> None:
    with kiln.client() as client:
        moved = client.put("/v1/models/flowers/aliases/production", json={"version": 2})
        assert moved.status_code == 200, moved.text
    # The cache lives an hour here: only the shared counter can make this true.
    assert set(fresh_connection_predicts(kiln, 30)) == {2}
    with kiln.client() as client:
        created = client.post("/v1/keys", json={"name": "app", "scope": "infer"}).json()
    assert set(fresh_connection_predicts(kiln, 20, created["key"])) == {2}
    with kiln.client() as client:
        assert client.delete(f"/v1/keys/{created['id']}").status_code == 200
    assert set(fresh_connection_predicts(kiln, 20, created["key"])) == {401}
