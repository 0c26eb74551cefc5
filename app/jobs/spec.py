"""What a client may ask for in ``POST /v1/jobs``; validated before anything is stored
(rules that need the dataset or the registry are checked by the job service)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.compression.spec import CompressionSpec
from app.contracts.enums import MAX_ID
from app.names import ModelNameStr

MAX_KEY_COLUMNS = 32

Algorithm = Literal["random", "grid", "tpe", "gp", "cmaes", "evolution", "hillclimb", "anneal",
                    "nsga2"]
Pruner = Literal["none", "median", "successive_halving", "hyperband"]
SearchMetric = Literal["accuracy", "f1_macro", "roc_auc", "log_loss", "mae", "rmse", "r2",
                       "latency_ms", "size_bytes", "params"]


class ObjectiveSpec(BaseModel):
    """One thing to optimise; ``direction`` defaults to the metric's better side."""

    model_config = ConfigDict(extra="forbid")

    metric: SearchMetric
    direction: Literal["maximize", "minimize"] | None = None


class ConstraintSpec(BaseModel):
    """Hard limits; a candidate whose architecture alone breaks one is never trained."""

    model_config = ConfigDict(extra="forbid")

    max_latency_ms: float | None = Field(default=None, gt=0, description="p50 at batch 1.")
    max_size_bytes: int | None = Field(default=None, gt=0, description="ONNX file size.")
    max_params: int | None = Field(default=None, gt=0, description="Trainable parameters.")


class VersionRef(BaseModel):
    """A registered version by model name and number."""

    model_config = ConfigDict(extra="forbid")

    model: ModelNameStr
    version: int = Field(ge=1, le=MAX_ID)


class InitFrom(VersionRef):
    """A registered version whose torch weights every trial starts from (fine-tuning)."""


class SearchSpec(BaseModel):
    """How to search: algorithm, early stopping, space, objectives, budget, parallelism."""

    model_config = ConfigDict(extra="forbid")

    algorithm: Algorithm = Field(default="random", description="Search algorithm.")
    pruner: Pruner = Field(default="none", description="Early stopping of lagging trials.")
    max_trials: int = Field(default=8, ge=1, le=1000, description="Trials to run.")
    timeout_s: float | None = Field(default=None, gt=0, le=30 * 86400,
                                    description="Wall time for trials from the job's start: "
                                    "no trial starts after it and a running one is stopped "
                                    "(even inside an epoch); the winner is then registered. "
                                    "At most the server's KILN_MAX_JOB_S (default: 90% of "
                                    "it).")
    trial_timeout_s: float | None = Field(default=None, gt=0, le=30 * 86400,
                                          description="Wall time of one trial; a trial still "
                                          "training then is stopped and failed. At most the "
                                          "server's KILN_MAX_TRIAL_S (its default).")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Seed for sampling, "
                      "splits and training; a seeded search with parallelism 1 is "
                      "reproducible.")
    max_epochs: int = Field(default=60, ge=1, le=1000,
                            description="Upper bound of the epochs each trial may train.")
    parallelism: int = Field(default=1, ge=1, le=32, description="Trials run at once, each "
                             "on its own worker process (on any machine).")
    data_parallel: int = Field(default=1, ge=1, le=16, description="Worker processes that "
                               "train each trial together (DistributedDataParallel: each "
                               "computes a share of every batch), for datasets whose epochs "
                               "one process trains too slowly. Trials scored by holdout only "
                               "(cross-validation trains its folds in one process). A trial "
                               "whose helpers do not all come within KILN_DATA_PARALLEL_JOIN_S "
                               "trains alone; its metrics say how many processes trained it.")
    validation: Literal["auto", "holdout", "cv"] = Field(
        default="auto", description="How trials are scored: 'cv' scores each on 5-fold "
        "cross-validation over the non-test rows and refits the winner on all of them; "
        "'holdout' on the validation split; 'auto': cv up to 2,000 non-test rows.")
    max_ensemble: int = Field(
        default=1, ge=1, le=10, description="Most networks the registered model may average: "
        "the best k trials (k up to this) compete with the single best on the same held-out "
        "predictions, and the better is registered. 1 (the default, except for a search "
        "given only timeout_s: 5) registers one network. Considered for one quality "
        "objective, no constraints, and no compression chain that needs torch weights.")
    max_retries: int = Field(default=1, ge=0, le=10, description="Times a trial whose worker "
                             "died (no heartbeat) is run again.")
    objectives: list[ObjectiveSpec] | None = Field(
        default=None, min_length=1, max_length=4, description="Default: accuracy "
        "(classification) or rmse (regression). Several give a Pareto front.")
    constraints: ConstraintSpec = Field(default_factory=ConstraintSpec)
    space: dict[str, Any] = Field(default_factory=dict, description="Overrides of the default "
                                  "space: a value, {\"choices\": [...]} or {\"low\", \"high\", "
                                  "\"log\"} per dimension.")
    warm_start_job: int | None = Field(default=None, ge=1, le=MAX_ID, description="Try the best "
                                       "configurations of this earlier job first.")
    init_from: InitFrom | None = Field(default=None, description="Fine-tune from this "
                                       "version's weights (its architecture is kept).")


class SearchJobCreate(BaseModel):
    """A search job: find, train and register the best network for a dataset (and, with
    ``compression``, compress the winner)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["search"] = Field(description="What the job does.")
    dataset_id: int = Field(ge=1, le=MAX_ID, description="Dataset to learn from.")
    model_name: ModelNameStr = Field(description="Registered model that receives the new "
                                     "version(s).")
    search: SearchSpec = Field(default_factory=SearchSpec)
    compression: CompressionSpec | None = Field(
        default=None, description="Compress the winner (with several objectives: the "
        "first version of the Pareto front) into variants registered next to it.")


class CompressJobCreate(BaseModel):
    """A compression job: make smaller or faster variants of any registered version,
    measured on a dataset's held-out split, and recommend one."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["compress"] = Field(description="What the job does.")
    source: VersionRef = Field(description="The version to compress; variants become new "
                               "versions of the same model.")
    dataset_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="Rows to fine-tune, "
                                   "calibrate and measure on. Default: the dataset the source "
                                   "was trained on.")
    compression: CompressionSpec
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Seed for the data split "
                      "(a source searched on this dataset keeps its own split, so its test "
                      "rows stay unseen) and for training.")


class PredictJobCreate(BaseModel):
    """A batch prediction job: every row of a stored dataset's CSV (or of a CSV uploaded to
    ``POST /v1/jobs/predict``) through one version, in chunks of bounded memory, written
    to one output file next to the rows' key columns."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["predict"] = Field(description="What the job does.")
    model: ModelNameStr = Field(description="Registered model to predict "
                       "with.")
    version: int | None = Field(default=None, ge=1, le=MAX_ID, description="Default: the "
                                "version /v1 predict serves now (production alias, else the "
                                "newest a search or an upload registered), fixed when the "
                                "job is submitted.")
    dataset_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="Dataset "
                                   "whose uploaded CSV holds the rows (every row is "
                                   "predicted; its target column is ignored unless named in "
                                   "key_columns). Required here; POST /v1/jobs/predict takes "
                                   "an uploaded CSV instead.")
    key_columns: list[str] = Field(default_factory=list, max_length=MAX_KEY_COLUMNS,
                                   description="Input columns copied to the output next to "
                                   "each row's predictions (an id, say). The output always "
                                   "starts with 'row', the row's 1-based number in the input.")
    output_format: Literal["csv", "parquet"] = Field(default="csv", description="Format of "
                                                      "GET /v1/jobs/{id}/output.")
    chunk_rows: int = Field(default=16_384, ge=1_000, le=1_000_000, description="Rows read, "
                            "predicted and stored at a time: memory is bounded by one chunk, "
                            "and a job whose worker died resumes after its last stored chunk.")


JOB_KINDS = ("search", "compress", "predict")
PROGRESS_UNITS = {"search": "trials", "compress": "steps", "predict": "rows"}
