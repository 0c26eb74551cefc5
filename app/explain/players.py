"""The players of an explanation: the input columns of a version as the user names them
(a table model's raw columns; for a model that takes one tensor, one per feature, named
by the table it was searched on, else ``input_0``, ``input_1``, ... as the request log
names them), and the conversions between the graph's feeds and one array per player."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.contracts.signature import Signature

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class Players:
    """The columns attributions are given for, in the order the signature lists them."""

    names: tuple[str, ...]
    by_column: bool
    text: tuple[bool, ...]  # per player: whether its values are text (BYTES)
    input_name: str
    row_shape: tuple[int, ...]

    @classmethod
    def of(cls, signature: Signature, names: Sequence[str] | None = None) -> Players:
        """The players of a version's graph; ``names`` names a one-tensor graph's features
        (ignored when their count is not the graph's)."""
        if signature.by_column:
            specs = [s for s in signature.inputs if s.kind != "ignored" and s.required]
            return cls(
                names=tuple(s.name for s in specs),
                by_column=True,
                text=tuple(s.datatype != "FP32" for s in specs),
                input_name=signature.input.name,
                row_shape=(1,),
            )
        count = signature.n_features
        named = names is not None and len(names) == count
        return cls(
            names=tuple(names) if named and names else tuple(f"input_{i}" for i in range(count)),
            by_column=False,
            text=(False,) * count,
            input_name=signature.input.name,
            row_shape=signature.row_shape,
        )

    def __len__(self) -> int:
        return len(self.names)

    def columns(self, feeds: Feeds) -> list[np.ndarray]:
        """One flat array per player from a model's feeds."""
        if self.by_column:
            return [np.asarray(feeds[name]).reshape(-1) for name in self.names]
        rows = feeds[self.input_name]
        flat = rows.reshape(rows.shape[0], -1)
        return [flat[:, index] for index in range(flat.shape[1])]

    def feeds(self, columns: list[np.ndarray]) -> Feeds:
        """The model's feeds from one flat array per player."""
        if self.by_column:
            return {
                name: values.reshape(-1, 1)
                for name, values in zip(self.names, columns, strict=True)
            }
        rows = np.stack(columns, axis=1).astype(np.float32)
        return {self.input_name: rows.reshape((rows.shape[0], *self.row_shape))}

    def stored(self, background: dict[str, list[float | str | None]]) -> list[np.ndarray]:
        """A stored background as one array per player (gaps as the graph takes them)."""
        missing = [name for name in self.names if name not in background]
        if missing:
            raise ValueError(f"the background sample lacks column(s) {missing[:5]}")
        arrays = []
        for name, text in zip(self.names, self.text, strict=True):
            values = background[name]
            if text:
                arrays.append(np.array(["" if v is None else v for v in values], dtype=object))
            else:
                arrays.append(
                    np.array([np.nan if v is None else v for v in values], dtype=np.float32)
                )
        return arrays
