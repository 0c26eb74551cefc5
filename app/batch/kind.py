"""The ``predict`` job kind (batch prediction): checked and queued by
``app.batch.submit``; run on a worker by ``app.batch.job.run_batch_predict``; its routes
(the output, and a submission with the rows uploaded) are ``app.batch.routes``."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from app.batch.plan import BatchPlan, Checkpoint, output_key, part_path
from app.batch.spec import PREDICT_KIND, PredictJobCreate
from app.batch.submit import input_key, submit_predict
from app.contracts.results import PredictResult, StoredResult
from app.core.db import Session
from app.jobs.kinds import JobKind, SubmitContext
from app.tables import Job

if TYPE_CHECKING:
    from fastapi import APIRouter

    from app.jobs.http import JobHttp


class PredictKind(JobKind[PredictJobCreate, BatchPlan]):
    """Every row of a stored dataset's CSV (or an uploaded one) through one version."""

    name: ClassVar[str] = PREDICT_KIND
    create_model = PredictJobCreate
    stored_model = BatchPlan  # the request with the version and input it resolved to
    progress_unit: ClassVar[str] = "rows"
    handler_path: ClassVar[str] = "app.batch.job:run_batch_predict"
    result_model: ClassVar[type[StoredResult]] = PredictResult
    page_sections: ClassVar[tuple[str, ...]] = ("output",)

    def submit(self, context: SubmitContext, spec: PredictJobCreate) -> Job:
        return submit_predict(context, spec)

    def add_routes(self, router: APIRouter, http: JobHttp) -> None:
        from app.batch.routes import batch_routes  # the web framework: gateway only

        batch_routes(router, http)

    def output_keys(self, job: Job) -> list[str]:
        """Every attempt's output (a failed attempt may have left one) and the uploaded
        input (a dataset's own CSV is the dataset's, not the job's)."""
        plan = self.read_spec(job)
        keys = [
            output_key(job.id, attempt, plan.output_format)
            for attempt in range(1, max(job.attempt, 1) + 1)
        ]
        return [*keys, plan.input_key] if plan.input_key == input_key(job.id) else keys

    def scratch_keys(self, session: Session, job: Job) -> list[str]:
        """The recorded parts, and the next one (an attempt that died after storing it but
        before recording it leaves it)."""
        stored = Checkpoint.model_validate(job.checkpoint or {})
        return [part_path(job.id, index) for index in range(len(stored.parts) + 1)]


PREDICT = PredictKind()
