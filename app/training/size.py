"""How big a network is before it exists: parameters and training memory from the
dimensions alone (torch-free), so a job asking for more than the server allows is refused
at submit time, and a trial that samples too large a network is never built.

The counts follow ``app.training.models`` exactly (tested against the built networks):
dense layers, batch norm's weight and bias, convolutions padded to keep their size, 2x2
pooling while the image is at least 2 pixels high and wide, a one-hidden-layer head."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from app.contracts.networks import CNNConfig, MLPConfig, TableFront
from app.contracts.params import ParamValue
from app.core.config import TRAINING_BYTES_PER_PARAM, Settings
from app.core.errors import BrokenInvariant, InvalidInput
from app.training.families.networks import per_layer

FLOAT_BYTES = 4
# Values per unit kept for the backward pass: the layer's output, batch norm's, the
# activation's and dropout's mask, plus their gradients while it runs.
ACTIVATION_COPIES = 6
STUDENT_BATCH = 64  # distillation's batch size (app.compression.methods.distill)


@dataclass(frozen=True)
class NetworkSize:
    """Trainable parameters and the activations one row keeps for the backward pass."""

    params: int
    activations_per_row: int

    def training_bytes(self, batch_size: int) -> int:
        """Weights, gradients, optimizer state, best-epoch copy, one batch's activations."""
        return (
            self.params * TRAINING_BYTES_PER_PARAM
            + batch_size * self.activations_per_row * FLOAT_BYTES * ACTIVATION_COPIES
        )


def _dense(n_in: int, hidden: Sequence[int], n_out: int, batch_norm: bool) -> NetworkSize:
    params, activations, width = 0, 0, n_in
    for units in hidden:
        params += width * units + units + (2 * units if batch_norm else 0)
        activations += units
        width = units
    return NetworkSize(params + width * n_out + n_out, activations + n_out)


def mlp_size(
    n_inputs: int,
    hidden: Sequence[int],
    n_outputs: int,
    *,
    batch_norm: bool,
    front: TableFront | None = None,
) -> NetworkSize:
    """An MLP of ``hidden`` widths (behind a table's feature embeddings, with ``front``)."""
    if front is None:
        return _dense(n_inputs, hidden, n_outputs, batch_norm)
    body = _dense(front.out_width(n_inputs), hidden, n_outputs, batch_norm)
    inner = 2 * front.size if front.embedding == "periodic" else front.size
    activations = len(front.numeric) * (inner + front.width) + front.out_width(n_inputs)
    return NetworkSize(body.params + front.params(), body.activations_per_row + activations)


def cnn_size(
    input_shape: Sequence[int],
    channels: Sequence[int],
    *,
    kernel: int,
    pooling: str,
    head_width: int,
    n_outputs: int,
    batch_norm: bool,
) -> NetworkSize:
    """Conv blocks then a one-hidden-layer head (see ``CNNConfig``)."""
    depth, height, width = (int(dim) for dim in input_shape)
    params, activations = 0, 0
    for out in channels:
        params += depth * out * kernel * kernel + out + (2 * out if batch_norm else 0)
        activations += out * height * width
        if pooling != "none" and min(height, width) >= 2:
            height, width = height // 2, width // 2
        depth = out
    head = _dense(depth * height * width, (head_width,), n_outputs, batch_norm)
    return NetworkSize(params + head.params, activations + head.activations_per_row)


class MlpLayers(BaseModel):
    """What sizes an MLP among a trial's parameters, besides its per-layer widths (the
    rest are not this model's)."""

    n_layers: int
    batch_norm: bool


class CnnLayers(BaseModel):
    """What sizes a CNN among a trial's parameters, besides its per-block channels."""

    n_blocks: int
    kernel: int
    pooling: str
    head_width: int
    batch_norm: bool


def size_of(
    params: dict[str, ParamValue],
    *,
    n_inputs: int,
    n_outputs: int,
    input_shape: Sequence[int] | None,
    front: TableFront | None = None,
) -> NetworkSize:
    """The network a trial's parameter dict describes (``front``: the feature embeddings
    its table parameters give it)."""
    if "n_blocks" in params:
        if input_shape is None:
            raise BrokenInvariant("input_shape is None")
        cnn = CnnLayers.model_validate(params)
        return cnn_size(
            input_shape,
            per_layer(params, "channels", cnn.n_blocks),
            kernel=cnn.kernel,
            pooling=cnn.pooling,
            head_width=cnn.head_width,
            n_outputs=n_outputs,
            batch_norm=cnn.batch_norm,
        )
    mlp = MlpLayers.model_validate(params)
    return mlp_size(
        n_inputs,
        per_layer(params, "width", mlp.n_layers),
        n_outputs,
        batch_norm=mlp.batch_norm,
        front=front,
    )


def architecture_size(architecture: MLPConfig | CNNConfig) -> NetworkSize:
    """A network's configuration (``config.architecture`` of a version)."""
    if isinstance(architecture, CNNConfig):
        return cnn_size(
            architecture.input_shape,
            architecture.channels,
            kernel=architecture.kernel,
            pooling=architecture.pooling,
            head_width=architecture.head_width,
            n_outputs=architecture.n_outputs,
            batch_norm=architecture.batch_norm,
        )
    return mlp_size(
        architecture.n_inputs,
        architecture.hidden,
        architecture.n_outputs,
        batch_norm=architecture.batch_norm,
        front=architecture.front,
    )


def over_limits(size: NetworkSize, batch_size: int, settings: Settings) -> str | None:
    """Why a network is too big for this server, or None."""
    if size.params > settings.params_ceiling:
        return (
            f"{size.params} parameters, over this server's limit of "
            f"{settings.params_ceiling} (KILN_MAX_PARAMS)"
        )
    needed = size.training_bytes(batch_size)
    if needed > settings.worker_memory_bytes:
        return (
            f"about {math.ceil(needed / 2**20)} MB to train at batch size {batch_size}, "
            f"over this server's {settings.worker_memory_bytes // 2**20} MB per worker "
            "(KILN_WORKER_MEMORY_MB)"
        )
    return None


def check_student(
    hidden: Sequence[int], *, n_inputs: int, n_outputs: int, path: str, settings: Settings
) -> None:
    """InvalidInput naming ``path`` when a distillation student is too big for the server."""
    problem = over_limits(
        mlp_size(n_inputs, hidden, n_outputs, batch_norm=False), STUDENT_BATCH, settings
    )
    if problem:
        raise InvalidInput(f"{path}: this student needs {problem}")
