"""The ``retrain`` job kind: checked and queued here (no torch: the gateway imports this);
run on a worker by ``app.retrain.job.run_retrain``. It stores the search it runs (the
version's own search with the new dataset, or a fine-tune from the version) under
``search_job``, where the search's worker code reads it, and how to deploy the result."""

from __future__ import annotations

from typing import ClassVar

from app.compression.kind import COMPRESS
from app.compression.spec import COMPRESS_KIND, CompressionSpec
from app.contracts.results import RetrainResult, StoredResult
from app.contracts.signature import Signature, VersionConfig
from app.core.db import Session
from app.core.errors import InvalidInput, NotFound
from app.datasets.repository import DatasetRepository
from app.jobs.kinds import JobKind, SubmitContext, enqueue
from app.jobs.repository import JobRepository
from app.registry.repository import VersionRepository
from app.registry.service import default_serving_version, get_model, get_version
from app.registry.traffic import alias_policy
from app.retrain.spec import RETRAIN_KIND, RetrainJobCreate
from app.search.kind import (
    SEARCH,
    SEARCH_SECTIONS,
    RunsSearch,
    first_metric,
    search_of,
    search_scratch_keys,
)
from app.search.spec import SearchJobCreate, SearchSpec
from app.tables import Dataset, Job, ModelVersion

MAX_LINEAGE = 16  # parents followed to find the search a version came from
FINE_TUNE_BUDGET_S = 120.0  # a fine-tune's budget when neither the request nor a search gives one


class StoredRetrain(RunsSearch):
    """A retrain job's spec as stored: the request, the version it retrains, and (as
    ``RunsSearch``) the search it runs."""

    kind: str
    retrain: RetrainJobCreate
    source_version: int


def _origin(
    session: Session, version: ModelVersion
) -> tuple[SearchJobCreate | None, CompressionSpec | None]:
    """The search that made ``version`` (through its compression parents), and the
    compression chain that made it (the nearest compress job's, else the search's own)."""
    jobs = JobRepository(session)
    chain: CompressionSpec | None = None
    current: ModelVersion | None = version
    for _ in range(MAX_LINEAGE):
        if current is None or current.job_id is None:
            return None, chain
        job = jobs.get(current.job_id)
        if job is None:
            return None, chain
        if job.kind == COMPRESS_KIND:
            chain = chain or COMPRESS.read_spec(job).compression
            parent = current.parent_version_id
            current = VersionRepository(session).by_id(parent) if parent is not None else None
            continue
        search = search_of(job)  # a search's, or a retrain's; a batch prediction runs none
        return search, chain or (search.compression if search is not None else None)
    return None, chain


def _source(session: Session, spec: RetrainJobCreate) -> ModelVersion:
    if spec.version is not None:
        try:
            return get_version(session, spec.model, spec.version)
        except NotFound as missing:
            raise InvalidInput(f"version: {missing.message}") from None
    model = get_model(session, spec.model)
    policy = alias_policy(session, model, spec.alias)
    if policy is not None:
        return get_version(session, spec.model, policy.version)
    version = default_serving_version(session, model)
    if version is None:
        raise InvalidInput(f"model: {spec.model!r} has no live version to retrain")
    return version


def _new_search(
    spec: RetrainJobCreate,
    source: ModelVersion,
    origin: SearchJobCreate | None,
    chain: CompressionSpec | None,
) -> SearchJobCreate:
    """The search the retrain runs: the origin's with the new dataset, or a fine-tune."""
    # The budget's fields the new search sets (a search told only timeout_s runs until it
    # is spent: which fields were set matters, not only their values).
    budget: dict[str, float | int] = {"timeout_s": spec.timeout_s} if spec.timeout_s else {}
    if spec.mode == "search":
        if origin is None:
            raise InvalidInput(
                f"mode: version {source.version} of {spec.model!r} was not made by a search "
                "(it was uploaded): there is no search to run again; use mode 'fine_tune'"
            )
        search = origin.search.model_copy(update=budget) if budget else origin.search
    else:
        if not budget and origin is not None:
            kept = {"max_trials", "timeout_s"} & origin.search.model_fields_set
            budget = {name: getattr(origin.search, name) for name in kept}
        seed = origin.search.seed if origin is not None else 0
        search = SearchSpec.model_validate(
            {
                "init_from": {"model": spec.model, "version": source.version},
                "seed": seed,
                **(budget or {"timeout_s": FINE_TUNE_BUDGET_S}),
            }
        )
    return SearchJobCreate(
        kind="search",
        dataset_id=spec.dataset_id,
        model_name=spec.model,
        search=search,
        compression=chain,
    )


def _check_dataset(spec: RetrainJobCreate, source: ModelVersion, dataset: Dataset) -> None:
    """The new dataset must give the version's inputs and (to share its traffic) classes."""
    if dataset.task != source.task:
        raise InvalidInput(
            f"dataset_id: dataset {dataset.id} is a {dataset.task} dataset; version "
            f"{source.version} of {spec.model!r} is a {source.task} model"
        )
    if dataset.encoding is not None:
        signature = Signature.of_columns(
            dataset.encoding,
            used={column.name for column in dataset.encoding.columns},
            output_name=source.signature.output.name,
            width=source.signature.width,
        )
        problem = source.signature.difference(signature)
    elif len(dataset.feature_names) != source.signature.n_features:
        problem = f"{len(dataset.feature_names)} features, not {source.signature.n_features}"
    else:
        problem = None
    if (
        problem is None
        and spec.deploy != "none"
        and (dataset.class_labels or None) != (source.class_labels or None)
    ):
        problem = f"classes {dataset.class_labels} differ from {source.class_labels}"
    if problem:
        raise InvalidInput(
            f"dataset_id: dataset {dataset.id} does not give what version {source.version} "
            f"of {spec.model!r} takes: {problem} (the new version must take the same requests "
            "to share its traffic)"
        )


def _check_fine_tune(source: ModelVersion, dataset: Dataset) -> None:
    """A fine-tune trains on from the version's network, reading rows as it does."""
    config = source.config or VersionConfig()
    if not config.has_network:
        why = config.untrainable or "it was uploaded as ONNX without a trainable network"
        raise InvalidInput(
            f"mode: fine_tune trains on from version {source.version}'s network, and it has "
            f"none ({why}); use mode 'search'"
        )
    if dataset.encoding is not None and config.encoding != dataset.encoding:
        raise InvalidInput(
            f"mode: fine_tune reads the rows as version {source.version} does, and dataset "
            f"{dataset.id}'s preprocessing was fitted anew at its upload; use mode 'search' "
            "(a new search on the new table)"
        )


class RetrainKind(JobKind[RetrainJobCreate, StoredRetrain]):
    """Learn a version again on newer data, compress it alike, deploy it beside it."""

    name: ClassVar[str] = RETRAIN_KIND
    create_model = RetrainJobCreate
    stored_model = StoredRetrain
    progress_unit: ClassVar[str] = "trials"
    result_model: ClassVar[type[StoredResult]] = RetrainResult
    handler_path: ClassVar[str] = "app.retrain.job:run_retrain"
    page_sections: ClassVar[tuple[str, ...]] = SEARCH_SECTIONS  # it runs a search

    def submit(self, context: SubmitContext, spec: RetrainJobCreate) -> Job:
        session = context.session
        source = _source(session, spec)
        dataset = DatasetRepository(session).for_job(spec.dataset_id)
        _check_dataset(spec, source, dataset)
        origin, chain = _origin(session, source)
        search = _new_search(spec, source, origin, chain)
        if spec.mode == "fine_tune":
            _check_fine_tune(source, dataset)
        checked, _, total = SEARCH.prepare(context, search)
        stored = StoredRetrain(
            kind=self.name, retrain=spec, source_version=source.version, search_job=checked
        )
        return enqueue(
            context,
            kind=self.name,
            spec=stored,
            dataset_id=dataset.id,
            model_name=spec.model,
            total=total,
        )

    def time_budget_s(self, spec: StoredRetrain) -> float | None:
        return SEARCH.time_budget_s(spec.search_job)

    def best_metric(self, session: Session, job: Job) -> str | None:
        return first_metric(session, job)

    def scratch_keys(self, session: Session, job: Job) -> list[str]:
        stored = self.spec_if_readable(job)
        return search_scratch_keys(session, job, stored.search_job if stored else None)


RETRAIN = RetrainKind()
