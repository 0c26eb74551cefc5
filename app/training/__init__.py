"""The networks (torch), their training loop and ONNX export; the model families
(``families``: one file each, torch-free to import, registered by ``families.registry``)
and the table families' models (``table_models``); and the torch-free arithmetic of a
network's size (``size``: the gateway checks a job's networks against the server's limits
before any exists). The search and compression engines use torch too, on the workers; the
gateway never imports it (import-linter's contracts in pyproject.toml, and for the family
files, which the registry finds at run time, ``tests/training/test_families.py``)."""
