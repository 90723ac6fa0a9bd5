"""Running the real `bounce-service` command in a subprocess, for the tests that need real workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

from bounce_service.devdb import free_port

from .conftest import ROOT


def wait_until_ready(url: str, process: subprocess.Popen, deadline: float = 90.0, output: Path | None = None) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            printed = output.read_text() if output is not None else process.stderr.read() if process.stderr else ""
            raise AssertionError(f"exited early with {process.returncode}: {printed}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # polling interval while waiting for a subprocess to listen, not synchronisation
    raise AssertionError("service did not become ready")


def stop(process: subprocess.Popen, how: signal.Signals = signal.SIGINT) -> tuple[int, str]:
    """Ctrl-C (or another signal `how`), as a person would; returns the exit status and what it printed to
    stderr. A process that outlives the wait is killed, so that it does not outlive the test."""
    process.send_signal(how)
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return process.returncode, stderr or ""


def service_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BOUNCE_SECRETS_DIR")}
    env.update(extra)
    return env


@contextmanager
def serve(database_url: str, *, workers: int | None = 1, config: Path = ROOT / "examples/bounceconfig.yaml",
          secrets_dir: Path = ROOT / "examples/secrets", output: Path | None = None, **environ: str,
          ) -> Iterator[tuple[str, subprocess.Popen]]:
    """`bounce-service serve` (by default with the example config and development secrets), ready for requests.
    `workers=None` leaves the number of workers to the config's spec.service.workers; `environ` is added
    to its environment.

    Everything it prints (logs on stderr, the access log on stdout) goes to `output`, a file: a pipe nobody
    reads while the test runs would fill up and stall the service mid-test.
    """
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        output = output or Path(scratch) / "serve.log"
        with output.open("w") as printed:
            process = subprocess.Popen(
                [sys.executable, "-m", "bounce_service", "serve", "--config", str(config),
                 "--secrets-dir", str(secrets_dir), "--port", str(port),
                 *(["--workers", str(workers)] if workers is not None else [])],
                env=service_env(DATABASE_URL=database_url, **environ), stdout=printed, stderr=subprocess.STDOUT, text=True,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(url, process, output=output)
            yield url, process
        finally:
            if process.poll() is None:
                stop(process)
