"""Batch prediction jobs: a CSV through one version, in chunks, on the workers."""
