"""The networks (torch), their training loop and ONNX export, and the torch-free arithmetic
of their size (``size``: the gateway checks a job's networks against the server's limits
before any exists). The search and compression engines use torch too, on the workers;
the gateway never imports it (import-linter's contracts in pyproject.toml)."""
