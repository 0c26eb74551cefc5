"""The column to predict: class labels (text or numbers) or a continuous value, with the
task inferred when the upload does not name it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.contracts.encoding import NUMBER_PATTERN
from app.contracts.enums import Task
from app.core.errors import BrokenInvariant, InvalidInput

MAX_CLASSES = 1_000
# Integer-valued targets with at most this many distinct values are taken as class labels.
MAX_INFERRED_CLASSES = 20


def _too_many(name: str, count: int | str) -> InvalidInput:
    return InvalidInput(
        f"target column {name!r} has {count} distinct values; classification "
        f"supports at most {MAX_CLASSES} (use task=regression for a continuous "
        "target)"
    )


def encode_target(
    name: str, text: pa.Array, task: Task | None, line_of: Callable[[int], int]
) -> tuple[Task, np.ndarray, list[Any] | None]:
    """The task, the encoded target (class index or float64 value) and the class labels.
    ``text``: the target of every kept row (none empty)."""
    numeric = pc.match_substring_regex(text, f"^(?:{NUMBER_PATTERN})$", ignore_case=True)
    values = None
    if pc.all(numeric).as_py():
        values = pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InvalidInput(
                f"target column {name!r} has a non-finite value "
                f"{text[row].as_py()[:40]!r} at line {line_of(row)}"
            )
    elif task == Task.REGRESSION:
        row = int(pc.index(numeric, False).as_py())
        raise InvalidInput(
            f"target column {name!r} must be numeric for regression: "
            f"{text[row].as_py()[:40]!r} at line {line_of(row)}"
        )
    integral = values is not None and bool(np.all(values == np.floor(values)))
    if task is None:
        few = values is not None and len(np.unique(values)) <= MAX_INFERRED_CLASSES
        task = Task.CLASSIFICATION if values is None or (integral and few) else Task.REGRESSION
    if task == Task.REGRESSION:
        if values is None:
            raise BrokenInvariant("values is None")
        return task, values, None
    labels: list[Any]
    if values is not None:
        unique, codes = np.unique(values, return_inverse=True)
        if len(unique) > MAX_CLASSES:
            raise _too_many(name, len(unique))
        labels = [int(value) if integral else float(value) for value in unique]
    else:
        encoded = pc.dictionary_encode(text)
        words = encoded.dictionary.to_pylist()
        if len(words) > MAX_CLASSES:
            raise _too_many(name, f"more than {MAX_CLASSES}")
        labels = sorted(words)
        position = {label: index for index, label in enumerate(labels)}
        remap = np.array([position[word] for word in words], dtype=np.int64)
        codes = remap[encoded.indices.to_numpy()]
    if len(labels) < 2:
        raise InvalidInput(
            f"target column {name!r} has a single class ({labels[0]!r}); "
            "classification needs at least 2"
        )
    return task, codes.astype(np.int64, copy=False), labels
