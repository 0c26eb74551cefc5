"""A model's footprint as served: the memory one run takes at batch 1 and at batch
``LARGE_BATCH``, and the energy per 1,000 rows (``app.evaluation.energy``). Measured the
same way for every version and every trial that asks for it: onnxruntime without its
memory arena (what a run allocates is returned when it ends, so a run's peak is its own),
in a process of its own, the upload probe's (``app.registry.probe_child``) or
``app.evaluation.footprint_child`` (``measure_file``).

Peak memory per run: before each measured run the allocator hands its free pages back to
the system (``malloc_trim``) and Linux's peak resident size is reset
(``/proc/self/clear_refs``: 5); the peak after the run less the resident size before it is
what the run itself touched, exact to a page, whatever ran before (the allocation that
outlived the run, the output, included). The median of ``MEMORY_RUNS``, after one warm-up
run (one-time allocations of a first run are not a run's). Where the peak cannot be reset,
the growth of the process's peak past its earlier one: a lower bound."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from app.evaluation.energy import EnergySettings, EnergySource, measure_energy
from app.evaluation.latency import rows_of

logger = logging.getLogger(__name__)
LARGE_BATCH = 256
MEMORY_RUNS = 3
# Energy: batches of LARGE_BATCH rows for at least this long (at least one batch).
ENERGY_SECONDS = 0.25
MB = 1024 * 1024
STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
RESET_PEAK = "5"  # clear_refs: reset the peak resident size to the current one


class Footprint(BaseModel):
    """What ``measure`` found (None: not measured, see the caller), under the names a
    version's metrics and a trial's keep: megabytes one run takes at batch 1
    (``peak_memory_mb``) and at ``LARGE_BATCH`` rows (``peak_memory_b256_mb``), millijoules
    per 1,000 rows run in batches of ``LARGE_BATCH``, whether RAPL measured them or they are
    an estimate, and the estimate's watts per core."""

    peak_memory_mb: float | None = Field(
        default=None,
        description="MB one run on 1 row takes (onnxruntime without its memory arena: the "
        "process's peak resident memory during the run less its size before it).",
    )
    peak_memory_b256_mb: float | None = Field(
        default=None,
        description=f"The same for a run on {LARGE_BATCH} rows (None: it would not fit the "
        "limits of an upload's probe).",
    )
    energy_mj_per_1k_rows: float = Field(
        description=f"Millijoules per 1,000 rows, run in batches of {LARGE_BATCH}."
    )
    energy_source: EnergySource = Field(
        description="'rapl': the CPU packages' energy counters (everything the packages ran "
        "meanwhile counts); 'estimate': the process's CPU-seconds times "
        "energy_watts_per_core (KILN_CPU_WATTS_PER_CORE)."
    )
    energy_watts_per_core: float | None = Field(
        default=None, description="The estimate's watts per busy core (None: RAPL)."
    )

    def metrics(self) -> dict[str, float | str]:
        """The numbers as a version's metrics store them (what was not measured left out)."""
        return self.model_dump(exclude_none=True)

    @classmethod
    def of_metrics(cls, metrics: dict[str, Any] | None) -> Footprint | None:
        """The footprint a version's metrics store; None for one measured before footprints
        were (or metrics of another shape)."""
        stored = metrics or {}
        if "energy_source" not in stored:
            return None
        try:
            return cls.model_validate({name: stored.get(name) for name in cls.model_fields})
        except ValidationError:
            return None


def _status_bytes(field: str) -> int | None:
    """A ``/proc/self/status`` size (VmRSS, VmHWM) in bytes; None where there is none."""
    try:
        with STATUS.open(encoding="utf-8", errors="replace") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _trim() -> Callable[[], None]:
    """glibc's ``malloc_trim(0)`` (free heap pages back to the system), or nothing."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int

    def release() -> None:
        trim(0)

    return release


def _reset_peak() -> bool:
    try:
        CLEAR_REFS.write_text(RESET_PEAK)
    except OSError:
        return False
    return True


def peak_growth_bytes(run_once: Callable[[], object]) -> int | None:
    """The memory one call of ``run_once`` takes (see the module docstring); None where
    the process's sizes cannot be read."""
    release = _trim()
    run_once()
    growths = []
    for _ in range(MEMORY_RUNS):
        release()
        before = _status_bytes("VmRSS") if _reset_peak() else _status_bytes("VmHWM")
        run_once()
        peak = _status_bytes("VmHWM")
        if before is None or peak is None:
            return None
        growths.append(max(peak - before, 0))
    return int(statistics.median(growths))


def _megabytes(size: int | None) -> float | None:
    return None if size is None else round(size / MB, 4)


def measure(
    run_rows: Callable[[int], object],
    energy: EnergySettings,
    *,
    large_batch: bool = True,
    seconds: float = ENERGY_SECONDS,
) -> Footprint:
    """The footprint of ``run_rows(n)`` (one run on ``n`` rows) in this process.
    ``large_batch=False`` (a batch of LARGE_BATCH rows would not fit): no memory at that
    batch, and the energy at batch 1."""
    single = peak_growth_bytes(lambda: run_rows(1))
    batch = LARGE_BATCH if large_batch else 1
    large = peak_growth_bytes(lambda: run_rows(batch)) if large_batch else None

    def timed_rows() -> int:
        rows, deadline = 0, time.perf_counter() + seconds
        while rows == 0 or time.perf_counter() < deadline:
            run_rows(batch)
            rows += batch
        return rows

    spent = measure_energy(timed_rows, energy)
    return Footprint(
        peak_memory_mb=_megabytes(single),
        peak_memory_b256_mb=_megabytes(large),
        energy_mj_per_1k_rows=spent.mj_per_1k_rows,
        energy_source=spent.source,
        energy_watts_per_core=spent.watts_per_core,
    )


class FootprintUnmeasured(RuntimeError):
    """The footprint child did not answer (it crashed, or ran past its time)."""


def encoded_feeds(feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    """``LARGE_BATCH`` rows of ``feeds`` (repeated when there are fewer) as JSON: numbers
    as float32 lists, text as lists of strings (None: missing)."""
    rows = rows_of(feeds, LARGE_BATCH)
    return {
        name: {
            "text": values.dtype == object,
            "shape": list(values.shape),
            "values": values.reshape(-1).tolist(),
        }
        for name, values in rows.items()
    }


def decoded_feeds(encoded: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays ``encoded_feeds`` wrote."""
    return {
        name: np.asarray(entry["values"], dtype=object if entry["text"] else np.float32).reshape(
            entry["shape"]
        )
        for name, entry in encoded.items()
    }


def _child_environment() -> dict[str, str]:
    """This environment without ModelKiln's settings (credentials live there)."""
    return {name: value for name, value in os.environ.items() if not name.startswith("KILN_")}


def measure_file(
    model: Path | bytes,
    feeds: dict[str, np.ndarray],
    *,
    threads: int,
    energy: EnergySettings,
    timeout_s: float = 300.0,
) -> Footprint:
    """The footprint of an ONNX file (its path, or its bytes) on ``feeds`` (rows of every
    input it takes), measured in a child process (``app.evaluation.footprint_child``)."""
    with tempfile.TemporaryDirectory(prefix="kiln-footprint-") as folder:
        if isinstance(model, bytes):
            path = Path(folder) / "model.onnx"
            path.write_bytes(model)
        else:
            path = model
        request = {
            "model": str(path.resolve()),
            "threads": threads,
            "powercap_dir": str(energy.powercap_dir),
            "watts_per_core": energy.watts_per_core,
            "feeds": encoded_feeds(feeds),
        }
        asked = Path(folder) / "request.json"
        asked.write_text(json.dumps(request))
        try:
            finished = subprocess.run(
                [sys.executable, "-m", "app.evaluation.footprint_child", str(asked)],
                env=_child_environment(),
                capture_output=True,
                timeout=timeout_s,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise FootprintUnmeasured(
                f"measuring memory and energy took more than {timeout_s:g} s"
            ) from None
    lines = finished.stdout.decode("utf-8", "replace").strip().splitlines()
    if finished.returncode != 0 or not lines:
        tail = finished.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
        raise FootprintUnmeasured(
            f"measuring memory and energy failed (exit {finished.returncode}): "
            f"{tail[0] if tail else 'no message'}"
        )
    return Footprint.model_validate_json(lines[-1])


def footprint_metrics(
    model: Path | bytes, feeds: dict[str, np.ndarray], *, threads: int, energy: EnergySettings
) -> dict[str, float | str]:
    """``measure_file``'s metrics to merge into a version's, or none when the measuring
    failed or overran (logged): a version registers without a footprint rather than not at
    all, as an upload does."""
    try:
        return measure_file(model, feeds, threads=threads, energy=energy).metrics()
    except FootprintUnmeasured:
        logger.warning("the version registers without its memory and energy", exc_info=True)
        return {}
