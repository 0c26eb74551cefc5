"""The predict kind's routes under /v1/jobs: a batch prediction submitted with its rows
uploaded, and a finished one's output file.

No ``from __future__ import annotations`` here: the routes' annotations carry the
dependencies the HTTP layer lends (``app.jobs.http``) and are read as they are defined."""

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, ValidationError

from app.batch.output import MEDIA_TYPES, output_file
from app.batch.spec import PredictJobCreate
from app.batch.submit import submit_predict
from app.core.config import Settings
from app.core.db import Session
from app.core.errors import InvalidInput
from app.core.names import MODEL_NAME
from app.jobs.http import JobHttp
from app.jobs.kinds import SubmitContext
from app.jobs.queue import JobQueue
from app.jobs.repository import JobRepository
from app.storage import ArtifactStore


def batch_routes(router: APIRouter, http: JobHttp) -> None:
    """POST /v1/jobs/predict and GET /v1/jobs/{job_id}/output, on /v1/jobs's ``router``."""

    @router.post(
        "/predict",
        status_code=202,
        **http.answers_job,
        responses=dict(http.stores_artifacts),
        dependencies=[http.writers],
        summary="Submit a batch prediction over an uploaded CSV",
    )
    def submit_batch_prediction(
        session: Annotated[Session, http.session],
        settings: Annotated[Settings, http.settings],
        queue: Annotated[JobQueue, http.queue],
        store: Annotated[ArtifactStore, http.store],
        file: Annotated[
            UploadFile, File(description="CSV with a header row: the rows to predict.")
        ],
        model: Annotated[str, Form(description="Registered model."), MODEL_NAME.published],
        version: Annotated[int | None, *http.version_form] = None,
        key_columns: Annotated[
            str | None,
            Form(
                max_length=10_000,
                description="Comma-separated columns copied next to the predictions.",
            ),
        ] = None,
        output_format: Annotated[
            Literal["csv", "parquet"], Form(description="Output file format.")
        ] = "csv",
        chunk_rows: Annotated[
            int, Form(ge=1_000, le=1_000_000, description="Rows per chunk."), http.count_digits
        ] = 16_384,
    ) -> BaseModel:
        """The same job as ``POST /v1/jobs`` with ``kind: predict``, with the rows uploaded
        here instead of read from a stored dataset; the CSV is kept as the job's input."""
        keys = [name.strip() for name in (key_columns or "").split(",") if name.strip()]
        try:
            spec = PredictJobCreate(
                kind="predict",
                model=model,
                version=version,
                key_columns=keys,
                output_format=output_format,
                chunk_rows=chunk_rows,
            )
        except ValidationError as invalid:
            first = invalid.errors()[0]
            raise InvalidInput(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        with http.spooled_upload(file, settings, ".csv") as path:
            job = submit_predict(
                SubmitContext(session, queue, settings, store),
                spec,
                upload=path,
                filename=file.filename,
            )
        return http.job_read(job)

    @router.get(
        "/{job_id}/output",
        response_class=FileResponse,
        dependencies=[http.readers],
        responses={
            200: {
                "content": {media: {} for media in MEDIA_TYPES.values()},
                "description": "The predictions file.",
            }
        },
    )
    def job_output(
        session: Annotated[Session, http.session],
        store: Annotated[ArtifactStore, http.store],
        job_id: Annotated[int, *http.job_id],
    ) -> FileResponse:
        """A finished batch prediction's file: ``row`` (the input row's 1-based number), the key
        columns, then the prediction (and each class's probability) per row. 409 for another
        kind of job or one that has not succeeded."""
        found = output_file(JobRepository(session).get_or_raise(job_id), store)
        return FileResponse(found.path, media_type=found.media_type, filename=found.filename)
