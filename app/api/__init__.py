"""HTTP routes. They translate HTTP to service calls and never import torch."""
