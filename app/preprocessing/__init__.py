"""Preprocessing of tables: column typing, the fitted encoding, its numpy and ONNX forms."""
