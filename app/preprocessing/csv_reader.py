"""Reading a CSV column by column with Arrow's multithreaded reader: numbers arrive as
numbers, everything else as trimmed text (types are decided afterwards, per column), memory
is Arrow's compact buffers rather than a Python object per cell. When Arrow refuses the
file, the standard library's reader walks it again to say which line is wrong."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as arrow_csv

from app.core.errors import InvalidInput
from app.core.names import COLUMN_NAME

MISSING_TOKENS = ("", "na", "n/a", "nan", "null", "none", "?")


def _spellings(token: str) -> list[str]:
    """Every upper/lower-case spelling of ``token`` ('na': 'na', 'nA', 'Na', 'NA')."""
    spellings = [""]
    for char in token:
        spellings = [head + case for head in spellings for case in {char.lower(), char.upper()}]
    return spellings


MISSING_SPELLINGS = pa.array(
    sorted({text for token in MISSING_TOKENS for text in _spellings(token)})
)
MAX_COLUMNS = 10_000
BLOCK_BYTES = 1 << 23


def short_list(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(repr(name) for name in names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}]"


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_header(names: list[str]) -> list[str]:
    if len(names) > MAX_COLUMNS:
        raise InvalidInput(f"CSV has {len(names)} columns; at most {MAX_COLUMNS} are supported")
    if all(is_number(name) for name in names):
        raise InvalidInput(
            "CSV has no header row: the first row holds only numbers "
            f"({short_list(names, 5)}); add a row of column names"
        )
    for position, name in enumerate(names, start=1):
        if not name:
            raise InvalidInput(f"header has an empty column name at position {position}")
        COLUMN_NAME.check(name, f"header, column {position}")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InvalidInput(f"header repeats column names: {short_list(duplicates)}")
    return names


def read_header(path: Path) -> tuple[list[str], int]:
    """The column names and how many physical lines precede the data."""
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            while header is not None and not any(cell.strip() for cell in header):
                header = next(reader, None)
        except csv.Error as error:
            raise InvalidInput(f"malformed CSV: {error}") from None
        except UnicodeDecodeError as error:
            raise InvalidInput(
                f"file is not UTF-8 text (bad byte at offset {error.start})"
            ) from None
        if header is None:
            raise InvalidInput("file is empty: expected a CSV with a header row")
        return _check_header([cell.strip() for cell in header]), reader.line_num


def _open_text(path: Path) -> Any:
    return path.open("r", encoding="utf-8-sig", newline="")


def _diagnose(path: Path, width: int) -> InvalidInput | None:
    """The first problem the standard reader finds: bad bytes, bad quoting, ragged rows."""
    try:
        with _open_text(path) as handle:
            reader = csv.reader(handle)
            next(reader, None)
            for row in reader:
                if row and any(cell.strip() for cell in row) and len(row) != width:
                    return InvalidInput(
                        f"line {reader.line_num} has {len(row)} fields; the header has {width}"
                    )
    except UnicodeDecodeError as error:
        return InvalidInput(f"file is not UTF-8 text (bad byte at offset {error.start})")
    except csv.Error as error:
        return InvalidInput(f"malformed CSV: {error}")
    return None


def read_columns(
    path: Path, names: list[str], header_lines: int, text_columns: set[str]
) -> dict[str, pa.Array]:
    """Every column, as Arrow reads it in parallel: numbers (int64 or double, null for a
    gap) where every cell is a number or a gap, else trimmed text with '' for a gap (and
    always text for ``text_columns``: the target, and columns whose type was given)."""
    options = arrow_csv.ReadOptions(
        column_names=names, skip_rows=header_lines, block_size=BLOCK_BYTES, use_threads=True
    )
    convert = arrow_csv.ConvertOptions(
        column_types={name: pa.string() for name in text_columns},
        null_values=MISSING_SPELLINGS.to_pylist(),
        strings_can_be_null=True,
        true_values=[],
        false_values=[],
        timestamp_parsers=[],
    )  # words stay as written
    parse = arrow_csv.ParseOptions(newlines_in_values=True, ignore_empty_lines=True)
    try:
        table = arrow_csv.read_csv(
            path, read_options=options, parse_options=parse, convert_options=convert
        )
    except (pa.ArrowInvalid, pa.ArrowException) as error:
        found = _diagnose(path, len(names))
        raise (found or InvalidInput(f"malformed CSV: {str(error)[:200]}")) from None
    columns: dict[str, pa.Array] = {}
    for name in names:
        column = table.column(name).combine_chunks()
        table = table.drop_columns([name])  # release each raw column once it is converted
        if (
            pa.types.is_integer(column.type)
            or pa.types.is_floating(column.type)
            or pa.types.is_null(column.type)
        ):
            columns[name] = column
            continue
        text = pc.utf8_trim_whitespace(pc.cast(column, pa.string()).fill_null(""))
        del column
        columns[name] = pc.if_else(pc.is_in(text, value_set=MISSING_SPELLINGS), "", text)
    return columns


def line_of(path: Path, row: int) -> int:
    """The file line (1-based, header included) where data row ``row`` (0-based, blank
    lines skipped) starts: found by reading the file again, on error paths only."""
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        next(reader, None)
        seen = -1
        start = reader.line_num + 1
        for cells in reader:
            if cells and any(cell.strip() for cell in cells):
                seen += 1
                if seen == row:
                    return start
            start = reader.line_num + 1
    return start
