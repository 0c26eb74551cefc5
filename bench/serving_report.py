"""The serving benchmark's table and the targets it checks (bench/serving.py measures)."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from bench.loadgen import Measured
from bench.serving_batch import BatchResult

RESULTS = Path(__file__).resolve().parent / "results" / "serving.md"
V1 = "(c) ModelKiln /v1 predict (searched model), JSON, batch 1"


@dataclass(frozen=True)
class Row:
    """One measured scenario."""

    name: str
    batch: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    failures: int

    @classmethod
    def of(cls, name: str, batch: int, measured: Measured) -> Row:
        return cls(
            name,
            batch,
            measured.requests_per_s,
            measured.p50_ms,
            measured.p99_ms,
            measured.failures,
        )

    @property
    def rows_per_s(self) -> float:
        return self.requests_per_s * self.batch


def shown(row: Row) -> Row:
    print(
        f"  {row.name}: {row.requests_per_s:,.0f} req/s, {row.rows_per_s:,.0f} rows/s, "
        f"p50 {row.p50_ms:.2f} ms, p99 {row.p99_ms:.2f} ms, failures {row.failures}"
    )
    return row


def _verdict(met: bool) -> str:
    return "**met**" if met else "**missed**"


def _targets(by: dict[str, Row]) -> list[str]:
    floor = by["(f) floor: raw ASGI, constant answer, JSON, batch 1"]
    minimal = by["(m) minimal raw ASGI + orjson + onnxruntime, JSON, batch 1"]
    defaults = by[f"{V1}, defaults"]
    loop = by[f"{V1}, defaults + 10% request log + a shadow"]
    bounded = {b: by[f"(u) uploaded, bounded, /v1 JSON, batch {b}"] for b in (1, 256)}
    sandboxed = {b: by[f"(s) uploaded, sandboxed, /v1 JSON, batch {b}"] for b in (1, 256)}
    grpc_floor = by["(gf) floor: grpcio threaded server, constant answer"]
    grpc = by["(g) ModelKiln gRPC, tritonclient.grpc, batch 1"]
    share = defaults.requests_per_s / floor.requests_per_s
    lines = [
        f"- Target: a searched model on /v1, one row, every default on (drift at 10%): "
        f"{share:.2f} of the raw ASGI floor ({defaults.requests_per_s:,.0f} vs "
        f"{floor.requests_per_s:,.0f} req/s; target >= 0.5): {_verdict(share >= 0.5)}. p99 "
        f"{defaults.p99_ms:.2f} ms vs the floor's {floor.p99_ms:.2f} ms. For scale, the minimal "
        f"app (m) reaches {minimal.requests_per_s / floor.requests_per_s:.2f} of the floor.",
    ]
    ratio = loop.requests_per_s / defaults.requests_per_s
    lines.append(
        f"- Target: with a 10% request log and a shadow also on, {ratio:.2f} of that "
        f"(target >= 0.85): {_verdict(ratio >= 0.85)}; p99 {loop.p99_ms:.2f} ms."
    )
    ratio = bounded[1].requests_per_s / defaults.requests_per_s
    lines.append(
        f"- Target: the same network uploaded (bounded) at {ratio:.2f} of the searched one "
        f"(target within 10%): {_verdict(ratio >= 0.9)}; p99 {bounded[1].p99_ms:.2f} ms."
    )
    for batch, goal in ((1, 0.5), (256, 0.8)):
        ratio = sandboxed[batch].rows_per_s / bounded[batch].rows_per_s
        lines.append(
            f"- Target: the sandboxed graph at batch {batch} at {ratio:.2f} of the bounded "
            f"path (target >= {goal}): {_verdict(ratio >= goal)}; p99 "
            f"{sandboxed[batch].p99_ms:.2f} ms vs {bounded[batch].p99_ms:.2f} ms."
        )
    ratio = grpc.requests_per_s / grpc_floor.requests_per_s
    lines.append(
        f"- Target: gRPC at batch 1 at {ratio:.2f} of grpcio's own constant-answer rate "
        f"({grpc.requests_per_s:,.0f} vs {grpc_floor.requests_per_s:,.0f} calls/s; target "
        f">= 0.8): {_verdict(ratio >= 0.8)}."
    )
    return lines


def _costs(by: dict[str, Row]) -> list[str]:
    """What each feature on the request path costs, with the defaults a user gets."""
    defaults = by[f"{V1}, defaults"]

    def line(meaning: str, with_it: Row, without: Row) -> str:
        return (
            f"- {meaning}: {with_it.requests_per_s:,.0f} req/s (p99 {with_it.p99_ms:.2f} ms) "
            f"with it, {without.requests_per_s:,.0f} (p99 {without.p99_ms:.2f} ms) without: "
            f"{with_it.requests_per_s / without.requests_per_s:.2f}x."
        )

    alone = by[f"{V1}, defaults, 1 connection"]
    return [
        line("drift sampling at 10% (on by default)", defaults, by[f"{V1}, drift off"]),
        line("same-turn coalescing (on by default)", defaults, by[f"{V1}, coalescing off"]),
        line(
            "a 10% request log and a shadow (off by default)",
            by[f"{V1}, defaults + 10% request log + a shadow"],
            defaults,
        ),
        line(
            "dynamic batching of 8 rows, 0 ms (off by default)",
            by[f"{V1}, + dynamic batching (8 rows, 0 ms)"],
            defaults,
        ),
        f"- one connection (a request alone, nothing to coalesce with): p50 "
        f"{alone.p50_ms:.2f} ms, {alone.requests_per_s:,.0f} req/s.",
    ]


def _batch_lines(batches: list[BatchResult]) -> list[str]:
    if not batches:
        return []
    small, batch = batches[0], batches[-1]
    ratio = batch.rows / batch.job_s / batch.onnxruntime_rows_per_s
    return [
        f"- Target: the batch job over {batch.rows:,} rows ran {batch.job_s:.1f} s "
        f"({batch.rows / batch.job_s:,.0f} rows/s) against onnxruntime's "
        f"{batch.onnxruntime_rows_per_s:,.0f} rows/s over the same rows in the same chunks: "
        f"{ratio:.0%} (target >= 50%): {_verdict(ratio >= 0.5)}. Peak worker memory "
        f"{batch.peak_rss_mb:.0f} MB ({batch.rss_at_start_mb:.0f} MB at its start); over "
        f"{small.rows:,} rows {small.peak_rss_mb:.0f} MB."
    ]


def report(rows: list[Row], batches: list[BatchResult], args: argparse.Namespace) -> str:
    by = {row.name: row for row in rows}
    raw = by["(a) raw onnxruntime, in-process, batch 256"]
    lines = [
        "| scenario | requests/s | rows/s | p50 ms | p99 ms | failed |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {row.name} | {row.requests_per_s:,.0f} | {row.rows_per_s:,.0f} | "
            f"{row.p50_ms:.2f} | {row.p99_ms:.2f} | {row.failures} |"
            for row in rows
        ),
        "",
        *_targets(by),
    ]
    for label, name in (
        ("/v2 binary", "(d) ModelKiln /v2 infer, binary, batch 256"),
        ("gRPC (tritonclient)", "(g) ModelKiln gRPC, tritonclient.grpc, batch 256"),
    ):
        ratio = by[name].rows_per_s / raw.rows_per_s
        lines.append(
            f"- Target: {label} at batch 256 gives {ratio:.0%} of raw onnxruntime's rows/s "
            f"(target >= 60%): {_verdict(ratio >= 0.6)}."
        )
    lines += _batch_lines(batches)
    lines += ["", "What each feature on the request path costs (same run):", "", *_costs(by)]
    load = "wrk -t1" if shutil.which("wrk") and not args.python_load else "bench/loadgen.py"
    lines += [
        "",
        f"Run: {args.connections} connections, {args.duration:.0f} s per scenario after a "
        f"warm-up, load by {load} (gRPC: tritonclient.grpc.aio); {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}), Python {platform.python_version()}, "
        f"onnxruntime {ort.__version__}; servers pinned to CPU 1, load generators to CPU 0; "
        "one uvicorn process per server, access log off, one onnxruntime intra-op thread "
        "everywhere (a sandbox process is the gateway's child and shares its CPU).",
    ]
    return "\n".join(lines)
