"""The model registry: models, versions, aliases and lineage."""
# Names' rules (models, aliases, tag keys) live in app.core.names, shared with every layer.
