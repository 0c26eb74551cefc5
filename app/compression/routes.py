"""The compress kind's route under /v1/jobs: the report of any job that compressed (a
compress job, or a search or retrain that compressed its winner).

No ``from __future__ import annotations`` here: the routes' annotations carry the
dependencies the HTTP layer lends (``app.jobs.http``) and are read as they are defined."""

from typing import Annotated

from fastapi import APIRouter

from app.compression.kind import CompressionReport
from app.compression.kind import compression_report as read_compression_report
from app.core.db import Session
from app.jobs.http import JobHttp


def compression_routes(router: APIRouter, http: JobHttp) -> None:
    """GET /v1/jobs/{job_id}/report, on /v1/jobs's ``router``."""

    @router.get("/{job_id}/report", response_model=CompressionReport, dependencies=[http.readers])
    def compression_report(
        session: Annotated[Session, http.session], job_id: Annotated[int, *http.job_id]
    ) -> CompressionReport:
        """The parent and every variant of a finished compression (or search + compression)
        job side by side: quality, size, gzip size, latency, agreement, and which is
        recommended and why (409 for a job that did not compress, or has not succeeded)."""
        return read_compression_report(session, job_id)
