"""Every compression variant's global importance before it is registered: a variant is
explained by sampled Shapley values on its own graph against its parent's background
(``app.explain.data.inherited``), and its importance is the mean absolute attribution of
each column on up to 64 of its test rows, run on the file it will serve, as a search's
version has it. A parent without explanations, or a variant whose importance cannot be
made, registers without one (logged): it never fails the job."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from app.compression.base import CompressionData
from app.compression.pipeline import Variant
from app.compression.record import Lineage, PreparedVariant
from app.evaluation.sessions import open_session
from app.explain.data import METRICS_KEY, ExplainData, ExplainRecord
from app.explain.players import Feeds
from app.explain.register import global_importance
from app.storage import ArtifactStore

logger = logging.getLogger(__name__)


def _sampled(data: ExplainData) -> ExplainData:
    """The parent's file as a variant reads it: its background, by sampled Shapley values
    (a variant's graph is not the parent's booster or weights)."""
    return ExplainData(method="sampled_shapley", background=data.background)


def with_importance(
    prepared: Sequence[PreparedVariant],
    variants: Sequence[Variant],
    data: CompressionData,
    store: ArtifactStore,
    lineage: Lineage,
    parent_metrics: dict[str, Any] | None,
    threads: int,
    check: Callable[[], None],
) -> list[PreparedVariant]:
    """``prepared`` (one per variant, in order), each draft's metrics with its explanation
    record (the parent's file, its own importance); unchanged when the parent has none."""
    parent = ExplainRecord.of(parent_metrics)
    if parent is None:
        return list(prepared)
    try:
        background = _sampled(ExplainData.from_bytes(store.read_bytes(parent.key, parent.sha256)))
    except (FileNotFoundError, ValueError):
        logger.exception("the parent's explanation file %s could not be read", parent.key)
        return list(prepared)
    labels = lineage.class_labels if lineage.task == "classification" else None
    explained = []
    for item, variant in zip(prepared, variants, strict=True):
        draft = item.draft
        try:
            session = open_session(
                store.read_bytes(draft.artifact.key, draft.artifact.sha256), threads
            )
            output = draft.signature.output.name

            def run(feeds: Feeds, session: Any = session, output: str = output) -> np.ndarray:
                result: np.ndarray = session.run([output], feeds)[0]
                return result

            importance = global_importance(
                background,
                data.test_feeds(variant.candidate),
                run,
                signature=draft.signature,
                labels=labels,
                encoding=None,
            )
        except Exception:  # an addition: the variant registers without it
            logger.exception("the importance of variant %s could not be computed", variant.chain)
            explained.append(item)
            continue
        record = ExplainRecord(
            key=parent.key,
            sha256=parent.sha256,
            method="sampled_shapley",
            background_rows=parent.background_rows,
            importance=importance,
            inherited_from=parent.inherited_from,  # the parent's id is set on registration
        )
        metrics = {**draft.metrics, METRICS_KEY: record.model_dump(exclude_none=True)}
        explained.append(
            dataclasses.replace(item, draft=dataclasses.replace(draft, metrics=metrics))
        )
        check()
    return explained
