"""Pull, push and run against Debian's docker-registry, with skopeo as the independent client.

Everything talks to 127.0.0.1 only. Each test removes the names it created in berth.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
from tests.support.registry import Registry, free_port


def skopeo(*args: str) -> str:
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def remote_digest(ref: str, *extra: str) -> str:
    out = skopeo("inspect", "--raw", "--tls-verify=false", *extra, f"docker://{ref}")
    return "sha256:" + hashlib.sha256(out.encode()).hexdigest()


def copy_in(layout: Path, ref: str, *extra: str) -> None:
    skopeo("copy", "--dest-tls-verify=false", *extra, f"oci:{layout}:latest", f"docker://{ref}")


def content_blobs(daemon) -> set[str]:  # type: ignore[no-untyped-def]
    return {p.name for p in (daemon.data_root / "content/blobs/sha256").iterdir()}


def test_skopeo_pushed_image_pulls_and_runs(reg_daemon, open_registry, test_images):
    ref = f"{open_registry.host}/me/layered:1.0"
    copy_in(test_images.layered_oci_dir, ref)
    digest = remote_digest(ref)
    try:
        lines = reg_daemon.out("pull", ref).splitlines()
        assert lines[0] == "1.0: Pulling from me/layered"
        assert any(line.endswith(": Pull complete") for line in lines)
        assert lines[-3:] == [f"Digest: {digest}",
                              f"Status: Downloaded newer image for {ref}", ref]
        out = reg_daemon.out("run", "--rm", ref, "cat", "/data/new", "/data/dir/fresh")
        assert out == "new\nfresh\n"
        inspect = json.loads(reg_daemon.out("image", "inspect", ref))[0]
        assert inspect["RepoDigests"] == [f"{open_registry.host}/me/layered@{digest}"]
        # a second pull finds everything present
        again = reg_daemon.out("pull", ref).splitlines()
        assert again[-2] == f"Status: Image is up to date for {ref}"
        assert not any("Downloading" in line or "fs layer" in line for line in again)
    finally:
        reg_daemon.cli("rmi", "-f", ref)


def test_push_then_rmi_then_run_pulls_it_back(reg_daemon, open_registry):
    ref = f"{open_registry.host}/me/bb:1.0"
    busybox_id = reg_daemon.out("image", "inspect", "-f", "{{.Id}}", "busybox").strip()
    reg_daemon.out("tag", "busybox", ref)
    try:
        lines = reg_daemon.out("push", ref).splitlines()
        assert lines[0] == f"The push refers to repository [{open_registry.host}/me/bb]"
        assert any(line.endswith(": Preparing") for line in lines)
        assert any(line.endswith(": Pushed") for line in lines)
        last = lines[-1].split()
        assert last[:2] == ["1.0:", "digest:"] and last[3] == "size:"
        pushed = last[2]
        assert remote_digest(ref) == pushed  # skopeo sees the same manifest
        reg_daemon.out("rmi", ref, "busybox")
        run = reg_daemon.cli("run", "--rm", ref, "echo", "ok")
        assert run.returncode == 0, run.stderr
        assert run.stdout == b"ok\n"
        assert f"Unable to find image '{ref}' locally".encode() in run.stderr
        assert f"Digest: {pushed}".encode() in run.stderr
        # the image came back byte for byte: same ID
        assert reg_daemon.out("image", "inspect", "-f", "{{.Id}}", ref).strip() == busybox_id
    finally:
        if reg_daemon.cli("image", "inspect", "busybox").returncode != 0:
            reg_daemon.out("tag", ref, "busybox")
        reg_daemon.cli("rmi", ref)


def test_pull_then_push_keeps_digests_and_mounts(reg_daemon, open_registry, test_images):
    src = f"{open_registry.host}/rt/source:1"
    dst = f"{open_registry.host}/rt/copy:2"
    copy_in(test_images.layered_oci_dir, src)
    digest = remote_digest(src)
    try:
        reg_daemon.out("pull", src)
        reg_daemon.out("tag", src, dst)
        lines = reg_daemon.out("push", dst).splitlines()
        assert any(line.endswith("Mounted from rt/source") for line in lines), lines
        assert lines[-1].startswith(f"2: digest: {digest} size: ")
        assert remote_digest(dst) == digest
    finally:
        reg_daemon.cli("rmi", "-f", src, dst)


def test_pull_missing_tag_is_docker_error(reg_daemon, open_registry, test_images):
    copy_in(test_images.busybox_oci_dir, f"{open_registry.host}/me/tagged:1")
    proc = reg_daemon.cli("pull", f"{open_registry.host}/me/tagged:nope")
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == (
        f"Error response from daemon: manifest for {open_registry.host}/me/tagged:nope "
        "not found: manifest unknown: manifest unknown")


def test_pull_by_digest(reg_daemon, open_registry, test_images):
    ref = f"{open_registry.host}/me/bydigest:1"
    copy_in(test_images.busybox_oci_dir, ref)
    digest = remote_digest(ref)
    by_digest = f"{open_registry.host}/me/bydigest@{digest}"
    try:
        out = reg_daemon.out("pull", by_digest)
        assert f"Status: Downloaded newer image for {by_digest}" in out
        assert reg_daemon.out("run", "--rm", by_digest, "echo", "hi") == "hi\n"
    finally:
        reg_daemon.cli("rmi", "-f", by_digest)


def test_unreachable_registry_fails_fast(reg_daemon):
    port = free_port()  # nothing listens there
    start = time.monotonic()
    proc = reg_daemon.cli("pull", f"127.0.0.1:{port}/me/x:1", timeout=30)
    assert time.monotonic() - start < 10
    assert proc.returncode == 1
    assert f'Get "http://127.0.0.1:{port}/v2/": dial tcp 127.0.0.1:{port}: connect: ' \
           "connection refused" in proc.stderr.decode()


def test_corrupt_blob_fails_naming_digest_and_stores_nothing(reg_daemon, own_registry,
                                                              test_images):
    ref = f"{own_registry.host}/me/corrupt:1"
    copy_in(test_images.layered_oci_dir, ref)
    manifest = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}"))
    layer = manifest["layers"][-1]["digest"]
    blob = own_registry.blob_file(layer)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    blob.write_bytes(bytes(data))
    images_before = reg_daemon.out("images", "-q", "--no-trunc")
    blobs_before = content_blobs(reg_daemon)
    proc = reg_daemon.cli("pull", ref)
    assert proc.returncode == 1
    assert f"filesystem layer verification failed for digest {layer}" in proc.stderr.decode()
    assert reg_daemon.out("images", "-q", "--no-trunc") == images_before
    assert content_blobs(reg_daemon) == blobs_before
    assert not any((reg_daemon.data_root / "content/ingest").iterdir())


def _index_layout(src: Path, dest: Path, platforms: list[dict[str, str]]) -> Path:
    """A copy of an OCI layout whose tag points at an index listing its manifest per platform."""
    shutil.copytree(src, dest, symlinks=True)
    index = json.loads((dest / "index.json").read_text())
    entry = index["manifests"][0]
    entries = [{"mediaType": entry["mediaType"], "digest": entry["digest"],
                "size": entry["size"], "platform": p} for p in platforms]
    raw = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                      "manifests": entries}).encode()
    hexd = hashlib.sha256(raw).hexdigest()
    (dest / "blobs/sha256" / hexd).write_bytes(raw)
    index["manifests"] = [{"mediaType": "application/vnd.oci.image.index.v1+json",
                           "digest": f"sha256:{hexd}", "size": len(raw),
                           "annotations": {"org.opencontainers.image.ref.name": "latest"}}]
    (dest / "index.json").write_text(json.dumps(index))
    return dest


def test_manifest_list_without_host_platform_is_docker_error(reg_daemon, open_registry,
                                                              test_images, tmp_path):
    """Case 039 with a real registry: no linux/amd64 entry is an error; ``--platform`` picks
    the arm64 entry and the image is known by the list's digest."""
    layout = _index_layout(test_images.busybox_oci_dir, tmp_path / "idx", [
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
        {"os": "linux", "architecture": "arm", "variant": "v7"}])
    ref = f"{open_registry.host}/me/multi:v1"
    copy_in(layout, ref, "--all")
    proc = reg_daemon.cli("pull", ref)
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == (
        "Error response from daemon: no matching manifest for linux/amd64 "
        "in the manifest list entries")
    list_digest = remote_digest(ref)
    try:
        out = reg_daemon.out("pull", "--platform", "linux/arm64", ref)
        assert f"Digest: {list_digest}" in out
        inspect = json.loads(reg_daemon.out("image", "inspect", ref))[0]
        assert inspect["RepoDigests"] == [f"{open_registry.host}/me/multi@{list_digest}"]
    finally:
        reg_daemon.cli("rmi", "-f", ref)


def test_zstd_layers_pull(reg_daemon, own_registry, test_images):
    pytest.importorskip("zstandard")
    # a registry of its own: skopeo would reuse gzip blobs it knows to exist elsewhere
    ref = f"{own_registry.host}/me/zstd:1"
    copy_in(test_images.layered_oci_dir, ref, "--dest-compress-format=zstd", "--dest-compress")
    manifest = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}"))
    assert manifest["layers"][0]["mediaType"].endswith("+zstd")
    try:
        reg_daemon.out("pull", ref)
        assert reg_daemon.out("run", "--rm", ref, "cat", "/data/new") == "new\n"
    finally:
        reg_daemon.cli("rmi", "-f", ref)


def test_client_chunked_upload_and_mount(open_registry: Registry, tmp_path):
    from berth.registry.auth import AuthConfig
    from berth.registry.client import RegistryClient, RegistryConfig

    client = RegistryClient(RegistryConfig())
    data = b"chunk-me " * 5000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    repo = client.repository(open_registry.host, "client/a", AuthConfig(), "push,pull")
    assert not repo.has_blob(digest)
    src = tmp_path / "blob"
    src.write_bytes(data)
    with src.open("rb") as f:
        repo.upload_blob(digest, len(data), f, chunk_size=4096)
    assert repo.has_blob(digest)
    with repo.open_blob(digest) as stream:
        assert stream.read() == data
    other = client.repository(open_registry.host, "client/b", AuthConfig(), "push,pull")
    assert other.mount_blob(digest, "client/a") is None
    assert other.has_blob(digest)
    session = other.mount_blob("sha256:" + "0" * 64, "client/a")
    assert session  # an unknown blob opens an ordinary upload session instead


def test_docker_hub_pulls_go_to_the_mirror(open_registry, test_images, tmp_path_factory):
    from tests.conftest import stop_daemon
    from tests.integration.registry.conftest import _start_daemon

    copy_in(test_images.busybox_oci_dir, f"{open_registry.host}/library/busybox:mirrored")
    root = tmp_path_factory.mktemp("berth-test-mirror")
    d = _start_daemon(root, {"registry-mirrors": [f"http://{open_registry.host}"]})
    try:
        lines = d.out("pull", "busybox:mirrored").splitlines()
        assert lines[0] == "mirrored: Pulling from library/busybox"
        assert lines[-2:] == ["Status: Downloaded newer image for busybox:mirrored",
                              "docker.io/library/busybox:mirrored"]
        assert d.out("run", "--rm", "busybox:mirrored", "echo", "via mirror") == "via mirror\n"
    finally:
        stop_daemon(d)


def _relabelled_layout(src: Path, dest: Path) -> Path:
    """A copy of an OCI layout whose image has the same layers but another config."""
    shutil.copytree(src, dest, symlinks=True)
    index = json.loads((dest / "index.json").read_text())
    blobs = dest / "blobs/sha256"

    def put(data: bytes) -> str:
        hexd = hashlib.sha256(data).hexdigest()
        (blobs / hexd).write_bytes(data)
        return f"sha256:{hexd}"

    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"][7:]).read_bytes())
    config["config"].setdefault("Labels", {})["org.berth.test.variant"] = "relabelled"
    raw_config = json.dumps(config).encode()
    manifest["config"] = {**manifest["config"], "digest": put(raw_config),
                          "size": len(raw_config)}
    raw_manifest = json.dumps(manifest).encode()
    index["manifests"][0] = {**index["manifests"][0], "digest": put(raw_manifest),
                             "size": len(raw_manifest)}
    (dest / "index.json").write_text(json.dumps(index))
    return dest


def test_layers_already_present_are_not_downloaded_again(reg_daemon, open_registry,
                                                         test_images, tmp_path):
    first = f"{open_registry.host}/share/first:1"
    second = f"{open_registry.host}/share/second:1"
    copy_in(test_images.layered_oci_dir, first)
    copy_in(_relabelled_layout(test_images.layered_oci_dir, tmp_path / "relabelled"), second)
    try:
        reg_daemon.out("pull", first)
        lines = reg_daemon.out("pull", second).splitlines()
        assert sum(line.endswith(": Already exists") for line in lines) == 5, lines
        assert not any("Pull complete" in line or "fs layer" in line for line in lines)
        assert lines[-2] == f"Status: Downloaded newer image for {second}"
        out = reg_daemon.out("image", "inspect", "-f",
                             '{{index .Config.Labels "org.berth.test.variant"}}', second)
        assert out.strip() == "relabelled"
    finally:
        reg_daemon.cli("rmi", "-f", first, second)


def _big_layer_layout(src: Path, dest: Path, size: int) -> Path:
    """A copy of an OCI layout with one more (uncompressed, incompressible) layer on top."""
    import io
    import os
    import tarfile

    shutil.copytree(src, dest, symlinks=True)
    blobs = dest / "blobs/sha256"

    def put(data: bytes) -> str:
        hexd = hashlib.sha256(data).hexdigest()
        (blobs / hexd).write_bytes(data)
        return f"sha256:{hexd}"

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("big.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    layer = buf.getvalue()
    layer_digest = put(layer)
    index = json.loads((dest / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"][7:]).read_bytes())
    config["rootfs"]["diff_ids"].append(layer_digest)
    raw_config = json.dumps(config).encode()
    manifest["config"] = {**manifest["config"], "digest": put(raw_config),
                          "size": len(raw_config)}
    manifest["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                               "digest": layer_digest, "size": len(layer)})
    raw_manifest = json.dumps(manifest).encode()
    index["manifests"][0] = {**index["manifests"][0], "digest": put(raw_manifest),
                             "size": len(raw_manifest)}
    (dest / "index.json").write_text(json.dumps(index))
    return dest


def test_interrupted_pull_leaves_no_half_blob_and_restarts_cleanly(reg_daemon, test_images,
                                                                    tmp_path):
    from tests.conftest import _tool
    from tests.support.registry import start_registry

    layout = _big_layer_layout(test_images.busybox_oci_dir, tmp_path / "big", 48 << 20)
    reg = start_registry(tmp_path / "registry")
    ingest = reg_daemon.data_root / "content/ingest"
    blobs_before = content_blobs(reg_daemon)
    try:
        ref = f"{reg.host}/me/big:1"
        copy_in(layout, ref)
        puller = subprocess.Popen([*_tool("berth"), "-H", reg_daemon.host, "pull", ref],
                                  env=reg_daemon.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                p.stat().st_size > (4 << 20) for p in ingest.iterdir()):
            time.sleep(0.002)
        reg.process.kill()  # the registry dies in the middle of the big layer
        reg.process.wait()
        _, err = puller.communicate(timeout=60)
        assert puller.returncode == 1, err
        assert b"unexpected EOF" in err or b"connection refused" in err, err
        assert not any(ingest.iterdir())
        assert content_blobs(reg_daemon) == blobs_before
        # the layers it was unpacking while they arrived are gone too
        assert not [p for p in (reg_daemon.data_root / "layers").iterdir()
                    if p.name.startswith(".")]
        # the same storage served again: the pull starts over and completes
        reg.stop()
        reg = start_registry(tmp_path / "registry")
        again = f"{reg.host}/me/big:1"
        assert "Status: Downloaded newer image" in reg_daemon.out("pull", again)
        assert reg_daemon.out("run", "--rm", again, "ls", "/big.bin") == "/big.bin\n"
    finally:
        reg.stop()
        reg_daemon.cli("rmi", "-f", f"{reg.host}/me/big:1")


def _raw(registry: Registry, method: str, target: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    """One plain HTTP request to the registry: (status, headers with lower-cased names)."""
    import http.client

    conn = http.client.HTTPConnection(registry.host, timeout=30)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def test_case_041_cross_repository_blob_mount(reg_daemon, open_registry):
    """Case 041: ``POST .../blobs/uploads/?mount=<digest>&from=<repo>`` answers 201 when the blob
    is there to mount and 202 (an ordinary upload session) otherwise; pushing the same image to
    a second repository mounts its layers from the first."""
    uid = secrets.token_hex(4)
    blob = f"mount-me-{uid}".encode()
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    status, headers = _raw(open_registry, "POST", f"/v2/casetest/a-{uid}/blobs/uploads/")
    assert status == 202
    location = urllib.parse.urlsplit(headers["location"])
    status, _ = _raw(open_registry, "PUT", f"{location.path}?{location.query}&digest={digest}",
                     blob, {"Content-Type": "application/octet-stream"})
    assert status == 201

    status, headers = _raw(open_registry, "POST", f"/v2/casetest/b-{uid}/blobs/uploads/"
                                                  f"?mount={digest}&from=casetest/a-{uid}")
    assert status == 201
    assert headers["docker-content-digest"] == digest
    assert headers["location"].endswith(f"/v2/casetest/b-{uid}/blobs/{digest}")
    assert _raw(open_registry, "HEAD", f"/v2/casetest/b-{uid}/blobs/{digest}")[0] == 200
    unknown = "sha256:" + hashlib.sha256(b"y").hexdigest()
    for repo, query in ((f"c-{uid}", f"mount={unknown}&from=casetest/a-{uid}"),
                        (f"e-{uid}", f"mount={digest}")):
        status, headers = _raw(open_registry, "POST",
                               f"/v2/casetest/{repo}/blobs/uploads/?{query}")
        assert status == 202
        assert f"/v2/casetest/{repo}/blobs/uploads/" in headers["location"]
        assert headers["range"] == "0-0"

    # berthd: the second push mounts what the first pushed
    first, second = (f"{open_registry.host}/casetest/{n}-{uid}:v1" for n in ("x", "y"))
    for ref in (first, second):
        reg_daemon.out("tag", "busybox", ref)
    try:
        pushed = reg_daemon.out("push", first).splitlines()
        mounted = reg_daemon.out("push", second).splitlines()
    finally:
        reg_daemon.cli("rmi", first, second)
    layers = int(reg_daemon.out("inspect", "-f", "{{len .RootFS.Layers}}", "busybox"))
    assert len([ln for ln in pushed if ln.endswith(": Pushed")]) == layers, pushed
    assert len([ln for ln in mounted if ln.endswith(f": Mounted from casetest/x-{uid}")]) == \
        layers, mounted
    assert not any(ln.endswith(": Pushed") for ln in mounted), mounted
