"""CSV parsing and validation: every rejection names the column, line and what was wrong.
Columns are read by Arrow, typed one by one (``app.preprocessing.columns``) and turned into
the network's features: as they are for a table of numbers without gaps, else through the
fitted preprocessing that the served model carries in its graph."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.contracts.encoding import TableEncoding
from app.contracts.enums import Task
from app.contracts.profile import DroppedRows
from app.core.errors import BrokenInvariant, InvalidInput
from app.datasets.splits import check_distinct, check_splittable, duplicate_rows, row_groups
from app.datasets.target import encode_target
from app.preprocessing.columns import (
    SourceColumn,
    keep_constant_numbers,
    parse_overrides,
    type_column,
)
from app.preprocessing.csv_reader import line_of, read_columns, read_header, short_list
from app.preprocessing.encode import encode
from app.preprocessing.fit import fit_encoding

RESERVED_OUTPUT = "output"  # the served model's output tensor


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
    encoding: TableEncoding | None = None  # None: the columns are the features, as they are
    columns: list[SourceColumn] | None = None  # every feature column as typed (rows kept)
    duplicates: int = 0  # rows whose features repeat an earlier row's

    @property
    def n_rows(self) -> int:
        return int(self.features.shape[0])


def parse_input_shape(text: str | None, n_features: int | None = None) -> list[int] | None:
    """Parse ``"1,8,8"`` into ``[1, 8, 8]`` and check it against the feature count."""
    if text is None or not text.strip():
        return None
    try:
        shape = [int(part) for part in text.replace("x", ",").split(",")]
    except ValueError:
        raise InvalidInput(
            f"input_shape {text!r} must be comma-separated positive integers, e.g. '1,8,8'"
        ) from None
    if not 1 <= len(shape) <= 3 or any(dim <= 0 for dim in shape):
        raise InvalidInput(f"input_shape {text!r} must have 1 to 3 positive dimensions")
    if n_features is not None and math.prod(shape) != n_features:
        raise InvalidInput(
            f"input_shape {text!r} has {math.prod(shape)} elements but the CSV "
            f"has {n_features} feature columns"
        )
    return shape


def _usable(columns: list[SourceColumn]) -> list[SourceColumn]:
    usable = [column for column in columns if column.type != "ignore"]
    if not usable:
        reasons = "; ".join(f"{column.name!r}: {column.reason}" for column in columns[:10])
        raise InvalidInput(f"no feature column can be used ({reasons})")
    return usable


def _plain_features(columns: list[SourceColumn]) -> np.ndarray:
    """The numbers themselves, as one matrix; each column's numbers become a view of it."""
    rows = columns[0].numbers
    if rows is None:
        raise BrokenInvariant("rows is None")
    matrix = np.empty((len(rows), len(columns)), dtype=np.float32)
    for index, column in enumerate(columns):
        matrix[:, index] = column.numbers
        columns[index] = dataclasses.replace(column, numbers=matrix[:, index])
    return matrix


def raw_columns(columns: list[SourceColumn]) -> dict[str, np.ndarray | pa.Array]:
    """Each usable column's values as the preprocessing reads them."""
    return {
        column.name: column.numbers if column.numbers is not None else column.text
        for column in columns
        if column.type != "ignore"
    }


def parse_csv(
    path: Path,
    *,
    target: str,
    task: Task | None = None,
    input_shape: str | None = None,
    columns: str | None = None,
) -> ParsedDataset:
    """Read, type and validate a CSV; raise InvalidInput with a precise reason (column and
    line) on the first problem."""
    names, header_lines = read_header(path)
    if target not in names:
        raise InvalidInput(f"target column {target!r} not in CSV header: {short_list(names)}")
    if len(names) < 2:
        raise InvalidInput("CSV has no feature columns besides the target")
    overrides = parse_overrides(columns, names)
    if target in overrides:
        raise InvalidInput(f"columns: {target!r} is the target; its type follows the task")
    texts = read_columns(path, names, header_lines, text_columns={target, *overrides})
    labels = texts.pop(target)
    if not len(labels):
        raise InvalidInput("CSV has a header but no data rows")
    has_target = pc.not_equal(labels, "").to_numpy(zero_copy_only=False)
    kept = np.flatnonzero(has_target)
    if not len(kept):
        raise InvalidInput(f"target column {target!r} is empty in all {len(labels)} data rows")
    dropped = []
    if len(kept) < len(labels):
        first = int(np.flatnonzero(~has_target)[0])
        dropped = [
            DroppedRows(
                reason=f"no value in target column {target!r}",
                rows=len(labels) - len(kept),
                first_line=line_of(path, first),
            )
        ]
        mask = pa.array(has_target)
        labels = labels.filter(mask)
        texts = {name: text.filter(mask) for name, text in texts.items()}

    def line(row: int) -> int:
        return line_of(path, int(kept[row]))

    typed = keep_constant_numbers(
        [type_column(name, texts.pop(name), overrides.get(name), line) for name in list(texts)]
    )
    usable = _usable(typed)
    plain = (
        not overrides
        and len(usable) == len(typed)
        and all(column.type == "numeric" and column.missing == 0 for column in usable)
    )
    if input_shape and not plain:
        raise InvalidInput(
            "input_shape is for tables of numbers without gaps (image rows); "
            "this table has text, dates, gaps or columns left out"
        )
    resolved_task, encoded, class_labels = encode_target(target, labels, task, line)
    check_splittable(encoded, resolved_task, class_labels)
    if not plain and RESERVED_OUTPUT in {column.name for column in usable}:
        raise InvalidInput(
            f"column {RESERVED_OUTPUT!r} has the name of the model's output "
            'tensor; rename it (or ignore it with columns={"output": '
            '"ignore"})'
        )
    encoding = None if plain else fit_encoding(typed)
    features = _plain_features(typed) if encoding is None else encode(encoding, raw_columns(usable))
    feature_names = (
        encoding.feature_names() if encoding is not None else [column.name for column in usable]
    )
    groups = row_groups(features)  # as every split will group them
    check_distinct(groups, encoded, resolved_task, class_labels)
    return ParsedDataset(
        features=features,
        target=encoded,
        feature_names=feature_names,
        task=resolved_task,
        class_labels=class_labels,
        input_shape=parse_input_shape(input_shape, len(usable)),
        dropped=dropped,
        encoding=encoding,
        columns=typed,
        duplicates=duplicate_rows(groups),
    )
