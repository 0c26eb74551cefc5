"""Artifact stores behind one interface, picked by URL scheme."""

from app.storage.base import ArtifactStore, StoredArtifact
from app.storage.local import LocalArtifactStore, get_store

__all__ = ["ArtifactStore", "LocalArtifactStore", "StoredArtifact", "get_store"]
