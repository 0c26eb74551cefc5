"""A new user's first minutes, over HTTP, against a ``kiln serve`` from a venv that holds
only ``pip install -e .`` (no test extra) at the newest versions pyproject.toml allows.

Run with that venv's Python: ``VENV/bin/python .ci/main_install_smoke.py``. It starts
``VENV/bin/kiln serve`` on free ports in a temporary data dir, then: uploads an ONNX model
and infers through ``/v2``; uploads a CSV with words and gaps; runs a 2-trial search on the
embedded worker; predicts by column name through ``/v1``. Standard library and ``onnx``
(a main dependency) only. Exits non-zero naming the step that failed, with the log's tail."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto, helper

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gateway:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.log = data_dir.parent / "serve.log"
        env = {**os.environ, "KILN_DATA_DIR": str(data_dir)}
        self.process = subprocess.Popen(
            [str(BIN / "kiln"), "serve", "--port", str(self.port), "--grpc-port", str(free_port())],
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.key = ""

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        if body is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=body, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def wait_ready(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                fail("kiln serve exited", self)
            try:
                if self.request("GET", "/v2/health/ready")[0] == 200:
                    self.key = (self.data_dir / "admin.key").read_text().strip()
                    return
            except OSError:
                pass
            time.sleep(0.5)
        fail("kiln serve did not become ready", self)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()


def fail(step: str, gateway: Gateway, answer: object = "") -> None:
    tail = gateway.log.read_text(errors="replace")[-4000:] if gateway.log.exists() else ""
    print(f"main-install smoke FAILED at: {step}\n{answer}\n--- kiln serve log ---\n{tail}")
    gateway.stop()
    raise SystemExit(1)


def multipart(fields: dict[str, str], filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
        + content
        + b"\r\n"
    )
    return b"".join(
        parts
    ) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def classifier_onnx() -> bytes:
    """4 features -> softmax over 3 classes, built with onnx.helper (no torch)."""
    rng = random.Random(0)
    weights = [rng.uniform(-1, 1) for _ in range(12)]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "w"], ["logits"]),
            helper.make_node("Add", ["logits", "b"], ["scores"]),
            helper.make_node("Softmax", ["scores"], ["output"], axis=1),
        ],
        "smoke",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3])],
        initializer=[
            helper.make_tensor("w", TensorProto.FLOAT, [4, 3], weights),
            helper.make_tensor("b", TensorProto.FLOAT, [3], [0.1, 0.0, -0.1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def table_csv() -> bytes:
    """A table as users bring it: numbers, a word column, gaps; the label follows them."""
    rng = random.Random(1)
    lines = ["size,colour,weight,label"]
    for row in range(240):
        label = row % 2
        size = "" if row % 17 == 0 else f"{rng.gauss(3.0 * label, 1.0):.3f}"
        colour = ["red", "blue"][label] if rng.random() < 0.8 else "green"
        lines.append(f"{size},{colour},{rng.gauss(0, 1):.3f},{'yes' if label else 'no'}")
    return ("\n".join(lines) + "\n").encode()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="kiln-smoke-") as scratch:
        gateway = Gateway(Path(scratch) / "data")
        gateway.wait_ready()

        body, kind = multipart({}, "upload.onnx", classifier_onnx())
        status, answer = gateway.request("POST", "/v1/models/smoke-upload/versions", body, kind)
        if status != 201:
            fail("upload an ONNX model", gateway, (status, answer))
        infer = {
            "inputs": [
                {
                    "name": "input",
                    "shape": [2, 4],
                    "datatype": "FP32",
                    "data": [0.1, 0.2, 0.3, 0.4, 1.0, -1.0, 0.5, 0.0],
                }
            ]
        }
        status, answer = gateway.request(
            "POST", "/v2/models/smoke-upload/infer", json.dumps(infer).encode()
        )
        if status != 200 or answer["outputs"][0]["shape"] != [2, 3]:
            fail("/v2 infer on the uploaded model", gateway, (status, answer))

        body, kind = multipart({"target": "label", "name": "smoke-table"}, "table.csv", table_csv())
        status, answer = gateway.request("POST", "/v1/datasets", body, kind)
        if status != 201:
            fail("upload a CSV", gateway, (status, answer))
        search = {
            "kind": "search",
            "dataset_id": answer["id"],
            "model_name": "smoke-table",
            "search": {"algorithm": "random", "max_trials": 2, "seed": 0},
        }
        status, answer = gateway.request("POST", "/v1/jobs", json.dumps(search).encode())
        if status != 202:
            fail("submit a 2-trial search", gateway, (status, answer))
        job_id, deadline = answer["id"], time.monotonic() + 600
        while answer["status"] not in ("succeeded", "failed", "cancelled"):
            if time.monotonic() > deadline:
                fail("the search did not finish in 600 s", gateway, answer)
            time.sleep(1)
            status, answer = gateway.request("GET", f"/v1/jobs/{job_id}")
        if answer["status"] != "succeeded":
            fail("the 2-trial search", gateway, answer)

        records = {
            "inputs": [
                {"size": 3.2, "colour": "blue", "weight": 0.1},
                {"size": None, "colour": "red", "weight": -0.3},
            ]
        }
        status, answer = gateway.request(
            "POST", "/v1/models/smoke-table/predict", json.dumps(records).encode()
        )
        if status != 200 or not set(answer["predictions"]) <= {"yes", "no"}:
            fail("/v1 predict by column name", gateway, (status, answer))
        gateway.stop()
    versions = subprocess.run(
        [str(BIN / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    shown = [
        line
        for line in versions
        if line.split("==")[0].lower()
        in ("protobuf", "onnx", "onnxruntime", "fastapi", "numpy", "optuna", "sqlalchemy")
    ]
    print("main-install smoke passed:", ", ".join(shown))


if __name__ == "__main__":
    main()
