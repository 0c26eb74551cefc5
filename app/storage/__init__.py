"""Artifact stores behind one interface, picked by URL scheme."""

from app.storage.base import OUT_OF_SPACE_ERRNOS, ArtifactStore, StoredArtifact
from app.storage.local import LocalArtifactStore, get_store

__all__ = ["OUT_OF_SPACE_ERRNOS", "ArtifactStore", "LocalArtifactStore", "StoredArtifact",
           "get_store"]
