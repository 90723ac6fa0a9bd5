"""Real Prometheus parts for the monitoring tests: Debian's promtool and prometheus, installed on demand."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import ROOT
from tests.mailbox.conftest import dovecot  # noqa: F401  (the real POP3 server, for test_replicas)


@pytest.fixture(scope="session")
def prometheus_tools() -> None:
    """promtool and prometheus on PATH (`make test` installs them first; a lone pytest run does here)."""
    if not (shutil.which("promtool") and shutil.which("prometheus")):
        subprocess.run(["bash", str(ROOT / "scripts/install-system-deps.sh")], check=True, timeout=600)
