"""Real transport servers on 127.0.0.1 for the pull tests: OpenSSH sshd and an S3-compatible server.

sshd runs in the foreground (`-D -e`) from a generated config: its own host key, key
authentication only, the authorised key in a temporary file (`StrictModes no`: the temporary
folders are not root's ~/.ssh). The S3 server is moto's server mode, an HTTP server speaking
the S3 API. Both are started once per test module and stopped at its end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

SSHD = "/usr/sbin/sshd"
S3_KEY, S3_SECRET, S3_REGION = "rtw-test-key", "rtw-test-secret", "us-east-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_banner(port: int, prefix: bytes, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            said = process.stderr.read() if process.stderr else b""
            raise RuntimeError(f"the server exited with {process.returncode}: {said!r}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                if not prefix or conn.recv(64).startswith(prefix):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no server answered on 127.0.0.1:{port}")


@dataclass
class SshServer:
    port: int
    client_key: Path
    host_public_key: str
    process: subprocess.Popen[bytes]

    def connection_uri(self, *, host_key: str | None = None) -> str:
        """An Airflow SFTP connection URI for this server (as `airflow connections get -o uri` prints it)."""
        pinned = host_key or self.host_public_key.split()[1]
        return (f"sftp://root@127.0.0.1:{self.port}/?key_file={quote(str(self.client_key), safe='')}"
                f"&host_key={quote(pinned, safe='')}")

    def session_pids(self) -> list[int]:
        """The per-connection sshd processes (children of the listener)."""
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                children.append(int(entry.name))
        return children

    def cut_sessions(self) -> int:
        """Kill every open SSH session: the connection drops mid-transfer, as a network cut would."""
        pids = self.session_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    def stop(self) -> None:
        self.cut_sessions()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_sshd(folder: Path) -> SshServer:
    """An OpenSSH server on 127.0.0.1 accepting root with a generated key, and only with it."""
    folder.mkdir(parents=True, exist_ok=True)
    host_key, client_key = folder / "host_ed25519", folder / "client_ed25519"
    for key in (host_key, client_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", key.name, "-f", str(key)], check=True)
    authorized = folder / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    port = free_port()
    config = folder / "sshd_config"
    config.write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {folder / 'sshd.pid'}
AuthorizedKeysFile {authorized}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
LogLevel ERROR
""")
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _wait_for_banner(port, b"SSH-", process)
    return SshServer(port, client_key, host_key.with_suffix(".pub").read_text().strip(), process)


@dataclass
class S3Server:
    port: int
    server: object

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connection_uri(self) -> str:
        """An Airflow AWS connection URI for this server."""
        return (f"aws://{S3_KEY}:{S3_SECRET}@/?region_name={S3_REGION}"
                f"&endpoint_url={quote(self.endpoint_url, safe='')}")

    def client(self):  # a boto3 S3 client
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, aws_access_key_id=S3_KEY,
                            aws_secret_access_key=S3_SECRET, region_name=S3_REGION)

    def stop(self) -> None:
        self.server.stop()  # type: ignore[attr-defined]


def start_s3() -> S3Server:
    """moto's S3-compatible server on 127.0.0.1 and a free port."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    _wait_for_banner(port, b"")
    return S3Server(port, server)
