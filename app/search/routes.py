"""The search kind's route under /v1/jobs: a multi-objective search's Pareto front.

No ``from __future__ import annotations`` here: the routes' annotations carry the
dependencies the HTTP layer lends (``app.jobs.http``) and are read as they are defined."""

from typing import Annotated

from fastapi import APIRouter

from app.core.db import Session
from app.jobs.http import JobHttp
from app.search.kind import ParetoFront
from app.search.kind import pareto_front as read_pareto_front


def search_routes(router: APIRouter, http: JobHttp) -> None:
    """GET /v1/jobs/{job_id}/pareto, on /v1/jobs's ``router``."""

    @router.get("/{job_id}/pareto", response_model=ParetoFront, dependencies=[http.readers])
    def pareto_front(
        session: Annotated[Session, http.session], job_id: Annotated[int, *http.job_id]
    ) -> ParetoFront:
        """The Pareto-optimal trials of a finished multi-objective job, each with the version
        it was registered as (409 for a single-objective or unfinished job)."""
        return read_pareto_front(session, job_id)
