"""ModelKiln's Python client: ``from modelkiln import Client``."""

from modelkiln.answers import Dataset, Model, Version
from modelkiln.client import Client, KilnApiError
from modelkiln.csv_predict import predict_csv
from modelkiln.job import Job
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
