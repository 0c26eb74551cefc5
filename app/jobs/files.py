"""Deleting what ModelKiln stores, by hand and by retention.

- A dataset's files (its CSV, arrays and raw columns): ``DELETE /v1/datasets/{id}``,
  refused while a queued or running job uses it. The row stays, marked deleted, so the
  versions trained on it still name it in their lineage; its profile (column statistics,
  no rows) stays for their drift reports. New jobs on it are refused.
- An archived version's artifact (its ONNX file, torch weights and explanation file, each
  kept while another kept version shares it): ``DELETE /v1/models/{name}/versions/{n}/artifact``;
  a live version must be archived first.
- A finished job's files (a batch job's output and uploaded input, and every job's
  scratch): ``DELETE /v1/jobs/{id}/files``; a queued or running job must be cancelled first.
- Retention, in the gateway's housekeeping pass: the scratch of finished jobs after
  ``KILN_SCRATCH_RETENTION_S``, and batch outputs after ``KILN_OUTPUT_RETENTION_S`` (0: kept
  until deleted by hand).

Files are deleted inside the request's (or pass's) transaction, before it commits: a
deletion that fails rolls the mark back, so it can be tried again; a commit that fails after
the files went leaves nothing marked, and deleting again is harmless."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from app.contracts.enums import FINAL_JOB_STATES, VersionStatus
from app.core.config import Settings
from app.core.db import Session, utcnow
from app.core.errors import BrokenInvariant, Conflict, KilnError
from app.datasets.repository import DatasetRepository
from app.datasets.service import arrays_key, original_key, raw_key
from app.explain.data import ExplainRecord
from app.jobs.kinds import KindMap
from app.jobs.repository import JobRepository
from app.registry.repository import VersionRepository
from app.registry.service import get_version
from app.storage import ArtifactStore
from app.tables import Dataset, Job, ModelVersion

logger = logging.getLogger(__name__)

SWEEP_BATCH = 50  # jobs per housekeeping pass and kind of retention


def _busy(jobs: list[Job]) -> str:
    return ", ".join(str(job.id) for job in jobs[:10])


def delete_dataset(session: Session, store: ArtifactStore, dataset_id: int) -> Dataset:
    """Delete a dataset's files and mark it deleted (see the module docstring).

    A job submitted at the same moment either commits first, and the deletion is then a
    Conflict naming it, or sees the dataset deleted (InvalidInput): the mark comes first,
    in a conditional update that waits for the submissions holding the dataset's row
    (``DatasetRepository.hold``), and the jobs are read after it, so a job committed while
    the mark waited is among them. A Conflict rolls the mark back."""
    datasets = DatasetRepository(session)
    if not datasets.mark_deleted(dataset_id, utcnow()):
        datasets.kept(dataset_id, refresh=True)  # NotFound, naming why
        raise Conflict(f"dataset {dataset_id} was being deleted by another request")
    users = JobRepository(session).active_on_dataset(dataset_id)
    if users:
        raise Conflict(
            f"dataset {dataset_id} is used by queued or running job(s) {_busy(users)}; "
            "cancel them or wait for them to finish"
        )
    for key in (original_key(dataset_id), arrays_key(dataset_id), raw_key(dataset_id)):
        store.delete(key)
    deleted = datasets.current(dataset_id)
    if deleted is None:
        raise BrokenInvariant(f"dataset {dataset_id} vanished while it was deleted")
    return deleted


def delete_version_artifact(
    session: Session, store: ArtifactStore, name: str, number: int
) -> ModelVersion:
    """Delete an archived version's ONNX file, torch weights and explanation file (its
    background rows and exact model; a variant's is its parent's, kept while a version
    that shares it keeps its artifact); the version's record (metrics, lineage) stays."""
    version = get_version(session, name, number)
    if version.status != VersionStatus.ARCHIVED:
        raise Conflict(
            f"model {name!r} version {number} is {version.status}; archive it first "
            f"(DELETE /v1/models/{name}/versions/{number})"
        )
    users = JobRepository(session).active_for_model(name)
    if users:
        raise Conflict(f"model {name!r} has queued or running job(s) {_busy(users)}; wait for them")
    versions = VersionRepository(session)
    if not versions.others_sharing_artifact(version):  # a file stays
        store.delete(version.artifact_key)  # while another kept version points at it
    if version.config is not None and version.config.weights_key is not None:
        store.delete(version.config.weights_key)
    explained = ExplainRecord.of(version.metrics)
    if explained is not None and not versions.others_sharing_explanation(version, explained.key):
        store.delete(explained.key)
    version.artifact_deleted_at = version.artifact_deleted_at or utcnow()
    session.flush()
    return version


def delete_job_files(session: Session, store: ArtifactStore, kinds: KindMap, job_id: int) -> Job:
    """Delete a finished job's output, uploaded input and scratch."""
    job = JobRepository(session).get_or_raise(job_id)
    if job.status not in FINAL_JOB_STATES:
        raise Conflict(
            f"job {job_id} is {job.status}; cancel it first (POST /v1/jobs/{job_id}/cancel)"
        )
    if job.kind not in kinds:
        raise Conflict(
            f"job {job_id} is a {job.kind!r} job, a kind this server no longer runs: it cannot "
            "name that job's files"
        )
    for key in _keys_of(session, kinds, job, output=True):
        store.delete(key)
    now = utcnow()
    job.files_deleted_at = job.files_deleted_at or now
    job.scratch_deleted_at = job.scratch_deleted_at or now
    session.flush()
    return job


def sweep_job_files(
    session: Session, store: ArtifactStore, kinds: KindMap, settings: Settings, now: datetime
) -> int:
    """One retention pass (see the module docstring); how many jobs it cleared."""
    jobs = JobRepository(session)
    cleared = 0
    scratch_cutoff = now - timedelta(seconds=settings.scratch_retention_s)
    for job in jobs.scratch_kept_since(scratch_cutoff, limit=SWEEP_BATCH):
        if jobs.mark_scratch_deleted(job.id, now):  # another gateway may sweep too
            for key in _keys_of(session, kinds, job, output=False):
                store.delete(key)
            cleared += 1
    if settings.output_retention_s > 0:
        output_cutoff = now - timedelta(seconds=settings.output_retention_s)
        for job in jobs.files_kept_since(output_cutoff, limit=SWEEP_BATCH):
            if jobs.mark_files_deleted(job.id, now):
                for key in _keys_of(session, kinds, job, output=True):
                    store.delete(key)
                cleared += 1
    return cleared


def _keys_of(session: Session, kinds: KindMap, job: Job, *, output: bool) -> list[str]:
    """The keys a job's kind names (its output too, with ``output``). A job the sweep cannot
    read (a kind no longer run, a spec another release wrote) names none, and is logged:
    one such job must not stop the pass (it runs in the reaper's transaction)."""
    kind = kinds.get(job.kind)
    if kind is None:
        logger.warning("job %s: kind %r is no longer run; its files are kept", job.id, job.kind)
        return []
    try:
        return [*(kind.output_keys(job) if output else []), *kind.scratch_keys(session, job)]
    except KilnError as error:
        logger.warning("job %s: its files are kept, they cannot be named: %s", job.id, error)
        return []
