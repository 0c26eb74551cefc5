"""Response and request bodies of the /v1 API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from app.contracts.enums import JobStatus, Scope, TrialState
from app.contracts.profile import DatasetProfile
from app.contracts.signature import Signature
from app.core.names import KEY_NAME, TAG_KEY, KeyNameStr, TagKeyStr
from app.evaluation.footprint import Footprint
from app.explain.data import Importance
from app.kinds import JOB_KINDS, JobResult
from app.registry.aliases import MAX_TAG_VALUE, MAX_TAGS

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a listing."""

    items: list[T]
    total: int
    limit: int
    offset: int


class DatasetRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    filename: str
    target: str
    task: str
    rows: int = Field(validation_alias="n_rows")
    feature_names: list[str]
    class_labels: list[Any] | None
    input_shape: list[int] | None
    sha256: str
    size_bytes: int
    profile: DatasetProfile | None = Field(
        description="Columns, the target's distribution "
        "and the rows left out (absent for datasets "
        "uploaded before profiles existed)."
    )
    created_at: datetime


class DatasetFromLogRead(DatasetRead):
    """A dataset made from a request log, and how the labels matched it."""

    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    joined: int = Field(description="Labelled rows found in the log (the dataset's rows).")
    unmatched: int = Field(description="Labelled rows whose request is not in the log.")


def _in_words(names: list[str]) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)


def _units() -> str:
    """What each kind's progress counts, from the kinds: ``trials (search, retrain), ...``."""
    kinds_of: dict[str, list[str]] = {}
    for name, kind in JOB_KINDS.items():
        kinds_of.setdefault(kind.progress_unit, []).append(name)
    return _in_words([f"{unit} ({', '.join(names)})" for unit, names in kinds_of.items()])


OLDER_NAME = "Deprecated: the same number under its first name, for older clients; read '{}'."


class JobProgress(BaseModel):
    done: int = Field(description="Work done, counted in 'unit'.")
    total: int = Field(description="Work planned, counted in 'unit' (0: not known yet).")
    best_value: float | None
    best_metric: str | None = Field(
        default=None,
        description="What best_value measures: a search's first objective (accuracy, rmse, ...).",
    )
    registered_value: float | None = Field(
        default=None,
        description="The score of the version a search registered (its first, for several) "
        "in best_metric, on the evidence best_value is on (the validation rows, or out of "
        "fold): higher than the best single trial's where an average of trials won. None: "
        "nothing registered yet, or not a search.",
    )
    registered_version: int | None = Field(
        default=None, description="The version registered_value is the score of."
    )
    unit: str = Field(default="trials", description=f"What the counts count: {_units()}.")
    time_budget_s: float | None = Field(
        default=None,
        description="A search's time budget "
        "(search.timeout_s); with total 0 the search "
        "runs until it is spent.",
    )
    elapsed_s: float | None = Field(
        default=None,
        description="Seconds since the job started (to its end, once it has finished).",
    )
    phase: str | None = Field(
        default=None,
        description="What a running job is doing now, in words (a search: 'trials', then "
        "'refit on non-test rows', 'refit on every row', 'export and checks', "
        "'compression'); None when it is not running or its kind does not say. A finished "
        "search's result lists every phase with its planned and measured seconds.",
    )
    trials_done: int = Field(deprecated="read 'done'", description=OLDER_NAME.format("done"))
    trials_total: int = Field(deprecated="read 'total'", description=OLDER_NAME.format("total"))


class JobRead(BaseModel):
    id: int
    kind: str = Field(description=f"What the job does: {_in_words(list(JOB_KINDS))}.")
    status: JobStatus
    dataset_id: int | None
    model_name: str | None
    spec: dict[str, Any]
    progress: JobProgress
    attempt: int
    max_attempts: int
    worker: str | None
    error: str | None
    result: JobResult | dict[str, Any] | None = Field(
        description="What the job made, once it succeeded, in its kind's shape (a result "
        "another release stored in another shape: as stored)."
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    files_deleted_at: datetime | None = Field(
        default=None,
        description="When its output and other files were deleted (DELETE "
        "/v1/jobs/{id}/files, or KILN_OUTPUT_RETENTION_S); None: kept.",
    )


class TrialRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    attempt: int
    state: TrialState
    params: dict[str, Any]
    value: float | None = Field(description="The first objective's value.")
    values: list[float] | None = Field(description="Every objective's value, in order.")
    metrics: dict[str, Any] | None = Field(description="What was measured on validation.")
    intermediate: list[float] = Field(description="Validation metric after each epoch.")
    retry_of: int | None = Field(description="The lost trial this one runs again.")
    error: str | None
    worker: str | None
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None


class ServingOptions(BaseModel):
    """Dynamic batching (concurrent requests merged into one onnxruntime call), and the
    model's own request-log share and drift threshold. Numbers are strict: a boolean, a
    string or a non-finite number is a 422."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int | None = Field(
        default=None,
        ge=2,
        le=4096,
        strict=True,
        description="Rows per merged batch; null turns batching off.",
    )
    max_queue_delay_ms: float = Field(
        default=2.0,
        ge=0,
        le=1000,
        strict=True,
        allow_inf_nan=False,
        description="Longest a request waits for others to join its batch.",
    )
    log_sample: float | None = Field(
        default=None,
        ge=0,
        le=1,
        strict=True,
        allow_inf_nan=False,
        description="Share of this model's requests written to its request log (null: "
        "KILN_LOG_SAMPLE).",
    )
    drift_threshold: float | None = Field(
        default=None,
        gt=0,
        le=100,
        strict=True,
        allow_inf_nan=False,
        description="PSI past which a column of this model has drifted (null: "
        "KILN_DRIFT_THRESHOLD).",
    )


class ModelRead(BaseModel):
    name: str
    task: str
    latest_version: int
    serving_version: int | None = Field(
        default=None,
        description="The version a predict "
        "that names none uses: the production alias, else "
        "the newest live version a search or an upload "
        "registered (compression variants serve only when "
        "asked for or promoted). None: no live version.",
    )
    aliases: dict[str, int]
    tags: dict[str, str]
    serving: ServingOptions | None = None
    created_at: datetime
    updated_at: datetime


class VersionRead(BaseModel):
    model: str
    version: int
    status: str
    source: str
    task: str
    sha256: str
    size_bytes: int
    n_params: int | None
    latency_p50_ms: float | None
    metrics: dict[str, Any]
    footprint: Footprint | None = Field(
        default=None,
        description="Memory one run takes and energy per 1,000 rows, measured when it was "
        "registered (also in metrics); None: registered before they were measured.",
    )
    signature: Signature
    class_labels: list[Any] | None
    config: dict[str, Any] | None
    lineage: dict[str, Any]
    tags: dict[str, str]
    created_at: datetime
    artifact_deleted_at: datetime | None = Field(
        default=None,
        description="When its ONNX file was deleted (an archived version's, by DELETE "
        ".../artifact); None: kept.",
    )
    runs_in: Literal["gateway", "sandbox"] = Field(
        default="gateway",
        description="Where its graph runs: 'gateway' (made by ModelKiln, or an upload "
        "classified bounded: every op of known cost, every shape static but the batch) or "
        "'sandbox' (any other upload: a separate process with an OS memory limit, killed "
        "past KILN_UPLOAD_RUN_TIMEOUT_S).",
    )
    runs_in_reason: str = Field(default="", description="Why it runs there.")
    importance: Importance | None = Field(
        default=None,
        description="Global importance: each input column's mean absolute attribution on "
        "held-out rows (as POST /v1/models/{name}/explain gives them), largest first; None: "
        "not computed (an upload without a background, a variant, an older version).",
    )


def _keys_by_rule(schema: dict[str, Any]) -> None:
    """pydantic publishes a dict's key pattern as ``patternProperties``, which leaves other
    keys allowed; a tag's key must match it: ``propertyNames``."""
    for pattern, values in schema.pop("patternProperties", {}).items():
        schema["propertyNames"] = {**schema.get("propertyNames", {}), "pattern": pattern}
        schema["additionalProperties"] = values


class TagsPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: dict[TagKeyStr, Annotated[str, Field(max_length=MAX_TAG_VALUE)] | None] = Field(
        description=f"Keys to set ({TAG_KEY.rule}); a null value deletes one. A model or "
        f"version has at most {MAX_TAGS} tags.",
        json_schema_extra=_keys_by_rule,
    )


Record = dict[str, float | str | bool | None]


class PredictRequest(BaseModel):
    """The rows to predict, in one of two forms. **Records** (every model trained on a
    table, and any model whose signature lists one input per column): one object per row,
    keyed by column name; a number for a numeric column, text for a categorical or date
    column (ISO 8601), ``null`` or an absent key for a gap; columns the model ignores may
    be sent and are not read. **Rows of numbers** (a model of one float tensor, such as an
    uploaded ONNX file, or a table whose columns are all numeric): one list per row, in the
    signature's order. ``GET /v1/models/{name}/versions/{v}/example`` gives a ready body
    for a version, built from its signature."""

    inputs: list[Record] | list[list[float]] = Field(
        description='One record per row ({"column": value | null}), or one list of '
        "numbers per row.",
        examples=[
            [
                {
                    "island": "Biscoe",
                    "bill_length_mm": 48.1,
                    "flipper_mm": 207,
                    "sex": None,
                    "observed": "2023-06-01",
                }
            ],
            [[5.1, 3.5, 1.4, 0.2]],
        ],
    )


class PredictResponse(BaseModel):
    model: str
    version: int
    predictions: list[Any]
    probabilities: list[list[float]] | None = Field(
        default=None,
        description="A classifier's: one row per input row, one column per class (in the "
        "order of 'classes'). Absent for a regressor.",
    )
    classes: list[str | int | float] | None = Field(
        default=None,
        description="A classifier's: the class of each column of 'probabilities', as "
        "'predictions' names them (an upload sent without labels: 0, 1, ...). Absent for "
        "a regressor.",
    )


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: KeyNameStr = Field(description=f"A label for the key: {KEY_NAME.rule}.")
    scope: Scope


class KeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    scope: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyRead):
    key: str = Field(description="The secret. Shown only in this response.")
