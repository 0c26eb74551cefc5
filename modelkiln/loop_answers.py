"""The serving loop's answers, typed: an alias's split and shadow, the shadow's agreement,
drift windows, a model's events, a dataset made from the request log, a promotion (see
``modelkiln.wire`` for how tolerantly they are read)."""

from __future__ import annotations

from dataclasses import dataclass, field

from modelkiln.answers import Dataset
from modelkiln.wire import Answer


@dataclass(frozen=True)
class TrafficArm(Answer):
    """One version of a split and its percent of the traffic."""

    version: int
    weight: int


@dataclass(frozen=True)
class Alias(Answer):
    """What an alias holds: its main version (the largest share), a split, a shadow."""

    model: str
    alias: str
    version: int
    versions: list[TrafficArm] | None = None
    shadow: int | None = None


@dataclass(frozen=True)
class ShadowStats(Answer):
    """A shadow's answers compared with those of the version that answered the client."""

    primary_version: int
    shadow_version: int
    requests: int = 0
    rows: int = 0
    agreement: float | None = None
    mean_abs_diff: float | None = None
    dropped: int = 0
    failures: int = 0


@dataclass(frozen=True)
class Traffic(Answer):
    """How the production alias routes (None: no alias), and its current shadow's
    agreement beside each version that answers through it."""

    model: str = ""
    alias: Alias | None = None
    shadows: list[ShadowStats] = field(default_factory=list)


@dataclass(frozen=True)
class ColumnDrift(Answer):
    column: str
    kind: str = ""
    psi: float | None = None
    missing_share: float = 0.0
    unseen_share: float | None = None


@dataclass(frozen=True)
class DriftReport(Answer):
    """A window of live rows of one version, column by column."""

    version: int
    threshold: float
    model: str = ""
    rows: int = 0
    drifted: list[str] = field(default_factory=list)
    columns: list[ColumnDrift] = field(default_factory=list)
    ended_at: str = ""


@dataclass(frozen=True)
class ModelEvent(Answer):
    """Something serving noticed about a model (drift, a promotion); ``data`` holds its
    detail."""

    id: int
    kind: str
    message: str = ""
    model: str = ""
    created_at: str = ""


@dataclass(frozen=True)
class LogDataset(Dataset):
    """A dataset made from the request log, and how its labels matched the log."""

    joined: int = 0
    unmatched: int = 0
    ambiguous: int = 0  # labels whose request id matched several logged requests
    duplicates: int = 0  # joined rows repeating an earlier row's inputs


@dataclass(frozen=True)
class Promotion(Answer):
    """Whether the gate let the version take all of the alias's traffic, and why."""

    promoted: bool
    reason: str = ""
    gate: str = ""
    alias: Alias | None = None
