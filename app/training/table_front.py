"""The torch side of a ``TableFront``: per-feature embeddings of a table's numbers (periodic
or piecewise-linear, Gorishniy et al., "On Embeddings for Numerical Features in Tabular
Deep Learning", 2022) and learnt embeddings of many-valued categories, in front of an MLP.
Every operation exports to plain ONNX (Gather, Mul, Sin, Cos, Clip, MatMul)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from app.contracts.networks import TableFront

FAR = 1000.0  # an edge no clipped (to ±10), scaled input reaches: a bin that never fills


def _indices(values: list[int] | tuple[int, ...]) -> torch.Tensor:
    return torch.as_tensor(list(values), dtype=torch.int64)


class FeatureFront(nn.Module):
    """Scaled features in, [passed-through, numeric embeddings, category embeddings] out."""

    passed: torch.Tensor
    numeric: torch.Tensor
    left: torch.Tensor
    span: torch.Tensor

    def __init__(self, front: TableFront, n_inputs: int) -> None:
        super().__init__()
        self.front = front
        self.register_buffer("passed", _indices(front.passed(n_inputs)))
        self.register_buffer("numeric", _indices(front.numeric))
        count, size, width = len(front.numeric), front.size, front.width
        inner = 2 * size if front.embedding == "periodic" else size
        self.frequencies = nn.Parameter(
            torch.randn(count, size) * front.sigma
            if front.embedding == "periodic"
            else torch.zeros(0)
        )
        # Piecewise bins: [left, left + span) per feature and bin, fitted by ``fit_bins``.
        self.register_buffer("left", torch.linspace(-2.0, 2.0, size + 1)[:-1].repeat(count, 1))
        self.register_buffer("span", torch.full((count, size), 4.0 / size))
        bound = 1 / math.sqrt(inner)
        self.weight = nn.Parameter(torch.empty(count, inner, width).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(count, width).uniform_(-bound, bound))
        self.categories = nn.ModuleList(
            nn.Linear(end - start, front.category_width, bias=False)
            for start, end in front.categories
        )

    def fit_bins(self, scaled: np.ndarray) -> None:
        """Quantile bins of each embedded feature's scaled training values (repeated
        quantiles merge; the bins left over never fill)."""
        if self.front.embedding != "piecewise" or not len(self.front.numeric):
            return
        size = self.front.size
        left = np.full((len(self.front.numeric), size), FAR, dtype=np.float32)
        span = np.ones((len(self.front.numeric), size), dtype=np.float32)
        for row, feature in enumerate(self.front.numeric):
            values = scaled[:, feature]
            edges = np.unique(np.quantile(values, np.linspace(0, 1, size + 1)))
            if len(edges) < 2:
                continue
            left[row, : len(edges) - 1] = edges[:-1]
            span[row, : len(edges) - 1] = np.diff(edges)
        self.left.copy_(torch.from_numpy(left))
        self.span.copy_(torch.from_numpy(span))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.index_select(x, 1, self.passed)]
        if self.front.numeric:
            values = torch.index_select(x, 1, self.numeric).unsqueeze(-1)  # [rows, n, 1]
            if self.front.embedding == "periodic":
                angles = (2 * math.pi) * values * self.frequencies
                encoded = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
            else:
                encoded = torch.clamp((values - self.left) / self.span, 0.0, 1.0)
            embedded = torch.relu(torch.einsum("rni,niw->rnw", encoded, self.weight) + self.bias)
            parts.append(embedded.flatten(1))
        for (start, end), embedding in zip(self.front.categories, self.categories, strict=True):
            parts.append(embedding(x[:, start:end]))
        return torch.cat(parts, dim=1)


def narrowed_front(
    front: TableFront, module: FeatureFront, keep: np.ndarray, n_inputs: int
) -> tuple[TableFront, dict[str, torch.Tensor], np.ndarray]:
    """The front reading only input positions ``keep`` (whole source columns), its state,
    and which of the old front's outputs the new one keeps (for the first dense layer)."""
    position = {int(old): new for new, old in enumerate(keep)}
    numeric_rows = [row for row, feature in enumerate(front.numeric) if feature in position]
    block_rows = [
        row
        for row, (start, end) in enumerate(front.categories)
        if all(index in position for index in range(start, end))
    ]
    smaller = TableFront(
        numeric=tuple(position[front.numeric[row]] for row in numeric_rows),
        embedding=front.embedding,
        width=front.width,
        size=front.size,
        sigma=front.sigma,
        categories=tuple(
            (position[front.categories[row][0]], position[front.categories[row][0]] + end - start)
            for row in block_rows
            for start, end in [front.categories[row]]
        ),
        category_width=front.category_width,
    )
    old_passed = front.passed(n_inputs)
    passed_out = [slot for slot, feature in enumerate(old_passed) if feature in position]
    numeric_out = [
        len(old_passed) + row * front.width + unit
        for row in numeric_rows
        for unit in range(front.width)
    ]
    offset = len(old_passed) + len(front.numeric) * front.width
    category_out = [
        offset + row * front.category_width + unit
        for row in block_rows
        for unit in range(front.category_width)
    ]
    rows = torch.as_tensor(numeric_rows, dtype=torch.int64)
    state = {
        "passed": _indices(smaller.passed(len(keep))),
        "numeric": _indices(smaller.numeric),
        "frequencies": module.frequencies.detach()[rows]
        if front.embedding == "periodic"
        else module.frequencies.detach(),
        "left": module.left[rows],
        "span": module.span[rows],
        "weight": module.weight.detach()[rows],
        "bias": module.bias.detach()[rows],
    }
    old_state = module.state_dict()
    for new, row in enumerate(block_rows):
        state[f"categories.{new}.weight"] = old_state[f"categories.{row}.weight"]
    kept = np.array(passed_out + numeric_out + category_out, dtype=np.int64)
    return smaller, state, kept
