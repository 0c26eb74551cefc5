"""The registry's SQL, one module per aggregate: models and versions (``models``), aliases
and their history (``aliases``), and what serving records about a model (``monitoring``).
The rules above them (``app.registry.service``, ``traffic``, ``monitoring``, ...) call these
and import no SQLAlchemy."""

from app.registry.repository.aliases import AliasRepository
from app.registry.repository.models import ModelRepository, VersionRepository
from app.registry.repository.monitoring import (
    DriftProgressRepository,
    DriftWindowRepository,
    ModelEventRepository,
    RequestLogRepository,
    ShadowComparisonRepository,
)

__all__ = [
    "AliasRepository",
    "DriftProgressRepository",
    "DriftWindowRepository",
    "ModelEventRepository",
    "ModelRepository",
    "RequestLogRepository",
    "ShadowComparisonRepository",
    "VersionRepository",
]
