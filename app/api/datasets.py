"""/v1/datasets: upload a CSV, list and read datasets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile
from fastapi.responses import JSONResponse
from pydantic import Field

from app.api import idempotency
from app.api.deps import (
    ReadAccess,
    SessionDep,
    SettingsDep,
    StoreDep,
    WriteAccess,
    WriteLogsAccess,
    WritePrincipal,
)
from app.api.errors_schema import STORES_ARTIFACTS, V1_ERRORS
from app.api.params import IdempotencyKey, IdPath, Offset, PageLimit
from app.api.schemas import DatasetFromLogRead, DatasetRead, Page
from app.api.uploads import spooled_upload
from app.contracts.enums import Task
from app.core.names import COLUMN_NAME, DATASET_NAME, MODEL_NAME
from app.datasets import service
from app.jobs.files import delete_dataset as delete_dataset_files
from app.serving.log_dataset import dataset_from_log

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=V1_ERRORS)


@router.post(
    "",
    status_code=201,
    response_model=DatasetRead,
    summary="Upload a CSV dataset",
    responses=STORES_ARTIFACTS,
)
def upload_dataset(
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
    principal: WritePrincipal,
    file: Annotated[UploadFile, File(description="CSV with a header row.")],
    target: Annotated[str, Form(description="Column to predict."), COLUMN_NAME.published],
    name: Annotated[str | None, Form(), DATASET_NAME.published] = None,
    task: Annotated[Task | None, Form(description="Inferred from the target when absent.")] = None,
    input_shape: Annotated[
        str | None,
        Form(max_length=64, description="Per-row shape of image-like rows, e.g. '1,8,8'."),
    ] = None,
    columns: Annotated[
        str | None,
        Form(
            max_length=100_000,
            description=(
                'JSON object overriding column types: {"zip": "categorical", "name": "ignore"}; '
                "types: numeric, categorical, datetime, ignore. Others are inferred."
            ),
        ),
    ] = None,
    idempotency_key: IdempotencyKey = None,
) -> DatasetRead | JSONResponse:
    """Validate and store a CSV; 4xx with the reason if it cannot be learned from. With an
    ``Idempotency-Key``, a repeat of the same upload gets the first answer."""
    with spooled_upload(file, settings, ".csv") as path:
        keyed = None
        if idempotency_key is not None:
            fields = [
                target,
                name or "",
                task or "",
                input_shape or "",
                columns or "",
                file.filename or "",
            ]
            keyed = idempotency.KeyedRequest(
                api_key_id=principal.key_id,
                route="POST /v1/datasets",
                key=idempotency_key,
                body_hash=idempotency.fingerprint(*fields, files=(path,)),
            )
            earlier = idempotency.earlier_answer(session, keyed)
            if earlier is not None:
                return JSONResponse(earlier.body, status_code=earlier.status_code)
        dataset = service.create_dataset(
            session,
            store,
            upload=path,
            filename=file.filename or "upload.csv",
            target=target,
            name=name,
            task=task,
            input_shape=input_shape,
            columns=columns,
        )
    read = DatasetRead.model_validate(dataset)
    if keyed is None:
        return read
    answer = idempotency.Answer(201, read.model_dump(mode="json", by_alias=True))
    idempotency.remember(session, keyed, answer)
    return JSONResponse(answer.body, status_code=answer.status_code)


class FromLogRead(DatasetFromLogRead):
    """A dataset made from a request log, and how the labels matched it."""

    ambiguous: int = Field(
        description="Labelled rows whose id matched several logged requests (a client's "
        "x-request-id sent more than once): left out, or with newest=true joined to the "
        "newest of them (and counted in joined)."
    )
    duplicates: int = Field(
        description="Joined rows whose inputs, as the model reads them, repeat an earlier "
        "row's (the same request labelled under several ids): kept, and every split and "
        "cross-validation fold keeps identical rows together (the profile's duplicate_rows)."
    )


@router.post(
    "/from-log",
    status_code=201,
    response_model=FromLogRead,
    dependencies=[WriteLogsAccess],
    summary="A dataset from a model's request log and a labels CSV",
    responses=STORES_ARTIFACTS,
)
def dataset_from_request_log(
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
    model: Annotated[str, Form(description="The model whose log is read."), MODEL_NAME.published],
    labels: Annotated[
        UploadFile,
        File(
            description="UTF-8 CSV with a 'request_id' column (the x-request-id each "
            "logged request's answer carried: the client's own, or the gateway's when it "
            "sent none), optionally 'row' (0-based, for a request of several rows), and "
            "the label column named by 'target'; a blank label is skipped."
        ),
    ],
    target: Annotated[str, Form(), COLUMN_NAME.published] = "label",
    name: Annotated[str | None, Form(), DATASET_NAME.published] = None,
    newest: Annotated[
        bool,
        Form(
            description="A label whose id matches several logged requests takes the newest "
            "of them, instead of being left out (and counted as ambiguous)."
        ),
    ] = False,
) -> FromLogRead:
    """The logged inputs of the labelled requests, with their labels as the target, stored
    as a new dataset (profiled and split like an upload): what a retrain job learns from.
    The request log holds clients' inputs: the key needs the 'write+logs' scope (or
    admin)."""
    with spooled_upload(labels, settings, ".csv") as path:
        made = dataset_from_log(
            session, store, model=model, labels=path, target=target, name=name, newest=newest
        )
    return FromLogRead.model_validate(
        {
            **DatasetRead.model_validate(made.dataset).model_dump(),
            "joined": made.joined,
            "unmatched": made.unmatched,
            "ambiguous": made.ambiguous,
            "duplicates": made.duplicates,
        }
    )


@router.get("", response_model=Page[DatasetRead], dependencies=[ReadAccess])
def list_datasets(
    session: SessionDep, limit: PageLimit = 50, offset: Offset = 0
) -> Page[DatasetRead]:
    """Datasets, newest first."""
    rows, total = service.list_datasets(session, limit=limit, offset=offset)
    return Page(
        items=[DatasetRead.model_validate(row) for row in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/{dataset_id}", response_model=DatasetRead, dependencies=[ReadAccess])
def get_dataset(session: SessionDep, dataset_id: IdPath) -> DatasetRead:
    """One dataset."""
    return DatasetRead.model_validate(service.get_dataset(session, dataset_id))


@router.delete("/{dataset_id}", status_code=204, dependencies=[WriteAccess])
def delete_dataset(session: SessionDep, store: StoreDep, dataset_id: IdPath) -> Response:
    """Delete the dataset's files (its CSV, arrays and raw columns); 409 while a queued or
    running job uses it. Versions trained on it keep naming it in their lineage, and its
    profile (column statistics, no rows) stays for their drift reports; new jobs on it are
    refused, and reading it answers 404."""
    delete_dataset_files(session, store, dataset_id)
    return Response(status_code=204)
