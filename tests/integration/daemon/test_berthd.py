"""A real ``berthd`` process: sockets, locks, pidfile, signals, and clients talking to it."""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest


@dataclass
class Berthd:
    root: Path
    process: subprocess.Popen[bytes]

    @property
    def socket(self) -> Path:
        return self.root / "berthd.sock"

    @property
    def pidfile(self) -> Path:
        return self.root / "berthd.pid"

    @property
    def data_root(self) -> Path:
        return self.root / "data"

    def stderr(self) -> str:
        return (self.root / "berthd.log").read_text()

    def client(self) -> docker.APIClient:
        return docker.APIClient(base_url=f"unix://{self.socket}", timeout=30)

    def request(self, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        conn = UnixHTTPConnection(self.socket)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def terminate(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=30)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(30)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def berthd_command(root: Path, data_root: Path | None = None, sock: Path | None = None,
                   *extra: str) -> list[str]:
    return [sys.executable, "-m", "berth.engine.daemon",
            "-H", f"unix://{sock or root / 'berthd.sock'}",
            "--data-root", str(data_root or root / "data"),
            "--exec-root", str(root / "exec"),
            "--pidfile", str(root / "berthd.pid"),
            "--config-file", str(root / "daemon.json"), *extra]


def spawn(root: Path, data_root: Path | None = None) -> Berthd:
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "daemon.json").exists():
        (root / "daemon.json").write_text("{}")
    with open(root / "berthd.log", "wb") as log:
        proc = subprocess.Popen(berthd_command(root, data_root), stdout=log, stderr=log,
                                start_new_session=True)
    daemon = Berthd(root, proc)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"berthd exited {proc.returncode}:\n{daemon.stderr()}")
        try:
            if daemon.request("GET", "/_ping")[0] == 200:
                return daemon
        except OSError:
            pass
        time.sleep(0.05)
    daemon.terminate()
    raise AssertionError(f"berthd did not answer:\n{daemon.stderr()}")


@pytest.fixture()
def daemons(tmp_path: Path) -> Iterator[list[Berthd]]:
    """Every berthd a test starts is listed here and stopped after it, pass or fail."""
    started: list[Berthd] = []
    yield started
    for d in started:
        d.terminate()


# -- talking to it ------------------------------------------------------------------------------


def test_docker_py_negotiates_and_reads_version_info_ping(tmp_path: Path,
                                                          daemons: list[Berthd]) -> None:
    d = spawn(tmp_path / "a")
    daemons.append(d)
    client = d.client()
    try:
        assert client.api_version == "1.41"  # docker-py asked /version without a prefix
        assert client.ping() is True
        version = client.version()
        assert version["ApiVersion"] == "1.41"
        assert version["MinAPIVersion"] == "1.24"
        info = client.info()
        assert info["DockerRootDir"] == str(d.data_root)
        assert info["Driver"] == "overlay2"
        assert info["Images"] == 0
        assert info["ID"] == (d.data_root / "engine-id").read_text().strip()
    finally:
        client.close()


def test_headers_versions_and_errors_over_the_socket(tmp_path: Path,
                                                     daemons: list[Berthd]) -> None:
    d = spawn(tmp_path / "a")
    daemons.append(d)
    status, headers, body = d.request("HEAD", "/_ping")
    assert (status, body) == (200, b"")
    assert headers["Api-Version"] == "1.41"
    assert headers["Ostype"] == "linux"
    assert headers["Server"].startswith("Docker/")
    status, _, body = d.request("GET", "/v1.12/version")
    assert status == 400
    assert json.loads(body)["message"].startswith("client version 1.12 is too old")
    status, _, body = d.request("GET", "/v1.41/images/no-such-image:latest/json")
    assert status == 404
    assert json.loads(body) == {"message": "no such image: no-such-image:latest: "
                                           "No such image: no-such-image:latest"}
    status, _, body = d.request("GET", "/nothing/here")
    assert (status, json.loads(body)) == (404, {"message": "page not found"})


def test_images_round_trip_through_docker_py(tmp_path: Path, daemons: list[Berthd],
                                             test_images) -> None:  # type: ignore[no-untyped-def]
    d = spawn(tmp_path / "a")
    daemons.append(d)
    client = d.client()
    try:
        with open(test_images.busybox_docker_tar, "rb") as f:
            messages = list(client.load_image(f.read()))
        assert any("Loaded image" in m.get("stream", "") for m in messages), messages
        listed = client.images()
        assert len(listed) == 1
        image_id = listed[0]["Id"]
        inspect = client.inspect_image(image_id)
        assert inspect["Id"] == image_id
        assert inspect["RootFS"]["Type"] == "layers"
        assert client.tag(image_id, "docker.io/me/bb", "1.0") is True
        assert "me/bb:1.0" in client.inspect_image("me/bb:1.0")["RepoTags"]
        saved = b"".join(client.get_image("me/bb:1.0"))
        with tarfile.open(fileobj=io.BytesIO(saved)) as tar:
            assert "manifest.json" in tar.getnames()
        assert client.history("me/bb:1.0")[0]["Id"] == image_id
        assert client.remove_image("me/bb:1.0") == [{"Untagged": "me/bb:1.0"}]
        with pytest.raises(docker.errors.NotFound):
            client.inspect_image("me/bb:1.0")
    finally:
        client.close()


# -- processes, files and locks -----------------------------------------------------------------


def test_socket_is_root_owned_0660_and_pidfile_names_the_daemon(tmp_path: Path,
                                                                daemons: list[Berthd]) -> None:
    d = spawn(tmp_path / "a")
    daemons.append(d)
    st = d.socket.stat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert (st.st_uid, st.st_gid) == (0, 0)
    assert d.pidfile.read_text().strip() == str(d.process.pid)


def test_sigterm_shuts_down_cleanly(tmp_path: Path, daemons: list[Berthd]) -> None:
    d = spawn(tmp_path / "a")
    daemons.append(d)
    assert d.terminate() == 0
    assert not d.socket.exists()
    assert not d.pidfile.exists()
    assert 'msg="Processing signal \'terminated\'"' in d.stderr()
    assert "Daemon shutdown complete" in d.stderr()


def test_two_daemons_side_by_side(tmp_path: Path, daemons: list[Berthd]) -> None:
    a = spawn(tmp_path / "a")
    daemons.append(a)
    b = spawn(tmp_path / "b")
    daemons.append(b)
    ids = set()
    for d in (a, b):
        status, _, body = d.request("GET", "/info")
        assert status == 200
        info = json.loads(body)
        assert info["DockerRootDir"] == str(d.data_root)
        ids.add(info["ID"])
    assert len(ids) == 2
    assert a.terminate() == 0
    assert b.request("GET", "/_ping")[0] == 200  # one stopping leaves the other alone


def test_second_daemon_on_the_same_data_root_is_refused(tmp_path: Path,
                                                        daemons: list[Berthd]) -> None:
    first = spawn(tmp_path / "a")
    daemons.append(first)
    other = tmp_path / "b"
    other.mkdir()
    (other / "daemon.json").write_text("{}")
    proc = subprocess.run(berthd_command(other, data_root=first.data_root), capture_output=True,
                          timeout=30)
    assert proc.returncode == 1
    assert (f"failed to start daemon: data root {first.data_root} is in use by another "
            f"berthd (pid {first.process.pid})").encode() in proc.stderr
    assert not (other / "berthd.sock").exists()
    assert not (other / "berthd.pid").exists()
    assert first.request("GET", "/_ping")[0] == 200


def test_a_live_socket_is_not_taken_over_but_a_stale_one_is(tmp_path: Path,
                                                            daemons: list[Berthd]) -> None:
    first = spawn(tmp_path / "a")
    daemons.append(first)
    other = tmp_path / "b"
    other.mkdir()
    (other / "daemon.json").write_text("{}")
    proc = subprocess.run(berthd_command(other, sock=first.socket), capture_output=True,
                          timeout=30)
    assert proc.returncode == 1
    assert b"another daemon is already listening on" in proc.stderr
    assert first.request("GET", "/_ping")[0] == 200

    stale = tmp_path / "c" / "berthd.sock"
    stale.parent.mkdir()
    left = socket.socket(socket.AF_UNIX)
    left.bind(str(stale))  # bound, never listening: what a crashed daemon leaves
    left.close()
    d = spawn(tmp_path / "c")
    daemons.append(d)
    assert d.request("GET", "/_ping")[0] == 200


def test_pidfile_of_a_live_process_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "a"
    root.mkdir()
    (root / "daemon.json").write_text("{}")
    (root / "berthd.pid").write_text(str(os.getpid()))  # this test runner is alive
    proc = subprocess.run(berthd_command(root), capture_output=True, timeout=30)
    assert proc.returncode == 1
    assert b"pid file found, ensure berthd is not running or delete" in proc.stderr
    assert (root / "berthd.pid").read_text() == str(os.getpid())


def test_group_sets_the_sockets_group_and_an_unknown_group_is_refused(
        tmp_path: Path, daemons: list[Berthd]) -> None:
    root = tmp_path / "g"
    root.mkdir()
    (root / "daemon.json").write_text("{}")
    proc = subprocess.run([*berthd_command(root), "--group", "no-such-group-here"],
                          capture_output=True, timeout=30)
    assert proc.returncode == 1
    assert b"group no-such-group-here not found" in proc.stderr
    assert not (root / "berthd.sock").exists()
    assert not (root / "berthd.pid").exists()

    (root / "daemon.json").write_text('{"group": "daemon"}')  # gid 1 on Debian
    d = spawn(root)
    daemons.append(d)
    st = d.socket.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 1, 0o660)
