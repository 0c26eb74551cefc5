"""The worker side of a ``retrain`` job: the search it stored runs as a search job's does
(trials, selection, refit, export, compression), and when the job records its result the
new version (the compression's recommended variant, when the chain made one) is deployed
beside what serves, in the same transaction."""

from __future__ import annotations

from app.contracts.results import RetrainResult, SearchResult
from app.core.db import Session, session_scope
from app.core.errors import BrokenInvariant
from app.jobs.repository import JobRepository
from app.jobs.runner import JobContext, Recorder
from app.registry import monitoring
from app.registry.traffic import deploy_beside
from app.retrain.kind import RETRAIN
from app.search.study import run_stored_search


def run_retrain(context: JobContext) -> Recorder:
    """Run the stored search; its recorder registers the versions, then deploys one."""
    with session_scope(context.settings.database_url) as session:
        stored = RETRAIN.read_spec(JobRepository(session).get_or_raise(context.job_id))
    record_search = run_stored_search(context, stored.search_job)
    request = stored.retrain

    def record(session: Session) -> RetrainResult:
        result = record_search(session)
        if not isinstance(result, SearchResult):
            raise BrokenInvariant("a retrain's search recorded no search result")
        candidate = result.recommended_version or result.version
        deployment = deploy_beside(
            session,
            name=request.model,
            alias=request.alias,
            version=candidate,
            mode=request.deploy,
            weight=request.weight,
        )
        what = (
            f"version {candidate} retrained from version {stored.source_version} "
            f"on dataset {request.dataset_id}"
        )
        monitoring.add_event(
            session,
            request.model,
            "retrain",
            f"{what}: deployed as {request.deploy} of {request.alias!r}"
            if deployment.deployed
            else f"{what}: not deployed ({deployment.reason})",
            deployment.stored_json(),
        )
        return RetrainResult(
            **result.stored_json(),
            source_version=stored.source_version,
            retrain_mode=request.mode,
            deployment=deployment,
        )

    return record
