"""The names the whole platform shares: API key scopes, tasks, job, trial and version
states, and the id bound. Torch-free and ORM-free, so the gateway, the client-facing
schemas and the workers read them without loading the tables or Optuna."""

from __future__ import annotations

from enum import StrEnum

# Ids and version numbers are 32-bit INTEGER columns (PostgreSQL refuses more); every
# id or number a client sends is bounded by this before it reaches a query.
MAX_ID = 2**31 - 1


class Scope(StrEnum):
    """What an API key may do, and what a route needs. ``logs`` (reading the request log,
    which holds clients' raw inputs) is never implied by read or write: a key gets it only
    when created with it, alone or as ``read+logs`` / ``write+logs``; admin holds it."""

    ADMIN = "admin"
    WRITE = "write"
    READ = "read"
    INFER = "infer"
    LOGS = "logs"
    READ_LOGS = "read+logs"
    WRITE_LOGS = "write+logs"


class Task(StrEnum):
    """The learning task of a dataset or model."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class JobStatus(StrEnum):
    """Lifecycle of a job; the last three are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_JOB_STATES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


# The model families' names are the registered families' (``app.training.families.registry``
# derives ``Family`` from them); a registered average of several families' models is this.
AVERAGE_FAMILY = "average"


class TrialState(StrEnum):
    """Lifecycle of one trial; ``lost``: its worker stopped heartbeating while it ran;
    ``infeasible``: it broke a constraint (before training when the architecture shows it);
    ``stopped``: cut off by a time limit (the search's budget or its own), a normal end."""

    RUNNING = "running"
    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"
    LOST = "lost"
    INFEASIBLE = "infeasible"
    STOPPED = "stopped"


class VersionStatus(StrEnum):
    """Whether a model version may serve."""

    LIVE = "live"
    ARCHIVED = "archived"
