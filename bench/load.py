"""Load (issue 13): job submissions from many concurrent clients while prediction traffic
runs, through a real ``kiln serve`` with two worker processes.

  1. a reference: prediction latency of an idle server (4 concurrent clients, /v1 predict);
  2. N job submissions (tiny searches, one trial each) from C concurrent clients, each with
     its own Idempotency-Key, while the same prediction traffic runs until every job ends;
  3. the count: every 202 must end succeeded, failed or cancelled (none lost), and the
     registry must hold exactly one version per succeeded job (none duplicated).

Run on the embedded default, and with ``--postgres URL --redis URL`` on PostgreSQL + Redis
(a fresh database is made in that PostgreSQL for the run).

    .venv/bin/python bench/load.py [--jobs 200] [--clients 20] [--postgres URL --redis URL]
                                   [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.harness import Kiln, kiln_server, upload  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "load.md"
PREDICT_CLIENTS = 4
TINY = {
    "max_trials": 1,
    "max_epochs": 1,
    "space": {"n_layers": 1, "width": 8, "epochs": 1, "batch_size": 64},
}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def predict_loop(
    kiln: Kiln,
    model: str,
    row: list[float],
    stop: asyncio.Event,
    latencies: list[float],
    failures: list[int],
) -> None:
    headers = {"Authorization": f"Bearer {kiln.key}"}
    async with httpx.AsyncClient(base_url=kiln.url, headers=headers, timeout=60) as client:
        while not stop.is_set():
            started = time.perf_counter()
            response = await client.post(f"/v1/models/{model}/predict", json={"inputs": [row]})
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                failures.append(response.status_code)


async def submit_all(
    kiln: Kiln, dataset_id: int, jobs: int, clients: int, latencies: list[float], retries: list[int]
) -> list[int]:
    """``jobs`` submissions spread over ``clients`` concurrent connections; a 503 (or a
    409 for a repeat still being answered) is sent again with the same key, as a client
    should, and counted."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(jobs):
        queue.put_nowait(index)
    accepted: list[int] = []
    headers = {"Authorization": f"Bearer {kiln.key}"}

    async def client_loop() -> None:
        async with httpx.AsyncClient(base_url=kiln.url, headers=headers, timeout=120) as http:
            while not queue.empty():
                index = queue.get_nowait()
                body = {
                    "kind": "search",
                    "dataset_id": dataset_id,
                    "model_name": "load",
                    "search": {**TINY, "seed": index},
                }
                key = {"Idempotency-Key": f"load-{uuid.uuid4().hex}"}
                started = time.perf_counter()
                response = await http.post("/v1/jobs", json=body, headers=key)
                for _ in range(50):  # busy: the same request again, a bounded number of times
                    if response.status_code not in (409, 503):
                        break
                    retries.append(index)
                    await asyncio.sleep(0.2)
                    response = await http.post("/v1/jobs", json=body, headers=key)
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 202:
                    raise RuntimeError(
                        f"submission {index}: {response.status_code} {response.text}"
                    )
                accepted.append(int(response.json()["id"]))

    await asyncio.gather(*(client_loop() for _ in range(clients)))
    return accepted


async def wait_all(kiln: Kiln, job_ids: list[int], timeout_s: float) -> dict[int, str]:
    headers = {"Authorization": f"Bearer {kiln.key}"}
    final: dict[int, str] = {}
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=kiln.url, headers=headers, timeout=60) as client:
        while len(final) < len(job_ids) and time.monotonic() < deadline:
            page = (await client.get("/v1/jobs", params={"limit": 500})).json()
            for job in page["items"]:
                if job["id"] in job_ids and job["status"] in ("succeeded", "failed", "cancelled"):
                    final[job["id"]] = job["status"]
            await asyncio.sleep(1.0)
    return final


async def scenario(kiln: Kiln, jobs: int, clients: int) -> dict[str, Any]:
    dataset_id = upload(kiln, "breast_cancer")
    headers = {"Authorization": f"Bearer {kiln.key}"}
    async with httpx.AsyncClient(base_url=kiln.url, headers=headers, timeout=120) as client:
        first = (
            await client.post(
                "/v1/jobs",
                json={
                    "kind": "search",
                    "dataset_id": dataset_id,
                    "model_name": "served",
                    "search": TINY,
                },
            )
        ).json()
    done = await wait_all(kiln, [first["id"]], 300)
    assert done.get(first["id"]) == "succeeded", done
    row = [0.0] * 30
    idle: list[float] = []
    failures: list[int] = []
    stop = asyncio.Event()
    loops = [
        asyncio.create_task(predict_loop(kiln, "served", row, stop, idle, failures))
        for _ in range(PREDICT_CLIENTS)
    ]
    await asyncio.sleep(10)
    stop.set()
    await asyncio.gather(*loops)
    busy: list[float] = []
    stop = asyncio.Event()
    loops = [
        asyncio.create_task(predict_loop(kiln, "served", row, stop, busy, failures))
        for _ in range(PREDICT_CLIENTS)
    ]
    submissions: list[float] = []
    retries: list[int] = []
    started = time.perf_counter()
    accepted = await submit_all(kiln, dataset_id, jobs, clients, submissions, retries)
    submitted_s = time.perf_counter() - started
    final = await wait_all(kiln, accepted, timeout_s=3600)
    drained_s = time.perf_counter() - started
    stop.set()
    await asyncio.gather(*loops)
    async with httpx.AsyncClient(base_url=kiln.url, headers=headers, timeout=60) as client:
        versions = (await client.get("/v1/models/load/versions", params={"limit": 500})).json()[
            "total"
        ]
    statuses = [final.get(job_id, "lost") for job_id in accepted]
    return {
        "accepted": len(accepted),
        "distinct": len(set(accepted)),
        "succeeded": statuses.count("succeeded"),
        "failed": statuses.count("failed"),
        "lost": statuses.count("lost"),
        "versions": versions,
        "submit_p50": percentile(submissions, 50),
        "submit_p99": percentile(submissions, 99),
        "submitted_s": submitted_s,
        "drained_s": drained_s,
        "idle_p50": percentile(idle, 50),
        "idle_p99": percentile(idle, 99),
        "busy_p50": percentile(busy, 50),
        "busy_p99": percentile(busy, 99),
        "predictions": len(busy),
        "prediction_failures": len(failures),
        "retries": len(retries),
    }


@contextmanager
def postgres_database(url: str) -> Iterator[str]:
    from sqlalchemy import create_engine, make_url, text

    name = f"kiln_load_{uuid.uuid4().hex[:10]}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def run(label: str, jobs: int, clients: int, env: dict[str, str]) -> dict[str, Any]:
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        with (
            tempfile.TemporaryDirectory() as folder,
            kiln_server(Path(folder) / "data", workers=2) as kiln,
        ):
            result = asyncio.run(scenario(kiln, jobs, clients))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    result["label"] = label
    print(result, flush=True)
    return result


def table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| configuration | 202s | distinct ids | succeeded | failed | lost | versions "
        "| duplicated | resent (503/409) | submit p50 / p99 ms | predict p50 / p99 ms idle "
        "| during jobs | p99 ratio | prediction errors | all jobs done after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['label']} | {r['accepted']} | {r['distinct']} | {r['succeeded']} | "
            f"{r['failed']} | {r['lost']} | {r['versions']} | "
            f"{r['versions'] - r['succeeded']} | {r['retries']} | {r['submit_p50']:.1f} / "
            f"{r['submit_p99']:.1f} | {r['idle_p50']:.2f} / {r['idle_p99']:.2f} | "
            f"{r['busy_p50']:.2f} / {r['busy_p99']:.2f} | "
            f"{r['busy_p99'] / r['idle_p99']:.1f}x | {r['prediction_failures']} of "
            f"{r['predictions']} | {r['drained_s']:.0f} s |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--postgres", default="")
    parser.add_argument("--redis", default="")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    results = [run("embedded (SQLite, server-less broker)", args.jobs, args.clients, {})]
    if args.postgres and args.redis:
        with postgres_database(args.postgres) as database:
            results.append(
                run(
                    "PostgreSQL + Redis",
                    args.jobs,
                    args.clients,
                    {"KILN_DATABASE_URL": database, "KILN_BROKER_URL": args.redis},
                )
            )
    lines = table(results)
    print("\n".join(lines))
    if args.write:
        header = [
            "# Load: job submissions during prediction traffic",
            "",
            f"`bench/load.py`, {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}. `kiln serve` with "
            f"2 worker processes; {args.jobs} tiny search jobs (one trial, one epoch, on "
            f"breast_cancer) submitted by {args.clients} concurrent clients, each with its "
            f"own Idempotency-Key, while {PREDICT_CLIENTS} clients send /v1 predictions "
            "(one row) until every job has ended. 'idle': the same prediction traffic for "
            "10 s before the submissions. 'lost': a 202 whose job never ended; "
            "'duplicated': versions beyond one per succeeded job.",
            "",
        ]
        RESULTS.write_text("\n".join(header + lines) + "\n")
    assert all(r["lost"] == 0 and r["versions"] == r["succeeded"] for r in results)


if __name__ == "__main__":
    main()
