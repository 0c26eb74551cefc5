"""Reading a batch prediction's input CSV a chunk of rows at a time, with Arrow's streaming
reader: memory holds one chunk, never the file. Only the columns the version reads and the
key columns are parsed; numbers straight to float32, text trimmed as the upload did it."""

from __future__ import annotations

import csv
import math
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as arrow_csv

from app.contracts.encoding import FLOAT32_MAX, NUMBER_PATTERN
from app.contracts.signature import Signature
from app.core.errors import BrokenInvariant, InvalidInput
from app.core.text_files import first_undecodable_line
from app.preprocessing.csv_reader import MISSING_SPELLINGS, is_number, short_list

BLOCK_BYTES = 1 << 20  # Arrow reads a few blocks ahead: memory grows with this
Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class InputLayout:
    """Which CSV columns a version reads, and how: ``tensor`` lists the columns of a
    single-tensor model in its feature order; otherwise each required input is a column
    (numbers in ``numeric``, text and dates in ``text``; ``words_as_gaps``: numbers whose
    upload held a few words, read as gaps here too). ``keys`` are copied as written."""

    numeric: tuple[str, ...]
    text: tuple[str, ...]
    keys: tuple[str, ...]
    tensor: tuple[str, ...] | None
    row_shape: tuple[int, ...]
    words_as_gaps: tuple[str, ...] = ()

    @property
    def read(self) -> list[str]:
        """Every column to parse, each once."""
        return list(dict.fromkeys([*self.numeric, *self.words_as_gaps, *self.text, *self.keys]))


def layout_for(
    signature: Signature, header: list[str], keys: list[str], feature_names: list[str] | None
) -> InputLayout:
    """The layout of ``header`` for a version; InvalidInput names what the CSV lacks.
    ``feature_names``: a single-tensor model's columns in training order (None: the
    header's columns other than the keys, in order)."""
    present = set(header)
    missing_keys = [key for key in keys if key not in present]
    if missing_keys:
        raise InvalidInput(
            f"key_columns: the CSV has no column(s) {short_list(missing_keys)}; "
            f"its columns are {short_list(header)}"
        )
    if len(set(keys)) != len(keys):
        raise InvalidInput("key_columns: a column is named twice")
    if signature.by_column:
        required = [spec for spec in signature.inputs if spec.required]
        lacking = [spec.name for spec in required if spec.name not in present]
        if lacking:
            raise InvalidInput(
                f"the CSV lacks column(s) {short_list(lacking)} that the model reads"
            )
        numbers = [spec for spec in required if spec.datatype == "FP32"]
        return InputLayout(
            numeric=tuple(spec.name for spec in numbers if not spec.words_as_gaps),
            words_as_gaps=tuple(spec.name for spec in numbers if spec.words_as_gaps),
            text=tuple(spec.name for spec in required if spec.datatype != "FP32"),
            keys=tuple(keys),
            tensor=None,
            row_shape=(1,),
        )
    names = (
        feature_names
        if feature_names is not None
        else [name for name in header if name not in set(keys)]
    )
    lacking = [name for name in names if name not in present]
    if lacking:
        raise InvalidInput(
            f"the CSV lacks column(s) {short_list(lacking)} that the model "
            "reads (its training columns)"
        )
    if len(names) != signature.n_features:
        raise InvalidInput(
            f"the model takes {signature.n_features} numbers per row; the CSV "
            f"has {len(names)} columns besides key_columns "
            f"({short_list(names)})"
        )
    return InputLayout(
        numeric=tuple(names),
        text=(),
        keys=tuple(keys),
        tensor=tuple(names),
        row_shape=signature.row_shape,
    )


def _reader(
    path: Path, header: list[str], header_lines: int, layout: InputLayout
) -> arrow_csv.CSVStreamingReader:
    types: dict[str, pa.DataType] = {name: pa.string() for name in layout.read}
    types.update({name: pa.float32() for name in layout.numeric})
    convert = arrow_csv.ConvertOptions(
        include_columns=layout.read,
        column_types=types,
        null_values=MISSING_SPELLINGS.to_pylist(),
        strings_can_be_null=True,
        true_values=[],
        false_values=[],
        timestamp_parsers=[],
    )
    return arrow_csv.open_csv(
        path,
        read_options=arrow_csv.ReadOptions(
            column_names=header, skip_rows=header_lines, block_size=BLOCK_BYTES
        ),
        parse_options=arrow_csv.ParseOptions(newlines_in_values=True, ignore_empty_lines=True),
        convert_options=convert,
    )


def _first_bad_cell(path: Path, header: list[str], numeric: tuple[str, ...], from_row: int) -> str:
    """Where the first cell that is not a number lies, at or after data row ``from_row``
    (0-based): read again with the standard library, on the error path only."""
    positions = {name: header.index(name) for name in numeric}
    with path.open("r", encoding="utf-8-sig", newline="", errors="replace") as handle:
        rows = (cells for cells in csv.reader(handle) if any(c.strip() for c in cells))
        next(rows, None)
        for number, cells in enumerate(rows):
            if number < from_row:
                continue
            for name, position in positions.items():
                cell = cells[position].strip() if position < len(cells) else ""
                if cell.lower() not in _MISSING and not is_number(cell):
                    return f"row {number + 1}, column {name!r}: {cell[:40]!r} is not a number"
    return f"a cell at or after row {from_row + 1} could not be read"


_MISSING = set(MISSING_SPELLINGS.to_pylist())


def chunks(
    path: Path,
    header: list[str],
    header_lines: int,
    layout: InputLayout,
    *,
    chunk_rows: int,
    skip_rows: int = 0,
) -> Iterator[pa.Table]:
    """The CSV's rows in tables of ``chunk_rows`` (the last may be shorter), after the
    first ``skip_rows``. A cell that is not a number where one is needed, or a malformed
    line, raises InvalidInput that names the row."""
    pending: list[pa.RecordBatch] = []
    held = 0
    seen = 0  # rows read so far, skipped ones included
    try:
        reader = _reader(path, header, header_lines, layout)
        for batch in reader:
            seen += batch.num_rows
            if seen <= skip_rows:
                continue
            if seen - batch.num_rows < skip_rows:
                batch = batch.slice(skip_rows - (seen - batch.num_rows))
            pending.append(batch)
            held += batch.num_rows
            while held >= chunk_rows:
                table = pa.Table.from_batches(pending)
                yield table.slice(0, chunk_rows)
                rest = table.slice(chunk_rows)
                pending, held = rest.to_batches(), rest.num_rows
    except pa.ArrowInvalid as error:
        if "invalid UTF8" in str(error):
            raise InvalidInput(f"line {first_undecodable_line(path)} is not UTF-8 text") from None
        if "conversion error" in str(error):
            raise InvalidInput(_first_bad_cell(path, header, layout.numeric, seen)) from None
        raise InvalidInput(
            f"malformed CSV at or after row {seen + 1}: {str(error)[:200]}"
        ) from None
    if held:
        yield pa.Table.from_batches(pending)


def estimate_rows(path: Path, header_lines: int) -> int:
    """Data rows by counting line ends (a quoted line break or a blank line makes it a
    little high): the progress total until the job has read them all."""
    ends, last = 0, b""
    with path.open("rb") as handle:
        while block := handle.read(BLOCK_BYTES * 2):
            ends += block.count(b"\n")
            last = block[-1:]
    return max(0, ends + (last not in (b"\n", b"")) - header_lines)


_DONE = object()


def prefetched(items: Iterator[pa.Table], depth: int = 1) -> Iterator[pa.Table]:
    """``items``, read ahead by a thread (at most ``depth`` waiting): the next chunk is
    parsed while this one is predicted. Errors arrive in order; stopping early stops the
    thread at its next item."""
    waiting: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def read() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        waiting.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            waiting.put(_DONE)
        except BaseException as error:  # handed to the consumer, raised there
            waiting.put(error)

    reader = threading.Thread(target=read, name="batch-reader", daemon=True)
    reader.start()
    try:
        while (item := waiting.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join(timeout=5)


def _numbers(table: pa.Table, name: str, first_row: int) -> np.ndarray:
    values = table.column(name).to_numpy().astype(np.float32, copy=False)
    infinite = np.flatnonzero(np.isinf(values))
    if infinite.size:
        raise InvalidInput(
            f"row {first_row + int(infinite[0]) + 1}, column {name!r}: outside the float32 range"
        )
    return values


def _numbers_or_gaps(table: pa.Table, name: str, first_row: int) -> np.ndarray:
    """A column whose upload held a few words among its numbers: numbers, and NaN (a gap)
    for any other text, as the upload read it."""
    text = pc.utf8_trim_whitespace(table.column(name).fill_null(""))
    numeric = pc.match_substring_regex(text, f"^(?:{NUMBER_PATTERN})$", ignore_case=True)
    values = pc.cast(pc.if_else(numeric, text, "nan"), pa.float64()).to_numpy()
    with np.errstate(invalid="ignore"):
        outside = np.flatnonzero(np.abs(values) > FLOAT32_MAX)
    if outside.size:
        raise InvalidInput(
            f"row {first_row + int(outside[0]) + 1}, column {name!r}: outside the float32 range"
        )
    return values.astype(np.float32)


def _text(table: pa.Table, name: str) -> np.ndarray:
    text = pc.utf8_trim_whitespace(table.column(name).fill_null(""))
    text = pc.if_else(pc.is_in(text, value_set=MISSING_SPELLINGS), "", text)
    return np.asarray(text.to_pylist(), dtype=object)


def feeds_of(table: pa.Table, layout: InputLayout, input_name: str, first_row: int) -> Feeds:
    """The model's feeds for one chunk; ``first_row`` (0-based) names rows in errors."""
    if layout.tensor is None:
        feeds = {name: _numbers(table, name, first_row).reshape(-1, 1) for name in layout.numeric}
        feeds.update(
            {
                name: _numbers_or_gaps(table, name, first_row).reshape(-1, 1)
                for name in layout.words_as_gaps
            }
        )
        feeds.update({name: _text(table, name).reshape(-1, 1) for name in layout.text})
        return feeds
    matrix = np.empty((table.num_rows, len(layout.tensor)), dtype=np.float32)
    for position, name in enumerate(layout.tensor):
        matrix[:, position] = _numbers(table, name, first_row)
    gaps = np.isnan(matrix)
    if gaps.any():
        row, column = (int(index) for index in np.argwhere(gaps)[0])
        raise InvalidInput(
            f"row {first_row + row + 1}, column {layout.tensor[column]!r} is "
            "empty; this model takes a number in every column"
        )
    shape = (table.num_rows, *layout.row_shape)
    if not (math.prod(shape[1:]) == len(layout.tensor)):
        raise BrokenInvariant("not (math.prod(shape[1:]) == len(layout.tensor))")
    return {input_name: matrix.reshape(shape)}
