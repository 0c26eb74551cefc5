"""Explanations of a version's predictions: ``POST /v1/models/{name}/explain``, the same
as KServe's v1 verb ``POST /v1/models/{name}:explain``, and ``PUT .../explain/background``
(the rows an upload is explained against). Rows are read as predict reads them; the graph
runs through the serving core's loaded model (in this process, or in its sandbox for an
upload the core sandboxes), every perturbed row of a request in one batch (an upload's row
cap splits it). The engine is ``app.explain``; each version's explainer is cached here."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool

from app.api.deps import InferAccess, WriteAccess
from app.api.errors_schema import V1_ERRORS
from app.api.explain_schemas import BackgroundRead, ExplainResponse
from app.api.inference import meta_of
from app.api.params import IdPath, ModelName, VersionQuery
from app.api.schemas import PredictRequest
from app.api.state import GatewayState, gateway_of
from app.contracts.signature import Signature
from app.core.config import Settings
from app.core.db import session_scope
from app.core.errors import Conflict, InvalidInput, PayloadTooLarge
from app.explain.cache import ExplainerCache
from app.explain.data import ExplainData, ExplainRecord, stored_background
from app.explain.explainer import Explainer, Unexplainable
from app.explain.players import Feeds, Players
from app.explain.register import FILE_NAME, IMPORTANCE_ROWS, record_metrics, take
from app.registry import changes
from app.registry.repository import VersionRepository
from app.registry.service import get_version, uploaded_origin
from app.serving.core import INLINE_ELEMENTS
from app.serving.directory import Target, bucket_of
from app.serving.predict import parse_body, parse_rows
from app.serving.records import parse_records
from app.serving.runtime import LoadedModel, rows_in

router = APIRouter(prefix="/v1/models", tags=["explain"], responses=V1_ERRORS)
MIN_BACKGROUND_ROWS = 2
MAX_BACKGROUND_ROWS = 256
MAX_RUNS = 8  # runs of a model one explain request may make (an upload with a row cap)
_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": PredictRequest.model_json_schema()}},
    }
}


def explainers_of(app: Starlette) -> ExplainerCache:
    """The app's explainer cache, made on first use and dropped on every registry write."""
    cache = getattr(app.state, "explainers", None)
    if not isinstance(cache, ExplainerCache):
        directory = gateway_of(app).directory
        cache = ExplainerCache(directory.ttl_s, shared=directory.shared)
        app.state.explainers = cache
        changes.subscribe(cache.clear)
    return cache


def _feeds(payload: dict[str, Any], model: LoadedModel, max_rows: int) -> Feeds:
    """The model's feeds for the rows, read as predict reads them."""
    if model.columns is not None:
        return parse_records(payload, model.columns, max_rows)
    return model.feeds_of(
        parse_rows(
            payload,
            n_features=model.n_features,
            max_rows=model.max_rows(max_rows),
            why_max=model.rows_note(max_rows),
        )
    )


def _checked_rows(payload: dict[str, Any], limit: int) -> None:
    inputs = payload["inputs"]
    if isinstance(inputs, list) and len(inputs) > limit:
        raise PayloadTooLarge(
            f"inputs has {len(inputs)} rows; at most {limit} per explain request "
            "(KILN_EXPLAIN_MAX_ROWS)"
        )


async def run_model(model: LoadedModel, feeds: Feeds, max_rows: int) -> np.ndarray:
    """The model's output for ``feeds``, in as few runs as its row cap allows; off the
    event loop when large, in its sandbox for a sandboxed upload."""
    rows = rows_in(feeds)
    step = max(1, model.max_rows(max_rows))
    outputs = []
    for start in range(0, rows, step):
        part = (
            feeds
            if step >= rows
            else {name: values[start : start + step] for name, values in feeds.items()}
        )
        inline_rows = model.plan.inline_rows
        if model.sandbox is not None:
            outputs.append(await model.run_async(part))
        elif sum(values.size for values in part.values()) > INLINE_ELEMENTS or (
            inline_rows is not None and rows_in(part) > inline_rows
        ):  # as predict decides: a slow model never runs on the event loop
            outputs.append(await run_in_threadpool(model.run, part))
        else:
            outputs.append(model.run(part))
    return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)


def _read_explainer(state: GatewayState, target: Target) -> Explainer:
    """The version's explainer from the registry and its stored file (blocking)."""
    label = f"version {target.version} of {target.name!r}"
    with session_scope(state.settings.database_url) as session:
        version = VersionRepository(session).by_id(target.model.version_id)
        record = ExplainRecord.of(version.metrics if version else None)
        if version is None or record is None:
            raise Conflict(
                f"{label} has no background sample for explanations: send rows to PUT "
                f"/v1/models/{target.name}/versions/{target.version}/explain/background"
            )
        encoding = version.config.encoding if version.config is not None else None
        uploaded = uploaded_origin(session, version) is not None
    try:
        data = ExplainData.from_bytes(state.store.read_bytes(record.key, record.sha256))
        return Explainer.build(
            record,
            data,
            signature=version.signature,
            labels=target.model.labels if target.model.task == "classification" else None,
            encoding=encoding,
            uploaded=uploaded,
        )
    except FileNotFoundError:
        raise Conflict(f"the explanation file of {label} is missing") from None
    except Unexplainable as error:
        raise Conflict(f"{label} cannot be explained: {error}") from None


async def explainer_for(state: GatewayState, cache: ExplainerCache, target: Target) -> Explainer:
    """The version's explainer, ready (its background's outputs computed), cached."""
    version_id = target.model.version_id
    explainer = cache.get(version_id)
    if explainer is not None:
        return explainer
    generation = cache.generation
    explainer = await run_in_threadpool(_read_explainer, state, target)
    if not explainer.ready:
        output = await run_model(
            target.model, explainer.background_feeds(), state.settings.explain_max_perturbed_rows
        )
        explainer = explainer.with_background_output(output)
    cache.put(version_id, explainer, generation)
    return explainer


def _bounded(explainer: Explainer, rows: int, settings: Settings, model: LoadedModel) -> None:
    """413 before anything is built when explaining ``rows`` rows would run more rows, or
    more values (rows x columns), through the model than a request may; or, for an upload
    that runs a few rows at a time, more than ``MAX_RUNS`` runs (each bounded in time by
    the serving core, so a request's time is too)."""
    needed = explainer.rows_to_run(rows)
    per_row = explainer.rows_to_run(1)
    how = f"{per_row} per row: {explainer.samples} permutations x {len(explainer.players)} columns"
    limit = settings.explain_max_perturbed_rows
    if needed > limit:
        raise PayloadTooLarge(
            f"explaining {rows} row(s) runs {needed} rows through the model ({how}); at "
            f"most {limit} per request (KILN_EXPLAIN_MAX_PERTURBED_ROWS)"
        )
    values = needed * len(explainer.players)
    if values > settings.max_tensor_elements:
        raise PayloadTooLarge(
            f"explaining {rows} row(s) runs {needed} rows of {len(explainer.players)} values "
            f"through the model ({values} values; {how}); at most "
            f"{settings.max_tensor_elements} per request (KILN_MAX_TENSOR_ELEMENTS): send "
            "fewer rows, or for an upload a smaller background"
        )
    step = max(1, model.max_rows(limit))
    runs = -(-needed // step)
    if runs > MAX_RUNS:
        raise PayloadTooLarge(
            f"explaining {rows} row(s) runs {needed} rows through the model ({how}), and it "
            f"runs at most {step} rows at a time{model.rows_note(limit)}: {runs} runs, at "
            f"most {MAX_RUNS} per request; send fewer rows, or a smaller background"
        )


async def explain(request: Request, name: str, version: int | None) -> ExplainResponse | bytes:
    state = gateway_of(request.app)
    settings = state.settings
    payload = parse_body(await request.body())
    _checked_rows(payload, settings.explain_max_rows)
    directory = state.directory
    bucket = bucket_of(meta_of(request).route_key)
    target = directory.cached_target(name, version, bucket)
    if target is None:
        target = await run_in_threadpool(directory.target, name, version, bucket)
    feeds = _feeds(payload, target.model, settings.explain_max_rows)
    explainer = await explainer_for(state, explainers_of(request.app), target)
    rows = rows_in(feeds)
    _bounded(explainer, rows, settings, target.model)
    batch = explainer.feeds_to_run(feeds)
    output = await run_model(target.model, batch, settings.explain_max_perturbed_rows)
    attributed = explainer.attribute(feeds, output)
    body = {
        "model": target.name,
        "version": target.version,
        "method": explainer.method,
        "output": explainer.output,
        "samples": explainer.samples,
        "background_rows": len(explainer.background[0]),
        "explanations": explainer.answer_rows(attributed, output[:rows]),
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


@router.post(
    "/{name}/explain",
    response_model=ExplainResponse,
    dependencies=[InferAccess],
    openapi_extra=_BODY,
    summary="Explain rows",
)
async def explain_rows(request: Request, name: ModelName, version: VersionQuery = None) -> Response:
    """Per row: the prediction and, per output (each class of a classifier), the value,
    a base value and one attribution per input column (as you named it: one-hot, date
    parts and gap indicators folded back into their column) that add up to the value.
    Exact for LightGBM trees (TreeSHAP) and linear models (raw scores: ``output``
    says), sampled Shapley values against the version's background sample otherwise."""
    return Response(await explain(request, name, version), media_type="application/json")


@router.post(
    "/{name}:explain",
    response_model=ExplainResponse,
    dependencies=[InferAccess],
    openapi_extra=_BODY,
    summary="Explain rows (KServe v1 verb)",
)
async def explain_verb(request: Request, name: ModelName, version: VersionQuery = None) -> Response:
    """KServe's v1 ``:explain`` verb: the same answer as ``POST /v1/models/{name}/explain``,
    whose ``explanations`` list the rows."""
    return Response(await explain(request, name, version), media_type="application/json")


def _version_facts(
    state: GatewayState, name: str, number: int
) -> tuple[Signature, ExplainRecord | None, bool]:
    """A version's signature, explanation record and whether its graph is an upload's."""
    with session_scope(state.settings.database_url) as session:
        version = get_version(session, name, number)
        uploaded = uploaded_origin(session, version) is not None
        return version.signature, ExplainRecord.of(version.metrics), uploaded


def _record_background(
    state: GatewayState, name: str, number: int, metrics: dict[str, Any]
) -> None:
    """Point the version at its new file, then delete the file it replaced unless another
    kept version names it (a variant's parent's; a version it was inherited by)."""
    replaced: str | None = None
    with session_scope(state.settings.database_url) as session:
        # Locked first: concurrent PUTs each replace the file the one before them recorded
        # (read unlocked, two would replace the same one and leave the other's behind).
        version = VersionRepository(session).locked(get_version(session, name, number))
        previous = ExplainRecord.of(version.metrics)
        version.metrics = {**(version.metrics or {}), **metrics}
        session.flush()
        if previous is not None and not VersionRepository(session).others_sharing_explanation(
            version, previous.key
        ):
            replaced = previous.key
    if replaced is not None:  # after the commit: a failed one leaves the old file named
        state.store.delete(replaced)


@router.put(
    "/{name}/versions/{version}/explain/background",
    response_model=BackgroundRead,
    dependencies=[WriteAccess],
    openapi_extra=_BODY,
    summary="Set the rows a version is explained against",
)
async def put_background(request: Request, name: ModelName, version: IdPath) -> BackgroundRead:
    """Store 2 to 256 rows (as predict takes them: typical rows of the data the model
    serves) as the version's background sample: its explanations become sampled Shapley
    values against them, and its global importance is computed on them. For an uploaded
    model (again: the new rows replace the old), or any version without a background; a
    searched or compressed version keeps the background its job sampled (409)."""
    state = gateway_of(request.app)
    payload = parse_body(await request.body())
    target = await run_in_threadpool(state.directory.target, name, version, None)
    model = target.model
    feeds = _feeds(payload, model, MAX_BACKGROUND_ROWS)
    rows = rows_in(feeds)
    if rows < MIN_BACKGROUND_ROWS:
        raise InvalidInput(f"inputs has {rows} row; a background needs at least 2")
    signature, existing, uploaded = await run_in_threadpool(_version_facts, state, name, version)
    if existing is not None and not uploaded:
        raise Conflict(
            f"version {version} of {name!r} keeps the background its job sampled from its "
            "training rows, and its importance from held-out rows; a background is sent "
            "only for an uploaded model (or a version without one)"
        )
    if existing is not None and existing.method != "sampled_shapley":
        raise Conflict(
            f"version {version} of {name!r} is explained exactly ({existing.method}) "
            "against what it was trained on; it takes no background"
        )
    players = Players.of(signature)
    data = ExplainData(
        method="sampled_shapley",
        background=stored_background(players.names, players.columns(feeds)),
    )
    record = ExplainRecord(key="", sha256="", method="sampled_shapley", background_rows=rows)
    explainer = Explainer.build(
        record,
        data,
        signature=signature,
        labels=model.labels if model.task == "classification" else None,
        encoding=None,
        uploaded=uploaded,
    )
    limit = state.settings.explain_max_perturbed_rows
    _bounded(explainer, 1, state.settings, model)
    explainer = explainer.with_background_output(await run_model(model, feeds, limit))
    per_row = explainer.rows_to_run(1)
    values_per_row = per_row * len(explainer.players)
    step = max(1, model.max_rows(limit))
    count = min(
        rows,
        IMPORTANCE_ROWS,
        limit // per_row,
        state.settings.max_tensor_elements // values_per_row,
        MAX_RUNS * step // per_row,
    )
    chosen = take(feeds, np.arange(count))
    output = await run_model(model, explainer.feeds_to_run(chosen), limit)
    importance = explainer.importance(explainer.attribute(chosen, output))
    key = f"explain/{name}/v{version}/{uuid.uuid4().hex}-{FILE_NAME}"
    stored = await run_in_threadpool(state.store.put_bytes, key, data.to_bytes())
    metrics = record_metrics(stored.key, stored.sha256, data, importance)
    await run_in_threadpool(_record_background, state, name, version, metrics)
    return BackgroundRead(
        model=name,
        version=version,
        method="sampled_shapley",
        background_rows=rows,
        importance=importance,
    )
