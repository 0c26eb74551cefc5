"""docker-compose.yml cannot be run here (no Docker), so what can be checked by reading it
is: every KILN_ variable it sets is a real setting that validates, and no two services share
a volume (workers scale with --scale worker=N on nothing but the database, the broker and
the object store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from app.core.config import ENV_PREFIX, Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def test_compose_sets_only_real_settings_and_they_validate(tmp_path: Path) -> None:
    services = _compose()["services"]
    kiln_env = services["gateway"]["environment"]
    assert kiln_env == services["worker"]["environment"]
    names = {name.removeprefix(ENV_PREFIX).lower() for name in kiln_env}
    assert names <= set(Settings.model_fields), names - set(Settings.model_fields)
    values = {
        name.removeprefix(ENV_PREFIX).lower(): str(value).replace(
            "${KILN_S3_SECRET_ACCESS_KEY:-kiln-local-only-secret}", "secret"
        )
        for name, value in kiln_env.items()
    }
    values["data_dir"] = str(tmp_path)
    settings = load_settings(**values)
    assert settings.artifact_url.startswith("s3://")


def test_no_volume_is_shared_and_workers_have_none() -> None:
    services = _compose()["services"]
    mounted: dict[str, str] = {}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert source not in mounted, f"{source} is mounted by {mounted[source]} and {name}"
            mounted[source] = name
    assert "volumes" not in services["worker"]
    assert "container_name" not in services["worker"]  # --scale needs generated names
