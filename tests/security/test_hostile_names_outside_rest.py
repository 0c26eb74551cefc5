"""Hostile names over gRPC, and in the settings and the CLI: the gRPC inference service
answers NOT_FOUND or INVALID_ARGUMENT for a name that breaks the rules; a queue name, a
column name or a key name with a control character is refused where it is given, and
nothing is stored."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st

from app.core.config import Settings, SettingsError, load_settings
from app.main import create_app
from app.serving.grpc_schema import SERVICE, message
from tests.conftest import make_settings, register
from tests.security.test_hostile_names import hostile, stored


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def grpc_gateway(
    settings: Settings, admin: dict, classifier_onnx: Path
) -> Iterator[tuple[str, str]]:
    """A gateway with its gRPC service on, and a registered model: (address, admin key)."""
    port = _free_port()
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    with TestClient(
        create_app(
            make_settings(settings.data_dir, settings.database_url, grpc_port=port), serve_grpc=True
        )
    ):
        yield f"127.0.0.1:{port}", admin["Authorization"].removeprefix("Bearer ")


@fuzz_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_hostile_names_over_grpc_are_not_found_or_invalid(
    grpc_gateway: tuple[str, str], data: st.DataObject
) -> None:
    address, secret = grpc_gateway
    name = data.draw(hostile("flowers"))
    method = data.draw(st.sampled_from(["ModelReady", "ModelMetadata", "ModelInfer"]))
    request_type = {
        "ModelReady": "ModelReadyRequest",
        "ModelMetadata": "ModelMetadataRequest",
        "ModelInfer": "ModelInferRequest",
    }[method]
    request = message(request_type)(
        **({"model_name": name} if method == "ModelInfer" else {"name": name})
    )
    if method == "ModelInfer":
        request.inputs.add(name="input", datatype="FP32", shape=[1, 4])
        request.raw_input_contents.append(bytes(16))
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(
            f"/{SERVICE}/{method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=message(request_type.replace("Request", "Response")).FromString,
        )
        try:
            answer = call(request, metadata=[("authorization", f"Bearer {secret}")], timeout=30)
        except grpc.RpcError as error:
            assert error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), (
                error
            )
            return
    assert method == "ModelReady" and answer.ready is False  # readiness answers, never raises


@pytest.mark.parametrize("bad", ["kiln\n", " kiln", "ki\u2028ln", "kiln\x1b"])
def test_a_queue_name_with_a_control_character_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bad: str
) -> None:
    monkeypatch.setenv("KILN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KILN_QUEUE_NAME", bad)
    with pytest.raises(SettingsError, match="KILN_QUEUE_NAME: queue name"):
        load_settings()


def test_a_column_name_with_a_control_character_is_refused(client: TestClient, admin: dict) -> None:
    table = io.BytesIO(b'"a\x1bb",label\n1,x\n2,y\n3,x\n4,y\n')
    answer = client.post(
        "/v1/datasets",
        headers=admin,
        data={"target": "label"},
        files={"file": ("t.csv", table, "text/csv")},
    )
    assert answer.status_code == 422
    assert "header, column 1: column name" in answer.json()["detail"]


def test_kiln_keys_create_refuses_a_name_with_a_control_character(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    from app.cli import main

    monkeypatch.setenv("KILN_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("KILN_DATABASE_URL", settings.database_url)
    before = stored(settings)
    with pytest.raises(SystemExit, match="--name: key name 'ci\\\\n' holds the control"):
        main(["keys", "create", "--name", "ci\n", "--scope", "read"])
    assert stored(settings) == before
