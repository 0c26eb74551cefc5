"""Requests for an upload share a run only when its graph is proven to answer each row from
that row alone: in the gateway, requests sent in the same turn of its event loop to a graph
of dense layers merge and each gets the answer it gets alone; to a graph that subtracts the
batch's mean they never merge, and each answer is still the one it gets alone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper

from app.api.state import gateway_of
from app.core.config import Settings
from app.main import create_app
from tests.api.test_model_upload import upload

ROWS = 8


def _graph(mixing: bool) -> bytes:
    """y = relu(x [- the batch's mean]) @ W: x [batch, 3], y [batch, 2]."""
    weight = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(3, 2) / 6, "w")
    nodes = [helper.make_node("Relu", ["x"], ["h"])]
    initializers = [weight]
    if mixing:
        initializers.append(numpy_helper.from_array(np.array([0], dtype=np.int64), "axes"))
        nodes = [
            helper.make_node("ReduceMean", ["x", "axes"], ["mean"], keepdims=1),
            helper.make_node("Sub", ["x", "mean"], ["centred"]),
            helper.make_node("Relu", ["centred"], ["h"]),
        ]
    nodes.append(helper.make_node("MatMul", ["h", "w"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "merging",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


@pytest.fixture
def gateway(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, run_reaper=False)) as client:
        yield client


def _body(row: list[float]) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": row}]}


def _answers_in_one_turn(client: TestClient, admin: dict, name: str) -> list[list[float]]:
    """ROWS requests started together on the gateway's own event loop."""
    rows = [[float(index), float(-index), 1.0] for index in range(ROWS)]

    async def together() -> list[list[float]]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kiln") as http:
            sent = [
                http.post(f"/v2/models/{name}/infer", headers=admin, json=_body(row))
                for row in rows
            ]
            answers = await asyncio.gather(*sent)
        return [answer.json()["outputs"][0]["data"] for answer in answers]

    assert client.portal is not None
    merged = client.portal.call(together)
    alone = [
        client.post(f"/v2/models/{name}/infer", headers=admin, json=_body(row)).json()["outputs"][
            0
        ]["data"]
        for row in rows
    ]
    assert np.allclose(merged, alone, atol=1e-6)
    return merged


def _merged_calls(client: TestClient) -> int:
    directory = gateway_of(client.app).directory  # type: ignore[arg-type]
    return sum(coalescer.merged_calls for coalescer in directory._coalescers.values())


def test_an_upload_proven_row_by_row_merges_and_each_gets_its_own_answer(
    gateway: TestClient, admin: dict
) -> None:
    status, version = upload(
        gateway, admin, _graph(mixing=False), name="dense", task="classification"
    )
    assert status == 201, version
    assert version["runs_in"] == "gateway" and version["config"]["rows_independent"] is True
    assert "each row's answer depends on that row alone" in version["runs_in_reason"]
    _answers_in_one_turn(gateway, admin, "dense")
    assert _merged_calls(gateway) >= 1


def test_an_upload_that_mixes_rows_never_merges(gateway: TestClient, admin: dict) -> None:
    status, version = upload(
        gateway, admin, _graph(mixing=True), name="centred", task="classification"
    )
    assert status == 201, version
    assert version["runs_in"] == "gateway" and version["config"]["rows_independent"] is False
    assert "ReduceMean" in version["runs_in_reason"]
    assert "each request runs alone" in version["runs_in_reason"]
    _answers_in_one_turn(gateway, admin, "centred")
    assert _merged_calls(gateway) == 0
