"""Datasets: CSV parsing, validation, storage and splits."""
