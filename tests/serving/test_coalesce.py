"""Same-turn coalescing: requests that reach their run in the same turn of the event loop run
as one call and each gets its own rows back; a lone request runs alone; a merged run that
fails runs each request alone, so each gets its own answer or error; uploads merge only when
proven row by row."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from app.contracts.signature import VersionConfig
from app.serving.coalesce import Coalescer
from app.serving.runtime import UploadLimits


class Doubling:
    """A stand-in model: twice its rows; refuses any call holding a row of -1."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        rows = feeds["x"]
        self.calls.append(len(rows))
        if (rows == -1).any():
            raise ValueError("a poisoned row")
        return rows * 2


def feeds(*values: float) -> dict[str, np.ndarray]:
    return {"x": np.array(values, dtype=np.float32).reshape(-1, 1)}


def test_requests_of_one_turn_share_a_call_and_get_their_own_rows() -> None:
    model = Doubling()
    coalescer = Coalescer(model, max_rows=100)  # type: ignore[arg-type]

    async def together() -> list[np.ndarray]:
        return await asyncio.gather(*(coalescer.run(feeds(i, i + 0.5)) for i in range(5)))

    answers = asyncio.run(together())
    assert model.calls == [10] and coalescer.merged_calls == 1
    for index, answer in enumerate(answers):
        assert answer.ravel().tolist() == [2 * index, 2 * index + 1]


def test_a_lone_request_runs_alone() -> None:
    model = Doubling()
    coalescer = Coalescer(model, max_rows=100)  # type: ignore[arg-type]
    answer = asyncio.run(coalescer.run(feeds(3)))
    assert answer.ravel().tolist() == [6] and model.calls == [1]


def test_a_merged_run_that_fails_runs_each_alone() -> None:
    model = Doubling()
    coalescer = Coalescer(model, max_rows=100)  # type: ignore[arg-type]

    async def together() -> list[object]:
        runs = [coalescer.run(feeds(1)), coalescer.run(feeds(-1)), coalescer.run(feeds(2))]
        return await asyncio.gather(*runs, return_exceptions=True)

    first, poisoned, third = asyncio.run(together())
    assert isinstance(poisoned, ValueError)
    assert isinstance(first, np.ndarray) and isinstance(third, np.ndarray)
    assert first.ravel().tolist() == [2] and third.ravel().tolist() == [4]
    assert model.calls == [3, 1, 1, 1]


def test_a_call_holds_no_more_rows_than_the_model_takes() -> None:
    model = Doubling()
    coalescer = Coalescer(model, max_rows=3)  # type: ignore[arg-type]

    async def together() -> list[np.ndarray]:
        return await asyncio.gather(*(coalescer.run(feeds(i, i)) for i in range(3)))

    asyncio.run(together())
    assert max(model.calls) <= 3


@pytest.mark.parametrize(
    ("graph_class", "rows_independent", "merges"),
    [
        ("bounded", True, True),
        ("bounded", False, False),
        ("bounded", None, False),  # classified before rows were judged
        ("sandboxed", None, False),
    ],
)
def test_an_upload_merges_only_when_proven_row_by_row(
    graph_class: str, rows_independent: bool | None, merges: bool
) -> None:
    """An upload may mix rows: its plan merges only what its classification proved (and
    never trusts its answers' shape unchecked)."""
    config = VersionConfig.model_validate(
        {
            "graph_class": graph_class,
            "graph_class_reason": "test",
            "rows_independent": rows_independent,
        }
    )
    plan = UploadLimits(run_timeout_s=5, request_memory_mb=64).plan(config)
    assert plan.rows_independent is merges and not plan.trusted
    made_here = UploadLimits(run_timeout_s=5, request_memory_mb=64).plan(None)
    assert made_here.rows_independent and made_here.trusted


def test_a_dynamic_batch_that_fails_runs_each_request_alone() -> None:
    """A model's dynamic batcher, like coalescing: one client's poisoned rows fail only that
    client's request."""
    from app.serving.batching import BatchPolicy, DynamicBatcher

    model = Doubling()
    model.max_rows = lambda gateway_limit: gateway_limit  # type: ignore[attr-defined]
    model.sandbox = None  # type: ignore[attr-defined]
    batcher = DynamicBatcher(model, BatchPolicy(max_batch_size=8, max_queue_delay_ms=5))  # type: ignore[arg-type]

    async def together() -> list[object]:
        runs = [batcher.run(feeds(1)), batcher.run(feeds(-1)), batcher.run(feeds(2))]
        return await asyncio.gather(*runs, return_exceptions=True)

    first, poisoned, third = asyncio.run(together())
    assert isinstance(poisoned, ValueError)
    assert isinstance(first, np.ndarray) and isinstance(third, np.ndarray)
    assert first.ravel().tolist() == [2] and third.ravel().tolist() == [4]
