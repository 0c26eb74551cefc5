"""torch networks, training loop and ONNX export. The only place torch is imported; it
imports nothing else of ours."""
