"""Closed-loop gRPC load with tritonclient's asyncio client, unchanged: N concurrent callers,
each sending the same ModelInfer again as soon as the previous answer arrived. Run as a
script (the benchmark pins it to the load generator's CPU); prints one JSON line.

    python bench/grpc_load.py HOST:PORT KEY MODEL BATCH FEATURES SECONDS CONNECTIONS
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import numpy as np
import tritonclient.grpc.aio as triton


async def main(
    url: str, key: str, model: str, batch: int, features: int, seconds: float, connections: int
) -> dict[str, float]:
    rows = np.random.default_rng(0).uniform(0, 16, size=(batch, features)).astype(np.float32)
    tensor = triton.InferInput("input", [batch, features], "FP32")
    tensor.set_data_from_numpy(rows)
    headers = {"authorization": f"Bearer {key}"}
    client = triton.InferenceServerClient(url=url)
    latencies: list[float] = []
    failures = 0

    async def caller(warm_until: float, stop_at: float) -> None:
        nonlocal failures
        while (sent := time.perf_counter()) < stop_at:
            try:
                await client.infer(model, [tensor], headers=headers)
            except Exception:
                failures += 1
                continue
            if sent >= warm_until:
                latencies.append(time.perf_counter() - sent)

    start = time.perf_counter()
    warm_until, stop_at = start + 1.5, start + 1.5 + seconds
    await asyncio.gather(*[caller(warm_until, stop_at) for _ in range(connections)])
    measured = time.perf_counter() - warm_until
    await client.close()
    spent = np.asarray(latencies)
    return {
        "requests_per_s": len(spent) / measured,
        "p50_ms": float(np.percentile(spent, 50) * 1000),
        "p99_ms": float(np.percentile(spent, 99) * 1000),
        "failures": failures,
    }


if __name__ == "__main__":
    url, key, model, batch, features, seconds, connections = sys.argv[1:8]
    print(
        json.dumps(
            asyncio.run(
                main(url, key, model, int(batch), int(features), float(seconds), int(connections))
            )
        )
    )
