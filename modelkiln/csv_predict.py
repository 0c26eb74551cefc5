"""Predicting a CSV file in batches: rows in as the file has them, the file back out with
a ``prediction`` column added; text cells a spreadsheet would run as formulas are made inert."""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelkiln.answers import Predictions, Version
from modelkiln.client import Client

# One row as a predict body holds it: a record keyed by column name, or numbers in order.
Record = dict[str, float | str | None]
Numbers = list[float | str | None]

# The cells the server reads as gaps in a CSV (any case), so a file that uploaded predicts.
GAPS = frozenset(("", "na", "n/a", "nan", "null", "none", "?"))


def _number(cell: str, words_as_gaps: bool = False) -> float | str | None:
    """A numeric cell as the server takes it: a number, None for a gap, or (in a column
    whose upload held a few words among its numbers) the text, which the server reads as
    a gap just as the upload did."""
    text = cell.strip()
    if text.lower() in GAPS:
        return None
    try:
        return float(text)
    except ValueError:
        if words_as_gaps:
            return text
        raise ValueError(f"{cell!r} is not a number") from None


class RowReader:
    """Turns CSV rows into what the model's signature takes: records keyed by column name
    (a model with one input per column: numbers for numeric columns, text for the rest,
    gaps as null), or rows of numbers in the training data's column order."""

    def __init__(self, client: Client, version: Version, header: list[str]) -> None:
        inputs = version.inputs
        self.header = header
        self.kinds: dict[str, str] | None = None
        self.words_as_gaps = {spec.name for spec in inputs if spec.words_as_gaps}
        if inputs and all(spec.kind for spec in inputs):
            self.kinds = {
                spec.name: spec.kind
                for spec in inputs
                if spec.kind and spec.kind != "ignored" and spec.required
            }
            missing = [name for name in self.kinds if name not in header]
            if missing:
                raise ValueError(
                    f"the CSV lacks column(s) {missing[:10]} that "
                    f"{version.model} v{version.version} reads"
                )
            return
        width = inputs[0].shape[-1] if inputs else len(header)
        dataset_id = version.lineage.dataset_id
        names = client.dataset(dataset_id).feature_names if dataset_id else header
        if len(names) != width or any(name not in header for name in names):
            names = header if len(header) == width else names
        missing = [name for name in names if name not in header]
        if missing:
            raise ValueError(
                f"{version.model} v{version.version} takes {width} numbers per "
                f"row; the CSV lacks column(s) {missing[:10]}"
            )
        if len(names) != width:
            raise ValueError(
                f"{version.model} v{version.version} takes {width} numbers per row, in the "
                f"order of its inputs; the CSV has {len(header)} columns and no dataset names "
                f"which {width} to send: keep only those {width} columns, in order"
            )
        self.positions = [header.index(name) for name in names]

    def convert(self, line: int, row: list[str]) -> Record | Numbers:
        try:
            if self.kinds is None:
                return [_number(row[index]) for index in self.positions]
            record: Record = {}
            for name, kind in self.kinds.items():
                cell = row[self.header.index(name)]
                record[name] = (
                    _number(cell, name in self.words_as_gaps)
                    if kind == "numeric"
                    else (cell or None)
                )
            return record
        except (ValueError, IndexError) as error:
            raise ValueError(f"line {line}: {error}") from None


def _batches(rows: Iterator[list[str]], size: int) -> Iterator[list[list[str]]]:
    while batch := list(itertools.islice(rows, size)):
        yield batch


_RISKY_START = re.compile(r"^[=+\-@\t\r]")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def inert_cells(cells: list[Any]) -> list[Any]:
    """The cells, with each text cell a spreadsheet would run as a formula (it begins with
    ``= + - @``, a tab or a carriage return, and is not a plain number) written with a
    leading ``'`` (OWASP's advice on CSV injection); numbers stay as they are."""
    return [
        "'" + cell
        if isinstance(cell, str) and _RISKY_START.match(cell) and not _PLAIN_NUMBER.match(cell)
        else cell
        for cell in cells
    ]


def predict_csv(
    client: Client,
    name: str,
    source: str | Path,
    dest: str | Path,
    *,
    version: int | None = None,
    batch_size: int = 1000,
    probabilities: bool = False,
) -> int:
    """Predict every row of ``source`` with one version of ``name`` (the asked one, else
    the one the server serves by default) and write ``dest``: the same rows with a
    ``prediction`` column, and with ``probabilities`` one ``probability_<class>`` column per
    class. Returns how many rows were predicted."""
    chosen = client.version(name, version or client.model(name).serving_version)
    done = 0
    with Path(source).open(newline="") as src, Path(dest).open("w", newline="") as out:
        rows = csv.reader(src)
        header = next(rows, None)
        if header is None:
            raise ValueError(f"{source} is empty: expected a header row")
        reader = RowReader(client, chosen, header)
        labels = chosen.class_labels or []
        if probabilities and not labels:
            raise ValueError(
                f"{name} v{chosen.version} is not a classifier: it has no class "
                "probabilities to write"
            )
        writer = csv.writer(out)
        writer.writerow(
            inert_cells(
                [
                    *header,
                    "prediction",
                    *([f"probability_{label}" for label in labels] if probabilities else []),
                ]
            )
        )
        for batch in _batches(rows, batch_size):
            inputs = [reader.convert(done + offset + 2, row) for offset, row in enumerate(batch)]
            answer = Predictions.from_json(client.predict(name, inputs, version=chosen.version))
            scores = answer.probabilities if probabilities else None
            for index, (row, prediction) in enumerate(zip(batch, answer.predictions, strict=True)):
                writer.writerow(inert_cells([*row, prediction, *(scores[index] if scores else [])]))
            done += len(batch)
    return done
