"""A batch CSV for a model whose upload read a column's few words as gaps: the job reads
any text in that column as a gap too, and still refuses a word in an ordinary number column.
Such a version's signature says so, and differs from one that refuses words there."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from app.batch.reader import chunks, feeds_of, layout_for
from app.contracts.encoding import NumericColumn, TableEncoding
from app.contracts.signature import Signature
from app.core.errors import InvalidInput
from app.preprocessing.csv_reader import read_header

ENCODING = TableEncoding(
    columns=[
        NumericColumn(name="grade", fill=10.0, indicator=True, words_as_gaps=True),
        NumericColumn(name="age", fill=15.0),
    ]
)
SIGNATURE = Signature.of_columns(ENCODING, used={"grade", "age"}, output_name="output", width=2)


def read(path: Path) -> dict[str, list[float]]:
    header, header_lines = read_header(path)
    layout = layout_for(SIGNATURE, header, [], None)
    feeds: dict[str, list[float]] = {"grade": [], "age": []}
    for table in chunks(path, header, header_lines, layout, chunk_rows=2):
        for name, values in feeds_of(table, layout, "input", 0).items():
            feeds[name] += values.reshape(-1).tolist()
    return feeds


def test_words_in_such_a_column_are_gaps_and_numbers_stay_numbers(tmp_path: Path) -> None:
    assert [spec.words_as_gaps for spec in SIGNATURE.inputs] == [True, False]
    path = tmp_path / "rows.csv"
    path.write_text("grade,age\nother,15\n 11 ,16\nNA,17\n1e1,18\nnever seen,19\n")
    feeds = read(path)
    grade = feeds["grade"]
    assert math.isnan(grade[0]) and grade[1] == 11.0 and math.isnan(grade[2])
    assert grade[3] == 10.0 and math.isnan(grade[4])
    assert feeds["age"] == [15.0, 16.0, 17.0, 18.0, 19.0]


def test_a_word_in_an_ordinary_number_column_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("grade,age\n9,15\n10,other\n")
    with pytest.raises(InvalidInput, match="row 2, column 'age': 'other' is not a number"):
        read(path)


def test_a_number_outside_float32_in_such_a_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("grade,age\n9,15\n1e39,16\n")
    with pytest.raises(InvalidInput, match="row 2, column 'grade': outside the float32 range"):
        read(path)


def test_a_version_that_reads_words_as_gaps_cannot_share_traffic_with_one_that_refuses_them() -> (
    None
):
    strict = TableEncoding(columns=[NumericColumn(name="grade", fill=10.0), ENCODING.columns[1]])
    refusing = Signature.of_columns(strict, used={"grade", "age"}, output_name="output", width=2)
    assert SIGNATURE.difference(refusing) == (
        "input 'grade' takes numbers only, not words read as gaps"
    )
    assert refusing.difference(SIGNATURE) is None  # every request it takes, the other takes
