"""Registry test fixtures: real ``docker-registry`` processes and a berthd of their own.

A daemon is shared by each test module (busybox loaded); each test cleans the names it made. The
TLS daemon treats no registry as insecure and reads certs.d from a temp folder
(``BERTH_CERTS_DIR``), so 127.0.0.1 must present a certificate it can verify.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import Daemon, _spawn_daemon, stop_daemon
from tests.support.registry import (
    PASSWORD,
    USER,
    Registry,
    TestCA,
    TokenServer,
    make_ca,
    start_registry,
)


def _start_daemon(root: Path, daemon_json: dict[str, object],
                  env: dict[str, str] | None = None) -> Daemon:
    import os

    root.mkdir(parents=True, exist_ok=True)
    (root / "daemon.json").write_text(json.dumps(daemon_json))
    sock, data_root, exec_root = root / "berth.sock", root / "data", root / "exec"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in (env or {}).items():
            mp.setenv(key, value)
        try:
            proc = _spawn_daemon(root, sock, data_root, exec_root, root / "berthd.log")
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
    cli_env = dict(os.environ)
    cli_env.pop("BERTH_HOST", None)
    cli_env["HOME"] = str(root / "home")
    return Daemon(root=root, socket=sock, data_root=data_root, exec_root=exec_root,
                  process=proc, log_path=root / "berthd.log", env=cli_env)


@pytest.fixture(scope="module")
def reg_daemon(test_images) -> Iterator[Daemon]:  # type: ignore[no-untyped-def]
    root = Path(tempfile.mkdtemp(prefix="berth-test-reg-"))
    d = _start_daemon(root, {})
    try:
        d.out("load", "-i", str(test_images.busybox_docker_tar))
        yield d
    finally:
        stop_daemon(d)


@pytest.fixture(scope="module")
def registry_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="berth-test-registries-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def open_registry(registry_root: Path) -> Iterator[Registry]:
    reg = start_registry(registry_root / "open")
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture()
def own_registry(tmp_path: Path) -> Iterator[Registry]:
    """A registry of the test's own (for tests that corrupt its storage)."""
    reg = start_registry(tmp_path / "registry")
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def basic_registry(registry_root: Path) -> Iterator[Registry]:
    reg = start_registry(registry_root / "basic", htpasswd=(USER, PASSWORD))
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def token_server(registry_root: Path) -> Iterator[TokenServer]:
    server = TokenServer(registry_root / "token", USER, PASSWORD)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def token_registry(registry_root: Path, token_server: TokenServer) -> Iterator[Registry]:
    reg = start_registry(registry_root / "tokenreg", token=token_server)
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def test_ca(registry_root: Path) -> TestCA:
    return make_ca(registry_root / "ca")


@pytest.fixture(scope="module")
def tls_registry(registry_root: Path, test_ca: TestCA) -> Iterator[Registry]:
    reg = start_registry(registry_root / "tls", tls=test_ca)
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def certs_dir(registry_root: Path) -> Path:
    path = registry_root / "certs.d"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def tls_daemon(test_images, certs_dir: Path) -> Iterator[Daemon]:  # type: ignore[no-untyped-def]
    root = Path(tempfile.mkdtemp(prefix="berth-test-regtls-"))
    d = _start_daemon(root, {"insecure-registries": []}, {"BERTH_CERTS_DIR": str(certs_dir)})
    try:
        d.out("load", "-i", str(test_images.busybox_docker_tar))
        yield d
    finally:
        stop_daemon(d)
