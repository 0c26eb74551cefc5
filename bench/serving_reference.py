"""The reference: a plain FastAPI + onnxruntime endpoint, as one would write it by hand.
Run by bench/serving.py as ``uvicorn bench.serving_reference:app`` (REFERENCE_MODEL=path)."""

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel

options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(
    os.environ["REFERENCE_MODEL"], options, providers=["CPUExecutionProvider"]
)
app = FastAPI()


class Rows(BaseModel):
    inputs: list[list[float]]


@app.post("/predict")
def predict(rows: Rows) -> dict[str, list]:
    probabilities = session.run(None, {"input": np.asarray(rows.inputs, dtype=np.float32)})[0]
    return {
        "predictions": probabilities.argmax(axis=1).tolist(),
        "probabilities": probabilities.tolist(),
    }
