"""The ``retrain`` job kind: checked and queued here (no torch: the gateway imports this);
run on a worker by ``app.retrain.job.run_retrain``. It stores the search it runs (the
version's own search with the new dataset, or a fine-tune from the version) under
``search_job``, where the search's worker code reads it, and how to deploy the result."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel

from app.compression.spec import CompressionSpec, CompressJobCreate
from app.contracts.results import RetrainResult, StoredResult
from app.contracts.signature import Signature, VersionConfig
from app.core.db import Session
from app.core.errors import InvalidInput, NotFound
from app.datasets.repository import DatasetRepository
from app.jobs.kinds import JobKind, SubmitContext, enqueue
from app.jobs.repository import JobRepository
from app.registry.service import default_serving_version, get_model, get_version
from app.registry.traffic import alias_policy
from app.retrain.spec import RETRAIN_KIND, RetrainJobCreate
from app.search.kind import SearchKind, objectives_of
from app.search.spec import SEARCH_JOB_KEY, SearchJobCreate, SearchSpec, stored_search
from app.tables import Dataset, Job, ModelVersion

MAX_LINEAGE = 16  # parents followed to find the search a version came from
FINE_TUNE_BUDGET_S = 120.0  # a fine-tune's budget when neither the request nor a search gives one


class StoredRetrain(BaseModel):
    """A retrain job's spec as stored: the request, the version it retrains, the search."""

    kind: str
    retrain: RetrainJobCreate
    source_version: int
    search_job: dict[str, Any]


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
        if job.kind == "compress":
            chain = chain or CompressJobCreate.model_validate(job.spec).compression
            parent = current.parent_version_id
            current = session.get(ModelVersion, parent) if parent is not None else None
            continue
        if job.kind != "predict":
            search = stored_search(job.spec)
            return search, chain or search.compression
        return None, chain
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
    budget: dict[str, Any] = {"timeout_s": spec.timeout_s} if spec.timeout_s else {}
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


class RetrainKind(JobKind[RetrainJobCreate]):
    """Learn a version again on newer data, compress it alike, deploy it beside it."""

    name: ClassVar[str] = RETRAIN_KIND
    create_model = RetrainJobCreate
    progress_unit: ClassVar[str] = "trials"
    result_model: ClassVar[type[StoredResult]] = RetrainResult
    handler_path: ClassVar[str] = "app.retrain.job:run_retrain"

    def submit(self, context: SubmitContext, spec: RetrainJobCreate) -> Job:
        session = context.session
        source = _source(session, spec)
        dataset = DatasetRepository(session).for_job(spec.dataset_id)
        _check_dataset(spec, source, dataset)
        origin, chain = _origin(session, source)
        search = _new_search(spec, source, origin, chain)
        if spec.mode == "fine_tune":
            _check_fine_tune(source, dataset)
        checked, _, total = SearchKind().prepare(context, search)
        stored = StoredRetrain(
            kind=self.name,
            retrain=spec,
            source_version=source.version,
            search_job=checked.model_dump(mode="json"),
        )
        return enqueue(
            context,
            kind=self.name,
            spec=stored.model_dump(mode="json"),
            dataset_id=dataset.id,
            model_name=spec.model,
            total=total,
        )

    def time_budget_s(self, spec: Mapping[str, Any]) -> float | None:
        return SearchKind().time_budget_s(spec.get(SEARCH_JOB_KEY) or {})

    def best_metric(self, session: Session, job: Job) -> str | None:
        objectives = objectives_of(session, job)
        return objectives[0]["metric"] if objectives else None
