"""What the per-second counters (``app.serving.seconds``) cost a request: the ring is always
on (nothing to turn off in bench/serving.py), so this measures its share of the counting
``app.serving.core`` does after each answer, in this process, with no server around it.

  (1) ``ServingCounters.succeeded`` as the request path calls it (the Prometheus-side
      counts, the clock read and the ring);
  (2) the same with the ring's ``add`` replaced by a no-op;
  (3) ``SecondsRing.add`` alone, and the wall-clock read it needs.

Latencies spread over the buckets and a new second every 10,000 calls (a slot zeroed), as
steady traffic does. Prints nanoseconds per call (the best of several rounds).

    .venv/bin/python bench/serving_seconds.py [--calls 200000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.serving.counters import ServingCounters  # noqa: E402
from app.serving.seconds import ANSWERED, OK, SecondsRing  # noqa: E402

LATENCIES = [0.0002 * 1.07**step for step in range(64)]  # 0.2 ms to about 14 ms


def best_ns(run: Callable[[int], None], calls: int, rounds: int) -> float:
    """The fastest round's nanoseconds per call."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        run(calls)
        times.append((time.perf_counter_ns() - started) / calls)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    counters = ServingCounters()

    def succeeded(calls: int) -> None:
        for index in range(calls):
            counters.succeeded("digits", 1, "v1", 0.00001, 0.0002, LATENCIES[index & 63])

    with_ring = best_ns(succeeded, args.calls, args.rounds)
    ring_add = counters._seconds.add
    counters._seconds.add = lambda *anything: None  # type: ignore[method-assign]
    without_ring = best_ns(succeeded, args.calls, args.rounds)
    counters._seconds.add = ring_add  # type: ignore[method-assign]

    ring = SecondsRing()
    key = ("digits", 1, ANSWERED)

    def add(calls: int) -> None:
        for index in range(calls):
            ring.add(key, 1_000_000 + index // 10_000, OK, LATENCIES[index & 63])

    def clock(calls: int) -> None:
        for _ in range(calls):
            int(time.time())

    def loop(calls: int) -> None:
        for index in range(calls):
            LATENCIES[index & 63]

    overhead = best_ns(loop, args.calls, args.rounds)
    alone = best_ns(add, args.calls, args.rounds) - overhead
    wall = best_ns(clock, args.calls, args.rounds) - overhead
    print(f"ServingCounters.succeeded, with the ring:     {with_ring:7.0f} ns per request")
    print(f"ServingCounters.succeeded, ring add a no-op:  {without_ring:7.0f} ns per request")
    print(f"the ring's share (its add, under the lock):  {with_ring - without_ring:7.0f} ns")
    print(f"SecondsRing.add alone:                        {alone:7.0f} ns")
    print(f"int(time.time()), the second it counts in:    {wall:7.0f} ns")


if __name__ == "__main__":
    main()
