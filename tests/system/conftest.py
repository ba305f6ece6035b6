"""Real parts for transfer tests: OpenSSH sshd processes on loopback as hosts, and an HTTP server with Range.

Each host is its own sshd (own host key, key-only auth, a free port) with its own VM directory, run as the
current user (as root: PermitRootLogin and StrictModes set so tmp dirs pass). HOME points at a fresh directory
whose ~/.ssh holds the client key and a known_hosts with every test host's key, the way an admin sets it up.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.server
import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from engine.home import Home
from engine.transfers.hosts import Host, Hosts
from tests.conftest import serving
from tests.system.netns import Lab
from tests.system.sshd import SSHD, keygen, start_sshd


@pytest.fixture(scope="session")
def ssh_world(tmp_path_factory):
    """Three sshd hosts, a client key, and a ~/.ssh with known_hosts for them (shared by the session)."""
    if not os.path.exists(SSHD):
        pytest.fail(f"{SSHD} is missing: tests/run.sh installs openssh-server")
    root = tmp_path_factory.mktemp("sshd")
    user_home = root / "user"
    ssh_dir = user_home / ".ssh"
    ssh_dir.mkdir(parents=True, mode=0o700)
    keygen(ssh_dir / "id_ed25519")
    authorized = root / "authorized_keys"
    shutil.copy(ssh_dir / "id_ed25519.pub", authorized)
    hosts = {name: start_sshd(root, name, authorized) for name in ("host01", "host02", "host03")}
    known = ssh_dir / "known_hosts"
    known.write_text("".join(h.host_key_line + "\n" for h in hosts.values() if h.name != "host03"))
    yield {"user_home": user_home, "hosts": hosts, "known_hosts": known}
    for host in hosts.values():
        host.process.terminate()
        host.process.wait(5)


@pytest.fixture
def ssh_home(ssh_world, monkeypatch):
    """HOME set to the user directory whose ~/.ssh knows host01 and host02 (not host03)."""
    monkeypatch.setenv("HOME", str(ssh_world["user_home"]))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return ssh_world


@pytest.fixture
def own_user(ssh_home, tmp_path, monkeypatch) -> Path:
    """HOME set to a copy of the user directory, so a test may change its ~/.ssh (keys, config, known_hosts)
    without touching the session's."""
    user = tmp_path / "user"
    shutil.copytree(ssh_home["user_home"], user)
    monkeypatch.setenv("HOME", str(user))
    return user


@pytest.fixture
def world(home: Home, ssh_home, tmp_path):
    """A home with the front end, host01 and host02 over ssh, shared and dummy hosts; images on the front end."""
    hosts = Hosts(home)
    ssh_hosts = ssh_home["hosts"]
    for name in ("host01", "host02"):
        for child in ssh_hosts[name].vm_dir.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        hosts.create(ssh_hosts[name].record())
    shared_dir = tmp_path / "shared-vms"
    hosts.create(Host("nfs01", "shared", str(shared_dir)))
    hosts.create(Host("dummy01", "dummy", str(tmp_path / "dummy-vms")))
    images = tmp_path / "images"
    images.mkdir()
    return {"home": home, "fe": home.config.frontend_name, "images": images, "shared": shared_dir, **ssh_home}


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory with Range support. `/truncated/NAME` always stops half-way through the body;
    `/flaky/NAME` does so only on the first request without a Range header; `/slow/NAME` trickles."""

    server_version = "TestHTTP/1.0"
    protocol_version = "HTTP/1.1"
    dropped: set[str] = set()

    def log_message(self, format, *args) -> None:
        pass

    def do_GET(self) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up: fine
            self._get()

    def do_HEAD(self) -> None:
        path = Path(self.server.root) / self.path.strip("/").split("/")[-1]  # type: ignore[attr-defined]
        if not path.is_file():
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(path.stat().st_size))
        self._validators(path)
        self.end_headers()

    def _validators(self, path: Path) -> None:
        """An ETag and a Last-Modified from the file's mtime and size, as nginx makes them."""
        st = path.stat()
        self.send_header("ETag", f'"{st.st_mtime_ns:x}-{st.st_size:x}"')
        self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))

    def _get(self) -> None:
        parts = self.path.strip("/").split("/")
        mode, name = (parts[0], parts[1]) if len(parts) == 2 else ("plain", parts[0])
        path = Path(self.server.root) / name  # type: ignore[attr-defined]
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        header = self.headers.get("Range")
        if header and header.startswith("bytes="):
            start = int(header[6:].split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self._validators(path)
        self.end_headers()
        if mode == "slow":  # about 1 MB/s, for tests that interrupt a copy
            for start in range(0, len(body), 1 << 16):
                self.wfile.write(body[start : start + (1 << 16)])
                time.sleep(0.06)
            return
        cut = mode == "truncated" or (mode == "flaky" and not header and name not in self.dropped)
        if cut:
            self.dropped.add(name)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@contextlib.contextmanager
def range_server(root: Path, tls: ssl.SSLContext | None = None):
    """A RangeHandler server for `root` on a free loopback port, over TLS with `tls`; yields its base URL."""
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    server.root = str(root)  # type: ignore[attr-defined]
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    RangeHandler.dropped = set()
    with serving(server) as port:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"


@pytest.fixture
def http_server(tmp_path):
    with range_server(tmp_path / "www") as url:
        yield {"root": tmp_path / "www", "url": url}


@pytest.fixture
def https_server(tmp_path):
    """The same over TLS, with a self-signed certificate for 127.0.0.1 (`cert`: trust it with SSL_CERT_FILE)."""
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
    names = ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run([*request, *names], check=True, capture_output=True)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with range_server(tmp_path / "www-tls", tls) as url:
        yield {"root": tmp_path / "www-tls", "url": url, "cert": cert}


@pytest.fixture
def shaped(tmp_path, monkeypatch):
    """A home and one sshd host in its own network namespace behind a veth pair capped at 100 Mbit/s both ways
    (tests/system/netns.py), so a copy takes its time whatever the machine's speed; torn down after."""
    user = tmp_path / "user"
    (user / ".ssh").mkdir(parents=True, mode=0o700)
    key = user / ".ssh/id_ed25519"
    keygen(key)
    with Lab(tmp_path, 1, 100, key.with_suffix(".pub")) as lab:
        node = lab.members[0]
        (user / ".ssh/known_hosts").write_text(node.host_key_line + "\n")
        monkeypatch.setenv("HOME", str(user))
        monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
        home = Home(tmp_path / "home").ensure()
        Hosts(home).create(node.record())
        yield {"home": home, "node": node, "lab": lab, "images": tmp_path}
    assert f"hn{lab.tag}" not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
