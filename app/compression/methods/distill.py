"""Knowledge distillation: a smaller student learns the teacher's softened outputs. The
teacher is the candidate's ONNX graph run in onnxruntime, so any version can teach,
uploaded ONNX models included."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from app.compression.base import Candidate, CompressionData, Compressor, register
from app.compression.steps import Distill
from app.contracts.networks import CNNConfig, MLPConfig, NetworkConfig, architecture_of
from app.evaluation.metrics import quality_score
from app.evaluation.names import HIGHER_IS_BETTER, default_metric
from app.evaluation.sessions import open_session
from app.training.models import (
    Network,
    count_parameters,
)
from app.training.stopping import check_stop
from app.training.train import TrainData, validation_score

# Students tried when the teacher's architecture is unknown (an uploaded ONNX model).
STUDENT_CANDIDATES: tuple[tuple[int, ...], ...] = ((32,), (64,), (128,), (128, 64))
BATCH_SIZE = 64


def teacher_outputs(candidate: Candidate, rows: np.ndarray, threads: int) -> np.ndarray:
    """The teacher's outputs on ``rows`` from onnxruntime."""
    session = open_session(candidate.onnx, threads)
    return np.asarray(
        session.run([candidate.output_name], {candidate.input_name: rows})[0], dtype=np.float32
    )


def as_logits(outputs: np.ndarray) -> np.ndarray:
    """Teacher outputs as logits: probabilities (rows of non-negative values summing to 1,
    as ModelKiln's own graphs give) are logged; anything else is taken as logits already."""
    if outputs.min() >= 0 and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3):
        return np.log(np.clip(outputs, 1e-7, 1.0))
    return outputs


def _scaled(config: NetworkConfig, factor: float, depth: int | None) -> NetworkConfig:
    def narrow(width: int) -> int:
        return max(1, round(width * factor))

    if isinstance(config, CNNConfig):
        return dataclasses.replace(
            config,
            channels=tuple(narrow(c) for c in config.channels),
            head_width=narrow(config.head_width),
        )
    hidden = list(config.hidden) or [16]
    if depth is not None:
        hidden = (hidden + [hidden[-1]] * depth)[:depth]
    return dataclasses.replace(config, hidden=tuple(narrow(width) for width in hidden))


@register("distill")
class Distiller(Compressor):
    """Trains a student narrower (``width_factor``) and/or shallower (``depth``) than the
    teacher, or of the given ``student_hidden`` widths. When the teacher's architecture is
    unknown, a few MLP students are tried and the smallest whose validation score is within
    the job's accuracy budget of the teacher's is kept (else the best one)."""

    step: Distill

    def apply(
        self, candidate: Candidate, data: CompressionData, check: Callable[[], None]
    ) -> Candidate:
        columns = candidate.columns
        train_data = data.train_data(columns)
        soft = teacher_outputs(candidate, data.x_train, data.threads)
        soft = as_logits(soft) if data.classification else soft.reshape(-1)
        configs = self._students(candidate, train_data.x_train.shape[1], data.n_outputs)
        teacher_score = self._teacher_score(candidate, data)
        tried: list[tuple[Network, float]] = []
        for number, config in enumerate(configs):
            student = Network(config, data.classification, seed=data.seed + number)
            score = distill_train(student, train_data, soft, self.step, data.seed, check)
            tried.append((student, score))
        chosen, score = self._choose(tried, teacher_score, data)
        report = {
            "student": architecture_of(chosen.config),
            "student_validation": round(score, 6),
            "teacher_validation": round(teacher_score, 6),
            "students_tried": len(tried),
        }
        return candidate.derived(chosen, columns=columns, report=report)

    def _students(self, candidate: Candidate, n_inputs: int, n_outputs: int) -> list[NetworkConfig]:
        step = self.step
        if step.student_hidden is not None:
            activation = candidate.network.config.activation if candidate.network else "relu"
            return [
                MLPConfig(
                    n_inputs=n_inputs,
                    n_outputs=n_outputs,
                    hidden=tuple(step.student_hidden),
                    activation=activation,
                )
            ]
        if candidate.network is not None:
            return [_scaled(candidate.network.config, step.width_factor, step.depth)]
        return [
            MLPConfig(n_inputs=n_inputs, n_outputs=n_outputs, hidden=hidden)
            for hidden in STUDENT_CANDIDATES
        ]

    @staticmethod
    def _teacher_score(candidate: Candidate, data: CompressionData) -> float:
        output = teacher_outputs(candidate, data.x_val, data.threads)
        return quality_score(default_metric(data.task), data.task, output, data.y_val)

    @staticmethod
    def _choose(
        tried: list[tuple[Network, float]], teacher_score: float, data: CompressionData
    ) -> tuple[Network, float]:
        if len(tried) == 1:
            return tried[0]
        if data.classification:
            within = [item for item in tried if item[1] >= teacher_score - data.max_accuracy_drop]
            best = max(tried, key=lambda item: item[1])
        else:
            within = [
                item for item in tried if item[1] <= teacher_score * (1 + data.max_accuracy_drop)
            ]
            best = min(tried, key=lambda item: item[1])
        if not within:
            return best
        return min(within, key=lambda item: count_parameters(item[0]))


def distill_train(
    student: Network,
    data: TrainData,
    soft: np.ndarray,
    step: Distill,
    seed: int,
    check: Callable[[], None],
) -> float:
    """Train ``student`` on ``alpha`` x the teacher's softened outputs (KL divergence at the
    temperature, scaled by its square) + ``1 - alpha`` x the true labels; the best
    validation epoch is kept. Returns its validation score."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    student.fit_scaling(data.x_train, data.y_train)
    x = torch.from_numpy(data.x_train)
    x_val = torch.from_numpy(data.x_val)
    if student.classification:
        labels = torch.from_numpy(data.y_train.astype(np.int64))
        teacher = torch.softmax(torch.from_numpy(soft) / step.temperature, dim=1)
    else:
        mean, scale = float(student.target_mean), float(student.target_scale)
        labels = torch.from_numpy(((data.y_train - mean) / scale).astype(np.float32)).view(-1, 1)
        teacher = torch.from_numpy((soft - mean) / scale).view(-1, 1)
    optimizer = torch.optim.AdamW(student.parameters(), lr=step.learning_rate)
    metric = default_metric("classification" if student.classification else "regression")
    better = HIGHER_IS_BETTER[metric]
    best_score, best_state = -math.inf if better else math.inf, copy.deepcopy(student.state_dict())
    for _ in range(step.epochs):
        student.train()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            if len(batch) < 2:
                continue
            check_stop()
            optimizer.zero_grad(set_to_none=True)
            loss = _loss(
                student(x[batch]), teacher[batch], labels[batch], step, student.classification
            )
            loss.backward()
            optimizer.step()
        score = validation_score(student, x_val, data.y_val, metric)
        if (score > best_score) if better else (score < best_score):
            best_score, best_state = score, copy.deepcopy(student.state_dict())
        check()
    student.load_state_dict(best_state)
    student.eval()
    return best_score


def _loss(
    output: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    step: Distill,
    classification: bool,
) -> torch.Tensor:
    if not classification:
        return step.alpha * functional.mse_loss(output, teacher) + (
            1 - step.alpha
        ) * functional.mse_loss(output, labels)
    temperature = step.temperature
    soft = (
        functional.kl_div(
            functional.log_softmax(output / temperature, dim=1), teacher, reduction="batchmean"
        )
        * temperature**2
    )
    hard: torch.Tensor = nn.functional.cross_entropy(output, labels)
    return step.alpha * soft + (1 - step.alpha) * hard
