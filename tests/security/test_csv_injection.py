"""CSV outputs never carry a live spreadsheet formula: the batch writer and the client's
``predict_csv`` write text cells (and column names) that begin with = + - @, a tab or a
carriage return with a leading ', and leave plain numbers as they are."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import csv as arrow_csv

from app.batch.csv_cells import inert_text
from app.batch.output import OutputWriter
from modelkiln.csv_predict import inert_cells

CASES = [
    ("=1+1", "'=1+1"),
    ("+SUM(1,2)", "'+SUM(1,2)"),
    ("-2+3", "'-2+3"),
    ("@x", "'@x"),
    ("\tx", "'\tx"),
    ("\rx", "'\rx"),
    ("-3.5", "-3.5"),
    ("+2", "+2"),
    ("1e-3", "1e-3"),
    ("plain", "plain"),
    ("", ""),
]


@pytest.mark.parametrize(("cell", "written"), CASES)
def test_the_server_and_the_client_agree_on_each_cell(cell: str, written: str) -> None:
    assert inert_text(cell) == written
    assert inert_cells([cell, 1.5, None]) == [written, 1.5, None]


def test_the_batch_writer_neutralises_cells_and_names_in_csv_only(tmp_path: Path) -> None:
    table = pa.table(
        {
            "=key": [case for case, _ in CASES],
            "prediction": ["@a"] * len(CASES),
            "score": [-1.0] * len(CASES),
        }
    )
    for output_format in ("csv", "parquet"):
        destination = tmp_path / f"out.{output_format}"
        writer = OutputWriter(destination, output_format)
        writer.write(table)
        writer.close()
    read = arrow_csv.read_csv(
        tmp_path / "out.csv",
        convert_options=arrow_csv.ConvertOptions(
            column_types={"'=key": pa.string()}, strings_can_be_null=False
        ),
    )
    assert read.column_names == ["'=key", "prediction", "score"]
    assert read.column("'=key").to_pylist() == [written for _, written in CASES]
    assert set(read.column("prediction").to_pylist()) == {"'@a"}
    assert read.column("score").to_pylist() == [-1.0] * len(CASES)
    assert pq.read_table(tmp_path / "out.parquet").equals(table)
