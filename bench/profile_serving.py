"""Where a /v1 predict request's time goes: py-spy samples one ``kiln serve`` gateway
(pinned to CPU 1) while wrk drives one JSON row at it (pinned to CPU 0), and writes a
flame graph plus the share of samples in each stage of the path.

    .venv/bin/python bench/profile_serving.py [--seconds 8] [--svg bench/results/serving-flame.svg]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import HOST, free_port, gateway_command, server  # noqa: E402
from bench.serving import json_body, train_model  # noqa: E402

# Stages of the path, by the frame that starts each (file suffix, function).
STAGES = [
    ("uvicorn: HTTP parsing and the request task", "httptools_impl.py", "data_received"),
    ("the whole ASGI call", "main.py", "Gateway.__call__"),
    ("key check", "inference.py", "authorize"),
    ("body read", "fast_path.py", "read_body"),
    ("version lookup (cache)", "directory.py", "ServingDirectory.cached_target"),
    ("parse and check the JSON", "inference.py", "predict_answer.<locals>.parse"),
    ("onnxruntime (Python wrapper and run)", "runtime.py", "LoadedModel.run"),
    ("render the answer", "inference.py", "predict_answer.<locals>.render"),
    ("metrics", "metrics.py", "ServingMetrics.succeeded"),
    ("write the response (uvicorn send)", "fast_path.py", "respond"),
]


def shares(raw: Path) -> list[tuple[str, float]]:
    """Each stage's share of the samples of the thread holding the GIL."""
    counts: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        for label, file, function in STAGES:
            if any(f"{function} (" in frame and f"{file}:" in frame for frame in stack.split(";")):
                counts[label] += int(count)
    return [(label, counts[label] / total) for label, _, _ in STAGES]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--svg", default=str(ROOT / "bench" / "results" / "serving-flame.svg"))
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("needs wrk (apt install wrk)")
    spy = Path(sys.executable).with_name("py-spy")
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        model = scratch / "mlp.onnx"
        one = train_model(model)[:1]
        port = free_port()
        kiln = gateway_command(port, 0)
        env = {"KILN_DATA_DIR": str(scratch / "kiln"), "KILN_ORT_THREADS": "1"}
        with server(kiln, env, port, "/v2/health/ready") as process:
            key = (scratch / "kiln" / "admin.key").read_text().strip()
            base = f"http://{HOST}:{port}"
            httpx.post(
                f"{base}/v1/models/digits/versions",
                timeout=60,
                headers={"Authorization": f"Bearer {key}"},
                files={"file": ("mlp.onnx", model.read_bytes())},
                data={"labels": json.dumps(list(range(10)))},
            ).raise_for_status()
            script = scratch / "post.lua"
            script.write_text(
                f"wrk.method = 'POST'\nwrk.body = '{json_body(one).decode()}'\n"
                "wrk.headers['Content-Type'] = 'application/json'\n"
                f"wrk.headers['Authorization'] = 'Bearer {key}'\n"
            )
            url = f"{base}/v1/models/digits/predict"
            load = subprocess.Popen(
                [
                    "taskset",
                    "-c",
                    "0",
                    "wrk",
                    "-t1",
                    "-c8",
                    f"-d{args.seconds + 3:g}s",
                    "-s",
                    str(script),
                    url,
                ],
                stdout=subprocess.DEVNULL,
            )
            time.sleep(1.5)
            raw = scratch / "profile.txt"
            for output, form in ((raw, "raw"), (Path(args.svg), "flamegraph")):
                subprocess.run(
                    [
                        str(spy),
                        "record",
                        "-p",
                        str(process.pid),
                        "--gil",
                        "-r",
                        "1000",
                        "-d",
                        f"{args.seconds / 2:g}",
                        "-f",
                        form,
                        "-o",
                        str(output),
                    ],
                    check=True,
                    capture_output=True,
                )
            load.wait()
            for label, share in shares(raw):
                print(f"{share:6.1%}  {label}")
    print(f"flame graph: {args.svg}")


if __name__ == "__main__":
    main()
