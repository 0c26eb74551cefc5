"""Every compression variant's footprint before it is registered: the memory one run takes
and the energy per 1,000 rows (``app.evaluation.footprint``), measured on its stored file
and its test rows, as every registered version has them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from app.compression.base import CompressionData
from app.compression.pipeline import Variant
from app.compression.record import PreparedVariant
from app.core.config import Settings
from app.evaluation.energy import EnergySettings
from app.evaluation.footprint import footprint_metrics
from app.storage import ArtifactStore


def with_footprints(
    prepared: Sequence[PreparedVariant],
    variants: Sequence[Variant],
    data: CompressionData,
    store: ArtifactStore,
    settings: Settings,
    check: Callable[[], None],
) -> list[PreparedVariant]:
    """``prepared`` (one per variant, in order), each draft's metrics with its footprint."""
    measured = []
    for item, variant in zip(prepared, variants, strict=True):
        draft = item.draft
        footprint = footprint_metrics(
            store.read_bytes(draft.artifact.key, draft.artifact.sha256),
            data.test_feeds(variant.candidate),
            threads=settings.ort_threads,
            energy=EnergySettings.of(settings),
        )
        metrics = {**draft.metrics, **footprint}
        measured.append(
            dataclasses.replace(item, draft=dataclasses.replace(draft, metrics=metrics))
        )
        check()
    return measured
