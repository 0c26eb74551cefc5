"""Architecture rules that must keep holding."""

from __future__ import annotations

import subprocess
import sys


def test_gateway_never_imports_torch() -> None:
    code = (
        "import sys, app.main, app.cli; app.main.create_app; "
        "assert 'torch' not in sys.modules, 'torch was imported by the gateway'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
