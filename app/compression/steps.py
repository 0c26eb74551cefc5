"""The compression methods a chain may name, one step model each (their settings, defaults
and bounds), and the method families a chain's rules speak of. Pure pydantic, as
``app.compression.spec`` that validates chains of them."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

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
