"""The feature embeddings a trial's table parameters give an MLP (``TableFront``), placed by
the table's encoding. Torch-free: the gateway sizes the smallest network a space allows
with it (``app.search.size``), a worker builds and sizes its trials' networks."""

from __future__ import annotations

from typing import Any

from app.contracts.encoding import CategoricalColumn, DatetimeColumn, NumericColumn, TableEncoding
from app.contracts.networks import TableFront

CATEGORY_EMBEDDING_MIN_SLOTS = 5  # a category column with this many one-hot slots or more


def front_for(params: dict[str, Any], encoding: TableEncoding | None) -> TableFront | None:
    """The feature embeddings a trial's table parameters give an MLP (None: the features
    go straight to the first dense layer): numbers and date parts each embedded, and
    one-hot blocks of many-valued categories."""
    embedding = params.get("numeric_embedding", "none")
    category_width = int(params.get("category_width", 0))
    if encoding is None or (embedding == "none" and category_width == 0):
        return None
    numeric: list[int] = []
    blocks: list[tuple[int, int]] = []
    for column, (start, _end) in zip(encoding.columns, encoding.spans(), strict=True):
        if isinstance(column, NumericColumn):
            numeric.append(start)
        elif isinstance(column, DatetimeColumn):
            numeric.extend(range(start, start + column.width - column.indicator))
        elif isinstance(column, CategoricalColumn) and column.slots >= CATEGORY_EMBEDDING_MIN_SLOTS:
            blocks.append((start, start + column.slots))
    front = TableFront(
        numeric=tuple(numeric) if embedding != "none" else (),
        embedding="piecewise" if embedding == "piecewise" else "periodic",
        width=int(params.get("embedding_width", 8)),
        size=int(params.get("embedding_size", 8)),
        sigma=float(params.get("embedding_sigma", 0.1)),
        categories=tuple(blocks) if category_width else (),
        category_width=max(category_width, 1),
    )
    return front if front.numeric or front.categories else None
