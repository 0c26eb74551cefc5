"""Data-parallel training: one network trained by several processes with torch's
DistributedDataParallel (gloo on CPU, nccl on CUDA).

Rank 0 is the process that owns the trial. It hosts a TCPStore (the rendezvous) on loopback,
reachable from elsewhere only through a ``Gate`` on ``bind_host`` (``app.training.gate``:
a connection must prove the trial's secret first), and publishes ``Rendezvous`` (the
gate's address, world size, backend, the secret) to the members through what the workers
already share (the broker message that recruits them; the training data travels through
the artifact store). Each member announces itself under
its rank; rank 0 waits ``join_s`` for all of them, then writes one decision: ``go`` (all
joined: the process group forms) or ``alone`` (someone is missing: rank 0 trains by itself,
and members that joined, or join later, leave at once). So a member never waits on a group
that will not form, and a trial never waits longer than ``join_s`` for help.

Every global batch of ``batch_size`` rows is split between the ranks, each rank's loss is
the sum over its rows scaled by ``world / batch rows``, and DDP averages the gradients: the
update equals one process's on the whole batch. Networks without dropout or batch norm
therefore train to the same weights (up to float summation order); with batch norm each
process normalises its own rows (the exported network keeps plain batch norm layers), and
dropout draws per process, so those train to close, not equal, results.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.distributed as dist
from pydantic import BaseModel
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from app.contracts.networks import NetworkConfig
from app.training.gate import Gate, Tunnel, listening_socket, new_secret
from app.training.models import Network
from app.training.train import (
    TrainConfig,
    TrainData,
    TrainResult,
    load_weights,
    save_weights,
    train,
)

logger = logging.getLogger(__name__)

GO, ALONE = "go", "alone"
_DECISION = "decision"


@dataclass(frozen=True)
class Rendezvous:
    """Where members find rank 0's store, and the group they form."""

    host: str
    port: int
    world: int
    backend: str  # gloo or nccl
    device: str  # cpu or cuda: members train where rank 0 does
    join_s: float
    collective_s: float
    secret: str  # proves a member was recruited for this trial (app.training.gate)

    def as_json(self) -> dict[str, str | int | float]:
        return asdict(self)


def _member_key(rank: int) -> str:
    return f"joined/{rank}"


class DataParallelGroup:
    """This process's place in a formed process group."""

    def __init__(
        self, rank: int, world: int, device: torch.device, tunnel: Tunnel | None = None
    ) -> None:
        self.rank = rank
        self.world = world
        self.device = device
        self.tunnel = tunnel

    def wrap(self, network: nn.Module) -> nn.Module:
        """The module whose forward and backward average gradients over the group (rank
        0's weights and buffers are broadcast to every member first)."""
        # Buffers (input scaling, batch norm statistics) are not broadcast at every
        # forward: scaling is identical on every rank, and rank 0's statistics are kept.
        on_gpu = self.device.type == "cuda"
        return DistributedDataParallel(
            network,
            device_ids=[self.device.index or 0] if on_gpu else None,
            forward_sync_buffers=False,
            gradient_as_bucket_view=True,
        )

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a global batch (every world-th row from its rank)."""
        return batch[self.rank :: self.world]

    def agree_to_stop(self, stop: bool) -> bool:
        """Rank 0's decision to stop (after its epoch callback) told to every member."""
        flag = torch.tensor(
            [1 if stop else 0],
            dtype=torch.int64,
            device=self.device if self.device.type == "cuda" else "cpu",
        )
        dist.broadcast(flag, src=0)
        return bool(flag.item())

    def leave(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()
        if self.tunnel is not None:
            self.tunnel.close()


class GroupHost:
    """Rank 0's side: the store, waiting for members, then the group (or training alone)."""

    def __init__(
        self,
        world: int,
        *,
        bind_host: str,
        advertise_host: str,
        device: torch.device,
        join_s: float,
        collective_s: float,
    ) -> None:
        backend = "nccl" if device.type == "cuda" else "gloo"
        self.device = device
        # TCPStore's own server listens on every interface: hand it a loopback socket.
        store_socket = listening_socket("127.0.0.1")
        store_port = int(store_socket.getsockname()[1])
        try:
            self.store = dist.TCPStore(
                "127.0.0.1",
                store_port,
                world,
                True,
                wait_for_workers=False,
                timeout=datetime.timedelta(seconds=join_s + collective_s),
                master_listen_fd=store_socket.fileno(),
            )
        except BaseException:
            store_socket.close()
            raise
        # The store owns the descriptor now and closes it when it goes: a Python socket
        # left holding it would close it again later, maybe once it numbers another file.
        store_socket.detach()
        secret = new_secret()
        self.gate = Gate(bind_host, store_port, secret)
        self.rendezvous = Rendezvous(
            host=advertise_host,
            port=self.gate.port,
            world=world,
            backend=backend,
            device=device.type,
            join_s=join_s,
            collective_s=collective_s,
            secret=secret,
        )

    def close(self) -> None:
        """Stop admitting connections and close every one the gate relays (its thread and
        sockets are gone when this returns), once the trial has trained: until then a late
        member still reads the decision and leaves at once."""
        self.gate.close()

    def form(self) -> DataParallelGroup | None:
        """Wait for every member; the group, or None (members told to leave) on timeout."""
        rendezvous = self.rendezvous
        keys = [_member_key(rank) for rank in range(1, rendezvous.world)]
        try:
            self.store.wait(keys, datetime.timedelta(seconds=rendezvous.join_s))
        except (RuntimeError, dist.DistError):
            joined = sum(self.store.check([key]) for key in keys)
            logger.warning(
                "data-parallel training: %s of %s member processes joined within "
                "%.0f s; training in one process",
                joined,
                len(keys),
                rendezvous.join_s,
            )
            self.store.set(_DECISION, ALONE)
            return None
        self.store.set(_DECISION, GO)
        return _init_group(self.store, 0, rendezvous, self.device)


def join(rendezvous: Rendezvous, rank: int, device: torch.device) -> DataParallelGroup | None:
    """A member's side: announce ``rank``, wait for rank 0's decision; the group, or None
    when rank 0 went on alone (or cannot be reached)."""
    timeout = datetime.timedelta(seconds=rendezvous.join_s + 30)
    try:
        tunnel = Tunnel(
            rendezvous.host, rendezvous.port, rendezvous.secret, patience_s=rendezvous.join_s
        )
    except OSError as error:
        logger.warning(
            "data-parallel member %s: cannot reach rank 0 at %s:%s (%s)",
            rank,
            rendezvous.host,
            rendezvous.port,
            error,
        )
        return None
    if not tunnel.reachable():
        tunnel.close()
        logger.info(
            "data-parallel member %s: rank 0's trial at %s:%s has ended; leaving",
            rank,
            rendezvous.host,
            rendezvous.port,
        )
        return None
    try:
        store = dist.TCPStore("127.0.0.1", tunnel.port, rendezvous.world, False, timeout=timeout)
        store.set(_member_key(rank), "1")
        decision = store.get(_DECISION)
    except (RuntimeError, dist.DistError) as error:
        tunnel.close()
        logger.warning(
            "data-parallel member %s: rank 0 at %s:%s is gone (%s)",
            rank,
            rendezvous.host,
            rendezvous.port,
            error,
        )
        return None
    if decision != GO.encode():
        tunnel.close()
        logger.info("data-parallel member %s: rank 0 trained alone; leaving", rank)
        return None
    try:
        return _init_group(store, rank, rendezvous, device, tunnel)
    except BaseException:
        tunnel.close()
        raise


def _init_group(
    store: dist.Store,
    rank: int,
    rendezvous: Rendezvous,
    device: torch.device,
    tunnel: Tunnel | None = None,
) -> DataParallelGroup:
    dist.init_process_group(
        rendezvous.backend,
        store=dist.PrefixStore("group", store),
        rank=rank,
        world_size=rendezvous.world,
        timeout=datetime.timedelta(seconds=rendezvous.collective_s),
    )
    return DataParallelGroup(rank, rendezvous.world, device, tunnel)


def train_with_members(
    network: Network,
    data: TrainData,
    config: TrainConfig,
    host: GroupHost,
    on_epoch: Callable[[int, float], None] | None = None,
) -> tuple[TrainResult, int]:
    """Rank 0: train with the members that joined (the group's size is returned), or
    alone when not all of them came in time."""
    try:
        group = host.form()
        if group is None:
            return train(network, data, config, on_epoch), 1
        try:
            return train(network, data, config, on_epoch, group), group.world
        finally:
            group.leave()
    finally:
        host.close()


def train_as_member(payload: bytes, rendezvous: Rendezvous, rank: int) -> bool:
    """A member: train rank ``rank``'s share with rank 0; False when no group formed."""
    network, data, config = unpack_member_work(payload)
    device = torch.device("cpu")
    if rendezvous.device == "cuda":
        if not torch.cuda.is_available():
            logger.warning(
                "data-parallel member %s: rank 0 trains on CUDA and this worker "
                "has none; not joining",
                rank,
            )
            return False
        device = torch.device("cuda", rank % torch.cuda.device_count())
    group = join(rendezvous, rank, device)
    if group is None:
        return False
    try:
        train(network, data, dataclasses.replace(config, device=str(device)), group=group)
    finally:
        group.leave()
    return True


class MemberSpec(BaseModel):
    """The JSON part of a member's work: the network's architecture, its task, and the
    training configuration."""

    architecture: NetworkConfig
    classification: bool
    config: TrainConfig


def pack_member_work(network: Network, data: TrainData, config: TrainConfig) -> bytes:
    """What a member needs to train with rank 0, as one npz of arrays and JSON (nothing is
    unpickled on the member's side): the network's architecture and starting weights, the
    training configuration and the rows."""
    spec = MemberSpec(
        architecture=network.config, classification=network.classification, config=config
    )
    buffer = io.BytesIO()
    np.savez(
        buffer,
        x_train=data.x_train,
        y_train=data.y_train,
        x_val=data.x_val,
        y_val=data.y_val,
        spec=np.frombuffer(spec.model_dump_json().encode(), dtype=np.uint8),
        weights=np.frombuffer(save_weights(network), dtype=np.uint8),
    )
    return buffer.getvalue()


def unpack_member_work(payload: bytes) -> tuple[Network, TrainData, TrainConfig]:
    with np.load(io.BytesIO(payload), allow_pickle=False) as arrays:
        spec = MemberSpec.model_validate_json(arrays["spec"].tobytes())
        network = Network(spec.architecture, spec.classification)
        load_weights(network, arrays["weights"].tobytes())
        data = TrainData(
            x_train=arrays["x_train"],
            y_train=arrays["y_train"],
            x_val=arrays["x_val"],
            y_val=arrays["y_val"],
        )
    return network, data, spec.config
