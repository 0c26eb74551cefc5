"""The Open Inference Protocol routes driven by the real ``tritonclient`` and ``kserve``
clients against a running ``kiln serve``, plus the malformed and lying requests a client
could send."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from kserve import InferenceRESTClient, RESTConfig
from kserve import InferInput as KServeInput
from kserve import InferRequest as KServeRequest
from tritonclient.utils import InferenceServerException

from tests.fixtures.servers import KilnServer, ServerFactory

LABELS = '["setosa", "versicolor", "virginica"]'


@pytest.fixture(scope="module")
def server(module_kiln_server: ServerFactory, classifier_onnx: Path) -> Iterator[KilnServer]:
    kiln = module_kiln_server(workers=0)
    kiln.upload_model("flowers", classifier_onnx, labels=LABELS, times=2)  # versions 1 and 2
    yield kiln


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return np.random.default_rng(0).normal(3, 2, size=(5, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def expected(classifier_onnx: Path, rows: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(classifier_onnx), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": rows})[0]


def client_for(server: KilnServer) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")


def auth(server: KilnServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.key}"}


def test_health_and_metadata(server: KilnServer) -> None:
    client = client_for(server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    metadata = client.get_model_metadata("flowers", headers=auth(server))
    assert metadata["versions"] == ["1", "2"]
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert metadata["outputs"][0]["shape"] == [-1, 3]
    assert client.get_model_metadata("flowers", "1", headers=auth(server))["versions"] == ["1"]
    assert client.is_model_ready("flowers", headers=auth(server))
    assert client.is_model_ready("flowers", "2", headers=auth(server))
    assert not client.is_model_ready("nope", headers=auth(server))


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("version", ["", "1"])
def test_infer_json_and_binary(
    server: KilnServer, rows: np.ndarray, expected: np.ndarray, binary: bool, version: str
) -> None:
    tensor = triton.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    result = client_for(server).infer(
        "flowers",
        [tensor],
        model_version=version,
        headers=auth(server),
        outputs=[triton.InferRequestedOutput("output", binary_data=binary)],
    )
    assert np.allclose(result.as_numpy("output"), expected, atol=1e-6)
    # no version named: the production alias, which the first upload took
    assert result.get_response()["model_version"] == (version or "1")


def test_infer_errors_use_the_protocol_shape(server: KilnServer, rows: np.ndarray) -> None:
    client = client_for(server)
    tensor = triton.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    with pytest.raises(InferenceServerException, match="model 'nope' not found"):
        client.infer("nope", [tensor], headers=auth(server))
    with pytest.raises(InferenceServerException, match="missing API key"):
        client.infer("flowers", [tensor])


def kserve_call(coroutine_of: Callable[[InferenceRESTClient], Awaitable[Any]]) -> Any:
    """Run one call of kserve's asynchronous REST client (Open Inference Protocol v2)."""

    async def call() -> Any:
        async with InferenceRESTClient(RESTConfig(protocol="v2", timeout=30)) as client:
            return await coroutine_of(client)

    return asyncio.run(call())


def test_kserve_client_health_and_readiness(server: KilnServer) -> None:
    headers = auth(server)
    assert kserve_call(lambda client: client.is_server_live(server.url)) is True
    assert kserve_call(lambda client: client.is_server_ready(server.url)) is True
    assert (
        kserve_call(lambda client: client.is_model_ready(server.url, "flowers", headers=headers))
        is True
    )
    assert (
        kserve_call(
            lambda client: client.is_model_ready(server.url, "flowers/versions/1", headers=headers)
        )
        is True
    )
    assert (
        kserve_call(lambda client: client.is_model_ready(server.url, "nope", headers=headers))
        is False
    )


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("version", ["", "1"])
def test_kserve_client_infer_json_and_binary(
    server: KilnServer, rows: np.ndarray, expected: np.ndarray, binary: bool, version: str
) -> None:
    tensor = KServeInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    request = KServeRequest("flowers", [tensor], parameters={"binary_data_output": binary})
    name = f"flowers/versions/{version}" if version else "flowers"
    response = kserve_call(
        lambda client: client.infer(server.url, request, model_name=name, headers=auth(server))
    )
    output = response.outputs[0]
    assert output.name == "output" and output.datatype == "FP32"
    assert np.allclose(output.as_numpy(), expected, atol=1e-6)
    # (kserve's InferResponse.from_bytes drops model_version; tritonclient checks it above)


def test_kserve_client_sees_errors_and_metadata_over_plain_http(
    server: KilnServer, rows: np.ndarray
) -> None:
    tensor = KServeInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=True)
    request = KServeRequest("nope", [tensor])
    with pytest.raises(httpx.HTTPStatusError, match="model 'nope' not found"):
        kserve_call(
            lambda client: client.infer(
                server.url, request, model_name="nope", headers=auth(server)
            )
        )
    # kserve's REST client has no metadata call; its protocol's metadata is the same route
    # tritonclient reads above, checked here as kserve's InferenceServer would serve it.
    metadata = httpx.get(server.url + "/v2/models/flowers", headers=auth(server)).json()
    assert {"name", "versions", "platform", "inputs", "outputs"} <= set(metadata)


def post(
    server: KilnServer,
    body: bytes,
    headers: dict[str, str] | None = None,
    path: str = "/v2/models/flowers/infer",
) -> httpx.Response:
    return httpx.post(
        server.url + path, content=body, timeout=30, headers={**auth(server), **(headers or {})}
    )


def json_input(
    name: str = "input", shape: list[int] | None = None, datatype: str = "FP32", data: object = None
) -> bytes:
    import json

    return json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": shape or [1, 4],
                    "datatype": datatype,
                    "data": data if data is not None else [0, 0, 0, 0],
                }
            ]
        }
    ).encode()


def binary_body(declared: int, blob: bytes) -> tuple[bytes, dict[str, str]]:
    """A binary-extension request for one FP32 [1, 4] input declaring ``declared`` bytes."""
    import json

    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": declared},
                }
            ]
        }
    ).encode()
    return header + blob, {"Inference-Header-Content-Length": str(len(header))}


BAD_REQUESTS = [
    (
        "wrong datatype",
        json_input(datatype="INT64"),
        None,
        "input 'input' has datatype INT64; the model expects FP32",
    ),
    ("unknown input", json_input(name="pixels"), None, "unknown input(s) ['pixels']"),
    ("shape lies about data", json_input(shape=[2, 4]), None, "needs 8 values, 'data' has 4"),
    (
        "wrong feature shape",
        json_input(shape=[1, 3], data=[0, 0, 0]),
        None,
        "has shape [1, 3]; the model expects [1 to 10000, 4]",
    ),
    (
        "BYTES to a numeric model",
        json_input(datatype="BYTES", data=["a", "b", "c", "d"]),
        None,
        "input 'input' has datatype BYTES; the model expects FP32",
    ),
    (
        "BYTES holding numbers",
        json_input(datatype="BYTES", data=[1, 2, 3, 4]),
        None,
        "BYTES 'data' must hold only strings",
    ),
    ("huge declared shape", json_input(shape=[10**9, 4]), None, "the limit is 40000"),
    (
        "NaN in binary",
        *binary_body(16, np.array([0, np.nan, 0, 0], np.float32).tobytes()),
        "contains NaN or Inf",
    ),
    ("binary size lies", *binary_body(8, bytes(8)), "binary_data_size 8 but shape [1, 4]"),
    ("binary body cut short", *binary_body(16, bytes(8)), "ends before its 16 binary bytes"),
    ("bytes after the tensors", *binary_body(16, bytes(20)), "4 bytes after the last binary"),
    (
        "body shorter than header",
        b'{"inputs": []}',
        {"Inference-Header-Content-Length": "99"},
        "does not fit a body of 14 bytes",
    ),
    (
        "unknown output",
        b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32",'
        b'"data":[0,0,0,0]}],"outputs":[{"name":"logits"}]}',
        None,
        "unknown output(s) ['logits']",
    ),
    ("not JSON", b"{inputs", None, "request is not valid JSON"),
]


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_infer_requests_get_400_naming_the_problem(
    server: KilnServer, body: bytes, headers: dict | None, message: str
) -> None:
    response = post(server, body, headers)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    ok = post(server, json_input())
    assert ok.status_code == 200  # still serving


def test_not_found_and_unauthorised_map_like_triton(server: KilnServer) -> None:
    assert post(server, json_input(), path="/v2/models/nope/infer").status_code == 404
    assert post(server, json_input(), path="/v2/models/flowers/versions/9/infer").status_code == 404
    response = httpx.get(server.url + "/v2/models/flowers")
    assert response.status_code == 401 and "error" in response.json()
