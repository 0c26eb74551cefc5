"""Registration's global importance is bounded in time: rows are explained a few at a time
and the runs stop once ``IMPORTANCE_S`` is spent (the first always completes); the answer
names the rows it averaged."""

from __future__ import annotations

from typing import cast

import numpy as np

from app.explain.explainer import Attributed, Explainer
from app.explain.players import Feeds
from app.explain.register import explained


class CountingExplainer:
    """What ``explained`` asks of an explainer, counting the rows it attributes."""

    ready = True

    def rows_to_run(self, rows: int) -> int:
        return rows * 10

    def feeds_to_run(self, part: Feeds) -> Feeds:
        return part

    def attribute(self, part: Feeds, output: np.ndarray) -> Attributed:
        rows = len(part["x"])
        return Attributed(np.zeros(rows), np.zeros(rows), np.zeros((rows, 1, 1)))


def test_the_runs_stop_when_the_time_is_spent_and_name_the_rows_they_explained() -> None:
    feeds: Feeds = {"x": np.zeros((64, 1), dtype=np.float32)}
    explainer = cast(Explainer, CountingExplainer())
    runs: list[int] = []

    def run(rows: Feeds) -> np.ndarray:
        runs.append(len(rows["x"]))
        return np.zeros((len(rows["x"]), 1), dtype=np.float32)

    spent = explained(explainer, feeds, run, 65_536, seconds=0.0, chunk_rows=8)
    assert len(spent.values) == 8 and runs == [8]  # the first run completes, then none
    runs.clear()
    whole = explained(explainer, feeds, run, 65_536, seconds=60.0, chunk_rows=8)
    assert len(whole.values) == 64 and runs == [8] * 8
    runs.clear()
    unbounded = explained(explainer, feeds, run, 65_536)
    assert len(unbounded.values) == 64 and runs == [64]  # one run of them all
