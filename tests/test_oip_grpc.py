"""The Open Inference Protocol over gRPC, driven by the real ``tritonclient.grpc`` against a
running ``kiln serve``: the same infer, metadata and error cases as the HTTP client's tests,
plus hostile messages sent with the protocol's own message types."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from app.serving.grpc_schema import SERVICE, message
from tests.e2e_server import KilnServer

LABELS = '["setosa", "versicolor", "virginica"]'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, classifier_onnx: Path) -> Iterator[KilnServer]:
    kiln = KilnServer(tmp_path_factory.mktemp("grpc") / "data", workers=0,
                      KILN_MAX_REQUEST_MB="1")
    kiln.start()
    with kiln.client() as client:
        for _ in range(2):
            response = client.post("/v1/models/flowers/versions",
                                   files={"file": ("m.onnx", classifier_onnx.read_bytes())},
                                   data={"labels": LABELS})
            assert response.status_code == 201, response.text
        reader = client.post("/v1/keys", json={"name": "reader", "scope": "read"})
        kiln.env["READ_KEY"] = reader.json()["key"]
    yield kiln
    kiln.close()


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return np.random.default_rng(0).normal(3, 2, size=(5, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def expected(classifier_onnx: Path, rows: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(classifier_onnx), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": rows})[0]


def client_for(server: KilnServer) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=f"127.0.0.1:{server.grpc_port}")


def auth(server: KilnServer, key: str | None = None) -> dict[str, str]:
    return {"authorization": f"Bearer {key or server.key}"}


def tensor_of(rows: np.ndarray, name: str = "input", datatype: str = "FP32") -> triton.InferInput:
    tensor = triton.InferInput(name, list(rows.shape), datatype)
    tensor.set_data_from_numpy(rows)
    return tensor


def test_health_and_metadata(server: KilnServer) -> None:
    client = client_for(server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata().name == "modelkiln"
    assert list(client.get_server_metadata().extensions) == ["binary_tensor_data"]
    metadata = client.get_model_metadata("flowers", headers=auth(server), as_json=True)
    assert metadata["versions"] == ["1", "2"]
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "4"]}]
    assert metadata["outputs"][0]["shape"] == ["-1", "3"]
    assert client.get_model_metadata("flowers", "1", headers=auth(server)).versions == ["1"]
    assert client.is_model_ready("flowers", headers=auth(server))
    assert client.is_model_ready("flowers", "2", headers=auth(server))
    assert not client.is_model_ready("nope", headers=auth(server))
    assert not client.is_model_ready("flowers", "7", headers=auth(server))


@pytest.mark.parametrize("version", ["", "1"])
def test_infer(server: KilnServer, rows: np.ndarray, expected: np.ndarray,
               version: str) -> None:
    result = client_for(server).infer("flowers", [tensor_of(rows)], model_version=version,
                                      headers=auth(server), request_id="r-7",
                                      outputs=[triton.InferRequestedOutput("output")])
    assert np.allclose(result.as_numpy("output"), expected, atol=1e-6)
    response = result.get_response()
    assert response.model_version == (version or "2") and response.id == "r-7"


def test_a_batch_of_256_rows(server: KilnServer, classifier_onnx: Path) -> None:
    many = np.random.default_rng(1).normal(3, 2, size=(256, 4)).astype(np.float32)
    session = ort.InferenceSession(str(classifier_onnx), providers=["CPUExecutionProvider"])
    result = client_for(server).infer("flowers", [tensor_of(many)], headers=auth(server))
    assert np.allclose(result.as_numpy("output"), session.run(None, {"input": many})[0],
                       atol=1e-6)


ERRORS = [
    ("unknown model", "nope", None, "model 'nope' not found", grpc.StatusCode.NOT_FOUND),
    ("unknown version", "flowers", "9", "has no version 9", grpc.StatusCode.NOT_FOUND),
    ("bad version", "flowers", "x1", "model_version 'x1' is not a version number",
     grpc.StatusCode.INVALID_ARGUMENT),
    ("wrong datatype", "flowers", None, "has datatype FP64; the model expects FP32",
     grpc.StatusCode.INVALID_ARGUMENT),
    ("wrong shape", "flowers", None, "has shape [1, 3]; the model expects [1 to 10000, 4]",
     grpc.StatusCode.INVALID_ARGUMENT),
    ("unknown input", "flowers", None, "unknown input(s) ['pixels']",
     grpc.StatusCode.INVALID_ARGUMENT),
]


@pytest.mark.parametrize(("case", "model", "version", "text", "code"), ERRORS,
                         ids=[error[0] for error in ERRORS])
def test_errors_name_the_problem(server: KilnServer, rows: np.ndarray, case: str, model: str,
                                 version: str | None, text: str,
                                 code: grpc.StatusCode) -> None:
    tensor = {"wrong datatype": tensor_of(rows[:1].astype(np.float64), datatype="FP64"),
              "wrong shape": tensor_of(rows[:1, :3]),
              "unknown input": tensor_of(rows[:1], name="pixels")}.get(case, tensor_of(rows))
    with pytest.raises(InferenceServerException) as raised:
        client_for(server).infer(model, [tensor], model_version=version or "",
                                 headers=auth(server))
    assert text in raised.value.message()
    assert raised.value.status() == str(code)


def test_keys_are_checked(server: KilnServer, rows: np.ndarray) -> None:
    client = client_for(server)
    with pytest.raises(InferenceServerException, match="missing API key") as raised:
        client.infer("flowers", [tensor_of(rows)])
    assert raised.value.status() == str(grpc.StatusCode.UNAUTHENTICATED)
    with pytest.raises(InferenceServerException) as raised:
        client.infer("flowers", [tensor_of(rows)], headers=auth(server, "kiln_wrong"))
    assert raised.value.status() == str(grpc.StatusCode.UNAUTHENTICATED)
    with pytest.raises(InferenceServerException) as raised:  # a read key may not predict
        client.infer("flowers", [tensor_of(rows)], headers=auth(server, server.env["READ_KEY"]))
    assert raised.value.status() == str(grpc.StatusCode.PERMISSION_DENIED)
    with pytest.raises(InferenceServerException, match="missing API key"):
        client.get_model_metadata("flowers")


def raw_call(server: KilnServer, request: object) -> grpc.RpcError:
    """Send a hand-built ModelInferRequest; the error it is answered with."""
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        infer = channel.unary_unary(f"/{SERVICE}/ModelInfer",
                                    request_serializer=lambda m: m.SerializeToString(),
                                    response_deserializer=message("ModelInferResponse").FromString)
        with pytest.raises(grpc.RpcError) as raised:
            infer(request, metadata=[("authorization", f"Bearer {server.key}")], timeout=30)
    return raised.value


def hostile(raw: list[bytes] | None = None, shape: list[int] | None = None,
            datatype: str = "FP32", inputs: int = 1) -> object:
    request = message("ModelInferRequest")(model_name="flowers")
    for _ in range(inputs):
        request.inputs.add(name="input", datatype=datatype, shape=shape or [1, 4])
    request.raw_input_contents.extend(raw if raw is not None else [bytes(16)])
    return request


HOSTILE = [
    ("raw size lies", hostile(raw=[bytes(12)]), "holds 12 bytes but shape [1, 4] of FP32 "
     "needs 16", grpc.StatusCode.INVALID_ARGUMENT),
    ("raw count differs", hostile(raw=[bytes(16), bytes(16)]), "raw_input_contents has 2 "
     "entries for 1 inputs", grpc.StatusCode.INVALID_ARGUMENT),
    ("input twice", hostile(raw=[bytes(16), bytes(16)], inputs=2), "is given twice",
     grpc.StatusCode.INVALID_ARGUMENT),
    ("huge shape", hostile(shape=[10**9, 4]), "the limit is 40000",
     grpc.StatusCode.INVALID_ARGUMENT),
    ("unknown datatype", hostile(datatype="FP128"), "unknown datatype 'FP128'",
     grpc.StatusCode.INVALID_ARGUMENT),
    ("no contents", hostile(raw=[]), "needs 4 values, contents.fp32_contents has 0",
     grpc.StatusCode.INVALID_ARGUMENT),
    ("NaN", hostile(raw=[np.array([0, np.nan, 0, 0], np.float32).tobytes()]),
     "contains NaN or Inf", grpc.StatusCode.INVALID_ARGUMENT),
    ("over the size limit", hostile(raw=[bytes(2 * 1048576)], shape=[131072, 4]),
     "larger than max", grpc.StatusCode.RESOURCE_EXHAUSTED),
]


@pytest.mark.parametrize(("case", "request_", "text", "code"), HOSTILE,
                         ids=[case[0] for case in HOSTILE])
def test_hostile_messages_are_refused_and_the_server_keeps_serving(
        server: KilnServer, rows: np.ndarray, expected: np.ndarray, case: str,
        request_: object, text: str, code: grpc.StatusCode) -> None:
    error = raw_call(server, request_)
    assert error.code() == code and text in (error.details() or ""), error
    result = client_for(server).infer("flowers", [tensor_of(rows)], headers=auth(server))
    assert np.allclose(result.as_numpy("output"), expected, atol=1e-6)


def test_typed_contents_are_read_too(server: KilnServer, rows: np.ndarray,
                                     expected: np.ndarray) -> None:
    request = message("ModelInferRequest")(model_name="flowers")
    request.inputs.add(name="input", datatype="FP32", shape=list(rows.shape))
    request.inputs[0].contents.fp32_contents.extend(rows.reshape(-1).tolist())
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        infer = channel.unary_unary(f"/{SERVICE}/ModelInfer",
                                    request_serializer=lambda m: m.SerializeToString(),
                                    response_deserializer=message("ModelInferResponse").FromString)
        response = infer(request, metadata=[("authorization", f"Bearer {server.key}")])
    output = np.frombuffer(response.raw_output_contents[0], dtype=np.float32).reshape(5, 3)
    assert np.allclose(output, expected, atol=1e-6)


def test_grpc_requests_are_counted_in_metrics(server: KilnServer, rows: np.ndarray) -> None:
    client_for(server).infer("flowers", [tensor_of(rows)], headers=auth(server))
    text = httpx.get(server.url + "/metrics").text
    assert 'kiln_inference_requests_total{model="flowers",outcome="ok",protocol="grpc",' \
           'version="2"}' in text
    assert 'outcome="client_error",protocol="grpc"' in text
