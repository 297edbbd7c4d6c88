"""Layer traffic against Debian's docker-registry: per-layer pull progress, cancelling a failed
pull, ``pull -a``, and gzip on push with the layers remembered between pushes.

The expected lines are dockerd 20.10's, captured from a real dockerd pulling from the same
kind of local registry. Everything talks to 127.0.0.1 only; each test removes what it made.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

from tests.integration.registry.test_registry import (
    _big_layer_layout,
    content_blobs,
    copy_in,
    remote_digest,
    skopeo,
)
from tests.support.registry import Registry


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=120)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(self._path))


def api_pull(daemon, query: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """``POST /images/create?<query>`` on the daemon; the JSON messages it streamed."""
    conn = _UnixConnection(daemon.socket)
    try:
        conn.request("POST", f"/v1.41/images/create?{query}",
                     headers={"X-Registry-Auth": "e30="})
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        return [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    finally:
        conn.close()


def raw_manifest(ref: str) -> dict[str, Any]:
    return json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}"))


def layer_state(daemon) -> tuple[set[str], set[str], list[str]]:  # type: ignore[no-untyped-def]
    """Blob names, layer directory names, and whatever sits in ingest/."""
    layers = {p.name for p in (daemon.data_root / "layers").iterdir()}
    ingest = sorted(p.name for p in (daemon.data_root / "content/ingest").iterdir())
    return content_blobs(daemon), layers, ingest


def test_pull_progress_per_layer_as_dockerd(reg_daemon, open_registry, test_images):
    ref = f"{open_registry.host}/progress/layered:1"
    copy_in(test_images.layered_oci_dir, ref)
    layers = [d["digest"] for d in raw_manifest(ref)["layers"]]
    ids = [d.split(":", 1)[1][:12] for d in layers]
    assert len(ids) > 3  # more layers than concurrent downloads: some wait
    host, _, _ = ref.partition("/")
    try:
        messages = api_pull(reg_daemon, f"fromImage={host}/progress/layered&tag=1")
        assert messages[0] == {"status": "Pulling from progress/layered", "id": "1"}
        assert messages[-2] == {"status": f"Digest: {remote_digest(ref)}"}
        assert messages[-1] == {"status": f"Status: Downloaded newer image for {ref}"}
        by_id: dict[str, list[dict[str, Any]]] = {}
        for m in messages[1:-2]:
            by_id.setdefault(m["id"], []).append(m)
        assert list(by_id) == ids  # "Pulling fs layer" came first, in layer order
        waiting = [i for i in ids if any(m["status"] == "Waiting" for m in by_id[i])]
        assert waiting == ids[3:]  # dockerd downloads three at a time
        for ident, digest in zip(ids, layers, strict=True):
            statuses = [m["status"] for m in by_id[ident]]
            compact = [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]]
            expected = ["Pulling fs layer", "Waiting", "Downloading", "Verifying Checksum",
                        "Download complete", "Extracting", "Pull complete"]
            if ident not in waiting:
                expected.remove("Waiting")
            assert compact == expected, (ident, statuses)
            size = next(d["size"] for d in raw_manifest(ref)["layers"] if d["digest"] == digest)
            for m in by_id[ident]:
                if m["status"] in ("Downloading", "Extracting"):
                    assert m["progressDetail"]["total"] == size
                    assert 0 < m["progressDetail"]["current"] <= size
                    assert m["progress"].startswith("[")
                else:
                    assert m["progressDetail"] == {}
        completes = [m["id"] for m in messages if m.get("status") == "Pull complete"]
        assert completes == ids  # published bottom first
        assert reg_daemon.out("run", "--rm", ref, "cat", "/data/new") == "new\n"
    finally:
        reg_daemon.cli("rmi", "-f", ref)


def test_failed_layer_cancels_the_others_and_changes_nothing(reg_daemon, own_registry,
                                                              test_images, tmp_path):
    # six layers: the fifth (small) is corrupt and downloads beside the sixth (64 MiB)
    layout = _big_layer_layout(test_images.layered_oci_dir, tmp_path / "big", 64 << 20)
    ref = f"{own_registry.host}/me/cancel:1"
    copy_in(layout, ref)
    layers = [d["digest"] for d in raw_manifest(ref)["layers"]]
    assert len(layers) == 6
    corrupt, big = layers[4], layers[5]
    blob = own_registry.blob_file(corrupt)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    images_before = reg_daemon.out("images", "-q", "--no-trunc")
    state_before = layer_state(reg_daemon)
    messages = api_pull(reg_daemon, f"fromImage={own_registry.host}/me/cancel&tag=1")
    assert messages[-1]["error"] == \
        f"filesystem layer verification failed for digest {corrupt}"
    big_statuses = {m["status"] for m in messages if m.get("id") == big[7:19]}
    assert "Download complete" not in big_statuses  # cut off, not waited for
    assert reg_daemon.out("images", "-q", "--no-trunc") == images_before
    assert layer_state(reg_daemon) == state_before  # no blob, layer, temp dir or ingest file
    # the CLI shows the stream's error as docker does: as it is, exit status 1
    proc = reg_daemon.cli("pull", ref)
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == \
        f"filesystem layer verification failed for digest {corrupt}"
    assert layer_state(reg_daemon) == state_before


def test_pull_all_tags(reg_daemon, open_registry, test_images):
    repo = f"{open_registry.host}/every/tag"
    copy_in(test_images.busybox_oci_dir, f"{repo}:a")
    copy_in(test_images.layered_oci_dir, f"{repo}:b")
    copy_in(test_images.busybox_oci_dir, f"{repo}:c")
    listed = json.loads(skopeo("list-tags", "--tls-verify=false", f"docker://{repo}"))["Tags"]
    try:
        lines = reg_daemon.out("pull", "-a", repo).splitlines()
        heads = [line for line in lines if line.endswith(": Pulling from every/tag")]
        assert heads == [f"{t}: Pulling from every/tag" for t in listed]  # the registry's order
        digests = [line for line in lines if line.startswith("Digest: ")]
        assert digests == [f"Digest: {remote_digest(f'{repo}:{t}')}" for t in listed]
        assert lines[-2:] == [f"Status: Downloaded newer image for {repo}", repo]
        assert sum(line.startswith("Status:") for line in lines) == 1
        for tag in listed:
            assert reg_daemon.cli("image", "inspect", f"{repo}:{tag}").returncode == 0
        again = reg_daemon.out("pull", "--all-tags", repo).splitlines()
        assert again[-2:] == [f"Status: Image is up to date for {repo}", repo]
        assert not any("Pulling fs layer" in line for line in again)
        # the API: fromImage without a tag means every tag (the CLI's -a sends no tag)
        reg_daemon.out("rmi", f"{repo}:a", f"{repo}:b", f"{repo}:c")
        messages = api_pull(reg_daemon, f"fromImage={repo}")
        assert [m["id"] for m in messages if str(m.get("status")).startswith("Pulling from")] \
            == listed
        assert messages[-1] == {"status": f"Status: Downloaded newer image for {repo}"}
        proc = reg_daemon.cli("pull", "-a", f"{repo}:a")
        assert proc.returncode == 1
        assert proc.stderr.decode().strip() == "tag can't be used with --all-tags/-a"
    finally:
        reg_daemon.cli("rmi", "-f", *(f"{repo}:{t}" for t in ("a", "b", "c")))


def _blob_bytes(registry: Registry, path: str, digest: str) -> bytes:
    url = f"http://{registry.host}/v2/{path}/blobs/{digest}"
    with urllib.request.urlopen(url, timeout=30) as resp:  # 127.0.0.1 only
        data: bytes = resp.read()
    return data


def test_push_compresses_and_a_second_push_uploads_nothing(reg_daemon, own_registry):
    first = f"{own_registry.host}/gz/first:1"
    again = f"{own_registry.host}/gz/first:2"
    other = f"{own_registry.host}/gz/other:1"
    reg_daemon.out("tag", "busybox", first)
    reg_daemon.out("tag", "busybox", again)
    reg_daemon.out("tag", "busybox", other)
    config = json.loads(reg_daemon.out("image", "inspect", "busybox"))[0]
    diff_ids = config["RootFS"]["Layers"]
    try:
        lines = reg_daemon.out("push", first).splitlines()
        assert [line for line in lines if line.endswith(": Pushed")] == \
            [f"{d[7:19]}: Pushed" for d in reversed(diff_ids)]
        digest = lines[-1].split()[2]
        manifest = raw_manifest(first)
        assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
        for layer, diff_id in zip(manifest["layers"], diff_ids, strict=True):
            assert layer["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip"
            data = _blob_bytes(own_registry, "gz/first", layer["digest"])
            assert len(data) == layer["size"]
            assert "sha256:" + hashlib.sha256(gzip.decompress(data)).hexdigest() == diff_id
        # the same layers again, to the same repository: found, not compressed or sent again
        lines = reg_daemon.out("push", again).splitlines()
        assert [line for line in lines if line.endswith(": Layer already exists")] == \
            [f"{d[7:19]}: Layer already exists" for d in reversed(diff_ids)]
        assert not any("Pushing" in line or "Pushed" in line for line in lines)
        assert lines[-1].split()[2] == digest  # the manifest is byte for byte the same
        # another repository of the registry: mounted from the first
        lines = reg_daemon.out("push", other).splitlines()
        assert [line for line in lines if " Mounted from " in line] == \
            [f"{d[7:19]}: Mounted from gz/first" for d in reversed(diff_ids)]
        assert lines[-1].split()[2] == digest
        assert remote_digest(other) == digest
        # and what was pushed pulls and runs (the image ID is the config's: unchanged)
        reg_daemon.out("rmi", other)
        pulled = f"{own_registry.host}/gz/other:1"
        assert reg_daemon.out("run", "--rm", pulled, "echo", "gz") == "gz\n"
        assert reg_daemon.out("image", "inspect", "-f", "{{.Id}}", pulled).strip() == \
            config["Id"]
    finally:
        reg_daemon.cli("rmi", first, again, other)
