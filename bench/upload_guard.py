"""What serving a graph as an upload costs (issue: security, uploaded models at serve time).

Uploaded graphs run under a guard: never on the event loop (a worker-thread hop per
request), without onnxruntime's memory arena (what a run allocates is returned when it
ends), and under a per-run deadline (``RunOptions`` watched by one thread). The other way
to bound them, a memory-limited subprocess per upload, would add a process hop and a copy
of every tensor each way; this script measures the guard's parts against the plain way the
gateway runs its own models, in one process, on the same rows:

  (a) the gateway's own models: ``session.run`` on the calling thread, arena on;
  (t) + a worker-thread hop (``ThreadPoolExecutor.submit(...).result()``);
  (n) + no memory arena;
  (u) the whole guard: thread hop, no arena, deadline watch.

For each, requests/s at batch 1 and 256 of the digits MLP (64 -> 256 -> 256 -> 10), and the
resident memory a 10,000-row request leaves held afterwards (each arena choice in a fresh
child process, so one does not inherit the other's heap).

    .venv/bin/python bench/upload_guard.py [--seconds 3] [--write]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.core.deadlines import WATCHDOG  # noqa: E402
from app.evaluation.sessions import open_session  # noqa: E402
from bench.serving import train_model  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "upload_guard.md"
HELD_ROWS = 10_000


def rate(call: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``call`` in a closed loop, after a warm-up."""
    for _ in range(50):
        call()
    count, stop = 0, time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < stop:
        call()
        count += 1
    return count / (time.perf_counter() - started)


def variants(model: Path, feed: dict[str, np.ndarray]) -> dict[str, Callable[[], object]]:
    plain, bare = open_session(model, 1), open_session(model, 1, arena=False)
    hop = ThreadPoolExecutor(1)

    def guarded() -> object:
        options = ort.RunOptions()
        with WATCHDOG.watch(options, 5.0):
            return bare.run(None, feed, options)

    return {
        "(a) the gateway's own models: on the calling thread, arena on": lambda: plain.run(
            None, feed
        ),
        "(t) + a worker-thread hop": lambda: hop.submit(plain.run, None, feed).result(),
        "(n) + no memory arena": lambda: hop.submit(bare.run, None, feed).result(),
        "(u) the whole guard: hop, no arena, deadline": lambda: hop.submit(guarded).result(),
    }


def held_after_big_request(model: Path, arena: bool) -> float:
    """MB of resident memory a fresh process holds after one HELD_ROWS-row run, over what
    it held before (measured in a child: its own heap, nothing inherited)."""
    script = (
        "import json, sys, numpy as np; sys.path.insert(0, sys.argv[3])\n"
        "from app.evaluation.sessions import open_session\n"
        "def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096\n"
        "s = open_session(sys.argv[1], 1, arena=sys.argv[2] == 'on')\n"
        "s.run(None, {'input': np.zeros((1, 64), np.float32)}); before = rss()\n"
        f"s.run(None, {{'input': np.ones(({HELD_ROWS}, 64), np.float32)}})\n"
        "print(json.dumps((rss() - before) / 2**20))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(model), "on" if arena else "off", str(ROOT)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(done.stdout.strip().splitlines()[-1]))


def report(rates: dict[str, dict[int, float]], held: dict[bool, float], seconds: float) -> str:
    base = next(iter(rates.values()))
    lines = [
        "# Upload guard benchmark",
        "",
        f"Produced by `.venv/bin/python bench/upload_guard.py --write` on "
        f"{time.strftime('%Y-%m-%d')}: {platform.machine()}, Python "
        f"{platform.python_version()}, onnxruntime {ort.__version__}, one intra-op thread, "
        f"{seconds:g} s per cell. The digits MLP (64 -> 256 -> 256 -> 10).",
        "",
        "| how it runs | batch 1 calls/s | vs (a) | batch 256 calls/s | vs (a) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, cells in rates.items():
        lines.append(
            f"| {name} | {cells[1]:,.0f} | {cells[1] / base[1]:.2f} | {cells[256]:,.0f} | "
            f"{cells[256] / base[256]:.2f} |"
        )
    lines += [
        "",
        f"Memory a fresh process still holds after one {HELD_ROWS:,}-row run: arena on "
        f"{held[True]:.1f} MB, arena off {held[False]:.1f} MB.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        model = Path(scratch) / "mlp.onnx"
        rows = train_model(model)
        rates: dict[str, dict[int, float]] = {}
        for batch in (1, 256):
            feed = {"input": np.resize(rows, (batch, 64)).astype(np.float32)}
            for name, call in variants(model, feed).items():
                rates.setdefault(name, {})[batch] = rate(call, args.seconds)
                print(f"  {name}, batch {batch}: {rates[name][batch]:,.0f} calls/s")
        held = {arena: held_after_big_request(model, arena) for arena in (True, False)}
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = report(rates, held, args.seconds)
    print(text, f"(this process peaked at {peak_mb:.0f} MB)", sep="\n")
    if args.write:
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
