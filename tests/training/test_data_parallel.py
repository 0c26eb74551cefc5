"""Data-parallel training (DistributedDataParallel over gloo): two processes on one
machine train a network to what one process does; a group that does not form leaves the
trial to train alone, and a stop on rank 0 stops every member."""

from __future__ import annotations

import copy
import datetime
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from app.contracts.networks import MLPConfig
from app.training.models import Network
from app.training.parallel import GroupHost, pack_member_work, train_with_members
from app.training.train import TrainConfig, TrainData, TrainResult, train

ROOT = Path(__file__).resolve().parents[2]


def _data(rows: int = 2048, features: int = 12, seed: int = 0) -> TrainData:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows + 512, features)).astype(np.float32)
    y = (x[:, :3].sum(axis=1) + 0.3 * rng.normal(size=len(x)) > 0).astype(np.int64)
    return TrainData(x_train=x[:rows], y_train=y[:rows], x_val=x[rows:], y_val=y[rows:])


def _network(*, batch_norm: bool = False, dropout: float = 0.0) -> Network:
    config = MLPConfig(
        n_inputs=12,
        n_outputs=2,
        hidden=(32, 16),
        activation="relu",
        dropout=dropout,
        batch_norm=batch_norm,
    )
    return Network(config, classification=True, seed=5)


def _host(world: int = 2, join_s: float = 90.0) -> GroupHost:
    return GroupHost(
        world,
        bind_host="127.0.0.1",
        advertise_host="127.0.0.1",
        device=torch.device("cpu"),
        join_s=join_s,
        collective_s=120.0,
    )


def _start_member(
    tmp_path: Path,
    host: GroupHost,
    network: Network,
    data: TrainData,
    config: TrainConfig,
    rank: int = 1,
) -> subprocess.Popen[bytes]:
    work = tmp_path / f"member-{rank}.npz"
    work.write_bytes(pack_member_work(network, data, config))
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.data_parallel_member",
            str(work),
            json.dumps(host.rendezvous.as_json()),
            str(rank),
        ],
        cwd=ROOT,
    )


def _in_two(
    tmp_path: Path, network: Network, data: TrainData, config: TrainConfig
) -> tuple[TrainResult, int, int]:
    host = _host()
    member = _start_member(tmp_path, host, network, data, config)
    result, world = train_with_members(network, data, config, host)
    return result, world, member.wait(timeout=120)


def test_two_processes_train_the_weights_one_process_does(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data = _data()
    config = TrainConfig(epochs=4, learning_rate=0.01, batch_size=64, seed=3)
    alone, together = _network(), _network()
    single = train(alone, data, config)
    parallel, world, exit_code = _in_two(tmp_path, together, data, config)
    assert (world, exit_code) == (2, 0)
    assert parallel.history == pytest.approx(single.history, abs=1e-6)
    for name, weight in alone.state_dict().items():
        torch.testing.assert_close(
            together.state_dict()[name], weight, rtol=1e-4, atol=1e-5, msg=name
        )


def test_batch_norm_and_dropout_train_to_close_results(tmp_path: Path) -> None:
    """Each process normalises its own rows and draws its own dropout masks: not the same
    weights, but the same quality within a tolerance."""
    data = _data(rows=4096)
    config = TrainConfig(epochs=6, learning_rate=0.01, batch_size=128, seed=1)
    alone = _network(batch_norm=True, dropout=0.1)
    together = copy.deepcopy(alone)
    single = train(alone, data, config)
    parallel, world, exit_code = _in_two(tmp_path, together, data, config)
    assert (world, exit_code) == (2, 0)
    assert parallel.score == pytest.approx(single.score, abs=0.03)


def test_a_group_that_does_not_form_trains_alone(tmp_path: Path) -> None:
    """No member comes: rank 0 waits join_s, then trains alone; a member arriving late is
    told so and leaves at once instead of waiting for a group."""
    data = _data(rows=512)
    config = TrainConfig(epochs=2, learning_rate=0.01, batch_size=64, seed=2)
    host = _host(join_s=1.0)
    network = _network()
    result, world = train_with_members(network, data, config, host)
    assert world == 1 and len(result.history) == 2
    expected = train(_network(), data, config)
    assert result.history == pytest.approx(expected.history)
    late = _start_member(tmp_path, host, _network(), data, config)
    assert late.wait(timeout=60) == 3  # told rank 0 went on alone


def test_a_stop_on_rank_zero_stops_the_members(tmp_path: Path) -> None:
    data = _data(rows=1024)
    config = TrainConfig(epochs=50, learning_rate=0.01, batch_size=64, seed=4)
    host = _host()
    network = _network()
    member = _start_member(tmp_path, host, network, data, config)

    def prune_after_two(epoch: int, score: float) -> None:
        if epoch == 1:
            raise RuntimeError("pruned")

    with pytest.raises(RuntimeError, match="pruned"):
        train_with_members(network, data, config, host, on_epoch=prune_after_two)
    assert member.wait(timeout=60) == 0  # it stopped with rank 0, not at epoch 50


def test_a_process_without_the_secret_is_never_admitted(tmp_path: Path) -> None:
    """A stranger that reaches rank 0's advertised port (torch's own store client, or raw
    bytes) is refused before it reaches the store: it cannot join, read the weights or
    send gradients, it does not extend the join deadline, and the trial trains exactly as
    it would have alone. Nothing of the gate outlives the trial: its thread has ended and
    a connection still in its handshake is closed."""
    data = _data(rows=512)
    config = TrainConfig(epochs=2, learning_rate=0.01, batch_size=64, seed=2)
    threads = set(threading.enumerate())
    host = _host(join_s=3.0)
    port = host.rendezvous.port
    with pytest.raises((RuntimeError, dist.DistError)):
        stranger = dist.TCPStore("127.0.0.1", port, 2, False, timeout=datetime.timedelta(seconds=2))
        stranger.set("joined/1", "1")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        challenge = raw.recv(64)
        raw.sendall(b"\0" * 32)  # a wrong answer
        assert challenge and raw.recv(1) == b""  # closed, nothing relayed
    lingering = socket.create_connection(("127.0.0.1", port), timeout=10)
    assert lingering.recv(1)  # its challenge: it is in its handshake
    network = _network()
    result, world = train_with_members(network, data, config, host)
    assert world == 1
    assert not [thread for thread in threading.enumerate() if thread not in threads]
    lingering.settimeout(1.0)
    assert lingering.recv(64) and lingering.recv(64) == b""  # the rest; then closed
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    assert result.history == pytest.approx(train(_network(), data, config).history)
    assert host.gate.refused >= 2
    assert "secret" in host.rendezvous.as_json() and len(host.rendezvous.secret) == 64
