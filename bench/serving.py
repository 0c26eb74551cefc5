"""Serving benchmark (issue: the serving core). One server process at a time, pinned to CPU 1,
the same load generator (wrk, one thread, 8 connections, pinned to CPU 0) and the same
rows, in one run:

  (a) raw onnxruntime in-process on the searched model (the model's own cost);
  (f) the floor: a raw ASGI app on the same uvicorn answering a constant (serving_floor.py);
  (m) a minimal raw ASGI + orjson + onnxruntime app (serving_minimal.py);
  (b) a plain FastAPI + onnxruntime endpoint of about 20 lines (serving_reference.py);
  (c) ModelKiln /v1 predict of a model it searched itself (bench/serving_models.py), one
      JSON row, with the defaults a user gets (drift sampled at 10%, same-turn coalescing);
      beside it, each feature on the request path on and off: drift off, coalescing off,
      a 10% request log and a shadow on; one connection (latency alone);
  (u) the same ONNX file uploaded (classified bounded: it runs in the gateway);
  (s) the same network made sandboxed (wrapped in an If: it runs only in a sandbox process),
      at batch 1 and 256;
  (d) /v2 binary tensors at batch 1 and 256; (g) gRPC through tritonclient.grpc at batch 1
      and 256, beside grpcio's own constant-answer server (grpc_floor.py);
  plus dynamic batching, and a batch prediction job over 1,000,000 rows on a worker.

Targets (issue: the serving core): (c) >= 0.5 of the floor's requests/s, and with the log
and shadow on >= 0.85 of (c); (u) within 10% of (c); (s) >= 0.5 of (u) at batch 1 and
>= 0.8 at batch 256; gRPC at batch 1 >= 0.8 of grpcio's constant-answer rate; p99 beside
the floor's. Earlier targets kept: /v2 binary and gRPC at batch 256 >= 60% of raw
onnxruntime's rows/s; the batch job >= 50% of onnxruntime's rows/s.

    .venv/bin/python bench/serving.py [--duration 6] [--connections 8] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import HOST, free_port, gateway_command, listening, pin, server  # noqa: E402
from bench.loadgen import Measured, run_python_load, run_wrk  # noqa: E402
from bench.serving_batch import batch_job  # noqa: E402
from bench.serving_models import digits_csv, sandboxed_variant, searched_model, upload  # noqa: E402
from bench.serving_report import RESULTS, Row, report, shown  # noqa: E402

JSON_HEADERS = {"Content-Type": "application/json"}


def raw_onnxruntime(model: Path, rows: np.ndarray, batch: int, seconds: float) -> Row:
    """(a) session.run in a loop in this process, one intra-op thread like the servers."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.resize(rows, (batch, rows.shape[1]))}
    for _ in range(50):
        session.run(None, feed)
    times: list[float] = []
    stop = time.perf_counter() + seconds
    while (started := time.perf_counter()) < stop:
        session.run(None, feed)
        times.append(time.perf_counter() - started)
    spent = np.asarray(times)
    return shown(
        Row(
            f"(a) raw onnxruntime, in-process, batch {batch}",
            batch,
            len(spent) / spent.sum(),
            float(np.percentile(spent, 50) * 1e3),
            float(np.percentile(spent, 99) * 1e3),
            0,
        )
    )


def json_body(rows: np.ndarray) -> bytes:
    return json.dumps({"inputs": rows.tolist()}).encode()


def binary_body(rows: np.ndarray) -> tuple[bytes, dict[str, str]]:
    blob = np.ascontiguousarray(rows, dtype=np.float32).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(blob)},
                }
            ],
            "outputs": [{"name": "output", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return header + blob, {
        "Inference-Header-Content-Length": str(len(header)),
        "Content-Type": "application/octet-stream",
    }


@dataclass
class Bench:
    """What every scenario shares: the arguments, a scratch folder and the rows."""

    args: argparse.Namespace
    scratch: Path
    one: np.ndarray
    many: np.ndarray

    def http(
        self,
        name: str,
        port: int,
        path: str,
        body: bytes,
        headers: dict[str, str],
        batch: int,
        connections: int | None = None,
    ) -> Row:
        """One closed-loop HTTP run: wrk where installed, else the asyncio generator."""
        connections = connections or self.args.connections
        if shutil.which("wrk") and not self.args.python_load:
            measured = run_wrk(
                f"http://{HOST}:{port}{path}",
                body,
                headers,
                connections=connections,
                duration_s=self.args.duration,
                cpu=load_cpu(),
                scratch=self.scratch,
            )
        else:
            measured = run_python_load(
                HOST,
                port,
                path,
                body,
                headers,
                connections=connections,
                duration_s=self.args.duration,
            )
        return shown(Row.of(name, batch, measured))

    def grpc(self, name: str, port: int, key: str, batch: int, model: str = "digits") -> Row:
        """One closed-loop run of tritonclient.grpc's asyncio client in its own process."""
        command = [
            sys.executable,
            str(ROOT / "bench" / "grpc_load.py"),
            f"{HOST}:{port}",
            key,
            model,
            str(batch),
            "64",
            str(self.args.duration),
            str(self.args.connections),
        ]
        cpu = load_cpu()
        if cpu is not None and shutil.which("taskset"):
            command = ["taskset", "-c", str(cpu), *command]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        return shown(Row.of(name, batch, Measured(**json.loads(out.strip().splitlines()[-1]))))


def load_cpu() -> int | None:
    return 0 if (os.cpu_count() or 1) >= 2 else None


def peers(bench: Bench, model: Path) -> list[Row]:
    """The floors, the minimal app and the FastAPI reference, each on its own server."""
    rows = []
    for label, module, ready in (
        ("(f) floor: raw ASGI, constant answer", "serving_floor", "/"),
        ("(m) minimal raw ASGI + orjson + onnxruntime", "serving_minimal", None),
        ("(b) reference FastAPI endpoint", "serving_reference", "/docs"),
    ):
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            f"bench.{module}:app",
            "--host",
            HOST,
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        path = "/predict" if module == "serving_reference" else "/"
        with server(command, {"REFERENCE_MODEL": str(model)}, port, ready, json_body(bench.one)):
            sizes = (
                ((bench.one, 1),)
                if module == "serving_floor"
                else ((bench.one, 1), (bench.many, 256))
            )
            for body, batch in sizes:
                rows.append(
                    bench.http(
                        f"{label}, JSON, batch {batch}",
                        port,
                        path,
                        json_body(body),
                        JSON_HEADERS,
                        batch,
                    )
                )
    port = free_port()
    with listening([sys.executable, str(ROOT / "bench" / "grpc_floor.py"), str(port)], port):
        rows.append(bench.grpc("(gf) floor: grpcio threaded server, constant answer", port, "", 1))
    return rows


def kiln_gateway(
    bench: Bench,
    data: Path,
    label: str,
    measure: Callable[[int, int, dict[str, str]], list[Row]],
    **env: str,
) -> list[Row]:
    """A gateway (no worker) on ``data`` with ``env``; ``measure(port, grpc_port, auth)``."""
    port, grpc_port = free_port(), free_port()
    environment = {"KILN_DATA_DIR": str(data), "KILN_ORT_THREADS": "1", **env}
    print(f"  ModelKiln gateway: {label}")
    with server(gateway_command(port, grpc_port), environment, port, "/v2/health/ready"):
        key = (data / "admin.key").read_text().strip()
        return measure(port, grpc_port, {"Authorization": f"Bearer {key}"})


def kiln_rows(bench: Bench, data: Path, searched: Path) -> list[Row]:
    """Every ModelKiln scenario (see the module docstring)."""
    one, many = json_body(bench.one), json_body(bench.many)
    v1 = "(c) ModelKiln /v1 predict (searched model), JSON, batch 1"

    def defaults(port: int, grpc_port: int, auth: dict[str, str]) -> list[Row]:
        url = f"http://{HOST}:{port}"
        key = auth["Authorization"].split()[1]
        headers = {**auth, **JSON_HEADERS}
        upload(url, key, "digits", searched)  # version 2: the shadow below
        upload(url, key, "uploaded", searched)
        upload(url, key, "sandboxed", sandboxed_variant(searched, bench.scratch / "if.onnx"))
        put = lambda path, body: httpx.put(url + path, headers=auth, json=body, timeout=30)  # noqa: E731
        put("/v1/models/digits/aliases/production", {"version": 1}).raise_for_status()
        rows = [bench.http(f"{v1}, defaults", port, "/v1/models/digits/predict", one, headers, 1)]
        rows.append(
            bench.http(
                f"{v1}, defaults, 1 connection",
                port,
                "/v1/models/digits/predict",
                one,
                headers,
                1,
                connections=1,
            )
        )
        for name, label in (
            ("uploaded", "(u) uploaded, bounded"),
            ("sandboxed", "(s) uploaded, sandboxed"),
        ):
            for body, batch in ((one, 1), (many, 256)):
                rows.append(
                    bench.http(
                        f"{label}, /v1 JSON, batch {batch}",
                        port,
                        f"/v1/models/{name}/predict",
                        body,
                        headers,
                        batch,
                    )
                )
        rows.append(
            bench.http(
                "(c) ModelKiln /v1 predict (searched model), JSON, batch 256",
                port,
                "/v1/models/digits/predict",
                many,
                headers,
                256,
            )
        )
        for rows_in, batch in ((bench.one, 1), (bench.many, 256)):
            binary, binary_headers = binary_body(rows_in)
            rows.append(
                bench.http(
                    f"(d) ModelKiln /v2 infer, binary, batch {batch}",
                    port,
                    "/v2/models/digits/infer",
                    binary,
                    {**auth, **binary_headers},
                    batch,
                )
            )
            rows.append(
                bench.grpc(
                    f"(g) ModelKiln gRPC, tritonclient.grpc, batch {batch}", grpc_port, key, batch
                )
            )
        put("/v1/models/digits/serving", {"log_sample": 0.1}).raise_for_status()
        put("/v1/models/digits/aliases/production", {"version": 1, "shadow": 2}).raise_for_status()
        rows.append(
            bench.http(
                f"{v1}, defaults + 10% request log + a shadow",
                port,
                "/v1/models/digits/predict",
                one,
                headers,
                1,
            )
        )
        put("/v1/models/digits/serving", {"log_sample": 0.0}).raise_for_status()
        put("/v1/models/digits/aliases/production", {"version": 1}).raise_for_status()
        for size, delay in ((8, 0.0),):
            put(
                "/v1/models/digits/serving", {"max_batch_size": size, "max_queue_delay_ms": delay}
            ).raise_for_status()
            rows.append(
                bench.http(
                    f"{v1}, + dynamic batching ({size} rows, {delay:g} ms)",
                    port,
                    "/v1/models/digits/predict",
                    one,
                    headers,
                    1,
                )
            )
        put("/v1/models/digits/serving", {"max_batch_size": None}).raise_for_status()
        return rows

    def alone(label: str) -> Callable[[int, int, dict[str, str]], list[Row]]:
        def measure(port: int, grpc_port: int, auth: dict[str, str]) -> list[Row]:
            return [
                bench.http(
                    f"{v1}, {label}",
                    port,
                    "/v1/models/digits/predict",
                    one,
                    {**auth, **JSON_HEADERS},
                    1,
                )
            ]

        return measure

    rows = kiln_gateway(bench, data, "defaults", defaults)
    rows += kiln_gateway(bench, data, "drift off", alone("drift off"), KILN_DRIFT_SAMPLE="0")
    rows += kiln_gateway(
        bench, data, "coalescing off", alone("coalescing off"), KILN_COALESCE="false"
    )
    return rows


def measure(args: argparse.Namespace, scratch: Path) -> tuple[list[Row], list[object]]:
    data = scratch / "kiln"
    data.mkdir()
    print("  searching digits (kiln serve with one worker)...")
    searched = searched_model(data)
    _, rows_all = digits_csv()
    bench = Bench(args, scratch, rows_all[:1], np.resize(rows_all, (256, 64)))
    rows = [raw_onnxruntime(searched, rows_all, batch, 3.0) for batch in (1, 256)]
    pin(os.getpid(), 0)
    rows += peers(bench, searched)
    rows += kiln_rows(bench, data, searched)
    if hasattr(os, "sched_setaffinity"):  # the batch job's server and worker use every CPU
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    batches = [
        batch_job(scratch, searched, rows_all, count)
        for count in (args.batch_rows // 10, args.batch_rows)
        if args.batch_rows
    ]
    return rows, batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--batch-rows",
        type=int,
        default=1_000_000,
        help="rows of the batch prediction job (0: skip it)",
    )
    parser.add_argument(
        "--python-load",
        action="store_true",
        help="use bench/loadgen.py even where wrk is installed",
    )
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.name}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        rows, batches = measure(args, Path(scratch))
    table = report(rows, batches, args)  # type: ignore[arg-type]
    print("\n" + table)
    if args.write:
        RESULTS.write_text(
            "# Serving benchmark\n\nProduced by `.venv/bin/python bench/serving.py --write` on "
            f"{time.strftime('%Y-%m-%d')}.\n\n{table}\n"
        )


if __name__ == "__main__":
    main()
