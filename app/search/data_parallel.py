"""Data-parallel trials across worker processes (see ``app.training.parallel``).

The trial's own process is rank 0: it stores the members' work (architecture, starting
weights, training configuration and rows) in the artifact store, recruits
``data_parallel - 1`` members through the broker's search queue with the rendezvous address
and the work's key and sha256, and trains with those that join in time. A member is any
worker process on any machine that takes the message: it reads the work from the artifact
store (checked by digest), joins, trains its share, and leaves. Nothing is shared but the
broker, the artifact store and the rendezvous connection."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from pydantic import BaseModel

from app.core.config import Settings
from app.jobs.queue import JobQueue, JsonArg
from app.search.kind import TRAIN_MEMBER_TASK, work_key
from app.search.run import SearchRun
from app.search.spec import SEARCH_KIND
from app.storage import get_store
from app.training.models import Network
from app.training.parallel import (
    GroupHost,
    Rendezvous,
    pack_member_work,
    train_as_member,
    train_with_members,
)
from app.training.train import TrainConfig, TrainResult, train

logger = logging.getLogger(__name__)

COLLECTIVE_S = 600.0  # a batch's gradient exchange that takes longer means a member died
MISSES_BEFORE_ALONE = 2  # then this process trains its trials alone: nobody is free to help
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class MemberMessage(BaseModel):
    """What recruits one data-parallel member through the broker: the trial, the member's
    rank, where its work lies in the artifact store (and its digest), and where rank 0
    waits for it."""

    job_id: int
    trial: int
    rank: int
    work_key: str
    work_sha256: str
    rendezvous: Rendezvous


def train_in_group(
    run: SearchRun,
    trial: int,
    network: Network,
    training: TrainConfig,
    on_epoch: Callable[[int, float], None],
) -> tuple[TrainResult, int]:
    """Train ``network`` on ``run.data`` with ``run.spec.data_parallel`` processes in all
    (fewer: alone); returns the result and how many processes trained it. After
    ``MISSES_BEFORE_ALONE`` trials in a row that trained alone, this process stops asking
    (every worker is busy, as with the embedded default's one worker process)."""
    if run.groups_missed >= MISSES_BEFORE_ALONE:
        return train(network, run.data, training, on_epoch), 1
    result, world = _train_in_group(run, trial, network, training, on_epoch)
    run.groups_missed = run.groups_missed + 1 if world == 1 else 0
    if run.groups_missed == MISSES_BEFORE_ALONE:
        logger.warning(
            "job %s: %s data-parallel trials in a row found no free worker "
            "processes to help; this worker trains the rest alone",
            run.job_id,
            MISSES_BEFORE_ALONE,
        )
    return result, world


def _train_in_group(
    run: SearchRun,
    trial: int,
    network: Network,
    training: TrainConfig,
    on_epoch: Callable[[int, float], None],
) -> tuple[TrainResult, int]:
    settings = run.settings
    world = run.spec.data_parallel
    try:
        host = GroupHost(
            world,
            bind_host=bind_address(settings),
            device=torch.device(training.device),
            advertise_host=settings.advertise_host,
            join_s=settings.data_parallel_join_s,
            collective_s=COLLECTIVE_S,
        )
    except OSError as error:
        logger.warning(
            "job %s trial %s: cannot listen for data-parallel members on "
            "KILN_ADVERTISE_HOST=%s (%s); training alone",
            run.job_id,
            trial,
            settings.advertise_host,
            error,
        )
        return train(network, run.data, training, on_epoch), 1
    key = work_key(run.job_id, trial)
    try:
        packed = pack_member_work(network, run.data, training)
        stored = run.store.put_bytes(key, packed, durable=False)
        queue = JobQueue(settings)
        try:
            for rank in range(1, world):
                message = MemberMessage(
                    job_id=run.job_id,
                    trial=trial,
                    rank=rank,
                    work_key=key,
                    work_sha256=stored.sha256,
                    rendezvous=host.rendezvous,
                )
                queue.send_helper(SEARCH_KIND, TRAIN_MEMBER_TASK, message.model_dump())
                logger.info(
                    "sent data-parallel member %s of job %s trial %s", rank, run.job_id, trial
                )
            return train_with_members(network, run.data, training, host, on_epoch)
        finally:
            run.store.delete(key)  # members read it before they join
    finally:
        # train_with_members closed it, unless recruiting failed: the gate's thread and
        # sockets never outlive the trial
        host.close()


def bind_address(settings: Settings) -> str:
    """The address rank 0's rendezvous gate listens on: the advertised one, only."""
    return "127.0.0.1" if settings.advertise_host in _LOOPBACK else settings.advertise_host


def run_member(settings: Settings, message: dict[str, JsonArg]) -> None:
    """The member task (``message``: a ``MemberMessage`` as the broker delivers it): read
    the work, join rank 0, train a share; a member whose trial has moved on (work deleted,
    rank 0 gone or training alone) returns quietly."""
    member = MemberMessage.model_validate(message)
    label = f"job {member.job_id} trial {member.trial} rank {member.rank}"
    try:
        payload = get_store(settings).read_bytes(member.work_key, member.work_sha256)
    except FileNotFoundError:
        logger.info("data-parallel member (%s): the trial no longer needs it", label)
        return
    joined = train_as_member(payload, member.rendezvous, member.rank)
    logger.info(
        "data-parallel member (%s): %s", label, "trained its share" if joined else "no group formed"
    )
