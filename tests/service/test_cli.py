"""The commands a person runs: `serve` against a database and `dev` (what `make run` starts)."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from bounce_service.devdb import free_port
from tests.conftest import ROOT, server_dir
from tests.serving import serve, service_env, stop, wait_until_ready


def test_serve_answers_records_and_stops_cleanly(database_url, db, tmp_path):
    with serve(database_url, workers=2, TMPDIR=str(tmp_path)) as (url, process):
        assert [path.name[:15] for path in tmp_path.iterdir()] == ["bounce-metrics-"]
        with httpx.Client(base_url=url) as client:  # keep-alive off so requests spread over the workers
            for index in range(12):
                response = client.post("/webhooks/bounce", auth=("mailer", "dev-mailer-token"),
                                       headers={"Connection": "close"},
                                       json={"email": f"cli{index}@example.com", "type": "hard", "source": "cli-test"})
                assert response.status_code == 200 and response.json() == {"data": True}
            assert db.execute("SELECT COUNT(*) AS n FROM bounces").fetchone()["n"] == 12
            # Whichever of the two workers answers, the counters are the sum over both.
            for _ in range(4):
                text = client.get("/metrics", headers={"Connection": "close"}).text
                assert 'bounce_events_total{outcome="recorded",source="cli-test",type="hard"} 12.0' in text
                assert "\nbounce_commit_group_requests_sum 12.0\n" in text  # a series without labels, too
        code, _ = stop(process)
    assert code == 0
    assert not list(tmp_path.iterdir())  # the workers' counter files went with the service


def workers(process: subprocess.Popen) -> list[str]:
    """The supervisor's workers: forked from it (it had loaded the app: bench/startup.py), not spawned."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    supervisor = Path(f"/proc/{process.pid}/cmdline").read_bytes()

    def forked(pid: str) -> bool:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes() == supervisor
        except OSError:  # a worker that has just been reaped
            return False

    return [pid for pid in children if forked(pid)]


def test_a_worker_that_dies_is_replaced_and_the_service_keeps_recording(database_url, db):
    with serve(database_url, workers=2) as (url, process):
        first, second = workers(process)
        os.kill(int(first), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not (len(workers(process)) == 2 and first not in workers(process)):  # uvicorn checks every 0.5 s
            assert time.monotonic() < deadline, "the dead worker was not replaced"
            time.sleep(0.1)
        assert second in workers(process)
        with httpx.Client(base_url=url) as client:
            for index in range(10):  # a new connection each: both workers answer
                response = client.post("/webhooks/bounce", auth=("mailer", "dev-mailer-token"), headers={"Connection": "close"},
                                       json={"email": f"after{index}@example.com", "type": "soft", "source": "cli-test"})
                assert response.status_code == 200
        assert db.execute("SELECT COUNT(*) AS n FROM bounces").fetchone()["n"] == 10


def test_an_idle_connection_outlives_uvicorns_own_keep_alive(database_url):
    # A load balancer or Ingress keeps idle upstream connections for 60 s or more; a service that closes
    # them sooner races its next request on them (a 502 for the sender). spec.service.keepAliveTimeout: 75s.
    with serve(database_url) as (url, _):
        address = urlsplit(url)
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
        connection.request("GET", "/healthz")
        assert connection.getresponse().read()
        local = connection.sock.getsockname()
        time.sleep(6)  # the stimulus, not a wait for something: idle past uvicorn's default of 5 s
        connection.request("GET", "/healthz")
        assert connection.getresponse().status == 200
        assert connection.sock.getsockname() == local  # the same connection, not a new one
        connection.close()


def test_serve_workers_hold_no_secret_value_in_their_environment_or_command_line(database_url):
    # anyone who may read /proc (`ps e`) must not learn a token from the supervisor or a worker.
    tokens = [path.read_bytes().strip() for path in (ROOT / "examples/secrets/bounce-api").iterdir()]
    with serve(database_url, workers=2) as (url, process):
        assert len(workers(process)) == 2
        for pid in (process.pid, *workers(process)):
            seen = Path(f"/proc/{pid}/environ").read_bytes() + Path(f"/proc/{pid}/cmdline").read_bytes()
            assert b"examples/secrets" in seen
            assert not [token for token in tokens if token in seen]


def test_dev_starts_embedded_postgres_prints_a_working_curl_and_stops_everything():
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("the embedded server is what this test is about")
    port = free_port()
    data_dir = server_dir()
    process = subprocess.Popen(
        [sys.executable, "-m", "bounce_service", "dev", "--config", str(ROOT / "examples/bounceconfig.yaml"),
         "--secrets-dir", str(ROOT / "examples/secrets"), "--port", str(port), "--data-dir", str(data_dir)],
        env=service_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, process)
    finally:
        code, stderr = stop(process)
    # The printed curl is run verbatim while a fresh `dev` serves on the same data directory.
    process = subprocess.Popen(process.args, env=service_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_ready(url, process)
        match = re.search(r"(curl -s -u .*?/webhooks/bounce)", stderr, re.S)
        assert match, stderr
        result = subprocess.run(["bash", "-c", match.group(1)], capture_output=True, text=True, timeout=30)
        assert result.stdout == '{"data":true}'
    finally:
        code, stderr = stop(process)
    assert code == 0
    assert "embedded PostgreSQL stopped" in stderr
    server_url = re.search(r"embedded PostgreSQL running at (\S+)", stderr).group(1)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server_url, connect_timeout=2)
    assert Path(data_dir / "pgdata" / "PG_VERSION").exists()
    shutil.rmtree(data_dir, ignore_errors=True)


def dev(*extra: str, **env: str) -> tuple[str, subprocess.Popen]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bounce_service", "dev", "--config", str(ROOT / "examples/bounceconfig.yaml"),
         "--secrets-dir", str(ROOT / "examples/secrets"), "--port", str(port), *extra],
        env=service_env(**env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    return f"http://127.0.0.1:{port}", process


def dev_stopped_by(how: signal.Signals) -> tuple[int, str]:
    """`dev` with a throwaway database, ready, then sent `how`: (exit status, the embedded server's URL),
    once its log says the server stopped and its temporary data is gone, and the directory is."""
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("the embedded server is what this test is about")
    url, process = dev()
    try:
        wait_until_ready(url, process)
    finally:
        code, stderr = stop(process, how)
    server_url, data_dir = re.search(r"embedded PostgreSQL running at (\S+) \(data in (\S+)\)", stderr).groups()
    assert "embedded PostgreSQL stopped and its temporary data removed" in stderr
    assert not Path(data_dir).exists()
    return code, server_url


def test_dev_without_a_data_dir_leaves_no_database_behind():
    code, _ = dev_stopped_by(signal.SIGINT)
    assert code == 0


def test_dev_with_database_url_uses_that_database_and_leaves_it_running(database_url, db):
    url, process = dev(DATABASE_URL=database_url)
    try:
        wait_until_ready(url, process)
        response = httpx.post(url + "/webhooks/bounce", auth=("mailer", "dev-mailer-token"),
                              json={"email": "dev@example.com", "type": "soft", "source": "dev-test"})
        assert response.json() == {"data": True}
    finally:
        code, stderr = stop(process)
    assert code == 0
    assert "embedded PostgreSQL" not in stderr and "your DATABASE_URL server keeps running" in stderr
    assert db.execute("SELECT email FROM bounces").fetchall() == [{"email": "dev@example.com"}]  # still reachable


def test_dev_refuses_a_port_in_use_before_starting_a_database():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "bounce_service", "dev", "--config", str(ROOT / "examples/bounceconfig.yaml"),
             "--secrets-dir", str(ROOT / "examples/secrets"), "--port", str(port)],
            env=service_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"cannot serve on 127.0.0.1:{port}: Address already in use; choose another port" in result.stderr
    assert "embedded PostgreSQL running" not in result.stderr


def test_dev_stops_everything_when_its_terminal_hangs_up():
    _, server_url = dev_stopped_by(signal.SIGHUP)  # what closing the terminal sends
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server_url, connect_timeout=2)


def test_an_unreachable_database_is_one_line_and_status_2():
    result = subprocess.run(
        [sys.executable, "-m", "bounce_service", "migrate", "--config", str(ROOT / "examples/bounceconfig.yaml"),
         "--secrets-dir", str(ROOT / "examples/secrets"), "--database-timeout", "0"],
        env=service_env(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "database unavailable after waiting 0 s:" in result.stderr and "Traceback" not in result.stderr
