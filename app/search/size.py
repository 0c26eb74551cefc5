"""The smallest networks a search space allows (``app.training.size`` counts them), so a
search whose every candidate is too big for this server is refused at submit time.

A dimension may take any form ``search.space`` allows (a fixed value, choices, a range,
a log range), so its values are read through ``lowest`` and ``values_of``, which read
every form, never through the ``low`` or ``choices`` of one."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from app.contracts.encoding import TableEncoding
from app.core.config import Settings
from app.core.errors import BrokenInvariant
from app.search.front import front_for
from app.search.space import Dimension, SearchSpace
from app.training.size import NetworkSize, over_limits, size_of

# A network only grows with these (every layer's width or channels, the CNN's head, a
# table's embeddings): their lowest value is the smallest network's, tied over layers.
GROWS_WITH = ("width", "channels", "head_width", "embedding_width", "embedding_size")
# These may give a smaller network at another value than their lowest (a CNN of more
# blocks pools the image further before its head; no pooling keeps it large; an
# embedding can be narrower than the one-hot slots it replaces): every value is tried.
TRIED = ("n_layers", "n_blocks", "kernel", "pooling", "batch_norm", "numeric_embedding")


def lowest(dimension: Dimension) -> Any:
    """The smallest value a numeric dimension allows, whatever its form."""
    if dimension.kind == "categorical":
        return min(dimension.choices)
    return dimension.low


def values_of(dimension: Dimension) -> list[Any]:
    """Every value a categorical or integer dimension allows."""
    if dimension.kind == "categorical":
        return list(dimension.choices)
    if dimension.kind == "int":
        return list(range(int(dimension.low), int(dimension.high) + 1))
    raise BrokenInvariant(f"a float dimension has no list of values: {dimension!r}")


def lowest_batch(space: SearchSpace) -> int:
    """The smallest batch size the space allows (a batch's activations grow with it)."""
    return int(lowest(space.dimensions["batch_size"]))


def _category_widths(dimension: Dimension) -> list[int]:
    """0 (no embedding: the one-hot slots pass through) and the narrowest embedding the
    space allows; a wider embedding only adds weights and activations."""
    if dimension.kind == "categorical":
        allowed = [int(width) for width in dimension.choices]
    else:
        low, high = int(dimension.low), int(dimension.high)
        allowed = [low, max(low, 1)] if max(low, 1) <= high else [low]
    positive = [width for width in allowed if width > 0]
    return sorted({min(allowed), *([min(positive)] if positive else [])})


def networks_in_space(
    space: SearchSpace,
    *,
    n_inputs: int,
    n_outputs: int,
    input_shape: Sequence[int] | None,
    encoding: TableEncoding | None = None,
) -> list[NetworkSize]:
    """The networks one of which is the smallest the space allows by any measure
    (parameters or training memory): every combination of the ``TRIED`` dimensions, each
    at the lowest values of the ``GROWS_WITH`` ones (with ``encoding``: behind the feature
    embeddings a table's parameters give it)."""
    dims = space.dimensions
    lowest_values = {name: lowest(dims[name]) for name in GROWS_WITH if name in dims}
    tried = {name: values_of(dims[name]) for name in TRIED if name in dims}
    if "category_width" in dims:
        tried["category_width"] = _category_widths(dims["category_width"])
    sizes = []
    for combination in itertools.product(*tried.values()):
        params = {**lowest_values, **dict(zip(tried, combination, strict=True))}
        sizes.append(
            size_of(
                params,
                n_inputs=n_inputs,
                n_outputs=n_outputs,
                input_shape=input_shape,
                front=front_for(params, encoding),
            )
        )
    return sizes


def space_too_big(
    space: SearchSpace,
    settings: Settings,
    *,
    n_inputs: int,
    n_outputs: int,
    input_shape: Sequence[int] | None,
    encoding: TableEncoding | None = None,
) -> str | None:
    """Why no network the space allows fits this server (the problem of the one that needs
    the least memory), or None when one does."""
    batch = lowest_batch(space)
    sizes = networks_in_space(
        space, n_inputs=n_inputs, n_outputs=n_outputs, input_shape=input_shape, encoding=encoding
    )
    if any(over_limits(size, batch, settings) is None for size in sizes):
        return None
    return over_limits(min(sizes, key=lambda size: size.training_bytes(batch)), batch, settings)
