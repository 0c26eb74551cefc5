"""End-to-end tests: real `kiln serve` and worker processes driven over HTTP and gRPC
(the `kiln_server` fixtures of tests/fixtures/servers.py)."""
