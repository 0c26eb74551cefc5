"""The settings that bound what callers, uploads and jobs may do, and who may see what: the
probe and serving limits of uploaded graphs, retention of stored files, the /metrics token,
the dashboard's public address and session signing, CORS. ``Settings`` (``app.core.config``)
inherits them; this module only declares and checks them."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings

ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+")  # scheme://host[:port], no path


class BoundsSettings(BaseSettings):
    """Limits, retention and exposure (see the module docstring)."""

    probe_memory_mb: int = Field(
        default=2048,
        ge=256,
        le=1_048_576,
        description="Address "
        "space of the subprocess that first loads, runs and times an "
        "uploaded ONNX model.",
    )
    probe_timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="Wall time that subprocess may take."
    )
    explain_max_rows: int = Field(
        default=100, gt=0, le=100_000, description="Rows per explain request."
    )
    explain_max_perturbed_rows: int = Field(
        default=100_000,
        gt=0,
        le=10_000_000,
        description="Rows one explain request may run through the model (its rows and, for "
        "sampled Shapley values, every perturbed row: rows x permutations x (columns - 1)).",
    )
    output_retention_s: float = Field(
        default=0.0,
        ge=0,
        description="Batch prediction outputs (and their uploaded inputs) are deleted this "
        "long after their job finished; 0 keeps them until DELETE /v1/jobs/{id}/files.",
    )
    scratch_retention_s: float = Field(
        default=3600.0,
        ge=0,
        description="What only a running job needs (a batch job's parts, the work file of "
        "a data-parallel trial a crash left) is deleted this long after the job finished.",
    )
    upload_run_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description="Most time one run of an uploaded graph (or one derived from it) may "
        "take in the gateway; the run is stopped and the request answered 422.",
    )
    upload_request_memory_mb: int = Field(
        default=512,
        ge=16,
        le=1_048_576,
        description="Memory one request to an uploaded graph may plan for: its rows per "
        "request are capped at this divided by the memory per row its probe measured.",
    )
    sandbox_processes: int = Field(
        default=4,
        ge=1,
        le=256,
        description="Most sandbox processes a gateway or worker keeps, one per sandboxed "
        "model in use (uploaded graphs whose cost is not provably linear in the batch run "
        "only there); the least recently used idle one is stopped to make room, and a "
        "request needing one while all are busy is answered 503.",
    )
    sandbox_queue: int = Field(
        default=64,
        ge=1,
        description="Requests waiting per sandboxed model (it runs one at a time); more "
        "are answered 503.",
    )
    upload_model_memory_mb: int = Field(
        default=1024,
        ge=16,
        le=1_048_576,
        description="Memory a loaded upload may hold (what its probe measured once loaded, "
        "constants onnxruntime computes at load included); a larger upload is refused, and "
        "the session cache counts what each holds, not its file's size.",
    )
    metrics_token: SecretStr = Field(
        default=SecretStr(""),
        description="When set, GET "
        "/metrics answers only requests with 'Authorization: "
        "Bearer <this token>' (Prometheus: "
        "authorization.credentials); empty: /metrics is open.",
    )

    public_url: str = Field(
        default="",
        max_length=2048,
        description="The address users reach ModelKiln at, behind a TLS proxy "
        "(https://kiln.example.com): the dashboard's cookie is Secure when it is https, "
        "and its forms may come from it. Empty: what each request's URL says.",
    )
    ui_secret: SecretStr = Field(
        default=SecretStr(""),
        description="Signs dashboard sessions; set the same value on gateways of other "
        "machines. Empty: a random secret kept in the data directory (ui_session.secret).",
    )
    ui_session_s: float = Field(
        default=43_200.0,
        gt=0,
        le=30 * 86_400,
        description="How long a dashboard sign-in lasts.",
    )

    cors_origins: str = Field(
        default="",
        description="Comma-separated origins (such as "
        "https://app.example.com) whose pages may call the API from a "
        "browser; empty: CORS stays off and browsers refuse "
        "cross-origin calls. * allows any origin, without "
        "credentials.",
    )
    cors_credentials: bool = Field(
        default=False,
        description="Whether those pages may send "
        "credentials (cookies, HTTP auth); refused with * origins.",
    )

    @model_validator(mode="after")
    def _check_bounds(self) -> BoundsSettings:
        for origin in self.cors_origin_list:
            if origin != "*" and not ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"cors_origins: {origin!r} is not an origin such as "
                    "https://app.example.com (scheme, host, optional port)"
                )
        public = urlsplit(self.public_url.strip())
        if self.public_url and not ORIGIN.fullmatch(f"{public.scheme}://{public.netloc}"):
            raise ValueError(
                f"public_url: {self.public_url[:80]!r} is not a URL such as "
                "https://kiln.example.com (http or https, a host, optional port)"
            )
        if "*" in self.cors_origin_list and self.cors_credentials:
            raise ValueError(
                "cors_origins: * together with KILN_CORS_CREDENTIALS=true would "
                "let any web page call the API with a visitor's credentials; "
                "list the origins instead"
            )
        return self

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @property
    def public_origin(self) -> str:
        """KILN_PUBLIC_URL's scheme://host[:port], or '' when it is not set."""
        if not self.public_url:
            return ""
        parsed = urlsplit(self.public_url)
        return f"{parsed.scheme}://{parsed.netloc}"
