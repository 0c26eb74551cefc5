"""How a batch job runs its model on a chunk of rows, by the version's serving plan (the
same rules as the gateway, ``app.serving.runtime.UploadLimits.plan``): a graph ModelKiln
made runs a whole chunk in one onnxruntime call in the worker; a bounded upload the same,
in slices of at most its row cap (its measured memory and time per row); any other upload
only in a sandbox process (``app.serving.sandbox``), in slices of at most the gateway's
rows per request, each under the sandbox's memory limit and deadline. The worker process
never runs a sandboxed graph itself."""

from __future__ import annotations

import numpy as np

from app.contracts.signature import Signature
from app.core.config import Settings
from app.evaluation.sessions import open_session
from app.serving.runtime import Feeds, ServingPlan, rows_in
from app.serving.sandbox import SandboxLimits, SandboxPool


class ChunkRunner:
    """One job's model (not thread-safe: the job's loop calls it)."""

    def __init__(
        self,
        settings: Settings,
        onnx: bytes,
        signature: Signature,
        plan: ServingPlan,
        label: str = "the model",
    ) -> None:
        self.output_name = signature.output.name
        self.pool: SandboxPool | None = None
        if plan.sandboxed:
            self.pool = SandboxPool(SandboxLimits.from_settings(settings))
            self.sandbox = self.pool.model(
                "batch",
                onnx,
                input_name=signature.input.name,
                output_name=self.output_name,
                label=label,
            )
            self.slice_rows = settings.max_predict_rows
        else:
            self.session = open_session(onnx, settings.ort_threads, arena=plan.arena)
            self.slice_rows = plan.cap.rows if plan.cap is not None else 0  # 0: whole chunks

    def run(self, feeds: Feeds) -> np.ndarray:
        """The first output for ``feeds``, computed a slice at a time where the plan says."""
        rows = rows_in(feeds)
        if not self.slice_rows or rows <= self.slice_rows:
            return self._run(feeds)
        parts = [
            self._run(
                {name: values[start : start + self.slice_rows] for name, values in feeds.items()}
            )
            for start in range(0, rows, self.slice_rows)
        ]
        return np.concatenate(parts)

    def _run(self, feeds: Feeds) -> np.ndarray:
        if self.pool is not None:
            return self.sandbox.run(feeds)
        output: np.ndarray = self.session.run([self.output_name], feeds)[0]
        return output

    def close(self) -> None:
        """Stop the sandbox process, if there is one."""
        if self.pool is not None:
            self.pool.close()
