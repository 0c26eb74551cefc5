"""The feature embeddings a trial's table parameters give an MLP (``TableFront``), placed by
the table's encoding. Torch-free: the gateway sizes the smallest network a space allows
with it (``app.search.size``), a worker builds and sizes its trials' networks."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from app.contracts.encoding import CategoricalColumn, DatetimeColumn, NumericColumn, TableEncoding
from app.contracts.networks import TableFront
from app.contracts.params import ParamValue

CATEGORY_EMBEDDING_MIN_SLOTS = 5  # a category column with this many one-hot slots or more


class FrontParams(BaseModel):
    """A trial's table parameters that shape an MLP's feature embeddings (searched in
    ``TABLE_MLP_SPACE``; a trial without them embeds nothing), read from its flat
    parameters (the rest are not this model's)."""

    numeric_embedding: Literal["none", "periodic", "piecewise"] = "none"
    category_width: int = 0
    embedding_width: int = 8
    embedding_size: int = 8
    embedding_sigma: float = 0.1


def front_for(params: dict[str, ParamValue], encoding: TableEncoding | None) -> TableFront | None:
    """The feature embeddings a trial's table parameters give an MLP (None: the features
    go straight to the first dense layer): numbers and date parts each embedded, and
    one-hot blocks of many-valued categories."""
    front_params = FrontParams.model_validate(params)
    embedding = front_params.numeric_embedding
    category_width = front_params.category_width
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
        width=front_params.embedding_width,
        size=front_params.embedding_size,
        sigma=front_params.embedding_sigma,
        categories=tuple(blocks) if category_width else (),
        category_width=max(category_width, 1),
    )
    return front if front.numeric or front.categories else None
