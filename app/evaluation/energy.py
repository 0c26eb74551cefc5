"""Energy a process spends running a model: from RAPL's counters (Linux powercap,
``<powercap_dir>/intel-rapl:N/energy_uj``, one per CPU package) where this process may read
them, else an estimate: the process's CPU-seconds times a configured power per core
(``KILN_CPU_WATTS_PER_CORE``). Every number says which (``source``).

RAPL counts a whole package: whatever else runs on it during the measured runs counts too
(and idle cores' draw). The estimate counts only this process's CPU time, at a fixed
power: it ranks models by the work they cost, not by what a given machine draws."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # the footprint child reads no settings: it need not load them
    from app.core.config import Settings

EnergySource = Literal["rapl", "estimate"]
# A package's own counter (intel-rapl:0); its sub-domains (intel-rapl:0:0, core, uncore,
# dram) are parts of it, counted already.
PACKAGE = re.compile(r"intel-rapl:\d+")
MICRO = 1e-6


@dataclass(frozen=True)
class EnergySettings:
    """Where RAPL's counters are, and the watts per core of the estimate without them."""

    powercap_dir: Path
    watts_per_core: float

    @classmethod
    def of(cls, settings: Settings) -> EnergySettings:
        """KILN_POWERCAP_DIR and KILN_CPU_WATTS_PER_CORE."""
        return cls(settings.powercap_dir, settings.cpu_watts_per_core)


@dataclass(frozen=True)
class Energy:
    """Joules spent on ``rows`` rows; ``watts_per_core`` the estimate's (None: RAPL)."""

    joules: float
    rows: int
    source: EnergySource
    watts_per_core: float | None

    @property
    def mj_per_1k_rows(self) -> float:
        """Millijoules per 1,000 rows."""
        return self.joules / self.rows * 1e3 * 1e3 if self.rows else 0.0


@dataclass(frozen=True)
class RaplCounter:
    """One package's energy counter and the value it wraps around at (microjoules)."""

    path: Path
    wraps_at: int

    def read(self) -> int:
        return read_counter(self.path)


COUNTER_BYTES = 32  # a counter file holds one decimal number (microjoules)


def read_counter(path: Path) -> int:
    """The non-negative number in a powercap file; ValueError for anything else: not a
    regular file (a FIFO would block, a device would never end), longer than a counter
    can be, not a number, or negative."""
    if not path.is_file():
        raise ValueError(f"{path} is not a regular file")
    with path.open("rb") as handle:
        text = handle.read(COUNTER_BYTES + 1)
    if len(text) > COUNTER_BYTES:
        raise ValueError(f"{path} holds more than a counter")
    value = int(text.strip())
    if value < 0:
        raise ValueError(f"{path} holds a negative counter")
    return value


def rapl_counters(powercap_dir: Path) -> list[RaplCounter]:
    """Every CPU package's counter this process can read; [] when there is none, or one
    cannot be read (a partial sum would undercount, so it is all or nothing)."""
    try:
        folders = sorted(entry for entry in powercap_dir.iterdir() if PACKAGE.fullmatch(entry.name))
    except OSError:
        return []
    counters = []
    for folder in folders:
        try:
            counter = RaplCounter(folder / "energy_uj", _wraps_at(folder))
            counter.read()
        except (OSError, ValueError):
            return []
        counters.append(counter)
    return counters


def _wraps_at(folder: Path) -> int:
    try:
        wraps_at = read_counter(folder / "max_energy_range_uj")
    except (OSError, ValueError):
        wraps_at = 0
    return wraps_at if wraps_at > 0 else 2**32  # the register width on the oldest parts


def spent_uj(before: int, after: int, wraps_at: int) -> int:
    """Microjoules a counter advanced from ``before`` to ``after``, across one wrap (never
    negative: a counter past its own stated range counts nothing)."""
    return after - before if after >= before else max(0, after + wraps_at - before)


def measure_energy(run: Callable[[], int], settings: EnergySettings) -> Energy:
    """The energy ``run`` spends (it returns the rows it ran): RAPL where readable, else
    this process's CPU-seconds (every thread's) times the watts per core."""
    counters = rapl_counters(settings.powercap_dir)
    if counters:
        try:
            before = [counter.read() for counter in counters]
            rows = run()
            after = [counter.read() for counter in counters]
        except (OSError, ValueError):
            counters = []  # read once and then not: the estimate below
        else:
            microjoules = sum(
                spent_uj(start, end, counter.wraps_at)
                for counter, start, end in zip(counters, before, after, strict=True)
            )
            return Energy(microjoules * MICRO, rows, "rapl", None)
    started = time.process_time()
    rows = run()
    cpu_seconds = time.process_time() - started
    return Energy(cpu_seconds * settings.watts_per_core, rows, "estimate", settings.watts_per_core)
