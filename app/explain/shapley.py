"""Sampled Shapley values by permutations (Štrumbelj and Kononenko), each permutation
paired with one background row, every background row used once, and each permutation's
reverse beside it (antithetic sampling). Along a permutation the row moves from its
background row to the explained row one player at a time; each step's change of output is
the player's contribution. The steps of one permutation add up to f(x) - f(b), so the mean
over the permutations adds up exactly to f(x) - mean f(background): the base value.

For a model additive over its players (a linear model on per-column encodings) every
permutation gives the same, exact values. The permutations are fixed per version (seeded),
so the same row is explained the same way each time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SEED = 46


@dataclass(frozen=True)
class PermutationPlan:
    """Which background row each permutation starts from, and the steps it takes (held as
    [M, d] positions: a player's [M, d-1] steps are made when its column is, so nothing
    here grows with d squared)."""

    background: np.ndarray  # [M] background row of each permutation
    positions: np.ndarray  # [M, d] the step at which each player joins

    @classmethod
    def of(cls, players: int, background_rows: int) -> PermutationPlan:
        rng = np.random.default_rng(SEED)
        orders: list[np.ndarray] = []
        for index in range(background_rows):
            if index % 2 == 1:
                orders.append(orders[-1][::-1])  # antithetic: the previous one reversed
            else:
                orders.append(rng.permutation(players))
        order = np.array(orders, dtype=np.intp).reshape(background_rows, players)
        positions = np.argsort(order, axis=1)
        return cls(np.arange(background_rows), positions)

    @property
    def samples(self) -> int:
        return len(self.background)

    def rows_per_row(self) -> int:
        """The perturbed rows one explained row needs (its own run besides)."""
        return self.samples * (self.positions.shape[1] - 1)

    def perturbed(self, row: list[np.ndarray], background: list[np.ndarray]) -> list[np.ndarray]:
        """Every intermediate row of every permutation, for rows ``row`` (one flat array
        per player, n rows): one flat array per player of n * M * (d-1) values."""
        columns = []
        steps = np.arange(1, self.positions.shape[1])  # after step s, the first s joined
        for player, (values, base) in enumerate(zip(row, background, strict=True)):
            starts = base[self.background]  # [M]
            from_row = self.positions[:, player, None] < steps[None, :]  # [M, d-1]
            mixed = np.where(from_row[None, :, :], values[:, None, None], starts[None, :, None])
            columns.append(mixed.reshape(-1).astype(values.dtype, copy=False))
        return columns

    def attributions(
        self, row_output: np.ndarray, perturbed_output: np.ndarray, background_output: np.ndarray
    ) -> np.ndarray:
        """[n, d, K] attributions from the outputs: the rows' own [n, K], the perturbed
        rows' [n * M * (d-1), K] (in ``perturbed``'s order) and the background's [B, K]."""
        n, width = row_output.shape
        samples, players = self.positions.shape
        start = np.broadcast_to(
            background_output[self.background].astype(np.float64)[None, :, None, :],
            (n, samples, 1, width),
        )
        middle = perturbed_output.astype(np.float64).reshape(n, samples, players - 1, width)
        end = np.broadcast_to(
            row_output.astype(np.float64)[:, None, None, :], (n, samples, 1, width)
        )
        path = np.concatenate([start, middle, end], axis=2)  # [n, M, d+1, K]
        steps = np.diff(path, axis=2)  # [n, M, d, K]: the change at each step
        index = np.broadcast_to(self.positions[None, :, :, None], (n, samples, players, width))
        contributions = np.take_along_axis(steps, index, axis=2)  # by player
        result: np.ndarray = contributions.mean(axis=1)
        return result
