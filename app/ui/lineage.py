"""A model's versions as a tree: each version under the version it was made from (by
compression, distillation, fine-tuning) when that parent is a version of the same model;
versions from a search or an upload, or whose parent is another model's, are roots."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.api.schemas import VersionRead


@dataclass
class Node:
    version: VersionRead
    children: list[Node] = field(default_factory=list)

    @property
    def origin(self) -> str:
        lineage = self.version.lineage
        parent = lineage.get("parent")
        if parent:
            return f"{lineage.get('method') or 'derived'} of {parent['model']} v{parent['version']}"
        job = lineage.get("job_id")
        return f"{self.version.source}" + (f", job {job}" if job else "")


def version_tree(model: str, versions: list[VersionRead]) -> list[Node]:
    """Roots oldest first; children oldest first under their parent."""
    nodes = {v.version: Node(v) for v in sorted(versions, key=lambda v: v.version)}
    roots: list[Node] = []
    for number, node in nodes.items():
        parent = node.version.lineage.get("parent")
        if (
            parent
            and parent.get("model") == model
            and parent.get("version") in nodes
            and parent["version"] != number
        ):
            nodes[parent["version"]].children.append(node)
        else:
            roots.append(node)
    return roots
