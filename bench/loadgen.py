"""A small closed-loop HTTP/1.1 load generator: N keep-alive connections, each sending the
same request again as soon as the previous answer arrived. Raw asyncio streams keep the
client's own cost per request low, so the server is what is measured."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured."""

    requests: int
    failures: int
    seconds: float
    latencies_s: np.ndarray

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q) * 1000) if self.requests else 0.0


def build_request(host: str, port: int, path: str, body: bytes,
                  headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def _connection(host: str, port: int, request: bytes, warm_until: float, stop_at: float,
                      latencies: list[float], failures: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            sent = time.perf_counter()
            if sent >= stop_at:
                return
            writer.write(request)
            status = await _read_response(reader)
            if sent >= warm_until:
                latencies.append(time.perf_counter() - sent)
                if status != 200:
                    failures.append(status)
    finally:
        writer.close()


async def run_load(host: str, port: int, request: bytes, *, connections: int,
                   duration_s: float, warmup_s: float) -> LoadResult:
    """Drive ``request`` over ``connections`` connections; count what ran after warm-up."""
    start = time.perf_counter()
    warm_until, stop_at = start + warmup_s, start + warmup_s + duration_s
    latencies: list[float] = []
    failures: list[int] = []
    await asyncio.gather(*[_connection(host, port, request, warm_until, stop_at, latencies,
                                       failures) for _ in range(connections)])
    measured = time.perf_counter() - warm_until
    return LoadResult(requests=len(latencies), failures=len(failures), seconds=measured,
                      latencies_s=np.asarray(latencies))
