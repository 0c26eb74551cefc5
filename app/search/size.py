"""The smallest network a search space allows (``app.training.size`` counts it), so a
search whose every candidate is too big for this server is refused at submit time."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from app.search.space import Dimension, SearchSpace
from app.training.size import NetworkSize, size_of


def _lowest(dimension: Dimension) -> Any:
    if dimension.kind == "categorical":
        return (
            min(dimension.choices)
            if all(isinstance(choice, int | float) for choice in dimension.choices)
            else None
        )
    return dimension.low


def smallest_in_space(
    space: SearchSpace, *, n_inputs: int, n_outputs: int, input_shape: Sequence[int] | None
) -> tuple[NetworkSize, int]:
    """The smallest network the space allows, and its smallest batch size."""
    dims = space.dimensions
    batch = int(_lowest(dims["batch_size"]))
    low = {
        name: _lowest(dimension)
        for name, dimension in dims.items()
        if dimension.kind != "categorical"
    }
    choices = {
        name: dims[name].choices
        for name in ("kernel", "pooling", "batch_norm")
        if name in dims and dims[name].kind == "categorical"
    }
    sizes = []
    for combination in itertools.product(*choices.values()):
        params = {**low, **dict(zip(choices, combination, strict=True))}
        for name, count in (("width", "n_layers"), ("channels", "n_blocks")):
            if name in dims:
                params[name] = int(low[name])
                params[count] = int(low[count])
        sizes.append(
            size_of(params, n_inputs=n_inputs, n_outputs=n_outputs, input_shape=input_shape)
        )
    return min(sizes, key=lambda size: size.training_bytes(batch)), batch
