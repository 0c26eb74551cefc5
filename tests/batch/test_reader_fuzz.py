"""The batch reader on hostile CSV bodies: whatever the bytes after a valid header (bad
UTF-8, stray quotes, ragged lines, words, huge numbers), reading in chunks either gives
feeds of the declared shape or refuses with an InvalidInput naming the problem; it never
raises anything else."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from app.batch.reader import chunks, estimate_rows, feeds_of, layout_for
from app.contracts.signature import Signature
from app.core.errors import InvalidInput
from app.preprocessing.csv_reader import read_header

SIGNATURE = Signature.of_tensors(input_name="input", row_shape=(2,), output_name="output", width=3)
CELLS = st.sampled_from(
    [
        b"1",
        b"-2.5",
        b"",
        b"NA",
        b"x",
        b'"',
        b'"a,b"',
        b"1e40",
        b"\xff",
        b"\xc3\xa9",
        b" 3 ",
        b"\n",
        b"nan",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(CELLS, min_size=1, max_size=4), max_size=30), st.integers(1, 7))
def test_any_body_reads_or_is_refused_with_a_reason(
    lines: list[list[bytes]], chunk_rows: int
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rows.csv"
        path.write_bytes(b"a,b,key\n" + b"".join(b",".join(cells) + b"\n" for cells in lines))
        read_all(path, chunk_rows)


def read_all(path: Path, chunk_rows: int) -> str | None:
    """Read the whole file in chunks; the refusal's message, or None when it was read."""
    done = 0
    try:
        header, header_lines = read_header(path)  # (the submit check reads it first)
        layout = layout_for(SIGNATURE, header, ["key"], None)
        assert estimate_rows(path, header_lines) >= 0
        for table in chunks(path, header, header_lines, layout, chunk_rows=chunk_rows):
            feeds = feeds_of(table, layout, "input", done)
            assert feeds["input"].shape == (table.num_rows, 2)
            assert np.isfinite(feeds["input"]).all()
            done += table.num_rows
    except InvalidInput as refused:
        assert refused.message
        return refused.message
    return None


def test_bad_bytes_far_into_the_file_are_named(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(b"a,b,key\n" + b"1,2,k\n" * 50_000 + b"1,2,\xff\xfe\n")
    assert read_all(path, 1000) == "line 50002 is not UTF-8 text"
