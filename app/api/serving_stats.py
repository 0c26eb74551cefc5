"""What a model's versions served second by second, from the gateways' own per-second
counters (``app.serving.seconds``; summed over the processes of ``kiln serve --gateways N``
by ``app.serving.seconds_shared``): requests, client and server errors and latency
percentiles per version, the shadow's copies apart, beside the production alias's split.
``GET /v1/models/{name}/serving/stats`` answers it, and the serving page draws it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from app.contracts.traffic import AliasPolicy, TrafficArm
from app.serving.seconds import (
    CLIENT_ERROR,
    KEPT_S,
    LATENCY,
    OK,
    SERVER_ERROR,
    SHADOW,
    percentiles,
)
from app.serving.seconds_shared import SharedSeconds, Summed

QUANTILES = (0.5, 0.95, 0.99)
DEFAULT_SECONDS = 300


class SeriesTotals(BaseModel):
    """A series over the whole window."""

    requests: int
    client_errors: int
    server_errors: int
    error_rate: float | None = Field(description="(client + server errors) / requests.")
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class VersionSeries(BaseModel):
    """One version's requests per second (or, for its shadow role, the copies it ran)."""

    version: int
    role: Literal["answered", "shadow"] = Field(
        description="'answered': requests this version answered; 'shadow': copies of "
        "requests it ran as the alias's shadow (answering no one; its failures are "
        "counted as server_errors, its latency is its run's)."
    )
    weight: int | None = Field(
        description="Its percent of the production alias's traffic now (null: it has no "
        "weight: asked for by number, or the shadow)."
    )
    requests: list[int] = Field(description="Per second, oldest first.")
    client_errors: list[int]
    server_errors: list[int]
    p50_ms: list[float | None] = Field(
        description="Latency percentiles per second, in ms, from arrival to the encoded "
        "answer (null: no answered request that second), from log-spaced buckets (within "
        "about 9%)."
    )
    p95_ms: list[float | None]
    p99_ms: list[float | None]
    totals: SeriesTotals


class ServingStats(BaseModel):
    """A model's serving, second by second."""

    model: str
    start: datetime = Field(
        description="The first second (UTC); entry i is start + i s, and the last the newest "
        "complete second."
    )
    seconds: int
    processes: int = Field(
        description="Gateway processes whose counts are summed: the one that answered, and "
        "each other one of the same `kiln serve --gateways N` that counted a request in "
        "the last 15 minutes (their counts are at most a second behind)."
    )
    production: list[TrafficArm] | None = Field(
        description="The production alias's versions and weights now (null: no production alias)."
    )
    shadow: int | None = Field(description="The production alias's shadow now.")
    series: list[VersionSeries]


def _ms(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else round(float(v) * 1000, 4) for v in values]


def _totals(counts: np.ndarray) -> SeriesTotals:
    whole = counts.sum(axis=0)
    requests = int(whole[OK] + whole[CLIENT_ERROR] + whole[SERVER_ERROR])
    errors = int(whole[CLIENT_ERROR] + whole[SERVER_ERROR])
    p50, p95, p99 = _ms(percentiles(whole[LATENCY:], QUANTILES))
    return SeriesTotals(
        requests=requests,
        client_errors=int(whole[CLIENT_ERROR]),
        server_errors=int(whole[SERVER_ERROR]),
        error_rate=errors / requests if requests else None,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
    )


def weights_of(policy: AliasPolicy | None) -> dict[int, int]:
    """Each version's percent of the production alias's traffic."""
    if policy is None:
        return {}
    if policy.split is None:
        return {policy.version: 100}
    return {arm.version: arm.weight for arm in policy.split.arms}


def model_stats(
    name: str,
    policy: AliasPolicy | None,
    summed: Summed,
    since: int,
    seconds: int,
    processes: int,
) -> ServingStats:
    """The model's series from ``summed`` (every model's, or its own)."""
    weights = weights_of(policy)
    series = []
    for (model, version, role), counts in sorted(summed.items(), key=lambda item: item[0][2]):
        if model != name or not counts.any():
            continue
        marks = percentiles(counts[:, LATENCY:], QUANTILES)
        series.append(
            VersionSeries(
                version=version,
                role="shadow" if role == SHADOW else "answered",
                weight=None if role == SHADOW else weights.get(version),
                requests=(counts[:, OK] + counts[:, CLIENT_ERROR] + counts[:, SERVER_ERROR])
                .astype(int)
                .tolist(),
                client_errors=counts[:, CLIENT_ERROR].astype(int).tolist(),
                server_errors=counts[:, SERVER_ERROR].astype(int).tolist(),
                p50_ms=_ms(marks[:, 0]),
                p95_ms=_ms(marks[:, 1]),
                p99_ms=_ms(marks[:, 2]),
                totals=_totals(counts),
            )
        )
    series.sort(key=lambda s: (s.role == "shadow", s.version))
    split = (
        None
        if policy is None
        else [TrafficArm(version=v, weight=w) for v, w in sorted(weights.items())]
    )
    return ServingStats(
        model=name,
        start=datetime.fromtimestamp(since, UTC),
        seconds=seconds,
        processes=processes,
        production=split,
        shadow=policy.shadow if policy is not None else None,
        series=series,
    )


def window(seconds: int) -> tuple[int, int]:
    """(the first second, how many) of the last ``seconds`` complete seconds (the one
    still counting would read as a fall in traffic)."""
    seconds = min(seconds, KEPT_S)
    return int(time.time()) - seconds, seconds


def read_stats(
    shared: SharedSeconds, name: str, policy: AliasPolicy | None, seconds: int
) -> ServingStats:
    """The model's last ``seconds`` seconds, over every gateway process."""
    since, seconds = window(seconds)
    summed, processes = shared.read(name, since, seconds)
    return model_stats(name, policy, summed, since, seconds, processes)
