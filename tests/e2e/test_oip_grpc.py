"""The Open Inference Protocol over gRPC, driven by the real ``tritonclient.grpc`` (in its own
process: ``tests/triton_grpc_peer.py``) against a running ``kiln serve``: the same infer,
metadata and error cases as the HTTP client's tests, plus hostile messages sent with the
protocol's own message types."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import onnxruntime as ort
import pytest

from app.serving.grpc_schema import SERVICE, message
from tests.fixtures.servers import KilnServer, ServerFactory
from tests.triton_grpc_peer import TritonGrpcPeer

LABELS = '["setosa", "versicolor", "virginica"]'


@pytest.fixture(scope="module")
def server(module_kiln_server: ServerFactory, classifier_onnx: Path) -> Iterator[KilnServer]:
    kiln = module_kiln_server(workers=0, KILN_MAX_REQUEST_MB="1")
    kiln.upload_model("flowers", classifier_onnx, labels=LABELS, times=2)
    with kiln.client() as client:
        reader = client.post("/v1/keys", json={"name": "reader", "scope": "read"})
        kiln.env["READ_KEY"] = reader.json()["key"]
    yield kiln


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return np.random.default_rng(0).normal(3, 2, size=(5, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def expected(classifier_onnx: Path, rows: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(classifier_onnx), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": rows})[0]


@pytest.fixture(scope="module")
def triton(server: KilnServer) -> Iterator[TritonGrpcPeer]:
    peer = TritonGrpcPeer(server.grpc_port)
    yield peer
    peer.close()


def test_health_and_metadata(server: KilnServer, triton: TritonGrpcPeer) -> None:
    assert triton.call("health") == {"ok": True, "live": True, "ready": True}
    metadata = triton.call("server_metadata")
    assert metadata["name"] == "modelkiln" and metadata["extensions"] == ["binary_tensor_data"]
    model = triton.call("model_metadata", model="flowers", key=server.key)
    assert model["versions"] == ["1", "2"] and model["platform"] == "onnxruntime_onnx"
    assert model["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "4"]}]
    assert model["outputs"][0]["shape"] == ["-1", "3"]
    assert triton.call("model_metadata", model="flowers", version="1", key=server.key)[
        "versions"
    ] == ["1"]
    for version, ready in (("", True), ("2", True), ("7", False)):
        assert (
            triton.call("model_ready", model="flowers", version=version, key=server.key)["ready"]
            is ready
        )
    assert triton.call("model_ready", model="nope", key=server.key)["ready"] is False


@pytest.mark.parametrize("version", ["", "1"])
def test_infer(
    server: KilnServer, triton: TritonGrpcPeer, rows: np.ndarray, expected: np.ndarray, version: str
) -> None:
    answer = triton.infer(rows, version=version, key=server.key, request_id="r-7")
    assert answer["ok"], answer
    assert np.allclose(answer["output"], expected, atol=1e-6)
    # no version named: the production alias, which the first upload took
    assert answer["model_version"] == (version or "1") and answer["id"] == "r-7"


def test_a_batch_of_256_rows(
    server: KilnServer, triton: TritonGrpcPeer, classifier_onnx: Path
) -> None:
    many = np.random.default_rng(1).normal(3, 2, size=(256, 4)).astype(np.float32)
    session = ort.InferenceSession(str(classifier_onnx), providers=["CPUExecutionProvider"])
    answer = triton.infer(many, key=server.key)
    assert np.allclose(answer["output"], session.run(None, {"input": many})[0], atol=1e-6)


ERRORS = [
    ("unknown model", {"model": "nope"}, "model 'nope' not found", grpc.StatusCode.NOT_FOUND),
    ("unknown version", {"version": "9"}, "has no version 9", grpc.StatusCode.NOT_FOUND),
    (
        "bad version",
        {"version": "x1"},
        "model_version 'x1' is not a version number",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "wrong datatype",
        {"datatype": "FP64"},
        "has datatype FP64; the model expects FP32",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "wrong shape",
        {"columns": 3},
        "has shape [1, 3]; the model expects [1 to 10000, 4]",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "unknown input",
        {"name": "pixels"},
        "unknown input(s) ['pixels']",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
]


@pytest.mark.parametrize(
    ("case", "change", "text", "code"), ERRORS, ids=[error[0] for error in ERRORS]
)
def test_errors_name_the_problem(
    server: KilnServer,
    triton: TritonGrpcPeer,
    rows: np.ndarray,
    case: str,
    change: dict[str, object],
    text: str,
    code: grpc.StatusCode,
) -> None:
    arguments = dict(change)
    columns = int(arguments.pop("columns", 4))  # type: ignore[call-overload]
    answer = triton.infer(rows[:1, :columns], key=server.key, **arguments)  # type: ignore[arg-type]
    assert not answer["ok"]
    assert text in answer["message"] and answer["status"] == str(code)


def test_keys_are_checked(server: KilnServer, triton: TritonGrpcPeer, rows: np.ndarray) -> None:
    missing = triton.infer(rows)
    assert missing["status"] == str(grpc.StatusCode.UNAUTHENTICATED)
    assert "missing API key" in missing["message"]
    wrong = triton.infer(rows, key="kiln_wrong")
    assert wrong["status"] == str(grpc.StatusCode.UNAUTHENTICATED)
    reader = triton.infer(rows, key=server.env["READ_KEY"])  # a read key may not predict
    assert reader["status"] == str(grpc.StatusCode.PERMISSION_DENIED)
    assert "missing API key" in triton.call("model_metadata", model="flowers")["message"]


def raw_call(server: KilnServer, request: object) -> grpc.RpcError:
    """Send a hand-built ModelInferRequest; the error it is answered with."""
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        infer = channel.unary_unary(
            f"/{SERVICE}/ModelInfer",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=message("ModelInferResponse").FromString,
        )
        with pytest.raises(grpc.RpcError) as raised:
            infer(request, metadata=[("authorization", f"Bearer {server.key}")], timeout=30)
    return raised.value


def hostile(
    raw: list[bytes] | None = None,
    shape: list[int] | None = None,
    datatype: str = "FP32",
    inputs: int = 1,
    model: str = "flowers",
) -> object:
    request = message("ModelInferRequest")(model_name=model)
    for _ in range(inputs):
        request.inputs.add(name="input", datatype=datatype, shape=shape or [1, 4])
    request.raw_input_contents.extend(raw if raw is not None else [bytes(16)])
    return request


HOSTILE = [
    (
        "raw size lies",
        hostile(raw=[bytes(12)]),
        "holds 12 bytes but shape [1, 4] of FP32 needs 16",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "raw count differs",
        hostile(raw=[bytes(16), bytes(16)]),
        "raw_input_contents has 2 entries for 1 inputs",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "input twice",
        hostile(raw=[bytes(16), bytes(16)], inputs=2),
        "is given twice",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "huge shape",
        hostile(shape=[10**9, 4]),
        "the limit is 40000",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "unknown datatype",
        hostile(datatype="FP128"),
        "unknown datatype 'FP128'",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "no contents",
        hostile(raw=[]),
        "needs 4 values, contents.fp32_contents has 0",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "NaN",
        hostile(raw=[np.array([0, np.nan, 0, 0], np.float32).tobytes()]),
        "contains NaN or Inf",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "over the size limit",
        hostile(raw=[bytes(2 * 1048576)], shape=[131072, 4]),
        "larger than max",
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ),
    ("a 100 KB model name", hostile(model="m" * 100_000), "model 'mmmm", grpc.StatusCode.NOT_FOUND),
]


@pytest.mark.parametrize(
    ("case", "request_", "text", "code"), HOSTILE, ids=[case[0] for case in HOSTILE]
)
def test_hostile_messages_are_refused_and_the_server_keeps_serving(
    server: KilnServer,
    triton: TritonGrpcPeer,
    rows: np.ndarray,
    expected: np.ndarray,
    case: str,
    request_: object,
    text: str,
    code: grpc.StatusCode,
) -> None:
    error = raw_call(server, request_)
    assert error.code() == code and text in (error.details() or ""), error
    assert len(error.details() or "") < 1000, "a message never echoes an unbounded input"
    assert np.allclose(triton.infer(rows, key=server.key)["output"], expected, atol=1e-6)


def test_typed_contents_are_read_too(
    server: KilnServer, rows: np.ndarray, expected: np.ndarray
) -> None:
    request = message("ModelInferRequest")(model_name="flowers")
    request.inputs.add(name="input", datatype="FP32", shape=list(rows.shape))
    request.inputs[0].contents.fp32_contents.extend(rows.reshape(-1).tolist())
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        infer = channel.unary_unary(
            f"/{SERVICE}/ModelInfer",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=message("ModelInferResponse").FromString,
        )
        response = infer(request, metadata=[("authorization", f"Bearer {server.key}")])
    output = np.frombuffer(response.raw_output_contents[0], dtype=np.float32).reshape(5, 3)
    assert np.allclose(output, expected, atol=1e-6)


def test_grpc_requests_are_counted_in_metrics(
    server: KilnServer, triton: TritonGrpcPeer, rows: np.ndarray
) -> None:
    assert triton.infer(rows, key=server.key)["ok"]
    text = httpx.get(server.url + "/metrics").text
    assert (
        'kiln_inference_requests_total{model="flowers",outcome="ok",protocol="grpc",'
        'version="1"}' in text  # the production alias's, which the first upload took
    )
    assert 'outcome="client_error",protocol="grpc"' in text
