"""The models the serving benchmark serves, made the way a user makes them:

- ``digits``: a network ModelKiln searched itself (``kiln serve`` with a worker, scikit-learn's
  digits uploaded as a CSV, a short MLP search), its registered ONNX file;
- the same file uploaded as an ONNX model: classified *bounded* (every op of known cost,
  static shapes but the batch), so it runs in the gateway like the searched one;
- the same network wrapped in an ``If`` whose condition is always true: the answers are
  the same, but an op with a graph attribute is not bounded, so this upload runs only in
  a sandbox process (the cost of isolation, on the same network)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bench.harness import HOST, free_port

SEARCH = {"algorithm": "random", "max_trials": 2, "families": ["mlp"], "max_epochs": 10}


def digits_csv() -> tuple[bytes, np.ndarray]:
    """scikit-learn's digits as the CSV a user uploads, and its rows (float32)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([f"px{index}" for index in range(64)] + ["label"])
    for row, label in zip(digits.data.astype(int).tolist(), digits.target, strict=True):
        writer.writerow([*row, int(label)])
    return buffer.getvalue().encode(), digits.data.astype(np.float32)


def searched_model(data_dir: Path) -> Path:
    """Search digits on a ``kiln serve`` with one worker in ``data_dir``; the registered
    version's ONNX file (the server is stopped again)."""
    port = free_port()
    kiln = Path(sys.executable).with_name("kiln")
    log = (data_dir.parent / "search-serve.log").open("ab")
    process = subprocess.Popen(
        [
            str(kiln),
            "serve",
            "--workers",
            "1",
            "--host",
            HOST,
            "--port",
            str(port),
            "--grpc-port",
            "0",
            "--no-access-log",
        ],
        env={**os.environ, "KILN_DATA_DIR": str(data_dir)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://{HOST}:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        key = (data_dir / "admin.key").read_text().strip()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
            content, _ = digits_csv()
            dataset = client.post(
                "/v1/datasets",
                data={"target": "label"},
                files={"file": ("digits.csv", content)},
                timeout=120,
            )
            dataset.raise_for_status()
            job = client.post(
                "/v1/jobs",
                json={
                    "kind": "search",
                    "dataset_id": dataset.json()["id"],
                    "model_name": "digits",
                    "search": SEARCH,
                },
            )
            job.raise_for_status()
            while (state := client.get(f"/v1/jobs/{job.json()['id']}").json())["status"] in (
                "queued",
                "running",
            ):
                time.sleep(1)
            if state["status"] != "succeeded":
                raise RuntimeError(f"the benchmark's search {state['status']}: {state['error']}")
            version = client.get("/v1/models/digits/versions/1").json()
            artifact = client.get("/v1/models/digits/versions/1/artifact", timeout=120)
            artifact.raise_for_status()
    finally:
        process.terminate()
        process.wait(timeout=60)
    path = data_dir.parent / "searched.onnx"
    path.write_bytes(artifact.content)
    if version["signature"]["inputs"][0]["shape"] != [-1, 64]:
        raise RuntimeError("the searched digits model does not take one tensor of 64 values")
    return path


def sandboxed_variant(model: Path, path: Path) -> Path:
    """``model`` with its output computed inside an always-true ``If``: the same answers,
    classified sandboxed (a node with a graph attribute)."""
    graph = onnx.load(str(model))
    output = graph.graph.output[0]
    inner = f"{output.name}_inner"
    for node in graph.graph.node:
        node.output[:] = [inner if name == output.name else name for name in node.output]
    branches = [
        helper.make_graph(
            [helper.make_node("Identity", [inner], [f"{side}_out"])],
            side,
            [],
            [helper.make_tensor_value_info(f"{side}_out", TensorProto.FLOAT, None)],
        )
        for side in ("then", "else")
    ]
    graph.graph.initializer.append(numpy_helper.from_array(np.array(True), "always"))
    graph.graph.node.append(
        helper.make_node(
            "If", ["always"], [output.name], then_branch=branches[0], else_branch=branches[1]
        )
    )
    path.write_bytes(graph.SerializeToString())
    return path


def upload(url: str, key: str, name: str, model: Path) -> dict[str, object]:
    """Upload ``model`` as the next version of ``name`` (the digits' ten labels)."""
    answer = httpx.post(
        f"{url}/v1/models/{name}/versions",
        headers={"Authorization": f"Bearer {key}"},
        files={"file": ("model.onnx", model.read_bytes())},
        data={"labels": json.dumps(list(range(10)))},
        timeout=120,
    )
    answer.raise_for_status()
    version: dict[str, object] = answer.json()
    return version
