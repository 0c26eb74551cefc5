"""CSV parsing and validation: every rejection names the column, line and what was wrong."""

from __future__ import annotations

import csv
import io
import math
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.dataset_profile import DroppedRows
from app.datasets.splits import check_splittable
from app.errors import InvalidInput
from app.tables import Task

MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
MAX_COLUMNS = 10_000
MAX_CLASSES = 1_000
# Integer-valued targets with at most this many distinct values are taken as class labels.
MAX_INFERRED_CLASSES = 20
ROWS_PER_BLOCK = 256  # rows held as Python floats before they join the float32 buffer
GROWTH = 1.5


@dataclass(frozen=True)
class ParsedDataset:
    """A validated dataset: float32 features, encoded target and what the encoding means."""

    features: np.ndarray
    target: np.ndarray  # class index (int64) for classification, float64 for regression
    feature_names: list[str]
    task: Task
    class_labels: list[Any] | None
    input_shape: list[int] | None
    dropped: list[DroppedRows]

    @property
    def n_rows(self) -> int:
        return int(self.features.shape[0])


def _short(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(repr(name) for name in names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}]"


def parse_input_shape(text: str | None, n_features: int | None = None) -> list[int] | None:
    """Parse ``"1,8,8"`` into ``[1, 8, 8]`` and check it against the feature count."""
    if text is None or not text.strip():
        return None
    try:
        shape = [int(part) for part in text.replace("x", ",").split(",")]
    except ValueError:
        raise InvalidInput(f"input_shape {text!r} must be comma-separated positive integers, "
                           "e.g. '1,8,8'") from None
    if not 1 <= len(shape) <= 3 or any(dim <= 0 for dim in shape):
        raise InvalidInput(f"input_shape {text!r} must have 1 to 3 positive dimensions")
    if n_features is not None and math.prod(shape) != n_features:
        raise InvalidInput(f"input_shape {text!r} has {math.prod(shape)} elements but the CSV "
                           f"has {n_features} feature columns")
    return shape


def _read_header(reader: Any) -> list[str]:
    header = next(reader, None)
    while header is not None and not any(cell.strip() for cell in header):
        header = next(reader, None)
    if header is None:
        raise InvalidInput("file is empty: expected a CSV with a header row")
    names = [cell.strip() for cell in header]
    if len(names) > MAX_COLUMNS:
        raise InvalidInput(f"CSV has {len(names)} columns; at most {MAX_COLUMNS} are supported")
    if all(_is_number(name) for name in names):
        raise InvalidInput("CSV has no header row: the first row holds only numbers "
                           f"({_short(names, 5)}); add a row of column names")
    for position, name in enumerate(names, start=1):
        if not name:
            raise InvalidInput(f"header has an empty column name at position {position}")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InvalidInput(f"header repeats column names: {_short(duplicates)}")
    return names


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _bad_cell(row: list[str], columns: list[int], names: list[str], line: int) -> InvalidInput:
    """Find the first feature cell that did not parse as a finite number and describe it."""
    for index in columns:
        cell = row[index].strip()
        if cell.lower() in MISSING_TOKENS:
            return InvalidInput(f"missing value in column {names[index]!r} at line {line}")
        try:
            value = float(cell)
        except ValueError:
            return InvalidInput(f"column {names[index]!r} is not numeric: {cell[:40]!r} "
                                f"at line {line}")
        if not math.isfinite(value):
            return InvalidInput(f"column {names[index]!r} has a non-finite value {cell[:40]!r} "
                                f"at line {line}")
    return InvalidInput(f"unreadable row at line {line}")


class _TargetColumn:
    """The target, read row by row into compact arrays: its values as numbers while every
    one parses, and a code per row while it has few enough distinct values to be classes."""

    def __init__(self, name: str, task: Task | None) -> None:
        self.name, self.task = name, task
        self.values: array[float] | None = array("d")
        self.codes: array[int] | None = array("i")
        self.distinct: dict[str, int] = {}

    def add(self, label: str, line: int) -> None:
        if self.values is not None:
            try:
                number = float(label)
            except ValueError:
                if self.task == Task.REGRESSION:
                    raise InvalidInput(f"target column {self.name!r} must be numeric for "
                                       f"regression: {label[:40]!r} at line {line}") from None
                self.values = None
            else:
                if not math.isfinite(number):
                    raise InvalidInput(f"target column {self.name!r} has a non-finite value "
                                       f"{label[:40]!r} at line {line}")
                self.values.append(number)
        if self.codes is not None:
            code = self.distinct.setdefault(label, len(self.distinct))
            if len(self.distinct) <= MAX_CLASSES:
                self.codes.append(code)
                return
            self.codes, self.distinct = None, {}  # too many for classes: only values remain
        if self.values is None or self.task == Task.CLASSIFICATION:
            raise InvalidInput(f"target column {self.name!r} has more than {MAX_CLASSES} "
                               f"distinct values; classification supports at most "
                               f"{MAX_CLASSES} (use task=regression for a continuous target)")

    def encode(self) -> tuple[Task, np.ndarray, list[Any] | None]:
        """The task (inferred unless given), the encoded target and the class labels."""
        values = None if self.values is None else np.frombuffer(self.values, dtype=np.float64)
        integral = values is not None and bool(np.all(values == np.floor(values)))
        task = self.task
        if task is None:
            few = values is not None and len(np.unique(values)) <= MAX_INFERRED_CLASSES
            task = (Task.CLASSIFICATION if values is None or (integral and few)
                    else Task.REGRESSION)
        if task == Task.REGRESSION:
            assert values is not None
            return task, values.copy(), None
        labels: list[Any]
        if values is not None:
            unique, codes = np.unique(values, return_inverse=True)
            labels = [int(value) if integral else float(value) for value in unique]
        else:
            assert self.codes is not None
            labels = sorted(self.distinct)
            position = {label: index for index, label in enumerate(labels)}
            remap = np.array([position[label] for label in self.distinct], dtype=np.int64)
            codes = remap[np.frombuffer(self.codes, dtype=np.int32)]
        if len(labels) < 2:
            raise InvalidInput(f"target column {self.name!r} has a single class "
                               f"({labels[0]!r}); classification needs at least 2")
        if len(labels) > MAX_CLASSES:
            raise InvalidInput(f"target column {self.name!r} has {len(labels)} distinct "
                               f"values; classification supports at most {MAX_CLASSES} (use "
                               "task=regression for a continuous target)")
        return task, codes.astype(np.int64, copy=False), labels


class _FeatureRows:
    """Feature rows gathered into one float32 buffer grown in place (``ndarray.resize``
    reallocates, which large buffers do without a copy): about 4 bytes per value, at most
    twice the CSV's own size, instead of a Python float object per value."""

    def __init__(self, width: int) -> None:
        self.buffer = np.empty((ROWS_PER_BLOCK, width), dtype=np.float32)
        self.rows = 0
        self.pending: list[list[float]] = []

    def add(self, values: list[float]) -> None:
        self.pending.append(values)
        if len(self.pending) == ROWS_PER_BLOCK:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        end = self.rows + len(self.pending)
        if end > len(self.buffer):
            self.buffer.resize((max(end, int(len(self.buffer) * GROWTH)),
                                self.buffer.shape[1]), refcheck=False)
        with np.errstate(over="ignore"):
            self.buffer[self.rows:end] = self.pending
        if not np.isfinite(self.buffer[self.rows:end]).all():
            raise InvalidInput("a feature value overflows float32")
        self.rows, self.pending = end, []

    def matrix(self) -> np.ndarray:
        self._flush()
        self.buffer.resize((self.rows, self.buffer.shape[1]), refcheck=False)
        return self.buffer


def parse_csv(path: Path, *, target: str, task: Task | None = None,
              input_shape: str | None = None) -> ParsedDataset:
    """Read and validate a CSV; raise InvalidInput with a precise reason on the first problem."""
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as handle:
            return _parse(handle, target=target, task=task, input_shape=input_shape)
    except UnicodeDecodeError as error:
        raise InvalidInput(f"file is not UTF-8 text (bad byte at offset {error.start})") from None
    except csv.Error as error:
        raise InvalidInput(f"malformed CSV: {error}") from None


def _parse(handle: io.TextIOBase, *, target: str, task: Task | None,
           input_shape: str | None) -> ParsedDataset:
    reader = csv.reader(handle)
    names = _read_header(reader)
    if target not in names:
        raise InvalidInput(f"target column {target!r} not in CSV header: {_short(names)}")
    target_index = names.index(target)
    feature_columns = [i for i in range(len(names)) if i != target_index]
    if not feature_columns:
        raise InvalidInput("CSV has no feature columns besides the target")
    shape = parse_input_shape(input_shape, len(feature_columns))

    rows = _FeatureRows(len(feature_columns))
    labels = _TargetColumn(target, task)
    no_target, first_without = 0, 0
    for row in reader:
        line = reader.line_num
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(names):
            raise InvalidInput(f"line {line} has {len(row)} fields; the header has {len(names)}")
        label = row[target_index].strip()
        if label.lower() in MISSING_TOKENS:  # nothing to learn from: left out and counted
            no_target += 1
            first_without = first_without or line
            continue
        try:
            values = [float(row[i]) for i in feature_columns]
        except ValueError:
            raise _bad_cell(row, feature_columns, names, line) from None
        if not all(math.isfinite(value) for value in values):
            raise _bad_cell(row, feature_columns, names, line)
        rows.add(values)
        labels.add(label, line)
    features = rows.matrix()
    if not len(features) and no_target:
        raise InvalidInput(f"target column {target!r} is empty in all {no_target} data rows")
    if not len(features):
        raise InvalidInput("CSV has a header but no data rows")
    dropped = [DroppedRows(reason=f"no value in target column {target!r}", rows=no_target,
                           first_line=first_without)] if no_target else []
    resolved_task, encoded, class_labels = labels.encode()
    check_splittable(encoded, resolved_task, class_labels)
    return ParsedDataset(features=features, target=encoded,
                         feature_names=[names[i] for i in feature_columns], task=resolved_task,
                         class_labels=class_labels, input_shape=shape, dropped=dropped)
