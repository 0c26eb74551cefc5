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
from app.training.models import Network


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
        opset_imports=list(graphs[0].opset_import),
        functions=list(functions.values()),
        producer_name="modelkiln-ensemble",
    )
    model.ir_version = graphs[0].ir_version
    onnx.checker.check_model(model)
    return model


def export_model(network: Network | Ensemble, path: Path) -> None:
    """Write ``network.predict`` as ONNX at ``path``, one network or an ensemble."""
    if isinstance(network, Network):
        export_onnx(network, path)
        return
    with tempfile.TemporaryDirectory() as folder:
        members = []
        for index, member in enumerate(network.members):
            member_path = Path(folder) / f"member-{index}.onnx"
            export_onnx(member, member_path)  # type: ignore[arg-type]
            members.append(onnx.load(str(member_path)))
    onnx.save(average_graphs(members), str(path))
