"""Reading ONNX graphs that users upload, torch-free: ``checks`` decodes a file within
bounds, refuses external data and reads the declared signature; ``classify`` (with the
shape rules of ``shape_rules``) decides whether a graph is bounded, every op of known cost
and every shape static but the batch, or must run only in a sandbox; ``layers`` reads a
network's layer plan (dense and conv blocks, activations, normalisation) so that training
can start from it. Building torch modules from a plan is ``app.training.from_onnx``'s."""
