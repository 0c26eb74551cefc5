"""Closed-loop HTTP/1.1 load: wrk (one thread, N keep-alive connections) where it is
installed, else a small asyncio generator of the same shape: N connections, each sending
the same request again as soon as the previous answer arrived."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

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


def build_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
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


async def _connection(
    host: str,
    port: int,
    request: bytes,
    warm_until: float,
    stop_at: float,
    latencies: list[float],
    failures: list[int],
) -> None:
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


async def run_load(
    host: str, port: int, request: bytes, *, connections: int, duration_s: float, warmup_s: float
) -> LoadResult:
    """Drive ``request`` over ``connections`` connections; count what ran after warm-up."""
    start = time.perf_counter()
    warm_until, stop_at = start + warmup_s, start + warmup_s + duration_s
    latencies: list[float] = []
    failures: list[int] = []
    await asyncio.gather(
        *[
            _connection(host, port, request, warm_until, stop_at, latencies, failures)
            for _ in range(connections)
        ]
    )
    measured = time.perf_counter() - warm_until
    return LoadResult(
        requests=len(latencies),
        failures=len(failures),
        seconds=measured,
        latencies_s=np.asarray(latencies),
    )


@dataclass(frozen=True)
class Measured:
    """Throughput and latency percentiles of one load run, whatever generated it."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    failures: int


def _lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{byte}" for byte in data) + '"'


def _milliseconds(text: str) -> float:
    for unit, scale in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    raise ValueError(f"unexpected wrk duration {text!r}")


def run_wrk(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    connections: int,
    duration_s: float,
    cpu: int | None,
    scratch: Path,
) -> Measured:
    """wrk with one thread and ``connections`` connections (after a 1.5 s warm-up run),
    pinned to ``cpu`` when given; its requests/s, p50, p99 and non-2xx count."""
    script = scratch / "request.lua"
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {_lua_string(body)}",
        *(
            f"wrk.headers[{_lua_string(k.encode())}] = {_lua_string(v.encode())}"
            for k, v in headers.items()
        ),
    ]
    script.write_text("\n".join(lines) + "\n")
    pin = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
    base = [*pin, "wrk", "-t1", f"-c{connections}", "-s", str(script)]
    subprocess.run([*base, "-d1s", url], check=True, capture_output=True)  # warm-up
    out = subprocess.run(
        [*base, f"-d{duration_s:g}s", "--latency", url], check=True, capture_output=True, text=True
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([0-9.]+)", out)[1])  # type: ignore[index]
    p50 = _milliseconds(re.search(r"\s50%\s+(\S+)", out)[1])  # type: ignore[index]
    p99 = _milliseconds(re.search(r"\s99%\s+(\S+)", out)[1])  # type: ignore[index]
    failed = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return Measured(rate, p50, p99, int(failed[1]) if failed else 0)


def run_python_load(
    host: str,
    port: int,
    path: str,
    body: bytes,
    headers: dict[str, str],
    *,
    connections: int,
    duration_s: float,
) -> Measured:
    """The same measurement with this module's asyncio generator (where wrk is missing)."""
    result = asyncio.run(
        run_load(
            host,
            port,
            build_request(host, port, path, body, headers),
            connections=connections,
            duration_s=duration_s,
            warmup_s=1.5,
        )
    )
    return Measured(
        result.requests_per_s, result.percentile_ms(50), result.percentile_ms(99), result.failures
    )
