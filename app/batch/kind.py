"""The ``predict`` job kind (batch prediction): checked and queued by
``app.batch.submit``; run on a worker by ``app.batch.job.run_batch_predict``."""

from __future__ import annotations

from typing import ClassVar

from app.batch.spec import PREDICT_KIND, PredictJobCreate
from app.batch.submit import submit_predict
from app.contracts.results import PredictResult, StoredResult
from app.jobs.kinds import JobKind, SubmitContext
from app.tables import Job


class PredictKind(JobKind[PredictJobCreate]):
    """Every row of a stored dataset's CSV (or an uploaded one) through one version."""

    name: ClassVar[str] = PREDICT_KIND
    create_model = PredictJobCreate
    progress_unit: ClassVar[str] = "rows"
    handler_path: ClassVar[str] = "app.batch.job:run_batch_predict"
    result_model: ClassVar[type[StoredResult]] = PredictResult

    def submit(self, context: SubmitContext, spec: PredictJobCreate) -> Job:
        return submit_predict(context, spec)
