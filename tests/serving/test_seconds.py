"""The gateway's per-second counters: each request lands in its second's slot (outcome and
latency bucket), a slot reused for a newer second starts from zero, percentiles read from
the log-spaced buckets are within a bucket's half-width of the truth, a series silent for
the whole ring is forgotten, and several gateway processes' counts are summed through
their files."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from app.serving.counters import ServingCounters
from app.serving.seconds import (
    ANSWERED,
    CLIENT_ERROR,
    LATENCY,
    OK,
    SERVER_ERROR,
    SHADOW,
    SLOTS,
    STEPS_PER_DOUBLING,
    SecondsRing,
    percentiles,
)
from app.serving.seconds_shared import SharedSeconds

KEY = ("m", 1, ANSWERED)


def test_each_request_counts_in_its_second() -> None:
    ring = SecondsRing()
    for _ in range(3):
        ring.add(KEY, 1000, OK, 0.002)
    ring.add(KEY, 1000, CLIENT_ERROR, None)
    ring.add(KEY, 1001, SERVER_ERROR, None)
    counts = ring.copy()[KEY].window(999, 3)
    assert counts[:, OK].tolist() == [0, 3, 0]
    assert counts[:, CLIENT_ERROR].tolist() == [0, 1, 0]
    assert counts[:, SERVER_ERROR].tolist() == [0, 0, 1]
    assert counts[1, LATENCY:].sum() == 3  # only answered requests have a latency


def test_a_slot_reused_for_a_newer_second_starts_from_zero() -> None:
    ring = SecondsRing()
    ring.add(KEY, 5000, OK, 0.001)
    ring.add(KEY, 5000 + SLOTS, OK, 0.001)  # the same slot, a ring later
    copy = ring.copy()[KEY]
    assert copy.window(5000, 1)[0, OK] == 0  # the old second is gone, not added to
    assert copy.window(5000 + SLOTS, 1)[0, OK] == 1


def test_percentiles_are_within_a_bucket_of_the_truth() -> None:
    rng = np.random.default_rng(0)
    latencies = rng.lognormal(mean=np.log(0.003), sigma=0.8, size=5000)
    ring = SecondsRing()
    for latency in latencies:
        ring.add(KEY, 7, OK, float(latency))
    histogram = ring.copy()[KEY].window(7, 1)[:, LATENCY:]
    measured = percentiles(histogram, (0.5, 0.95, 0.99))[0]
    truth = np.quantile(latencies, [0.5, 0.95, 0.99])
    half_bucket = 2 ** (1 / (2 * STEPS_PER_DOUBLING))  # the middle of a bucket to its edge
    assert np.all(measured / truth < half_bucket * 1.01)
    assert np.all(truth / measured < half_bucket * 1.01)
    assert np.isnan(percentiles(np.zeros_like(histogram), (0.5,))).all()  # no requests


def test_a_series_silent_for_the_whole_ring_is_forgotten() -> None:
    ring = SecondsRing()
    ring.add(("old", 1, ANSWERED), 100, OK, 0.001)
    ring.add(("kept", 1, ANSWERED), 100 + SLOTS - 1, OK, 0.001)
    ring.add(("new", 1, ANSWERED), 100 + SLOTS, OK, 0.001)  # a new series: the time to look
    assert set(ring.copy()) == {("kept", 1, ANSWERED), ("new", 1, ANSWERED)}


def test_the_shadow_counts_apart_from_what_answered() -> None:
    counters = ServingCounters()
    counters.succeeded("m", 1, "v1", 0.0, 0.001, 0.002)
    counters.shadow_ran("m", 2, 4, 1, 0.003)
    copies = counters.seconds_copy("m")
    assert set(copies) == {("m", 1, ANSWERED), ("m", 2, SHADOW)}
    now = int(time.time())
    shadow = copies[("m", 2, SHADOW)].window(now - 1, 2).sum(axis=0)
    assert shadow[OK] == 4 and shadow[SERVER_ERROR] == 1 and shadow[LATENCY:].sum() == 4


def test_processes_are_summed_through_their_files(tmp_path: Path) -> None:
    folder = tmp_path / "seconds"
    folder.mkdir()
    first, second = ServingCounters(), ServingCounters()
    for _ in range(3):
        first.succeeded("m", 1, "v1", 0.0, 0.001, 0.002)
    second.succeeded("m", 1, "v1", 0.0, 0.001, 0.002)
    second.failed("m", 1, "v1", 503)
    second.succeeded("other", 1, "v1", 0.0, 0.001, 0.002)
    mine = SharedSeconds(first, str(folder), process="a")
    theirs = SharedSeconds(second, str(folder), process="b")
    mine.write()
    theirs.write()
    now = int(time.time())
    summed, processes = mine.read("m", now - 5, 7)
    assert processes == 2
    total = summed[("m", 1, ANSWERED)].sum(axis=0)
    assert total[OK] == 4 and total[SERVER_ERROR] == 1 and total[LATENCY:].sum() == 4
    assert ("other", 1, ANSWERED) not in summed  # another model's series are left out
    alone, one = SharedSeconds(first).read("m", now - 5, 7)
    assert one == 1 and alone[("m", 1, ANSWERED)].sum(axis=0)[OK] == 3


def test_a_process_writes_only_when_it_counted_something(tmp_path: Path) -> None:
    counters = ServingCounters()
    shared = SharedSeconds(counters, str(tmp_path), process="a")
    shared.write()
    written = (tmp_path / "a.npz").stat().st_mtime_ns
    (tmp_path / "a.npz").unlink()
    shared.write()  # nothing counted since: no file rewritten
    assert not (tmp_path / "a.npz").exists() and written


def test_a_request_stamped_before_a_write_and_counted_after_it_is_written_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request takes its second before the counters' lock: one stamped in the second
    before a write, and counted just after the write's copy, is in the next write."""
    counters = ServingCounters()
    shared = SharedSeconds(counters, str(tmp_path), process="b")
    earlier = time.time() - 1.0
    stamps = SimpleNamespace(time=lambda: earlier)  # the counters' clock alone
    monkeypatch.setattr("app.serving.counters.time", stamps)
    counters.succeeded("m", 1, "v1", 0.0, 0.001, 0.002)
    shared.write()  # in the second after both requests' stamps
    counters.succeeded("m", 1, "v1", 0.0, 0.001, 0.002)  # stamped before, counted after
    monkeypatch.undo()
    shared.write()
    reader = SharedSeconds(ServingCounters(), str(tmp_path), process="a")
    summed, processes = reader.read("m", int(time.time()) - 5, 7)
    assert processes == 2 and summed[("m", 1, ANSWERED)].sum(axis=0)[OK] == 2


@pytest.mark.parametrize("broken", [b"", b"not a zip file"])
def test_a_half_written_file_is_skipped(tmp_path: Path, broken: bytes) -> None:
    counters = ServingCounters()
    counters.succeeded("m", 1, "v1", 0.0, 0.001, 0.002)
    (tmp_path / "b.npz").write_bytes(broken)
    summed, processes = SharedSeconds(counters, str(tmp_path), process="a").read(
        "m", int(time.time()) - 5, 7
    )
    assert processes == 1 and summed[("m", 1, ANSWERED)].sum(axis=0)[OK] == 1
