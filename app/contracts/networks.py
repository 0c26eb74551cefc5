"""The networks a version can hold, as typed configurations: an MLP or a small CNN. Torch
builds them (``app.training.models``); everything else (size limits at submit time, the
registry, transfer planning) reads these, not dicts. A version stores one as
``config.architecture``, tagged by ``kind``; a stored value from before the tag existed
is an MLP."""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Any, Final, Literal

from pydantic import Discriminator, Tag, TypeAdapter
from pydantic.dataclasses import dataclass

# ``kind`` as stored on every version since networks were tagged (the class names then).
MLP_KIND: Final = "MLPConfig"
CNN_KIND: Final = "CNNConfig"


@dataclass(frozen=True)
class TableFront:
    """How an MLP reads a table's encoded features before its first dense layer (searched
    for tables, as the tabular deep-learning results advise):

    - ``numeric``: features (positions in the encoded row) each given an embedding of
      ``width`` values: ``periodic`` (sines and cosines of ``size`` learnt frequencies,
      first drawn with spread ``sigma``, then a dense layer and ReLU per feature) or
      ``piecewise`` (the feature's position inside ``size`` quantile bins of the training
      rows, then a dense layer and ReLU per feature);
    - ``categories``: one-hot blocks ``[start, end)`` of many-valued columns, each mapped to
      ``category_width`` values by a learnt embedding;
    - every other feature passes through as it is.

    The front's output is [passed-through features, numeric embeddings, category
    embeddings], in that order."""

    numeric: tuple[int, ...] = ()
    embedding: Literal["periodic", "piecewise"] = "periodic"
    width: int = 8
    size: int = 8
    sigma: float = 0.1
    categories: tuple[tuple[int, int], ...] = ()
    category_width: int = 4

    def passed(self, n_inputs: int) -> list[int]:
        """The features that pass through unchanged, in order."""
        taken = set(self.numeric)
        for start, end in self.categories:
            taken.update(range(start, end))
        return [index for index in range(n_inputs) if index not in taken]

    def out_width(self, n_inputs: int) -> int:
        """Values the front hands the first dense layer."""
        return (
            len(self.passed(n_inputs))
            + len(self.numeric) * self.width
            + len(self.categories) * self.category_width
        )

    def params(self) -> int:
        """Learnt numbers in the front (the piecewise bins' edges are fitted, not learnt)."""
        inner = 2 * self.size if self.embedding == "periodic" else self.size
        per_feature = inner * self.width + self.width
        if self.embedding == "periodic":
            per_feature += self.size
        slots = sum(end - start for start, end in self.categories)
        return len(self.numeric) * per_feature + slots * self.category_width


@dataclass(frozen=True)
class MLPConfig:
    """A multilayer perceptron: hidden widths, activation, dropout, batch norm; for a
    table, optionally robust input scaling and a ``TableFront`` of feature embeddings."""

    n_inputs: int
    n_outputs: int
    hidden: tuple[int, ...]
    activation: str = "relu"
    dropout: float = 0.0
    batch_norm: bool = False
    # An uploaded network's own input normalisation (and raw outputs) are part of its
    # weights: training never refits them, and inputs are not clipped.
    fixed_scaling: bool = False
    # Inputs centred on the training median and scaled by the interquartile range (robust
    # to outliers), or on the mean and standard deviation; clipped either way.
    scaling: Literal["standard", "robust"] = "standard"
    front: TableFront | None = None
    kind: Literal["MLPConfig"] = MLP_KIND

    @property
    def body_layers(self) -> int:
        """Weight layers under the output layer: the hidden ones."""
        return len(self.hidden)

    @property
    def body_inputs(self) -> int:
        """What the first dense layer reads: the inputs, or the front's output."""
        return self.n_inputs if self.front is None else self.front.out_width(self.n_inputs)


@dataclass(frozen=True)
class CNNConfig:
    """A small CNN for rows that are images (``input_shape`` = channels, height, width):
    conv blocks (conv, optional batch norm, activation, optional 2x2 pooling), then a
    one-hidden-layer head. Rows arrive flat and are reshaped inside the graph."""

    input_shape: tuple[int, int, int]
    n_outputs: int
    channels: tuple[int, ...]
    kernel: int = 3
    pooling: str = "max"  # max, avg or none
    head_width: int = 64
    activation: str = "relu"
    dropout: float = 0.0
    batch_norm: bool = False
    fixed_scaling: bool = False  # as MLPConfig's
    kind: Literal["CNNConfig"] = CNN_KIND

    @property
    def n_inputs(self) -> int:
        return math.prod(self.input_shape)

    @property
    def body_layers(self) -> int:
        """Weight layers under the output layer: the convolutions and the head's dense one."""
        return len(self.channels) + 1


def _kind_of(value: Any) -> str:
    """The tag of a stored value or a config; untagged stored values are MLPs."""
    if isinstance(value, dict):
        return str(value.get("kind", MLP_KIND))
    return str(getattr(value, "kind", MLP_KIND))


NetworkConfig = Annotated[
    Annotated[MLPConfig, Tag(MLP_KIND)] | Annotated[CNNConfig, Tag(CNN_KIND)],
    Discriminator(_kind_of),
]
NETWORK_CONFIG: TypeAdapter[MLPConfig | CNNConfig] = TypeAdapter(NetworkConfig)


def architecture_of(config: MLPConfig | CNNConfig) -> dict[str, Any]:
    """A network configuration as stored on a version (``config.architecture``)."""
    return dataclasses.asdict(config)


def architecture_from(stored: dict[str, Any] | MLPConfig | CNNConfig) -> MLPConfig | CNNConfig:
    """The configuration a stored value (or an already typed one) describes."""
    return NETWORK_CONFIG.validate_python(stored)
