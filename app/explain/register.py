"""What a version keeps for explanations, made when it is registered: a background sample
of its training rows (with a LightGBM booster's text or a linear model's weights where the
method is exact), and its global importance: the mean absolute attribution of each column
on held-out rows, run on the graph it serves."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from app.contracts.encoding import TableEncoding
from app.contracts.signature import Signature
from app.explain.data import (
    METRICS_KEY,
    ExplainData,
    ExplainRecord,
    Importance,
    LinearWeights,
    Method,
    stored_background,
)
from app.explain.explainer import Attributed, Explainer
from app.explain.players import Feeds, Players

logger = logging.getLogger(__name__)
BACKGROUND_ROWS = 32  # training rows kept as the background (each one permutation's start)
IMPORTANCE_ROWS = 64  # held-out rows global importance is averaged over
IMPORTANCE_BATCH_ROWS = 65_536  # rows per run while computing it
# Rows the graph runs for it in all (perturbed ones included): 64 rows of a 20-column table
# run about 39,000; an image's pixels are each a player, so fewer of its rows are explained.
IMPORTANCE_RUN_ROWS = 131_072
# Registration's time for it: rows are explained a few at a time until this is spent (an
# average of four large LightGBM members ran 4 s for 64 rows, inside a 60 s search).
IMPORTANCE_S = 1.0
IMPORTANCE_CHUNK_ROWS = 8
FILE_NAME = "explain.json"
Run = Callable[[Feeds], np.ndarray]


def sample(total: int, count: int, seed: int = 0) -> np.ndarray:
    """``count`` row indices out of ``total`` (all of them when fewer), in order."""
    if total <= count:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=count, replace=False))


def take(feeds: Feeds, rows: np.ndarray) -> Feeds:
    return {name: values[rows] for name, values in feeds.items()}


def explained(
    explainer: Explainer,
    feeds: Feeds,
    run: Run,
    batch_rows: int,
    *,
    seconds: float | None = None,
    chunk_rows: int | None = None,
) -> Attributed:
    """``feeds``' rows explained with a blocking ``run`` of the graph, a few rows at a time
    so no run holds more than ``batch_rows`` rows (each row's perturbed rows in one run);
    with ``seconds``, runs of ``chunk_rows`` rows stop once they are spent (the first run
    always completes), so fewer rows may come back."""
    started = time.monotonic()
    if not explainer.ready:
        explainer = explainer.with_background_output(run(explainer.background_feeds()))
    n = len(next(iter(feeds.values())))
    step = max(1, batch_rows // max(1, explainer.rows_to_run(1)))
    if chunk_rows is not None:
        step = min(step, chunk_rows)
    parts: list[Attributed] = []
    for start in range(0, n, step):
        if parts and seconds is not None and time.monotonic() - started >= seconds:
            break
        part = take(feeds, np.arange(start, min(n, start + step)))
        parts.append(explainer.attribute(part, run(explainer.feeds_to_run(part))))
    return Attributed(
        np.concatenate([p.values for p in parts]),
        np.concatenate([p.base for p in parts]),
        np.concatenate([p.attributions for p in parts]),
    )


def method_of(booster: str | None, linear: LinearWeights | None) -> Method:
    if booster is not None:
        return "tree_shap"
    return "linear_exact" if linear is not None else "sampled_shapley"


def explanation_file(
    signature: Signature,
    background: Feeds,
    *,
    booster: str | None = None,
    linear: LinearWeights | None = None,
    names: Sequence[str] | None = None,
) -> ExplainData:
    """The file a version keeps: its background rows (the graph's feeds, at most
    ``BACKGROUND_ROWS``, sampled) and the exact model of its method; ``names`` names a
    one-tensor graph's features (the table's columns)."""
    players = Players.of(signature, names)
    rows = len(next(iter(background.values())))
    kept = take(background, sample(rows, BACKGROUND_ROWS, seed=1))
    return ExplainData(
        method=method_of(booster, linear),
        background=stored_background(players.names, players.columns(kept)),
        booster=booster,
        linear=linear,
    )


def global_importance(
    data: ExplainData,
    held_out: Feeds,
    run: Run,
    *,
    signature: Signature,
    labels: list[Any] | None,
    encoding: TableEncoding | None,
    uploaded: bool = False,
) -> Importance:
    """Mean absolute attributions of up to ``IMPORTANCE_ROWS`` held-out rows (fewer where
    explaining them would run more than ``IMPORTANCE_RUN_ROWS`` rows, or take more than
    ``IMPORTANCE_S``; at least one run's rows); the answer names its rows."""
    record = ExplainRecord(
        key="", sha256="", method=data.method, background_rows=data.background_rows
    )
    explainer = Explainer.build(
        record, data, signature=signature, labels=labels, encoding=encoding, uploaded=uploaded
    )
    rows = len(next(iter(held_out.values())))
    affordable = max(1, IMPORTANCE_RUN_ROWS // explainer.rows_to_run(1))
    chosen = take(held_out, sample(rows, min(IMPORTANCE_ROWS, affordable), seed=2))
    attributed = explained(
        explainer,
        chosen,
        run,
        IMPORTANCE_BATCH_ROWS,
        # the exact methods do not run the graph per perturbed row: only sampling is slow
        seconds=IMPORTANCE_S if data.method == "sampled_shapley" else None,
        chunk_rows=IMPORTANCE_CHUNK_ROWS,
    )
    return explainer.importance(attributed)


def record_metrics(
    key: str, sha256: str, data: ExplainData, importance: Importance | None
) -> dict[str, Any]:
    """``{'explain': record}``, to merge into the version's metrics."""
    record = ExplainRecord(
        key=key,
        sha256=sha256,
        method=data.method,
        background_rows=data.background_rows,
        importance=importance,
    )
    return {METRICS_KEY: record.model_dump(exclude_none=True)}
