"""Serving against Python Open Inference Protocol peers, in the same run, on the same ONNX
file (the 64-256-256-10 digits MLP of bench/serving.py, exported by ModelKiln and
registered as its own export, the path a searched model takes):

  - ModelKiln (``kiln serve --workers 0``): /v2 JSON, /v2 binary tensors, gRPC;
  - KServe's Python ``ModelServer`` with a custom onnxruntime predictor (REST v2 JSON and
    binary, gRPC), bench/peers/kserve_server.py;
  - MLServer with a custom ``MLModel`` calling onnxruntime (REST v2 JSON, gRPC; it has no
    binary tensor extension), bench/peers/mlserver_model.py;
  - PyTriton: Triton's C++ front end and dynamic batcher around an onnxruntime call in
    Python (REST v2 JSON and binary, gRPC), bench/peers/pytriton_server.py.

Each peer runs in its own virtual environment (``make bench-venvs``), one process each,
pinned to CPU 1; the load (wrk -t1 where installed, else bench/loadgen.py; gRPC:
tritonclient.grpc.aio, bench/grpc_load.py) runs on CPU 0: 8 connections, one row and 256
rows. Then the cost of the serving loop on ModelKiln's own paths (/v1 JSON and /v2 binary,
one row): a 50/50 traffic split, a shadow, and request logging at 10% sampling, each as a
ratio to the plain path in the same run (the setups in turn, five times; medians).

Targets: ModelKiln ahead of every Python peer (KServe, MLServer) on every scenario; within
20% of PyTriton's rows/s at batch 256; gRPC at batch 1 at least 80% of its own binary HTTP;
each loop feature under 10% of the plain path's requests/s.

    .venv/bin/python bench/serving_peers.py [--duration 6] [--connections 8] [--write]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import HOST, free_port, gateway_command, listening, pin, server  # noqa: E402
from bench.serving import Bench, Row, binary_body, train_model  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "serving_peers.md"
VENVS = ROOT / ".bench"
PEERS = ("KServe", "MLServer", "PyTriton")


def v2_json(rows: np.ndarray) -> bytes:
    tensor = {"name": "input", "shape": list(rows.shape), "datatype": "FP32"}
    return json.dumps({"inputs": [{**tensor, "data": rows.reshape(-1).tolist()}]}).encode()


@dataclass(frozen=True)
class Endpoint:
    """Where one server answers, and what it speaks."""

    name: str
    http_port: int
    grpc_port: int
    key: str = ""  # ModelKiln's API key; peers take none
    binary: bool = True  # the binary tensor extension on REST


def scenarios(bench: Bench, at: Endpoint, one: np.ndarray, many: np.ndarray) -> list[Row]:
    """JSON, binary (where it is spoken) and gRPC, at one row and 256."""
    auth = {"Authorization": f"Bearer {at.key}"} if at.key else {}
    path = "/v2/models/digits/infer"
    rows = []
    for body, batch in ((one, 1), (many, 256)):
        rows.append(
            bench.http(
                f"{at.name}, /v2 JSON, batch {batch}",
                at.http_port,
                path,
                v2_json(body),
                {**auth, "Content-Type": "application/json"},
                batch,
            )
        )
        if at.binary:
            blob, headers = binary_body(body)
            rows.append(
                bench.http(
                    f"{at.name}, /v2 binary, batch {batch}",
                    at.http_port,
                    path,
                    blob,
                    {**auth, **headers},
                    batch,
                )
            )
        rows.append(bench.grpc(f"{at.name}, gRPC, batch {batch}", at.grpc_port, at.key, batch))
    return rows


def register_export(data_dir: Path, model: Path) -> None:
    """Register ``model`` in the ModelKiln data dir as its own export (source 'search'):
    served on the path a searched model takes, like any network ModelKiln exported."""
    from app.contracts.signature import Signature
    from app.core.config import load_settings
    from app.core.db import session_scope
    from app.core.migrate import upgrade_to_head
    from app.registry.service import VersionDraft, register_version
    from app.storage import get_store

    settings = load_settings(data_dir=data_dir)
    upgrade_to_head(settings.database_url)
    with session_scope(settings.database_url) as session:
        artifact = get_store(settings).put_file("bench/digits.onnx", model)
        draft = VersionDraft(
            task="classification",
            source="search",
            artifact=artifact,
            class_labels=list(range(10)),
            signature=Signature.of_tensors(
                input_name="input", row_shape=(64,), output_name="output", width=10
            ),
        )
        for _ in range(2):  # two versions of the same file: a split and a shadow need two
            register_version(session, "digits", draft)


@contextlib.contextmanager
def modelkiln(scratch: Path, model: Path) -> Iterator[Endpoint]:
    data_dir = scratch / "kiln"
    register_export(data_dir, model)
    port, grpc_port = free_port(), free_port()
    command = gateway_command(port, grpc_port)
    env = {"KILN_DATA_DIR": str(data_dir), "KILN_ORT_THREADS": "1"}  # else the defaults
    with server(command, env, port, "/v2/health/ready"):
        key = (data_dir / "admin.key").read_text().strip()
        yield Endpoint("ModelKiln", port, grpc_port, key)


def _venv_python(name: str) -> Path:
    return VENVS / name / "bin" / "python"


@contextlib.contextmanager
def peer(name: str, scratch: Path, model: Path) -> Iterator[Endpoint]:
    port, grpc_port = free_port(), free_port()
    env: dict[str, str] = {}
    if name == "KServe":
        command = [str(_venv_python("kserve")), str(ROOT / "bench/peers/kserve_server.py")]
        command += [str(model), str(port), str(grpc_port)]
    elif name == "PyTriton":
        command = [str(_venv_python("pytriton")), str(ROOT / "bench/peers/pytriton_server.py")]
        command += [str(model), str(port), str(grpc_port)]
        # Triton's Python stub links libpython: the one of this interpreter, not the
        # system's older 3.11 (PyTriton issue #51).
        env["LD_LIBRARY_PATH"] = str(sysconfig.get_config_var("LIBDIR"))
    else:
        folder = scratch / "mlserver"
        folder.mkdir()
        shutil.copy(ROOT / "bench/peers/mlserver_model.py", folder)
        settings = {"http_port": port, "grpc_port": grpc_port, "metrics_port": free_port()}
        settings.update(host=HOST, debug=False, parallel_workers=0)
        (folder / "settings.json").write_text(json.dumps(settings))
        model_settings = {
            "name": "digits",
            "implementation": "mlserver_model.OnnxModel",
            "parameters": {"uri": str(model)},
        }
        (folder / "model-settings.json").write_text(json.dumps(model_settings))
        command = [str(VENVS / "mlserver" / "bin" / "mlserver"), "start", str(folder)]
    with server(command, env, port, "/v2/models/digits/ready"):
        ready_url = f"http://{HOST}:{port}/v2/models/digits/ready"
        for _ in range(600):  # the harness takes any answer under 500; a peer loads first
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        yield Endpoint(name, port, grpc_port, binary=name != "MLServer")


LOOP_ROUNDS = 5  # the loop's setups run in turn, this many times; each row is the median


def loop_costs(bench: Bench, at: Endpoint, one: np.ndarray) -> list[Row]:
    """/v1 JSON and /v2 binary at one row: plain, a 50/50 split, a shadow, 10% logging,
    run in turn ``LOOP_ROUNDS`` times (shared cores drift; the median of interleaved runs
    compares them on the same footing)."""
    auth = {"Authorization": f"Bearer {at.key}"}
    base = f"http://{HOST}:{at.http_port}/v1/models/digits"
    setups = [
        ("plain", {"version": 1}, None),
        (
            "split 50/50",
            {"versions": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]},
            None,
        ),
        ("shadow", {"version": 1, "shadow": 2}, None),
        ("log 10%", {"version": 1}, 0.1),
    ]
    blob, binary_headers = binary_body(one)
    paths = [
        (
            "/v1 JSON",
            "/v1/models/digits/predict",
            json.dumps({"inputs": one.tolist()}).encode(),
            {**auth, "Content-Type": "application/json"},
        ),
        ("/v2 binary", "/v2/models/digits/infer", blob, {**auth, **binary_headers}),
    ]
    runs: dict[str, list[Row]] = {}
    for _ in range(LOOP_ROUNDS):
        for label, policy, sample in setups:
            alias = f"{base}/aliases/production"
            httpx.put(alias, headers=auth, json=policy, timeout=30).raise_for_status()
            options = {"log_sample": sample} if sample is not None else {}
            httpx.put(f"{base}/serving", headers=auth, json=options, timeout=30).raise_for_status()
            for path_label, path, body, headers in paths:
                name = f"ModelKiln loop: {label}, {path_label}, batch 1"
                runs.setdefault(name, []).append(
                    bench.http(name, at.http_port, path, body, headers, 1)
                )
    return [median_row(name, rows) for name, rows in runs.items()]


def median_row(name: str, rows: list[Row]) -> Row:
    """The run with the median requests/s."""
    middle = sorted(rows, key=lambda row: row.requests_per_s)[len(rows) // 2]
    return Row(name, 1, middle.requests_per_s, middle.p50_ms, middle.p99_ms, middle.failures)


def floors(bench: Bench, one: np.ndarray) -> list[Row]:
    """What a request costs where nothing is done: the HTTP floor (a raw ASGI app on the
    same uvicorn answering a constant, bench/serving_floor.py) and the gRPC floor (grpcio's
    threaded server answering a prebuilt response, bench/grpc_floor.py)."""
    rows = []
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.serving_floor:app", "--host", HOST]
    command += ["--port", str(port), "--no-access-log", "--log-level", "warning"]
    with server(command, {}, port, "/"):
        blob, headers = binary_body(one)
        rows.append(bench.http("floor: raw ASGI, constant answer", port, "/", blob, headers, 1))
    port = free_port()
    command = [sys.executable, str(ROOT / "bench" / "grpc_floor.py"), str(port)]
    with listening(command, port):
        rows.append(bench.grpc("floor: grpcio threaded server, constant answer", port, "", 1))
    return rows


def measure(args: argparse.Namespace, scratch: Path) -> list[Row]:
    model = scratch / "mlp.onnx"
    test_rows = train_model(model)
    one, many = test_rows[:1], np.resize(test_rows, (256, 64))
    pin(os.getpid(), 0)
    bench = Bench(args, scratch)
    rows = floors(bench, one)
    with modelkiln(scratch, model) as kiln:
        rows += scenarios(bench, kiln, one, many)
        rows += loop_costs(bench, kiln, one)
    for name in args.peers:
        with peer(name, scratch, model) as at:
            rows += scenarios(bench, at, one, many)
    return rows


def _rate(rows: dict[str, Row], name: str) -> float | None:
    row = rows.get(name)
    return None if row is None else row.rows_per_s


def _verdict(met: bool) -> str:
    return "**met**" if met else "**missed**"


def targets(rows: list[Row], peers: list[str]) -> list[str]:
    """Each target, with the numbers it was judged on."""
    by_name = {row.name: row for row in rows}
    lines = []
    behind = []
    for scenario in ("/v2 JSON", "/v2 binary", "gRPC"):
        for batch in (1, 256):
            ours = _rate(by_name, f"ModelKiln, {scenario}, batch {batch}")
            for name in [p for p in peers if p != "PyTriton"]:
                theirs = _rate(by_name, f"{name}, {scenario}, batch {batch}")
                if ours is not None and theirs is not None and ours <= theirs:
                    behind.append(f"{scenario} batch {batch} vs {name} ({ours / theirs:.2f}x)")
    lines.append(
        "- Target: ahead of every Python peer on every scenario: "
        + (_verdict(True) if not behind else f"{_verdict(False)} ({'; '.join(behind)})")
    )
    if "PyTriton" in peers:
        ratios = []
        for scenario in ("/v2 JSON", "/v2 binary", "gRPC"):
            ours = _rate(by_name, f"ModelKiln, {scenario}, batch 256")
            theirs = _rate(by_name, f"PyTriton, {scenario}, batch 256")
            if ours and theirs:
                ratios.append((scenario, ours / theirs))
        shown = ", ".join(f"{scenario} {ratio:.0%}" for scenario, ratio in ratios)
        met = all(ratio >= 0.8 for _, ratio in ratios)
        lines.append(
            f"- Target: within 20% of PyTriton at batch 256 (ModelKiln's rows/s as a share of "
            f"PyTriton's): {shown}: {_verdict(met)}."
        )
    grpc, binary = (
        by_name.get("ModelKiln, gRPC, batch 1"),
        by_name.get("ModelKiln, /v2 binary, batch 1"),
    )
    if grpc and binary:
        ratio = grpc.requests_per_s / binary.requests_per_s
        lines.append(
            f"- Target: gRPC at batch 1 at least 80% of ModelKiln's binary HTTP: "
            f"{grpc.requests_per_s:,.0f} vs {binary.requests_per_s:,.0f} req/s, {ratio:.0%}: "
            f"{_verdict(ratio >= 0.8)}."
        )
        grpc_floor = by_name.get("floor: grpcio threaded server, constant answer")
        http_floor = by_name.get("floor: raw ASGI, constant answer")
        if grpc_floor and http_floor:
            floor_share = grpc_floor.requests_per_s / http_floor.requests_per_s
            lines.append(
                f"  For scale, the floors: grpcio answering a constant makes "
                f"{grpc_floor.requests_per_s:,.0f} calls/s ({floor_share:.0%} "
                f"of the HTTP floor's {http_floor.requests_per_s:,.0f}); ModelKiln's gRPC "
                f"reaches {grpc.requests_per_s / grpc_floor.requests_per_s:.0%} of its floor, "
                f"its binary HTTP {binary.requests_per_s / http_floor.requests_per_s:.0%} of "
                "its own."
            )
    for path in ("/v1 JSON", "/v2 binary"):
        plain = by_name.get(f"ModelKiln loop: plain, {path}, batch 1")
        if plain is None:
            continue
        costs = []
        for label in ("split 50/50", "shadow", "log 10%"):
            row = by_name.get(f"ModelKiln loop: {label}, {path}, batch 1")
            if row is not None:
                costs.append((label, 1 - row.requests_per_s / plain.requests_per_s))
        shown = ", ".join(f"{label} {cost:+.1%}" for label, cost in costs)
        lines.append(
            f"- Target: each loop feature costs under 10% of the plain path ({path}, one "
            f"row; requests/s lost): {shown}: {_verdict(all(c < 0.10 for _, c in costs))}."
        )
    return lines


def report(rows: list[Row], args: argparse.Namespace) -> str:
    lines = [
        "| server, scenario | requests/s | rows/s | p50 ms | p99 ms | failed |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {row.name} | {row.requests_per_s:,.0f} | {row.rows_per_s:,.0f} | "
            f"{row.p50_ms:.2f} | {row.p99_ms:.2f} | {row.failures} |"
            for row in rows
        ),
        "",
        *targets(rows, args.peers),
        "",
        f"Run: {args.connections} connections, {args.duration:.0f} s per scenario after a "
        "warm-up, load by "
        f"{'wrk -t1' if shutil.which('wrk') and not args.python_load else 'bench/loadgen.py'}"
        f" (gRPC: tritonclient.grpc.aio, bench/grpc_load.py); {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}), Python {platform.python_version()}, "
        f"onnxruntime {ort.__version__} in every environment; each server one process "
        "(PyTriton: the Triton server and its Python model process) pinned to CPU 1, the "
        "load generator to CPU 0; one onnxruntime intra-op thread everywhere; no per-request "
        "log lines anywhere. ModelKiln checks an API key on every request; the peers take "
        "none. MLServer has no binary tensor extension on REST (its rows are left out).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=PEERS)
    parser.add_argument("--python-load", action="store_true")
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.name}")
    args = parser.parse_args()
    missing = [
        name
        for name in args.peers
        if not (
            VENVS / {"KServe": "kserve", "MLServer": "mlserver", "PyTriton": "pytriton"}[name]
        ).exists()
    ]
    if missing:
        print(f"left out (make bench-venvs makes their environments): {missing}")
        args.peers = [name for name in args.peers if name not in missing]
    with tempfile.TemporaryDirectory() as scratch:
        rows = measure(args, Path(scratch))
    table = report(rows, args)
    print("\n" + table)
    if args.write:
        RESULTS.write_text(
            "# Serving against Python OIP peers\n\nProduced by `.venv/bin/python "
            f"bench/serving_peers.py --write` on {time.strftime('%Y-%m-%d')}.\n\n{table}\n"
        )


if __name__ == "__main__":
    main()
