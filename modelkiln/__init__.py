"""ModelKiln's Python client: ``from modelkiln import Client``."""

from modelkiln.client import Client, Dataset, Job, KilnApiError, Model, Version
from modelkiln.csv_predict import predict_csv
from modelkiln.serving import Serving

__all__ = [
    "Client",
    "Dataset",
    "Job",
    "KilnApiError",
    "Model",
    "Serving",
    "Version",
    "predict_csv",
]
