"""Weights coded into a few values: ``share_weights`` (k-means weight sharing, centroids
fine-tuned, as in Deep Compression) and ``binarize`` (1-bit weights with a per-channel
scale, trained with a straight-through estimator). Both write the weights packed
(``app.compression.packing``), so the file holds index bits, not floats."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn
from torch.nn.utils import parametrize

from app.compression.base import Candidate, CompressionData, CompressionError, Compressor, register
from app.compression.methods.pruning import fine_tune
from app.compression.methods.surgery import weighted_layers
from app.compression.packing import CodedWeight, match_initializer, pack_weights
from app.compression.steps import Binarize, ShareWeights
from app.core.errors import BrokenInvariant
from app.training.models import Network

KMEANS_ROUNDS = 30


def kmeans_1d(values: np.ndarray, clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """(centroids, assignment) of 1-D k-means, centroids first spread linearly over the
    values' range (the initialisation Deep Compression found best: it keeps the rare large
    weights that matter)."""
    low, high = float(values.min()), float(values.max())
    centroids = np.linspace(low, high, clusters) if high > low else np.full(clusters, low)
    assignment = np.zeros(len(values), dtype=np.int64)
    for _ in range(KMEANS_ROUNDS):
        edges = (centroids[1:] + centroids[:-1]) / 2
        assignment = np.searchsorted(edges, values)
        sums = np.bincount(assignment, weights=values, minlength=clusters)
        counts = np.bincount(assignment, minlength=clusters)
        moved = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        moved.sort()
        if np.allclose(moved, centroids):
            break
        centroids = moved
    return centroids.astype(np.float32), assignment


class SharedValues(nn.Module):
    """A layer's weight as ``codebook[indices]``; only the codebook trains (each centroid
    gets the summed gradient of its weights). Pruned zeros stay exactly zero."""

    indices: torch.Tensor
    alive: torch.Tensor

    def __init__(self, weight: torch.Tensor, bits: int) -> None:
        super().__init__()
        flat = weight.detach().reshape(-1).numpy().astype(np.float64)
        alive = flat != 0
        slots = (1 << bits) - (0 if alive.all() else 1)  # one slot is kept for the zeros
        centroids, assignment = kmeans_1d(flat[alive], max(min(slots, int(alive.sum())), 1))
        indices = np.zeros(len(flat), dtype=np.int64)
        indices[alive] = assignment
        self.codebook = nn.Parameter(torch.from_numpy(centroids))
        self.register_buffer("indices", torch.from_numpy(indices).reshape(weight.shape))
        self.register_buffer("alive", torch.from_numpy(alive).reshape(weight.shape))

    def forward(self, _weight: torch.Tensor) -> torch.Tensor:
        return torch.where(
            self.alive, self.codebook[self.indices], torch.zeros((), dtype=self.codebook.dtype)
        )

    def coded(self) -> tuple[np.ndarray, np.ndarray]:
        """(codebook with 0.0 first when some weights are zero, indices into it)."""
        book = self.codebook.detach().numpy().astype(np.float32)
        indices = self.indices.numpy()
        alive = self.alive.numpy()
        if alive.all():
            return book, indices
        return np.concatenate([[0.0], book]).astype(np.float32), np.where(alive, indices + 1, 0)


class SignedValues(nn.Module):
    """A layer's weight as ``sign(w) * mean|w|`` per output channel. Gradients reach the
    latent float weights straight through the sign, where |w| <= 1 (the clipped STE)."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        scale = weight.detach().abs().reshape(weight.shape[0], -1).mean(dim=1)
        scale = scale.reshape(-1, *([1] * (weight.dim() - 1)))
        signed = torch.where(weight >= 0, 1.0, -1.0) * scale
        clipped = weight.clamp(-1.0, 1.0)
        return clipped + (signed - clipped).detach()

    @staticmethod
    def coded(weight: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(codebook [-1, 1], indices) of the final signs."""
        return (
            np.array([-1.0, 1.0], dtype=np.float32),
            (weight.detach().numpy() >= 0).astype(np.int64),
        )


def _latent(layer: nn.Module) -> torch.Tensor:
    """The float weight behind a parametrized layer's weight."""
    parametrized: Any = layer
    latent: torch.Tensor = parametrized.parametrizations.weight.original
    return latent


def _copy(network: Network) -> Network:
    clone = Network(network.config, network.classification)
    clone.load_state_dict(network.state_dict())
    return clone


def _coded_candidate(
    candidate: Candidate,
    network: Network,
    books: list[tuple[np.ndarray, np.ndarray]],
    report: dict[str, object],
) -> Candidate:
    """Export the coded network and rewrite its weight tensors as packed indices."""
    exported = candidate.derived(network, columns=candidate.columns, report={})
    model = onnx.load_model_from_string(exported.onnx)
    coded: dict[str, CodedWeight] = {}
    for book, indices in books:
        found = match_initializer(model, book, indices, set(coded))
        if found is None:
            raise CompressionError(
                "the exported graph holds a coded layer's weights in a form "
                "that cannot be matched to its codebook"
            )
        coded[found[0]] = found[1]
    packed, summary = pack_weights(exported.onnx, coded)
    fp32_bytes = sum(int(np.prod(i.shape)) * 4 for _, i in books)
    return candidate.graph_only(packed, {**report, **summary, "fp32_weight_bytes": fp32_bytes})


class _CodingCompressor(Compressor):
    """Train every weight layer of a copy of the network through a parametrization that
    codes its weights, then store the codes packed. Subclasses say how a layer is coded,
    how its codebook is read back, and what the report adds."""

    needs_network = True
    step: ShareWeights | Binarize

    def coding(self, layer: nn.Module) -> nn.Module:
        raise NotImplementedError

    def book(self, layer: nn.Module, coding: nn.Module) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def details(self, books: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, object]:
        raise NotImplementedError

    def apply(
        self, candidate: Candidate, data: CompressionData, check: Callable[[], None]
    ) -> Candidate:
        network = _copy(self.network_of(candidate))
        layers = [layer for _, layer in weighted_layers(network)]
        if not layers:
            raise CompressionError(f"{self.step.method}: the network has no weight layers")
        codings = []
        for layer in layers:
            coding = self.coding(layer)
            parametrize.register_parametrization(layer, "weight", coding, unsafe=True)
            codings.append(coding)
        check()
        fine_tune(
            network,
            data.train_data(candidate.columns),
            epochs=self.step.fine_tune_epochs,
            learning_rate=self.step.learning_rate,
            seed=data.seed,
        )
        check()
        books = [self.book(layer, coding) for layer, coding in zip(layers, codings, strict=True)]
        for layer in layers:
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
        return _coded_candidate(
            candidate,
            network,
            books,
            {"fine_tune_epochs": self.step.fine_tune_epochs, **self.details(books)},
        )


@register("share_weights")
class WeightSharer(_CodingCompressor):
    """Each layer's weights clustered into 2^bits shared values (zeros of a pruned layer
    kept), the centroids fine-tuned on training rows, the file storing index bits."""

    step: ShareWeights

    def coding(self, layer: nn.Module) -> nn.Module:
        weight: torch.Tensor = getattr(layer, "weight")  # noqa: B009 (a Module attribute)
        weight.requires_grad_(False)  # only the codebook trains (it stays the latent tensor)
        return SharedValues(weight, self.step.bits)

    def book(self, layer: nn.Module, coding: nn.Module) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(coding, SharedValues):
            raise BrokenInvariant("not isinstance(coding, SharedValues)")
        return coding.coded()

    def details(self, books: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, object]:
        return {"bits": self.step.bits, "clusters_per_layer": [len(book) for book, _ in books]}


@register("binarize")
class Binarizer(_CodingCompressor):
    """Every weight layer trained with 1-bit weights (sign times a per-channel scale) from
    the parent's weights, then stored as packed bits."""

    step: Binarize

    def coding(self, layer: nn.Module) -> nn.Module:
        return SignedValues()

    def book(self, layer: nn.Module, coding: nn.Module) -> tuple[np.ndarray, np.ndarray]:
        return SignedValues.coded(_latent(layer))

    def details(self, books: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, object]:
        return {"weights": "1 bit with a per-channel scale"}
