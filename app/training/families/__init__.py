"""Model families: each file here that sets ``FAMILY`` is one family (declaration, typed
parameters and space, starting points, fit, ONNX export, description); ``registry`` finds
them. Torch-free to import (see ``base``)."""
