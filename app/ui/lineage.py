"""A model's versions as a tree: each version under the version it was made from (by
compression, distillation, fine-tuning) when that parent is a version of the same model;
versions from a search or an upload, or whose parent is another model's, are roots."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from app.api.schemas import VersionRead


class ParentRef(BaseModel):
    model: str
    version: int


class Lineage(BaseModel):
    """A version's lineage as the API gives it (``app.registry.service.lineage``)."""

    job_id: int | None = None
    parent: ParentRef | None = None
    method: str | None = None


@dataclass
class Node:
    version: VersionRead
    lineage: Lineage
    children: list[Node] = field(default_factory=list)

    @classmethod
    def of(cls, version: VersionRead) -> Node:
        return cls(version, Lineage.model_validate(version.lineage))

    @property
    def origin(self) -> str:
        lineage = self.lineage
        parent = lineage.parent
        if parent:
            return f"{lineage.method or 'derived'} of {parent.model} v{parent.version}"
        job = lineage.job_id
        return f"{self.version.source}" + (f", job {job}" if job else "")


def version_tree(model: str, versions: list[VersionRead]) -> list[Node]:
    """Roots oldest first; children oldest first under their parent."""
    nodes = {v.version: Node.of(v) for v in sorted(versions, key=lambda v: v.version)}
    roots: list[Node] = []
    for number, node in nodes.items():
        parent = node.lineage.parent
        same_model = parent is not None and parent.model == model
        if parent and same_model and parent.version in nodes and parent.version != number:
            nodes[parent.version].children.append(node)
        else:
            roots.append(node)
    return roots
