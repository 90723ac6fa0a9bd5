"""A private Dovecot for the scanner tests and the scan benchmark (see TESTING.md, "POP3 / IMAP").

One server per session on 127.0.0.1: POP3 and IMAP, each on a plain port (for `none` and STARTTLS) and an
implicit-TLS port, with a self-signed certificate for 127.0.0.1. Any user name logs in with PASSWORD and
gets the Maildir under its own home, so every test takes a fresh, empty mailbox without touching the
server (a passwd-file would do too, but Dovecot checks it for changes at most once a second). Mail is
delivered by writing Maildir files, as a local delivery agent does.
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import os
import pwd
import select
import shutil
import signal
import socketserver
import subprocess
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bounce_service.devdb import free_port

ROOT = Path(__file__).resolve().parents[2]
DOVECOT = "/usr/sbin/dovecot"  # where Debian's packages put it (scripts/install-system-deps.sh)
LIBEXEC = Path("/usr/lib/dovecot")
# Dovecot refuses mail access as root, and the tests run as root (TESTING.md): mail belongs to `nobody`.
MAIL_OWNER = "nobody"
PASSWORD = "secret-password"
_counter = itertools.count(1)


def install() -> None:
    """Install Dovecot when it is missing (a no-op otherwise)."""
    subprocess.run([str(ROOT / "scripts/install-system-deps.sh")], check=True)


@dataclass(frozen=True)
class MailUser:
    name: str
    password: str
    home: Path

    def folder(self, name: str = "INBOX") -> Path:
        """The Maildir++ directory of a folder (subfolders are dot-prefixed directories)."""
        return self.home / "Maildir" if name == "INBOX" else self.home / "Maildir" / f".{name}"

    def create(self, folder: str = "INBOX") -> Path:
        directory = self.folder(folder)
        if not (directory / "new").is_dir():
            for sub in ("cur", "new", "tmp"):
                (directory / sub).mkdir(parents=True, exist_ok=True)
            for path in (self.home, self.home / "Maildir", directory, *(directory / s for s in ("cur", "new", "tmp"))):
                _own(path)
        return directory

    def deliver(self, raw: bytes, folder: str = "INBOX") -> None:
        directory = self.create(folder)
        name = f"{next(_counter):08d}.{os.getpid()}.test"
        (directory / "tmp" / name).write_bytes(raw)
        _own(directory / "tmp" / name)
        (directory / "tmp" / name).rename(directory / "new" / name)

    def messages(self, folder: str = "INBOX") -> list[bytes]:
        """What is in a folder now, in delivery order."""
        directory = self.folder(folder)
        files = [f for sub in ("new", "cur") if (directory / sub).is_dir() for f in (directory / sub).iterdir()]
        return [f.read_bytes() for f in sorted(files, key=lambda f: f.name)]


class Dovecot:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dovecot-"))
        self.root.chmod(0o755)  # the mail owner must reach the homes below it
        self.config = self.root / "dovecot.conf"
        self.cert = self.root / "cert.pem"
        self.ports: dict[tuple[str, bool], int] = {}
        self._started = False

    def port(self, protocol: str, tls: str) -> int:
        """The port for a mailbox's protocol and tls setting: STARTTLS starts on the plain port."""
        return self.ports[(protocol, tls == "implicit")]

    def start(self) -> "Dovecot":
        self._write_certificate()
        for _ in range(3):  # a free port may be taken by someone else before Dovecot binds it
            self.ports = {key: free_port() for key in (("pop3", False), ("pop3", True), ("imap", False), ("imap", True))}
            self.config.write_text(self._config())
            # Dovecot binds its listeners before it daemonizes: when this returns 0, the ports accept.
            # Its output goes to a file: the daemon would hold a pipe open and `run` would wait forever.
            with (self.root / "startup.log").open("w") as output:
                started = subprocess.run([DOVECOT, "-c", str(self.config)], stdout=output, stderr=output).returncode == 0
            if started:
                self._started = True
                return self
        raise RuntimeError(f"dovecot did not start: {(self.root / 'startup.log').read_text()}")

    def stop(self) -> None:
        if self._started:
            # The daemon writes its pid file after the starter has returned; by now it is there.
            pid = int((self.root / "run/master.pid").read_text())
            fd = os.pidfd_open(pid)
            try:
                os.killpg(pid, signal.SIGTERM)  # the daemon leads a process group: it and its children
                select.select([fd], [], [], 30)  # a pidfd becomes readable when the process has exited
            finally:
                os.close(fd)
        shutil.rmtree(self.root, ignore_errors=True)

    def add_user(self) -> MailUser:
        name = f"user{next(_counter)}"
        user = MailUser(name, PASSWORD, self.root / "home" / name)
        user.create()
        return user

    @contextmanager
    def preauth(self, protocol: str, user: MailUser) -> Iterator[int]:
        """A port where Dovecot serves `user` without a login, as over a trusted tunnel or inetd.

        Each connection runs Dovecot's own imap/pop3 process in pre-authenticated mode, over pipes (it
        refuses a socket on stdin). IMAP greets with PREAUTH; Dovecot's pop3 sends no greeting in this
        mode, so the bridge says the server's usual one.
        """
        command = [str(LIBEXEC / protocol), "-c", str(self.config), "-u", user.name]
        greeting = b"+OK Dovecot ready.\r\n" if protocol == "pop3" else b""

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                threading.Thread(target=self.forward, args=(process,), daemon=True).start()
                self.request.sendall(greeting)
                while data := process.stdout.read1(65536):
                    self.request.sendall(data)
                process.wait()

            def forward(self, process: subprocess.Popen) -> None:
                try:
                    while data := self.request.recv(65536):
                        process.stdin.write(data)
                        process.stdin.flush()
                    process.stdin.close()
                except OSError:  # either side has gone: the session is over
                    pass

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        with server:
            thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
            thread.start()
            try:
                yield server.server_address[1]
            finally:
                server.shutdown()
                thread.join()

    def _write_certificate(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (self.root / "key.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    def _config(self) -> str:
        def listeners(service: str, protocol: str) -> str:
            return (f"service {service} {{\n"
                    f"  inet_listener {protocol} {{\n    port = {self.ports[(protocol, False)]}\n  }}\n"
                    f"  inet_listener {protocol}s {{\n    port = {self.ports[(protocol, True)]}\n    ssl = yes\n  }}\n"
                    "}\n")

        return f"""\
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
protocols = pop3 imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{self.root}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
# A refused login is answered at once: no delay, no growing penalty for the address that tried.
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
passdb {{
  driver = static
  args = password={PASSWORD}
}}
userdb {{
  driver = static
  args = uid={MAIL_OWNER} gid={pwd.getpwnam(MAIL_OWNER).pw_gid} home={self.root}/home/%u
}}
mail_location = maildir:~/Maildir
mail_fsync = never
pop3_uidl_format = %08Xu%08Xv
{listeners("pop3-login", "pop3")}{listeners("imap-login", "imap")}"""


def _own(path: Path) -> None:
    owner = pwd.getpwnam(MAIL_OWNER)
    os.chown(path, owner.pw_uid, owner.pw_gid)

