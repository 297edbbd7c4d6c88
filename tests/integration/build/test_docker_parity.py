"""The same Dockerfiles built by berth and by a real dockerd's classic builder give the same image.

Compared: layer count, the config fields a user sees (Env, Cmd, Entrypoint, WorkingDir, User,
ExposedPorts, Volumes, Labels) and the file tree of every layer the build added (names, types,
modes, owners, sizes, link targets; mtimes are left out: they are build times). Both engines
build FROM the same base image, berth's busybox test image under a private tag, so docker's own
``busybox`` images are not touched. Skipped when no docker daemon answers.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.build.conftest import write_context

pytestmark = pytest.mark.usefixtures("daemon")

BASE = "berthcmp/busybox:1"
DOCKER = shutil.which("docker")
CONFIG_KEYS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes",
               "Labels")
ADD_USER = ("echo 'app:x:1000:1000:Linux User,,,:/home/app:/bin/sh' >> /etc/passwd && "
            "echo 'app:x:1000:' >> /etc/group && mkdir -p /home/app && "
            "chown app:app /home/app")


def _docker(*args: str, input: bytes | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, DOCKER_BUILDKIT="0")
    env.pop("DOCKER_HOST", None)
    assert DOCKER
    return subprocess.run([DOCKER, *args], input=input, capture_output=True, env=env,
                          timeout=timeout)


def _dangling() -> list[str]:
    return _docker("images", "-q", "--no-trunc", "--filter", "dangling=true").stdout.split()


def _docker_answers() -> bool:
    if DOCKER is None:
        return False
    try:
        return _docker("version", "--format", "{{.Server.Version}}", timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _retagged_tar(src: Path, dest: Path, tag: str) -> Path:
    """A copy of a docker-archive whose manifest names ``tag`` instead of its own tags."""
    with tarfile.open(src) as tin, tarfile.open(dest, "w") as tout:
        for member in tin.getmembers():
            data = tin.extractfile(member) if member.isfile() else None
            if member.name == "manifest.json" and data is not None:
                manifest = json.loads(data.read())
                for entry in manifest:
                    entry["RepoTags"] = [tag]
                raw = json.dumps(manifest).encode()
                member.size = len(raw)
                tout.addfile(member, io.BytesIO(raw))
            elif member.name == "repositories":
                continue  # the manifest's RepoTags are enough for both engines
            else:
                tout.addfile(member, data)
    return dest


@pytest.fixture(scope="module")
def engines(daemon, test_images, tmp_path_factory) -> Iterator[object]:  # type: ignore[no-untyped-def]
    if not _docker_answers():
        pytest.skip("no docker daemon answers (docker CLI missing or dockerd not running)")
    tar = _retagged_tar(Path(test_images.busybox_docker_tar),
                        tmp_path_factory.mktemp("parity") / "base.tar", BASE)
    loaded = _docker("load", "-i", str(tar))
    assert loaded.returncode == 0, loaded.stderr
    daemon.out("load", "-i", str(tar))
    try:
        yield daemon
    finally:
        _docker("rmi", BASE)
        daemon.cli("rmi", BASE)


class Pair:
    """Builds one context with both engines and removes the tags afterwards."""

    def __init__(self, berth: object, root: Path) -> None:
        self.berth = berth
        self.root = root
        self.tags: list[str] = []
        self.dangling: list[str] = []

    def build(self, dockerfile: str, files: dict[str, str | bytes] | None = None,
              *args: str) -> str:
        ctx = write_context(self.root / f"ctx-{len(self.tags)}", dockerfile, files)
        tag = f"berthcmp/parity-{secrets.token_hex(4)}:1"
        self.tags.append(tag)
        before = set(_dangling())
        proc = _docker("build", "-q", "-t", tag, *args, str(ctx))
        # an earlier stage's image stays behind untagged in docker: removed in cleanup
        self.dangling += [i for i in _dangling() if i not in before]
        assert proc.returncode == 0, proc.stderr.decode()
        proc = self.berth.cli("build", "-q", "-t", tag, *args, str(ctx),  # type: ignore[attr-defined]
                              timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()
        return tag

    def inspect(self, tag: str) -> tuple[dict[str, object], dict[str, object]]:
        fmt = "{{json .}}"
        docker = json.loads(_docker("image", "inspect", "-f", fmt, tag).stdout)
        berth = json.loads(self.berth.out("image", "inspect", "-f", fmt, tag))  # type: ignore[attr-defined]
        return docker, berth

    def layer_trees(self, tag: str) -> tuple[list[list[str]], list[list[str]]]:
        docker = _docker("save", tag).stdout
        berth = self.berth.cli("save", tag, timeout=120).stdout  # type: ignore[attr-defined]
        return _trees(docker), _trees(berth)

    def cleanup(self) -> None:
        if self.tags:
            _docker("rmi", "-f", *self.tags)
        if self.dangling:
            _docker("rmi", *self.dangling)
            self.berth.cli("rmi", "-f", *self.tags)  # type: ignore[attr-defined]


@pytest.fixture()
def pair(engines, tmp_path) -> Iterator[Pair]:  # type: ignore[no-untyped-def]
    p = Pair(engines, tmp_path)
    try:
        yield p
    finally:
        p.cleanup()


def _trees(saved: bytes) -> list[list[str]]:
    """`tar tv`-style listing of each layer of a docker-archive, without mtimes."""
    with tarfile.open(fileobj=io.BytesIO(saved)) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        out = []
        for name in manifest[0]["Layers"]:
            raw = tar.extractfile(name).read()  # type: ignore[union-attr]
            with tarfile.open(fileobj=io.BytesIO(raw)) as layer:
                out.append(sorted(_entry(m) for m in layer.getmembers()))
        return out


def _entry(m: tarfile.TarInfo) -> str:
    kind = {tarfile.DIRTYPE: "d", tarfile.SYMTYPE: "l", tarfile.LNKTYPE: "h"}.get(m.type, "-")
    link = f" -> {m.linkname}" if m.issym() or m.islnk() else ""
    size = m.size if m.isfile() else 0
    return f"{kind}{m.mode & 0o7777:04o} {m.uid}:{m.gid} {size:>8} {m.name.rstrip('/')}{link}"


def assert_same_image(pair: Pair, tag: str, added: int | None = None) -> None:
    docker, berth = pair.inspect(tag)
    d_layers, b_layers = docker["RootFS"]["Layers"], berth["RootFS"]["Layers"]  # type: ignore[index]
    assert len(b_layers) == len(d_layers)
    if added is not None:
        base = json.loads(_docker("image", "inspect", "-f", "{{json .RootFS.Layers}}",
                                  BASE).stdout)
        assert len(d_layers) == len(base) + added
    d_cfg, b_cfg = docker["Config"], berth["Config"]
    for key in CONFIG_KEYS:
        # an unset field is absent in one engine's output and empty in the other's
        assert (b_cfg.get(key) or None) == (d_cfg.get(key) or None), key  # type: ignore[union-attr]
    d_trees, b_trees = pair.layer_trees(tag)
    assert b_trees == d_trees
    fmt = "{{.CreatedBy}}|{{.Size}}"
    d_hist = _docker("history", "--no-trunc", "--format", fmt, tag).stdout.decode().splitlines()
    b_hist = pair.berth.out("history", "--no-trunc", "--format", fmt, tag).splitlines()  # type: ignore[attr-defined]
    assert _created_by(b_hist) == _created_by(d_hist)


def _created_by(history: list[str]) -> list[str]:
    # the COPY/ADD source hash is Docker's tarsum of the file headers; berth hashes otherwise
    return [re.sub(r"[0-9a-f]{64}", "<hash>", h.split("|")[0]) for h in history]


def test_multi_stage(pair):
    tag = pair.build(
        f"FROM {BASE} AS gen\n"
        "WORKDIR /work\n"
        "COPY make.sh .\n"
        "RUN sh make.sh > artifact.txt && echo scratch > /leftover\n"
        f"FROM {BASE}\n"
        "COPY --from=gen /work/artifact.txt /artifact.txt\n"
        'CMD ["cat", "/artifact.txt"]\n',
        {"make.sh": "echo generated by stage 1\n"})
    assert_same_image(pair, tag, added=1)


def test_application_image(pair, file_server):
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as zf:
        zf.writestr("app/hello.txt", "hello from the bundle\n")
    (file_server.directory / "bundle.zip").write_bytes(bundle.getvalue())
    (file_server.directory / "notes.txt").write_text("notes\n")
    tag = pair.build(
        f"FROM {BASE}\n"
        "ARG APP_VERSION=0.0\n"
        "ARG BASE_URL\n"
        f"RUN {ADD_USER}\n"
        "WORKDIR /srv\n"
        "ADD ${BASE_URL}/bundle.zip /srv/\n"
        "RUN unzip -q bundle.zip && rm bundle.zip && chown -R app:app /srv/app\n"
        "ADD --chown=app:app ${BASE_URL}/notes.txt /srv/app/\n"
        "WORKDIR app\n"
        "ENV APP_VERSION=$APP_VERSION MODE=production\n"
        "EXPOSE 8080 9000-9001/udp\n"
        "VOLUME /data\n"
        'LABEL org.example.name="parity app"\n'
        "USER app\n"
        'ENTRYPOINT ["sh", "-c"]\n'
        'CMD ["id -un"]\n',
        None, "--build-arg", "APP_VERSION=1.2.3",
        "--build-arg", f"BASE_URL=http://127.0.0.1:{file_server.port}")
    assert_same_image(pair, tag)


@pytest.mark.parametrize(("body", "added"), [
    ('LABEL a=b "c d"="e f"\nCMD ["true"]\n', 0),
    ("RUN echo 1 > /one\nRUN echo 2 > /two\nRUN echo 3 > /three\n", 3),
    ("RUN echo 1 > /one && echo 2 > /two && echo 3 > /three\n", 1),
    ("ADD file.txt /file.txt\n", 1),
], ids=["label-cmd", "three-runs", "one-run", "add-file"])
def test_layer_counts(pair, body, added):
    tag = pair.build(f"FROM {BASE}\n" + body, {"file.txt": "x\n"})
    assert_same_image(pair, tag, added=added)
