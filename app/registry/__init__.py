"""The model registry: models, versions, aliases and lineage."""
# Names' rules (models, aliases, tag keys) live in app.names, shared with every layer.
