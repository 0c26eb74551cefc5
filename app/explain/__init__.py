"""Explanations of a version's predictions: one attribution per input column (as the user
named it) and a base value that add up to the model's output. Exact where the model allows
it (TreeSHAP on a LightGBM booster kept beside the graph, a linear model's own weights),
else sampled Shapley values run on the served graph against a background sample stored
with the version. Torch-free; LightGBM is imported only for a booster's explanations."""
