"""The ``compress`` job kind: checked and queued here (no torch); run on a worker by
``app.compression.job.run_compress``; its report route is ``app.compression.routes``."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from app.compression.spec import (
    COMPRESS_KIND,
    CompressionSpec,
    CompressJobCreate,
    chain_problem,
    count_steps,
)
from app.contracts.enums import JobStatus
from app.contracts.results import (
    CompressionFields,
    CompressionTable,
    CompressResult,
    StoredResult,
    result_as,
)
from app.contracts.signature import VersionConfig
from app.core.config import Settings
from app.core.db import Session
from app.core.errors import Conflict, InvalidInput, NotFound
from app.datasets.repository import DatasetRepository
from app.jobs.kinds import JobKind, SubmitContext, enqueue
from app.jobs.repository import JobRepository
from app.registry.fits import check_fits, outputs_of
from app.registry.service import get_version, sandbox_reason
from app.tables import Dataset, Job
from app.training.families.registry import holds_graph_weights
from app.training.size import check_student

if TYPE_CHECKING:
    from fastapi import APIRouter

    from app.jobs.http import JobHttp


class CompressionReport(CompressionTable):
    """The comparison table of a compression (or search + compression) job."""

    job_id: int


class CompressKind(JobKind[CompressJobCreate, CompressJobCreate]):
    """Smaller or faster variants of a registered version, measured and recommended."""

    name: ClassVar[str] = COMPRESS_KIND
    create_model = CompressJobCreate
    stored_model = CompressJobCreate
    progress_unit: ClassVar[str] = "steps"
    handler_path: ClassVar[str] = "app.compression.job:run_compress"
    result_model: ClassVar[type[StoredResult]] = CompressResult
    page_sections: ClassVar[tuple[str, ...]] = ("compression",)

    def add_routes(self, router: APIRouter, http: JobHttp) -> None:
        from app.compression.routes import compression_routes  # the web framework: gateway only

        compression_routes(router, http)

    def submit(self, context: SubmitContext, spec: CompressJobCreate) -> Job:
        """The source must exist, fit the dataset, and suit the chains."""
        session = context.session
        try:
            source = get_version(session, spec.source.model, spec.source.version)
        except NotFound as missing:
            raise InvalidInput(f"source: {missing.message}") from None
        sandboxed = sandbox_reason(session, source)
        if sandboxed is not None:
            raise InvalidInput(
                f"source: version {source.version} of {spec.source.model!r} is an uploaded graph "
                f"that runs only in a sandbox ({sandboxed}); compression runs the graph in a "
                "worker process, which only bounded graphs may"
            )
        dataset_id = spec.dataset_id or source.dataset_id
        if dataset_id is None:
            raise InvalidInput(
                f"dataset_id: version {source.version} of {spec.source.model!r} "
                "has no dataset of its own (it was uploaded); give dataset_id"
            )
        dataset = DatasetRepository(session).for_job(dataset_id)
        check_fits(source, dataset, field="source")
        stored = source.config or VersionConfig()
        problem = chain_problem(
            spec.compression.methods,
            has_network=stored.has_network,
            convolutional=stored.convolutional,
            parent=f"version {source.version} of {spec.source.model!r}",
            untrainable=stored.untrainable,
            graph_weights=holds_graph_weights(stored.family),
        )
        if problem:
            raise InvalidInput(f"compression.{problem}")
        if stored.fitted_on == "all_rows" and dataset_id == source.dataset_id:
            raise Conflict(
                f"source: version {source.version} of {spec.source.model!r} was fitted on every "
                f"labelled row of dataset {dataset_id} (its search's refit 'full'), so no row "
                "of it is left unseen to measure variants on; give dataset_id of labelled "
                "rows it never saw, or compress a version a search with refit "
                "'selection_only' (or its own compression) registered"
            )
        check_students(context.settings, spec.compression, dataset)
        return enqueue(
            context,
            kind=self.name,
            spec=spec,
            dataset_id=dataset.id,
            model_name=spec.source.model,
            total=count_steps(spec.compression),
        )


COMPRESS = CompressKind()


def check_students(settings: Settings, compression: CompressionSpec, dataset: Dataset) -> None:
    """Distillation students given by size must fit the server's ceilings."""
    for position, chain in enumerate(compression.methods):
        for index, step in enumerate(chain):
            hidden = getattr(step, "student_hidden", None)
            if hidden:
                check_student(
                    hidden,
                    n_inputs=len(dataset.feature_names),
                    n_outputs=outputs_of(dataset),
                    settings=settings,
                    path=f"compression.methods[{position}][{index}].student_hidden",
                )


def compression_report(session: Session, job_id: int) -> CompressionReport:
    """The comparison table a finished compression (by any kind of job: a compress job, a
    search or a retrain that compressed its winner) stored in its job's result."""
    job = JobRepository(session).get_or_raise(job_id)
    if job.status != JobStatus.SUCCEEDED:
        raise Conflict(f"job {job_id} is {job.status}; its report exists when it succeeds")
    fields = result_as(CompressionFields, job.result)
    if fields is None or fields.compression is None:
        raise Conflict(
            f"job {job_id} did not compress anything; submit a compress job or a "
            "search with 'compression'"
        )
    return CompressionReport(job_id=job_id, **fields.compression.model_dump())
