"""Several models of one task averaged into one model: probabilities (classification) or
values (regression) are the members' mean, or their weighted mean (ensemble selection gives
a member a weight by how often it was chosen). Exported as one ONNX graph that holds every
member's graph side by side on the shared input and a ``Mean`` (or ``Mul`` and ``Sum``)
in front of the output, so it serves, batches and takes a table's preprocessing like a
single network."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, compose, helper
from torch import nn

from app.contracts.networks import NetworkConfig
from app.training.export import INPUT_NAME, OUTPUT_NAME, export_onnx
from app.training.models import Network, count_parameters
from app.training.table_models import TableModel


def normalized(weights: list[float] | None, count: int) -> list[float] | None:
    """Weights summing to 1 (None: equal weights, a plain mean)."""
    if weights is None:
        return None
    if len(weights) != count or min(weights) <= 0:
        raise ValueError(f"an average of {count} models needs {count} positive weights")
    total = float(sum(weights))
    shares = [float(weight) / total for weight in weights]
    return None if max(shares) - min(shares) < 1e-12 else shares


def weighted_mean(outputs: list[torch.Tensor], weights: list[float] | None) -> torch.Tensor:
    stacked = torch.stack(outputs)
    if weights is None:
        return stacked.mean(dim=0)
    shares = torch.tensor(weights, dtype=stacked.dtype).reshape(-1, *([1] * (stacked.dim() - 1)))
    return (stacked * shares).sum(dim=0)


class Ensemble(nn.Module):
    """Networks trained for the same inputs and outputs; ``predict`` is their (weighted)
    mean."""

    def __init__(self, members: list[Network], weights: list[float] | None = None) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two networks")
        widths = {(m.config.n_inputs, m.config.n_outputs, m.classification) for m in members}
        if len(widths) > 1:
            raise ValueError(f"ensemble members differ in inputs, outputs or task: {widths}")
        self.members = nn.ModuleList(members)
        self.classification = members[0].classification
        self.weights = normalized(weights, len(members))

    @property
    def config(self) -> NetworkConfig:
        """The members' shared interface (inputs, outputs); not one architecture."""
        config: NetworkConfig = self.members[0].config  # type: ignore[assignment]
        return config

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [member.predict(x) for member in self.members]  # type: ignore[operator]
        return weighted_mean(outputs, self.weights)


def average_graphs(
    members: list[onnx.ModelProto], weights: list[float] | None = None
) -> onnx.ModelProto:
    """One model whose output is the (weighted) mean of the members' outputs, all fed the
    one input. Each member's names get a ``m{i}_`` prefix, so their initializers never
    collide."""
    graphs = [
        compose.add_prefix(member, f"m{index}_", rename_inputs=False)
        for index, member in enumerate(members)
    ]
    first = graphs[0].graph
    for graph in graphs:
        if [i.name for i in graph.graph.input] != [INPUT_NAME]:
            raise ValueError(f"ensemble members must take one input named {INPUT_NAME!r}")
    nodes, initializers, infos = [], [], []
    for graph in graphs:
        nodes.extend(graph.graph.node)
        initializers.extend(graph.graph.initializer)
        infos.extend(graph.graph.value_info)
    outputs = [g.graph.output[0].name for g in graphs]
    if weights is None:
        nodes.append(helper.make_node("Mean", outputs, [OUTPUT_NAME], name="ensemble_mean"))
    else:
        scaled = []
        for index, (name, weight) in enumerate(zip(outputs, weights, strict=True)):
            initializers.append(
                helper.make_tensor(f"ensemble_w{index}", TensorProto.FLOAT, [], [weight])
            )
            nodes.append(
                helper.make_node("Mul", [name, f"ensemble_w{index}"], [f"{name}_weighted"])
            )
            scaled.append(f"{name}_weighted")
        nodes.append(helper.make_node("Sum", scaled, [OUTPUT_NAME], name="ensemble_sum"))
    output = onnx.ValueInfoProto()
    output.CopyFrom(first.output[0])
    output.name = OUTPUT_NAME
    graph = helper.make_graph(
        nodes, "ensemble", list(first.input), [output], initializer=initializers, value_info=infos
    )
    functions = {(f.domain, f.name): f for g in graphs for f in g.functions}
    model = helper.make_model(
        graph,
        opset_imports=_opsets(graphs),
        functions=list(functions.values()),
        producer_name="modelkiln-ensemble",
    )
    model.ir_version = max(graph.ir_version for graph in graphs)
    onnx.checker.check_model(model)
    return model


def _opsets(graphs: list[onnx.ModelProto]) -> list[onnx.OperatorSetIdProto]:
    """Every domain the members use, at the newest version any of them asks for."""
    versions: dict[str, int] = {}
    for graph in graphs:
        for entry in graph.opset_import:
            versions[entry.domain] = max(versions.get(entry.domain, 0), entry.version)
    return [helper.make_opsetid(domain, version) for domain, version in versions.items()]


class MixedAverage:
    """Models of different families (networks, trees, linear models) for the same inputs
    and outputs; ``predict`` is their mean, exported with ``average_graphs`` like an
    ``Ensemble``."""

    def __init__(
        self, members: list[Network | TableModel], weights: list[float] | None = None
    ) -> None:
        if len(members) < 2:
            raise ValueError("an average needs at least two models")
        widths = {(width_of(m), m.classification) for m in members}
        if len(widths) > 1:
            raise ValueError(f"averaged models differ in inputs, outputs or task: {widths}")
        self.members = members
        self.classification = members[0].classification
        self.weights = normalized(weights, len(members))

    def eval(self) -> MixedAverage:
        for member in self.members:
            if isinstance(member, Network):
                member.eval()
        return self

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return weighted_mean([_member_output(member, x) for member in self.members], self.weights)


def _member_output(member: Network | TableModel, x: torch.Tensor) -> torch.Tensor:
    """A member's prediction as a tensor (a table family's model predicts numpy rows)."""
    if isinstance(member, TableModel):
        return torch.from_numpy(member.predict_rows(x.numpy()).astype(np.float32))
    return member.predict(x)


Fitted = Network | Ensemble | TableModel | MixedAverage


def predicted(model: Fitted, rows: np.ndarray) -> np.ndarray:
    """Any fitted model's outputs for encoded ``rows`` (probabilities, or values), in the
    runtime it was trained in."""
    if isinstance(model, TableModel):
        return model.predict_rows(rows).astype(np.float32)
    model.eval()
    with torch.no_grad():
        output = model.predict(torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)))
    return output.numpy().astype(np.float32)


def width_of(model: Fitted) -> tuple[int, int]:
    """(features in, outputs) of any fitted model."""
    if isinstance(model, TableModel):
        return model.n_inputs, model.n_outputs
    if isinstance(model, MixedAverage):
        return width_of(model.members[0])
    return model.config.n_inputs, model.config.n_outputs


def parameters_of(model: Fitted) -> int:
    """Learnt numbers: a network's parameters, a table model's, or the members' sum."""
    if isinstance(model, TableModel):
        return model.n_params
    if isinstance(model, MixedAverage):
        return sum(parameters_of(member) for member in model.members)
    return count_parameters(model)


def _member_graph(member: Network | TableModel, path: Path) -> onnx.ModelProto:
    if isinstance(member, TableModel):
        return member.to_onnx()
    export_onnx(member, path)
    return onnx.load(str(path))


def export_model(network: Fitted, path: Path) -> None:
    """Write ``network.predict`` as ONNX at ``path``: one model, or an average."""
    if isinstance(network, Network):
        export_onnx(network, path)
        return
    if isinstance(network, TableModel):
        onnx.save(network.to_onnx(), str(path))
        return
    with tempfile.TemporaryDirectory() as folder:
        members = [
            _member_graph(member, Path(folder) / f"member-{index}.onnx")  # type: ignore[arg-type]
            for index, member in enumerate(network.members)
        ]
    onnx.save(average_graphs(members, network.weights), str(path))
