"""Shared parts of the HTTP benchmarks: a durable PostgreSQL, the real service, and wrk.

Everything runs on this machine: the load generator (wrk, from Debian), uvicorn and PostgreSQL share
its cores, so figures are comparable only with baselines measured in the same run.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager, Iterator

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "service"))

from bounce_service.devdb import EmbeddedPostgres, free_port  # noqa: E402

TOKEN = "bench-token"


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def ensure_wrk() -> str:
    if not shutil.which("wrk"):
        progress("installing wrk (Debian package)")
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
        if not shutil.which("wrk"):
            subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True)
    return shutil.which("wrk")


@contextmanager
def database(workdir: Path) -> Iterator[EmbeddedPostgres]:
    """A durable server (fsync on): commit cost is what group commit is about."""
    server = EmbeddedPostgres(workdir / "pg", durable=True).start()
    try:
        yield server
    finally:
        server.stop(mode="immediate")


def write_config(workdir: Path, **service: object) -> tuple[Path, Path]:
    secrets = workdir / "secrets"
    (secrets / "api").mkdir(parents=True, exist_ok=True)
    (secrets / "api" / "bench").write_text(TOKEN)
    spec = {
        "api": {"users": [{"name": "bench", "token": {"secretRef": {"name": "api", "key": "bench"}},
                           "permissions": ["webhooks:post_bounce", "bounces:get", "subscribers:manage"]}]},
        "service": {"workers": 2, "logLevel": "warning", **service},
    }
    config = workdir / f"config-{abs(hash(repr(service)))}.yaml"
    config.write_text(yaml.safe_dump({"apiVersion": "bounce-operator.io/v1alpha1", "kind": "BounceConfig",
                                      "metadata": {"name": "bench"}, "spec": spec}))
    return config, secrets


def wait_ready(url: str, process: subprocess.Popen, path: str = "/readyz", deadline: float = 60) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(url + path, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not become ready")


@contextmanager
def service(db_url: str, config: Path, secrets: Path, log: Path | None = None, checkout: Path | None = None) -> Iterator[str]:
    """`bounce-service serve`, ready; what it prints goes to `log` if given (a file, never a pipe nobody reads).

    `checkout`: run that checkout's code (a git worktree of another commit) instead of this one's."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": db_url}
    if checkout is not None:
        env["PYTHONPATH"] = f"{checkout / 'service'}{os.pathsep}{checkout}"
    output = log.open("w") if log else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, "-m", "bounce_service", "serve", "--config", str(config), "--secrets-dir", str(secrets),
         "--port", str(port)],
        env=env, stdout=output, stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
    )
    if log:
        output.close()  # the child has its own copy
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def uvicorn_app(target: str, *, ready: str, env: dict[str, str] | None = None, factory: bool = False) -> Iterator[str]:
    """`target` under uvicorn with the service's server settings: 2 workers, uvloop + httptools, quiet."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
         "--log-level", "warning", "--no-server-header", *(["--factory"] if factory else [])],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, path=ready)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def bare_endpoint() -> ContextManager[str]:
    """The framework's ceiling: the same server settings, an endpoint that does nothing."""
    return uvicorn_app("bench._bare:app", ready="/healthz")


@dataclass
class Load:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _latency(output: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(url: str, script: Path, *, seconds: int, connections: int = 64, threads: int = 2,
        env: dict[str, str] | None = None) -> Load:
    progress(f"wrk {connections} connections for {seconds}s -> {url}")
    output = subprocess.run(
        [ensure_wrk(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        check=True, capture_output=True, text=True, env={**os.environ, **(env or {})},
    ).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return Load(
        requests_per_second=float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        p50_ms=_latency(output, "50"),
        p99_ms=_latency(output, "99"),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        errors=sum(map(int, errors.groups())) if errors else 0,
    )


def workdir() -> Path:
    """A scratch directory for one benchmark run, removed when the run ends (its database is large)."""
    base = ROOT / ".tmp"
    base.mkdir(exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="bench-", dir=base))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path
