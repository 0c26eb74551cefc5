"""Structured pruning (whole units and channels out: a smaller dense network) and global
unstructured magnitude pruning (zeros inside the same dense shapes), each fine-tuned."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from app.compression.base import (
    Candidate,
    CompressionData,
    CompressionError,
    Compressor,
    register,
)
from app.compression.methods.surgery import (
    norm_importance,
    shrink,
    taylor_importance,
    top_units,
    weighted_layers,
)
from app.compression.steps import PruneStructured, PruneUnstructured
from app.training.models import Network
from app.training.train import TrainConfig, TrainData, train


def fine_tune(
    network: Network, data: TrainData, *, epochs: int, learning_rate: float, seed: int
) -> None:
    """Train an already trained network a little more (best validation epoch kept)."""
    if epochs > 0:
        train(network, data, TrainConfig(epochs=epochs, learning_rate=learning_rate, seed=seed))
    network.eval()


def _targets(network: Network, y: np.ndarray) -> torch.Tensor:
    if network.classification:
        return torch.from_numpy(y.astype(np.int64))
    scaled = (y - float(network.target_mean)) / float(network.target_scale)
    return torch.from_numpy(scaled.astype(np.float32)).reshape(-1, 1)


@register("prune_structured")
class StructuredPruner(Compressor):
    """Removes ``ratio`` of the units of every hidden layer (channels of every conv layer),
    least important first, copies the kept weights into a smaller network, fine-tunes it."""

    needs_network = True
    step: PruneStructured

    def apply(
        self, candidate: Candidate, data: CompressionData, check: Callable[[], None]
    ) -> Candidate:
        network = self.network_of(candidate)
        hidden = weighted_layers(network)[:-1]
        if not hidden:
            raise CompressionError("prune_structured: the network has no hidden layer to prune")
        train_data = data.train_data(candidate.columns)
        if self.step.importance == "taylor":
            x = torch.from_numpy(train_data.x_train)
            scores = taylor_importance(network, x, _targets(network, train_data.y_train))[:-1]
        else:
            order = 1 if self.step.importance == "l1" else 2
            scores = [norm_importance(layer, order) for _, layer in hidden]
        kept = [top_units(score, self.step.ratio) for score in scores]
        smaller = shrink(network, kept)
        check()
        fine_tune(
            smaller,
            train_data,
            epochs=self.step.fine_tune_epochs,
            learning_rate=self.step.learning_rate,
            seed=data.seed,
        )
        report = {
            "kept_units": [len(units) for units in kept],
            "removed_units": [
                len(score) - len(units) for score, units in zip(scores, kept, strict=True)
            ],
        }
        return candidate.derived(smaller, columns=candidate.columns, report=report)


def sparsity_of(network: nn.Module) -> tuple[float, int]:
    """Share of zero weights in Linear and Conv2d layers, and the count of non-zero
    parameters in the whole network."""
    weights = [
        layer.weight.detach()
        for layer in network.modules()
        if isinstance(layer, nn.Linear | nn.Conv2d)
    ]
    total = sum(weight.numel() for weight in weights)
    zeros = sum(int((weight == 0).sum()) for weight in weights)
    nonzero = sum(int((parameter.detach() != 0).sum()) for parameter in network.parameters())
    return zeros / max(total, 1), nonzero


@register("prune_unstructured")
class MagnitudePruner(Compressor):
    """Zeros the smallest-magnitude weights across all layers at once (one global
    threshold), in ``rounds`` steps of rising sparsity with fine-tuning after each; pruned
    weights stay zero while fine-tuning. The dense shapes remain: the file shrinks only when
    compressed (gzip), and dense onnxruntime kernels run no faster."""

    needs_network = True
    step: PruneUnstructured

    def apply(
        self, candidate: Candidate, data: CompressionData, check: Callable[[], None]
    ) -> Candidate:
        source = self.network_of(candidate)
        network = Network(source.config, source.classification)
        network.load_state_dict(source.state_dict())
        train_data = data.train_data(candidate.columns)
        layers = [layer for _, layer in weighted_layers(network)]
        rounds = self.step.rounds
        for number in range(1, rounds + 1):
            target = self.step.sparsity * (1 - (1 - number / rounds) ** 3)  # gradual schedule
            self._prune_to(layers, target)
            check()
            fine_tune(
                network,
                train_data,
                epochs=max(1, self.step.fine_tune_epochs // rounds)
                if self.step.fine_tune_epochs
                else 0,
                learning_rate=self.step.learning_rate,
                seed=data.seed + number,
            )
        for layer in layers:
            prune.remove(layer, "weight")
        network.eval()
        sparsity, nonzero = sparsity_of(network)
        return candidate.derived(
            network,
            columns=candidate.columns,
            report={
                "sparsity": round(sparsity, 4),
                "nonzero_params": nonzero,
                "note": "zeros in dense tensors: smaller when compressed (gzip_bytes), but dense "
                "onnxruntime kernels are no faster and the file is as large",
            },
        )

    @staticmethod
    def _prune_to(layers: list[nn.Linear | nn.Conv2d], sparsity: float) -> None:
        """Mask every weight whose magnitude is below the global ``sparsity`` quantile."""
        magnitudes = torch.cat([layer.weight.detach().abs().reshape(-1) for layer in layers])
        count = round(sparsity * magnitudes.numel())
        if count == 0:
            return
        threshold = torch.kthvalue(magnitudes, count).values
        for layer in layers:
            mask = (layer.weight.detach().abs() > threshold).float()
            prune.custom_from_mask(layer, "weight", mask)
