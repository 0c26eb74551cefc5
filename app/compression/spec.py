"""What a client may ask of compression: the chains (``compression`` in a search or compress
job) and the compress job itself. Pure pydantic, so the gateway validates chains without
importing torch or the methods themselves."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from app.compression.steps import (
    CODING_METHODS,
    GRAPH_METHODS,
    MAX_CHAIN,
    NETWORK_METHODS,
    Chain,
)
from app.contracts.enums import MAX_ID
from app.jobs.spec import VersionRef


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
