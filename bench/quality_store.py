"""The search-quality benchmark's results store: one JSON line per finished cell, a cell being
one system's result on one table, split seed and time budget (ModelKiln's search or a peer's
fit), appended the moment it finishes. A rerun skips every cell the store holds a result for
(a cell that failed is tried again), so a benchmark longer than one working session is run in
pieces; the report is rendered from whatever the store holds.

Lines that do not parse (a run killed mid-write) are skipped; for a cell recorded more than
once, the last line wins."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OURS = "modelkiln"  # the system name of ModelKiln's own search; peers go by their names


@dataclass(frozen=True)
class CellKey:
    """What one result is a result of. ``families``: the families ModelKiln was asked to
    search (empty: its defaults); always empty for a peer, whose fit does not depend on it."""

    table: str
    seed: int
    system: str
    budget: int
    families: tuple[str, ...] = ()


@dataclass
class SearchFacts:
    """What a ModelKiln search job reported beside its score."""

    job_id: int
    version: int
    family: str  # the registered winner's family ("average" for an average)
    latency_ms: float  # served p50 at batch 1
    size_bytes: int
    trials: int  # complete trials
    family_bests: dict[str, float | None]  # each family's best on the search's own evidence
    family_trials: dict[str, int]  # each family's complete trials (result.selection.families)
    trial_states: dict[str, dict[str, int]]  # per family, trials by state (the trials route)
    shares: dict[str, float]  # each family's weight in the registered model
    led_by: str | None  # the family whose best trial led the search
    baseline: float | None  # a constant prediction's score on the same evidence
    submit_to_registered_s: float  # job created -> its version registered
    started_to_finished_s: float  # the job's own start -> finish (a worker's time)
    submit_to_finished_s: float
    validation_rows: int | None = None
    refit_on_rows: int | None = None


@dataclass
class CellRecord:
    """One finished cell: its score on the seed's test rows (accuracy, or RMSE), or the
    error that stopped it, and when and where it ran."""

    table: str
    seed: int
    system: str
    budget: int
    task: str  # classification or regression
    rows: int  # the table's labelled rows
    score: float | None
    seconds: float  # a peer's fit; ModelKiln's submit -> finished
    chosen: str = ""  # the peer's learner or model; ModelKiln's winning family
    families: list[str] = field(default_factory=list)
    error: str | None = None
    recorded_at: str = ""  # local date and time, ISO 8601
    machine: str = ""  # architecture, CPUs, Python
    host: str = ""
    search: SearchFacts | None = None

    @property
    def key(self) -> CellKey:
        return CellKey(self.table, self.seed, self.system, self.budget, tuple(self.families))

    @property
    def ok(self) -> bool:
        return self.error is None and self.score is not None

    @property
    def classification(self) -> bool:
        return self.task == "classification"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CellRecord:
        search = data.get("search")
        known = set(cls.__dataclass_fields__)
        values = {name: value for name, value in data.items() if name in known}
        values["search"] = SearchFacts(**search) if search else None
        return cls(**values)


def machine_description() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def stamped(record: CellRecord) -> CellRecord:
    """The record with the date, time and machine it ran on."""
    record.recorded_at = time.strftime("%Y-%m-%dT%H:%M:%S")
    record.machine = machine_description()
    record.host = platform.node()
    return record


class ResultStore:
    """The JSON lines file of a benchmark's cells (created on the first result)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.unreadable_lines = 0
        self._latest: dict[CellKey, CellRecord] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                if not line.strip():
                    continue
                try:
                    record = CellRecord.from_dict(json.loads(line))
                except (ValueError, TypeError, KeyError):
                    self.unreadable_lines += 1
                    continue
                self._latest[record.key] = record

    def records(self) -> list[CellRecord]:
        """The latest record of every cell, in the order the cells were first recorded."""
        return list(self._latest.values())

    def done(self, key: CellKey) -> bool:
        """Whether the cell has a result (not an error): a rerun skips it."""
        record = self._latest.get(key)
        return record is not None and record.ok

    def left(self, cells: Iterable[CellKey]) -> list[CellKey]:
        """The cells still to run, in order: those without a result."""
        return [key for key in cells if not self.done(key)]

    def add(self, record: CellRecord) -> None:
        """Append the record and flush it to disk before returning."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            if self._ends_mid_line():  # a line cut off by a killed run stays on its own
                handle.write("\n")
            handle.write(record.to_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self._latest[record.key] = record

    def _ends_mid_line(self) -> bool:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return False
        with self.path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) != b"\n"
