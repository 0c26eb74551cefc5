"""Parsing an upload takes memory bounded by a small multiple of the file's size (it was
about 15 times: a Python float object per value). Measured in a fresh process as the peak
of Python's allocations plus the peak of Arrow's memory pool, so Arrow's buffers count as
much as Python's objects (resident memory would add allocator noise)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import csv_bytes

# Peak bytes per byte of CSV. The worst case is one character per value: Arrow holds each
# value as text (1 byte and a 4-byte offset, twice while cells are trimmed) and the float32
# features take 4 bytes per value.
BOUND = {"digits": 14.0, "decimals": 6.0}

MEASURE = """
import sys, tracemalloc
from pathlib import Path
import pyarrow as pa
from app.datasets.parsing import parse_csv
tracemalloc.start()
parsed = parse_csv(Path(sys.argv[1]), target="label")
_, python_peak = tracemalloc.get_traced_memory()
arrow_peak = pa.default_memory_pool().max_memory()
print(parsed.features.shape[0], parsed.features.shape[1], python_peak + arrow_peak)
"""


@pytest.mark.parametrize("kind", ["digits", "decimals"])
def test_parse_memory_is_a_small_multiple_of_the_file(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(0)
    rows = 200_000
    if kind == "digits":  # the worst case: one character per value
        values = rng.integers(0, 10, size=(rows, 24)).tolist()
    else:
        values = np.round(rng.normal(size=(rows, 24)), 4).tolist()
    labels = rng.integers(0, 5, size=rows).tolist()
    path = tmp_path / "table.csv"
    path.write_bytes(
        csv_bytes(
            [*(f"f{i}" for i in range(24)), "label"],
            [[*row, label] for row, label in zip(values, labels, strict=True)],
        )
    )
    size = path.stat().st_size
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    n_rows, n_columns, peak = (int(part) for part in done.stdout.split())
    assert (n_rows, n_columns) == (rows, 24)
    print(f"{kind}: peak growth {peak / size:.2f}x the file")
    assert peak <= BOUND[kind] * size, f"peak {peak / size:.1f}x the file's {size} bytes"
