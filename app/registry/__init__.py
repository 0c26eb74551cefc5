"""The model registry: models, versions, aliases and lineage."""

# Model names appear in URLs and artifact keys: a letter or digit, then up to 63 more.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
