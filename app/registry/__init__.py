"""The model registry: models, versions, aliases and lineage."""
