"""A search's version keeps what its explanations need (``app.explain``), stored beside its
ONNX file when it is prepared: a background sample of the training rows, the booster's text
(a LightGBM model: TreeSHAP) or the weights (a linear model: exact), and its global
importance on held-out rows, computed on the graph it serves. An explanation that cannot be
made leaves the version without one (logged): it never fails the search."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.contracts.encoding import TableEncoding
from app.contracts.signature import Signature
from app.evaluation.sessions import open_session
from app.explain.data import LinearWeights
from app.explain.players import Feeds
from app.explain.register import (
    BACKGROUND_ROWS,
    FILE_NAME,
    explanation_file,
    global_importance,
    record_metrics,
    sample,
)
from app.preprocessing.encode import feeds as raw_feeds
from app.search.run import SearchRun
from app.storage import ArtifactStore
from app.training.ensemble import Fitted
from app.training.export import INPUT_NAME
from app.training.families.gbdt import Boosted
from app.training.families.linear import Linear

logger = logging.getLogger(__name__)


def background_feeds(run: SearchRun) -> Feeds:
    """The graph's feeds for a sample of the training rows (raw columns for a table)."""
    from app.datasets.service import load_raw

    rows = run.splits.train[sample(len(run.splits.train), BACKGROUND_ROWS, seed=1)]
    encoding = run.dataset.encoding
    if encoding is None:
        return {INPUT_NAME: run.arrays.features[rows]}
    raw = load_raw(run.store, run.dataset, rows)
    return raw_feeds(encoding, raw, encoding.sources_of(None))


def _exact_parts(model: Fitted) -> tuple[str | None, LinearWeights | None]:
    if isinstance(model, Boosted):
        return model.state_bytes().decode(), None
    if isinstance(model, Linear):
        weights = LinearWeights(
            weights=model.weights.astype(np.float64).tolist(),
            bias=model.bias.astype(np.float64).tolist(),
        )
        return None, weights
    return None, None


def stored_explanations(
    store: ArtifactStore,
    base: str,
    model: Fitted,
    onnx: Path,
    signature: Signature,
    *,
    background: Feeds | None,
    held_out: Feeds,
    labels: list[Any] | None,
    encoding: TableEncoding | None,
    threads: int,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``{'explain': record}`` for the version's metrics (empty without a background, or
    when they could not be made), the file stored under ``base``; ``names``: the table's
    columns, for a graph that takes them as one tensor."""
    if background is None:
        return {}
    try:
        booster, linear = _exact_parts(model)
        data = explanation_file(signature, background, booster=booster, linear=linear, names=names)
        session = open_session(onnx, threads)
        output = signature.output.name

        def run(feeds: Feeds) -> np.ndarray:
            result: np.ndarray = session.run([output], feeds)[0]
            return result

        importance = global_importance(
            data, held_out, run, signature=signature, labels=labels, encoding=encoding
        )
        stored = store.put_bytes(f"{base}/{FILE_NAME}", data.to_bytes())
    except Exception:  # explanations are an addition: the version registers without them
        logger.exception("explanations of %s could not be prepared", base)
        return {}
    return record_metrics(stored.key, stored.sha256, data, importance)
