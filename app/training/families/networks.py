"""What the network families (``mlp``, ``cnn``) share: the training parameters every
network search tunes, parameters stored one per layer (``width_0``, ``width_1``, ...), and
fitting and export through the torch code, reached by ``module:function`` paths so that
the declarations stay torch-free. Not a family itself (it sets no ``FAMILY``)."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, TypeVar

import onnx

from app.contracts.networks import NetworkConfig, TableFront
from app.training.families.base import (
    Dimension,
    FamilyParams,
    ModelFamily,
    SpaceContext,
    choice,
    float_range,
    int_range,
    integer_choice,
    load,
)
from app.training.table_models import FitOptions, ModelDescription, TableData

# A per-layer dimension, and the dimension that says how many layers there are.
LAYER_COUNT = {"width": "n_layers", "channels": "n_blocks"}
TRAINING_FIELD = "training"  # NetworkParams.training: read from the flat values beside it
TORCH_FIT = "app.training.network_fit:fit_network"
TORCH_EXPORT = "app.training.network_fit:network_graph"
TORCH_DESCRIBE = "app.training.network_fit:describe_network"


class TrainingParams(FamilyParams):
    """How a network trains (every network search tunes these). ``epochs`` is bounded by
    the search's ``max_epochs`` (``training_space``)."""

    optimizer: Annotated[str, choice("sgd", "adam", "adamw")]
    learning_rate: Annotated[float, float_range(1e-4, 3e-2, log=True, minimum=1e-9, maximum=10.0)]
    weight_decay: Annotated[float, float_range(1e-6, 1e-2, log=True, maximum=1.0)]
    l1: Annotated[float, float_range(0.0, 1e-5, maximum=1.0)]
    batch_size: Annotated[int, integer_choice(32, 64, 128, 256, minimum=1, maximum=65_536)]
    epochs: Annotated[int, int_range(1, 1)]  # its bounds follow max_epochs: training_space
    lr_schedule: Annotated[str, choice("none", "cosine", "step")]
    patience: Annotated[int, Dimension("int", 3, 10, minimum=0, maximum=1000)]


def training_space(max_epochs: int) -> dict[str, Dimension]:
    """The training parameters every search tunes."""
    epochs = int_range(min(10, max_epochs), max_epochs, maximum=max_epochs)
    return {**TrainingParams.dimensions(), "epochs": epochs}


class NetworkParams(FamilyParams):
    """A network family's parameters: its architecture's (the subclass's fields) and how
    it trains."""

    training: TrainingParams


NP = TypeVar("NP", bound=NetworkParams)


def per_layer(stored: Mapping[str, Any], name: str, count: int) -> tuple[int, ...]:
    """A per-layer parameter's values: one tied value (grid search), or one per layer."""
    if name in stored:
        return (int(stored[name]),) * count
    return tuple(int(stored[f"{name}_{layer}"]) for layer in range(count))


class NetworkFamily(ModelFamily[NP, Any], abc.ABC):
    """A torch network family: its architecture's parameters (typed, with a ``training``
    field of ``TrainingParams``), trained epoch by epoch by the search's network trials
    (pruning, data parallelism, ``init_from``) or by ``fit`` here; one per search."""

    trains_network: ClassVar[bool] = True
    searched_as: ClassVar[str]  # how an error names a search of it: "an MLP search"

    @property
    def prefix(self) -> str:
        return ""  # a network's names were unprefixed before families existed: they stay

    def space(self, context: SpaceContext) -> dict[str, Dimension]:
        return {**self.params_model.dimensions(), **training_space(context.max_epochs)}

    def params(self, stored: Mapping[str, Any]) -> NP:
        values = dict(stored)
        for name, dimension in self.params_model.dimensions().items():
            if dimension.per_layer:
                values[name] = per_layer(stored, name, int(stored[LAYER_COUNT[name]]))
        values[TRAINING_FIELD] = TrainingParams.from_values(stored)
        return self.params_model.from_values(values)

    def stored(self, params: FamilyParams) -> dict[str, Any]:
        if not isinstance(params, NetworkParams):
            raise TypeError(f"{self.name}: not a network's parameters")
        values = params.model_dump()
        flat: dict[str, Any] = {}
        for name, dimension in self.params_model.dimensions().items():
            if dimension.per_layer:
                flat.update({f"{name}_{layer}": v for layer, v in enumerate(values[name])})
            else:
                flat[name] = values[name]
        return {**flat, **params.training.model_dump()}

    @abc.abstractmethod
    def network_config(
        self,
        params: NP,
        *,
        n_inputs: int,
        n_outputs: int,
        input_shape: tuple[int, ...] | None,
        front: TableFront | None = None,
    ) -> NetworkConfig:
        """The architecture ``params`` describe (``front``: a table's feature embeddings,
        which ``app.search.front`` places by its encoding)."""

    def fit(self, params: NP, data: TableData, n_outputs: int, options: FitOptions) -> Any:
        config = self.network_config(
            params,
            n_inputs=int(data.x_train.shape[1]),
            n_outputs=n_outputs,
            input_shape=options.input_shape,
        )
        return load(TORCH_FIT)(config, params.training, data, options)

    def export(self, model: Any) -> onnx.ModelProto:
        graph: onnx.ModelProto = load(TORCH_EXPORT)(model)
        return graph

    def describe(self, model: Any) -> ModelDescription:
        described: ModelDescription = load(TORCH_DESCRIBE)(self.name, model)
        return described
