"""The ``cnn`` family: a small CNN for rows that are images (``input_shape`` [channels,
height, width]): conv blocks, then a one-hidden-layer head. Trained epoch by epoch by
torch; the only family searched by default on images."""

from __future__ import annotations

from typing import Annotated, ClassVar

from app.contracts.networks import CNNConfig, NetworkConfig, TableFront
from app.core.errors import BrokenInvariant
from app.training.families.base import DataShape, choice, float_range, int_range
from app.training.families.networks import NetworkFamily, NetworkParams


class CnnParams(NetworkParams):
    """Conv blocks (channels each), kernel, pooling, the head's width, activation, dropout
    and batch norm."""

    n_blocks: Annotated[int, int_range(1, 3, maximum=6)]
    channels: Annotated[tuple[int, ...], int_range(8, 64, log=True, per_layer=True)]
    kernel: Annotated[int, choice(3, 5)]
    pooling: Annotated[str, choice("max", "avg", "none")]
    head_width: Annotated[int, int_range(16, 256, log=True)]
    activation: Annotated[str, choice("relu", "gelu", "silu", "tanh")]
    dropout: Annotated[float, float_range(0.0, 0.5, maximum=0.9)]
    batch_norm: Annotated[bool, choice(False, True)]


IMAGES: frozenset[DataShape] = frozenset({"images"})


class CnnFamily(NetworkFamily[CnnParams]):
    name: ClassVar[str] = "cnn"
    summary: ClassVar[str] = "image-shaped rows"
    searched_as: ClassVar[str] = "a CNN search"
    params_model = CnnParams
    runs_on: ClassVar[frozenset[DataShape]] = IMAGES
    default_on: ClassVar[frozenset[DataShape]] = IMAGES
    listed: ClassVar[int] = 20
    cost: ClassVar[int] = 50

    def network_config(
        self,
        params: CnnParams,
        *,
        n_inputs: int,
        n_outputs: int,
        input_shape: tuple[int, ...] | None,
        front: TableFront | None = None,
    ) -> NetworkConfig:
        if input_shape is None or len(input_shape) != 3:
            raise BrokenInvariant(
                f"a CNN needs rows shaped [channels, height, width]: {input_shape}"
            )
        return CNNConfig(
            input_shape=(input_shape[0], input_shape[1], input_shape[2]),
            n_outputs=n_outputs,
            channels=params.channels,
            kernel=params.kernel,
            pooling=params.pooling,
            head_width=params.head_width,
            activation=params.activation,
            dropout=params.dropout,
            batch_norm=params.batch_norm,
        )


FAMILY = CnnFamily()
