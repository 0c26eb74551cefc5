"""Several networks of one task averaged into one model: probabilities (classification) or
values (regression) are the members' mean. Exported as one ONNX graph that holds every
member's graph side by side on the shared input and a ``Mean`` node in front of the
output, so it serves, batches and takes a table's preprocessing like a single network."""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx
import torch
from onnx import compose, helper
from torch import nn

from app.contracts.networks import NetworkConfig
from app.training.export import INPUT_NAME, OUTPUT_NAME, export_onnx
from app.training.models import Network, count_parameters
from app.training.table_models import TableModel


class Ensemble(nn.Module):
    """Networks trained for the same inputs and outputs; ``predict`` is their mean."""

    def __init__(self, members: list[Network]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two networks")
        widths = {(m.config.n_inputs, m.config.n_outputs, m.classification) for m in members}
        if len(widths) > 1:
            raise ValueError(f"ensemble members differ in inputs, outputs or task: {widths}")
        self.members = nn.ModuleList(members)
        self.classification = members[0].classification

    @property
    def config(self) -> NetworkConfig:
        """The members' shared interface (inputs, outputs); not one architecture."""
        config: NetworkConfig = self.members[0].config  # type: ignore[assignment]
        return config

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [member.predict(x) for member in self.members]  # type: ignore[operator]
        return torch.stack(outputs).mean(dim=0)


def average_graphs(members: list[onnx.ModelProto]) -> onnx.ModelProto:
    """One model whose output is the mean of the members' outputs, all fed the one input.
    Each member's names get a ``m{i}_`` prefix, so their initializers never collide."""
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
    nodes.append(
        helper.make_node(
            "Mean", [g.graph.output[0].name for g in graphs], [OUTPUT_NAME], name="ensemble_mean"
        )
    )
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

    def __init__(self, members: list[Network | TableModel]) -> None:
        if len(members) < 2:
            raise ValueError("an average needs at least two models")
        widths = {(width_of(m), m.classification) for m in members}
        if len(widths) > 1:
            raise ValueError(f"averaged models differ in inputs, outputs or task: {widths}")
        self.members = members
        self.classification = members[0].classification

    def eval(self) -> MixedAverage:
        for member in self.members:
            member.eval()
        return self

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member.predict(x) for member in self.members]).mean(dim=0)


Fitted = Network | Ensemble | TableModel | MixedAverage


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
    onnx.save(average_graphs(members), str(path))
