"""``tritonclient.grpc``, unchanged, in a process of its own that the tests drive with one
JSON line per call. (kserve and tritonclient.grpc both register the protocol's messages
in protobuf's default pool under the same names, so the two clients cannot share the test
process; a client of ours lives in its own process anyway.)"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import numpy as np


class TritonGrpcPeer:
    """The peer process, talking to ``127.0.0.1:port``."""

    def __init__(self, port: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.triton_grpc_peer", str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def call(self, op: str, **arguments: Any) -> dict[str, Any]:
        """One call; ``{"ok": True, ...}`` or ``{"ok": False, "status", "message"}``."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self.process.stdout.readline())
        return answer

    def infer(
        self,
        rows: np.ndarray,
        *,
        model: str = "flowers",
        version: str = "",
        key: str | None = None,
        name: str = "input",
        datatype: str = "FP32",
        request_id: str = "",
        output: str = "output",
    ) -> dict[str, Any]:
        answer = self.call(
            "infer",
            model=model,
            version=version,
            rows=rows.tolist(),
            shape=list(rows.shape),
            datatype=datatype,
            name=name,
            key=key,
            request_id=request_id,
            output=output,
        )
        if answer["ok"]:
            answer["output"] = np.asarray(answer["output"], dtype=np.float32)
        return answer

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def _serve(port: str) -> None:  # pragma: no cover - runs in the peer process
    import tritonclient.grpc as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(url=f"127.0.0.1:{port}")

    def headers(request: dict[str, Any]) -> dict[str, str] | None:
        key = request.get("key")
        return {"authorization": f"Bearer {key}"} if key else None

    def run(request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "health":
            return {"live": client.is_server_live(), "ready": client.is_server_ready()}
        if op == "server_metadata":
            return client.get_server_metadata(as_json=True)
        if op == "model_metadata":
            return client.get_model_metadata(
                request["model"], request.get("version", ""), headers=headers(request), as_json=True
            )
        if op == "model_ready":
            return {
                "ready": client.is_model_ready(
                    request["model"], request.get("version", ""), headers=headers(request)
                )
            }
        if op == "infer":
            rows = np.asarray(request["rows"], dtype=triton_dtype(request["datatype"]))
            tensor = triton.InferInput(request["name"], request["shape"], request["datatype"])
            tensor.set_data_from_numpy(rows.reshape(request["shape"]))
            result = client.infer(
                request["model"],
                [tensor],
                model_version=request["version"],
                headers=headers(request),
                request_id=request["request_id"],
                outputs=[triton.InferRequestedOutput(request["output"])],
            )
            response = result.get_response()
            return {
                "output": result.as_numpy(request["output"]).tolist(),
                "model_version": response.model_version,
                "id": response.id,
            }
        raise ValueError(f"unknown op {op!r}")

    def triton_dtype(datatype: str) -> Any:
        from tritonclient.utils import triton_to_np_dtype

        return triton_to_np_dtype(datatype)

    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = {"ok": True, **run(request)}
        except InferenceServerException as error:
            answer = {"ok": False, "status": error.status(), "message": error.message()}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    _serve(sys.argv[1])
