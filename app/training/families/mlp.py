"""The ``mlp`` family: a multilayer perceptron, on any rows; on a table it also searches
how its first layer reads the features (input scaling, per-feature embeddings of numbers
and of many-valued categories: ``TableFront``). Trained epoch by epoch by torch."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from app.contracts.networks import MLPConfig, NetworkConfig, TableFront
from app.training.families.base import (
    Dimension,
    SpaceContext,
    choice,
    float_range,
    int_range,
    integer_choice,
)
from app.training.families.networks import NetworkFamily, NetworkParams, training_space


class MlpParams(NetworkParams):
    """Hidden layers (a width each), their activation, dropout and batch norm; a table's
    input scaling (searched with ``TABLE_MLP_SPACE``, standard elsewhere)."""

    n_layers: Annotated[int, int_range(1, 4, maximum=8)]
    width: Annotated[tuple[int, ...], int_range(16, 512, log=True, per_layer=True)]
    activation: Annotated[str, choice("relu", "gelu", "silu", "tanh")]
    dropout: Annotated[float, float_range(0.0, 0.5, maximum=0.9)]
    batch_norm: Annotated[bool, choice(False, True)]
    scaling: Literal["standard", "robust"] = "standard"


# A table's MLP also searches how its first layer reads the features (``TableFront``,
# placed by ``app.search.front``): input scaling, per-feature embeddings of numbers (none,
# periodic or piecewise-linear; width, frequencies or bins, and the periodic frequencies'
# spread), and an embedding of each many-valued category (width 0: none).
TABLE_MLP_SPACE: dict[str, Dimension] = {
    "scaling": choice("standard", "robust"),
    "numeric_embedding": choice("none", "periodic", "piecewise"),
    "embedding_width": integer_choice(4, 8, 16, minimum=1, maximum=256),
    "embedding_size": integer_choice(4, 8, 16, minimum=2, maximum=128),
    "embedding_sigma": float_range(0.01, 3.0, log=True, minimum=1e-4, maximum=100.0),
    "category_width": integer_choice(0, 4, 8, minimum=0, maximum=256),
}


class MlpFamily(NetworkFamily[MlpParams]):
    name: ClassVar[str] = "mlp"
    summary: ClassVar[str] = ""
    searched_as: ClassVar[str] = "an MLP search"
    params_model = MlpParams
    listed: ClassVar[int] = 10
    cost: ClassVar[int] = 40

    def space(self, context: SpaceContext) -> dict[str, Dimension]:
        front = TABLE_MLP_SPACE if context.table else {}
        return {
            **MlpParams.dimensions(),
            **front,
            **training_space(context.max_epochs),
        }

    def network_config(
        self,
        params: MlpParams,
        *,
        n_inputs: int,
        n_outputs: int,
        input_shape: tuple[int, ...] | None,
        front: TableFront | None = None,
    ) -> NetworkConfig:
        return MLPConfig(
            n_inputs=n_inputs,
            n_outputs=n_outputs,
            hidden=params.width,
            activation=params.activation,
            dropout=params.dropout,
            batch_norm=params.batch_norm,
            scaling=params.scaling,
            front=front,
        )


FAMILY = MlpFamily()
