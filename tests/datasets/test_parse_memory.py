"""Parsing an upload takes memory bounded by a small multiple of the file's size (it was
about 15 times: a Python float object per value)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.datasets.parsing import parse_csv
from tests.helpers import csv_bytes

# Bytes the parser may hold at its peak per byte of CSV: float32 features take at most
# twice the text of values written as one digit and a comma, plus the target's arrays.
BOUND = 4.0


@pytest.mark.parametrize("kind", ["digits", "decimals"])
def test_parse_memory_is_a_small_multiple_of_the_file(tmp_path: Path, kind: str) -> None:
    import tracemalloc

    rng = np.random.default_rng(0)
    rows = 40_000
    if kind == "digits":  # the worst case: one character per value
        values = rng.integers(0, 10, size=(rows, 24)).tolist()
    else:
        values = np.round(rng.normal(size=(rows, 24)), 4).tolist()
    labels = rng.integers(0, 5, size=rows).tolist()
    path = tmp_path / "table.csv"
    path.write_bytes(csv_bytes([*(f"f{i}" for i in range(24)), "label"],
                               [[*row, label] for row, label in zip(values, labels,
                                                                    strict=True)]))
    size = path.stat().st_size
    tracemalloc.start()
    try:
        parsed = parse_csv(path, target="label")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert parsed.features.shape == (rows, 24) and parsed.class_labels == [0, 1, 2, 3, 4]
    print(f"{kind}: peak {peak / size:.2f}x the file")
    assert peak <= BOUND * size, f"peak {peak / size:.1f}x the file's {size} bytes"
