"""What a client may ask of compression: the chains (``compression`` in a search or compress
job) and the compress job itself. Pure pydantic, so the gateway validates chains without
importing torch or the methods themselves."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from app.contracts.enums import MAX_ID
from app.jobs.spec import VersionRef

# Methods that change torch weights (and need them); methods that rewrite the ONNX graph;
# methods that need torch weights and leave only a coded graph (its weights are quantized).
NETWORK_METHODS = frozenset({"prune_structured", "prune_unstructured", "select_features"})
GRAPH_METHODS = frozenset({"quantize_dynamic", "quantize_static", "fp16", "int4"})
CODING_METHODS = frozenset({"share_weights", "binarize", "qat"})
MAX_CHAIN = 6
INT4_BLOCK_SIZES = (16, 32, 64, 128, 256)  # MatMulNBits' blocks: powers of two from 16
ReduceRange = Literal["auto", "on", "off"]


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _FineTuned(_Step):
    fine_tune_epochs: int = Field(
        strict=True, default=20, ge=0, le=500, description="Epochs of training after the method."
    )
    learning_rate: float = Field(strict=True, allow_inf_nan=False, default=1e-3, gt=0, le=1)


class PruneStructured(_FineTuned):
    """Remove whole hidden units and conv channels; the network gets physically smaller."""

    method: Literal["prune_structured"]
    ratio: float = Field(
        strict=True,
        allow_inf_nan=False,
        default=0.5,
        gt=0,
        lt=1,
        description="Share of the units (and channels) of every hidden layer removed.",
    )
    importance: Literal["l1", "l2", "taylor"] = Field(
        default="l1",
        description="Unit importance: the L1 or L2 norm of its weights, or "
        "first-order Taylor |weight x gradient| on training rows.",
    )


class PruneUnstructured(_FineTuned):
    """Zero the smallest weights across all layers (global magnitude)."""

    method: Literal["prune_unstructured"]
    sparsity: float = Field(
        strict=True,
        allow_inf_nan=False,
        default=0.8,
        gt=0,
        lt=1,
        description="Share of the weights set to zero.",
    )
    rounds: int = Field(
        strict=True,
        default=3,
        ge=1,
        le=10,
        description="Sparsity is reached in this many prune + fine-tune rounds.",
    )


class Distill(_Step):
    """Train a smaller student on the teacher's softened outputs and the true labels."""

    method: Literal["distill"]
    temperature: float = Field(strict=True, allow_inf_nan=False, default=4.0, gt=0, le=50)
    alpha: float = Field(
        strict=True,
        allow_inf_nan=False,
        default=0.7,
        ge=0,
        le=1,
        description="Weight of the teacher's soft targets; 1 - alpha goes to the true labels.",
    )
    width_factor: float = Field(
        strict=True,
        allow_inf_nan=False,
        default=0.5,
        gt=0,
        le=1,
        description="Student widths as a share of the teacher's (when the teacher's is known).",
    )
    depth: int | None = Field(
        strict=True,
        default=None,
        ge=1,
        le=8,
        description="Hidden layers of an MLP student (default: the teacher's).",
    )
    student_hidden: list[Annotated[int, Field(ge=1, le=4096, strict=True)]] | None = Field(
        default=None,
        min_length=1,
        max_length=8,
        description="Explicit MLP student widths. "
        "When neither this nor the teacher's architecture is known, a few students are "
        "tried and the smallest within the accuracy budget is kept.",
    )
    epochs: int = Field(strict=True, default=60, ge=1, le=1000)
    learning_rate: float = Field(strict=True, allow_inf_nan=False, default=1e-3, gt=0, le=1)


class QuantizeDynamic(_Step):
    """onnxruntime dynamic int8: int8 weights, activations quantized at run time."""

    method: Literal["quantize_dynamic"]
    per_channel: bool = False
    reduce_range: ReduceRange = Field(
        default="auto", description="7-bit weights; 'auto' turns it on where the CPU lacks VNNI."
    )


class QuantizeStatic(_Step):
    """onnxruntime static int8 (QDQ), calibrated on training rows."""

    method: Literal["quantize_static"]
    calibration_rows: int = Field(strict=True, default=512, ge=16, le=100_000)
    per_channel: bool = True
    calibrate_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    reduce_range: ReduceRange = "auto"


class FP16(_Step):
    """Weights stored in half precision (half the bytes)."""

    method: Literal["fp16"]


class SelectFeatures(_FineTuned):
    """Keep the input columns that matter; the column selection lives inside the graph."""

    method: Literal["select_features"]
    by: Literal["l1", "permutation", "variance"] = Field(
        default="l1",
        description="First-layer L1 weight, permutation importance on the "
        "validation split, or variance on the training split.",
    )
    keep: float = Field(
        strict=True,
        allow_inf_nan=False,
        default=0.5,
        gt=0,
        le=1,
        description="Share of the columns kept.",
    )


class ShareWeights(_FineTuned):
    """Weight sharing: each layer's weights clustered (k-means) into 2^bits values, the
    centroids fine-tuned; the file stores index bits and a codebook (sparse for a pruned
    layer). After pruning, this is Deep Compression's pipeline."""

    method: Literal["share_weights"]
    bits: int = Field(
        strict=True,
        default=4,
        ge=2,
        le=8,
        description="Bits per weight index: 2^bits shared values per layer.",
    )
    fine_tune_epochs: int = Field(
        strict=True, default=10, ge=0, le=500, description="Epochs of centroid fine-tuning."
    )


class Binarize(_FineTuned):
    """1-bit weights: sign times a per-channel scale, trained from the parent's weights with
    a straight-through estimator; the file stores the packed bits."""

    method: Literal["binarize"]
    fine_tune_epochs: int = Field(
        strict=True, default=30, ge=1, le=500, description="Epochs of training with binary weights."
    )


class QuantizationAware(_FineTuned):
    """Quantization-aware training: fine-tuned with int8 fake-quantized weights (per output
    channel, symmetric) and learned activation clipping (PACT), then served as an int8 QDQ
    graph whose activation ranges are the learned clips."""

    method: Literal["qat"]
    fine_tune_epochs: int = Field(
        strict=True,
        default=10,
        ge=1,
        le=500,
        description="Epochs of training with fake-quantized weights and learned clipping.",
    )
    learning_rate: float = Field(strict=True, allow_inf_nan=False, default=5e-4, gt=0, le=1)
    calibration_rows: int = Field(
        strict=True,
        default=512,
        ge=16,
        le=100_000,
        description="Training rows that set the clipping's start and the input's int8 range.",
    )
    reduce_range: ReduceRange = Field(
        default="auto", description="7-bit weights; 'auto' turns it on where the CPU lacks VNNI."
    )


class Int4(_Step):
    """Weight-only 4-bit dense layers: onnxruntime's MatMulNBits, weights in blocks that
    share a scale (and zero point); the rest of the graph stays fp32."""

    method: Literal["int4"]
    block_size: int | None = Field(
        strict=True,
        default=None,
        ge=16,
        le=256,
        json_schema_extra={"enum": [*INT4_BLOCK_SIZES, None]},
        description="Weights per block (along a unit's inputs). Default: of 128, 64, 32 "
        "and 16, the one giving the smallest file whose validation score stays within "
        "max_accuracy_drop of the parent's (else the best-scoring).",
    )
    symmetric: bool = Field(
        default=False,
        description="Signed 4-bit values around zero (no zero point per block).",
    )
    compute: Literal["int8", "fp32"] = Field(
        default="int8",
        description="Activations quantized to int8 per block at run time (onnxruntime's "
        "fastest CPU path), or multiplied in fp32 by the dequantized weights.",
    )

    @field_validator("block_size")
    @classmethod
    def _power_of_two(cls, value: int | None) -> int | None:
        if value is not None and value not in INT4_BLOCK_SIZES:
            raise ValueError("must be a power of two: 16, 32, 64, 128 or 256")
        return value


def _named(value: Any) -> Any:
    return {"method": value} if isinstance(value, str) else value


MethodStep = Annotated[
    PruneStructured
    | PruneUnstructured
    | Distill
    | QuantizeDynamic
    | QuantizeStatic
    | FP16
    | SelectFeatures
    | ShareWeights
    | Binarize
    | QuantizationAware
    | Int4,
    Field(discriminator="method"),
    BeforeValidator(_named),
]
# The method names, read off the steps above (the one place they are written).
METHOD_NAMES: tuple[str, ...] = tuple(
    get_args(step.model_fields["method"].annotation)[0]
    for step in get_args(get_args(MethodStep)[0])
)
Chain = list[MethodStep]


def _as_chain(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


class CompressionSpec(BaseModel):
    """Which variants to make from the parent, and how to choose among them."""

    model_config = ConfigDict(extra="forbid")

    methods: list[Annotated[Chain, BeforeValidator(_as_chain)]] = Field(
        min_length=1,
        max_length=12,
        description="Variants to make from the parent. Each "
        "entry is a method (a name, or an object with its settings) or a chain: a list of "
        "methods applied in order, where every step becomes a version of its own.",
    )
    max_accuracy_drop: float = Field(
        strict=True,
        allow_inf_nan=False,
        default=0.01,
        ge=0,
        le=1,
        description="Classification: accuracy points (0.01 = 1 "
        "point) a recommended variant may lose on the held-out split. Regression: the "
        "relative RMSE increase allowed (0.01 = 1% worse).",
    )
    prefer: Literal["size", "latency"] = Field(
        default="size",
        description="Recommend the smallest (file bytes) or the fastest "
        "(p50 at batch 1) variant within the budget.",
    )

    @model_validator(mode="after")
    def _chains_make_sense(self) -> CompressionSpec:
        problem = chain_problem(self.methods, has_network=True, convolutional=False)
        if problem:
            raise ValueError(problem)
        return self


def chain_problem(
    chains: list[list[Any]],
    *,
    has_network: bool,
    convolutional: bool,
    parent: str = "the parent",
    untrainable: str | None = None,
    graph_weights: bool = True,
) -> str | None:
    """Why a chain cannot run (a method that needs torch weights after they are gone,
    quantizing twice, a column selection on images, a graph rewrite of trees), or None.
    ``has_network``: whether the parent has torch weights; ``graph_weights``: whether
    its graph holds weight tensors (a tree ensemble's are node attributes)."""
    problems = chain_problems(
        chains,
        has_network=has_network,
        convolutional=convolutional,
        parent=parent,
        untrainable=untrainable,
        graph_weights=graph_weights,
    )
    return next(iter(problems.values()), None)


def chain_problems(
    chains: list[list[Any]],
    *,
    has_network: bool,
    convolutional: bool,
    parent: str = "the parent",
    untrainable: str | None = None,
    graph_weights: bool = True,
) -> dict[int, str]:
    """Each chain that cannot run (by position), with why (see ``chain_problem``)."""
    problems: dict[int, str] = {}
    for position, chain in enumerate(chains):
        if len(chain) > MAX_CHAIN:
            problems[position] = f"methods[{position}]: a chain has at most {MAX_CHAIN} steps"
            continue
        weights, quantized, images = has_network, False, convolutional
        tensors = graph_weights
        for index, step in enumerate(chain):
            where = f"methods[{position}][{index}] ({step.method})"
            problem = None
            if step.method in NETWORK_METHODS | CODING_METHODS and not weights:
                reason = untrainable or "it was uploaded as ONNX, or averages several networks"
                why = (
                    "it follows a graph rewrite"
                    if quantized
                    else f"{parent} has no torch weights ({reason})"
                )
                problem = f"{where} needs torch weights, but {why}; put distill before it"
            elif step.method in GRAPH_METHODS and not tensors:
                problem = (
                    f"{where} rewrites weight tensors, but {parent} is a tree ensemble (its "
                    "splits and leaves are node attributes, not tensors: nothing to "
                    "quantize); put distill before it"
                )
            elif step.method in GRAPH_METHODS | CODING_METHODS and quantized:
                problem = f"{where}: the model is already quantized earlier in this chain"
            elif step.method == "select_features" and images:
                problem = f"{where}: selecting columns would break a convolutional network's image"
            if problem:
                problems[position] = problem
                break
            if step.method in GRAPH_METHODS | CODING_METHODS:
                weights, quantized = False, True
            elif step.method == "distill":
                weights, quantized, tensors = True, False, True
                images = images and step.student_hidden is None
    return problems


def step_key(steps: list[Any]) -> str:
    """Identity of a chain prefix: equal prefixes of different chains run once."""
    return json.dumps([step.model_dump(mode="json") for step in steps], sort_keys=True)


def count_steps(spec: CompressionSpec) -> int:
    """Distinct steps the chains take (shared prefixes count once)."""
    return len(
        {step_key(chain[: depth + 1]) for chain in spec.methods for depth in range(len(chain))}
    )


COMPRESS_KIND = "compress"


class CompressJobCreate(BaseModel):
    """A compression job: make smaller or faster variants of any registered version,
    measured on a dataset's held-out split, and recommend one."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["compress"] = Field(description="What the job does.")
    source: VersionRef = Field(
        description="The version to compress; variants become new versions of the same model."
    )
    dataset_id: int | None = Field(
        strict=True,
        default=None,
        ge=1,
        le=MAX_ID,
        description="Rows to fine-tune, "
        "calibrate and measure on. Default: the dataset the source "
        "was trained on.",
    )
    compression: CompressionSpec
    seed: int = Field(
        strict=True,
        default=0,
        ge=0,
        le=2**31 - 1,
        description="Seed for the data split "
        "(a source searched on this dataset keeps its own split, so its test "
        "rows stay unseen) and for training.",
    )
