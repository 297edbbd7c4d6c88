"""berth-runtime with a user namespace, side by side with crun on the same bundle.

The rootfs is shifted to the mapping (owned by 100000, as a ``--userns-remap`` daemon unpacks
it) and lives in a directory the remapped root can reach (pytest's own are 0700).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from berth.network import netns
from berth.oci.idmap import IdentityMapping, IDMap

if TYPE_CHECKING:
    from conftest import Bundle, Runtime  # type: ignore[import-not-found]
else:
    from tests.integration.runtime.conftest import Bundle, Runtime

HOST_ROOT = 100000
SIZE = 65536
MAPPINGS = {"uidMappings": [{"containerID": 0, "hostID": HOST_ROOT, "size": SIZE}],
            "gidMappings": [{"containerID": 0, "hostID": HOST_ROOT, "size": SIZE}]}
PROBE = ("cat /proc/self/uid_map; id -u; id -g; hostname; ls -ld /sys | awk '{print $3}';"
         " touch /tmp/made; readlink /proc/self/ns/user; readlink /proc/self/ns/net;"
         " ls /proc/sys/net/ipv4/ip_forward")


@pytest.fixture()
def shifted_bundle(rootfs_template: Path) -> Iterator[Bundle]:
    base = Path(tempfile.mkdtemp(prefix="berth-test-userns-rt-"))
    try:
        base.chmod(0o755)
        path = base / "bundle"
        path.mkdir()
        shutil.copytree(rootfs_template, path / "rootfs", symlinks=True)
        for dirpath, dirnames, filenames in os.walk(path / "rootfs"):
            for name in (dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)):
                os.lchown(name, HOST_ROOT, HOST_ROOT)
        subprocess.run(["crun", "spec"], cwd=path, check=True)
        bundle = Bundle(path)

        def userns(c: dict[str, Any]) -> None:
            c["process"]["terminal"] = False
            c["root"]["readonly"] = False
            c["hostname"] = "in-userns"
            c["process"]["args"] = ["sh", "-c", PROBE]
            c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"]
                                        if n["type"] not in ("user", "network", "cgroup")]
            c["linux"]["namespaces"] += [{"type": "network"}, {"type": "user"}]
            c["linux"].update(MAPPINGS)

        bundle.edit(userns)
        yield bundle
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture()
def crun(tmp_path: Path, crun_hybrid_ready: None) -> Runtime:
    return Runtime(tmp_path / "crun-state", ["crun"])


def _run(rt: Runtime, bundle: Bundle, cid: str) -> list[str]:
    proc = rt("run", "--bundle", str(bundle.path), cid)
    assert proc.returncode == 0, proc.stderr
    made = bundle.rootfs / "tmp" / "made"
    owner = (made.stat().st_uid, made.stat().st_gid)
    made.unlink()
    return [*proc.stdout.split(), f"{owner[0]}:{owner[1]}"]


def test_a_new_user_namespace_as_crun_makes_it(shifted_bundle: Bundle, runtime: Runtime,
                                               crun: Runtime, container_id: str) -> None:
    ours = _run(runtime, shifted_bundle, container_id)
    theirs = _run(crun, shifted_bundle, container_id + "-crun")
    # uid_map, uid, gid, hostname, /sys owner, then the file the container made, seen by us
    expected_head = ["0", str(HOST_ROOT), str(SIZE), "0", "0", "in-userns", "nobody"]
    assert ours[:7] == theirs[:7] == expected_head
    assert ours[-1] == theirs[-1] == f"{HOST_ROOT}:{HOST_ROOT}"
    assert ours[7] != os.readlink("/proc/self/ns/user")  # a user namespace of its own
    assert ours[9] == "/proc/sys/net/ipv4/ip_forward"  # sysfs and net sysctls of its netns


def test_joined_user_and_network_namespaces(shifted_bundle: Bundle, runtime: Runtime,
                                            crun: Runtime, container_id: str) -> None:
    pins = shifted_bundle.path.parent / "pins"
    net, user = pins / "net", pins / "net.user"
    ids = IdentityMapping((IDMap(0, HOST_ROOT, SIZE),), (IDMap(0, HOST_ROOT, SIZE),))
    netns.create_userns_netns(net, user, ids)
    try:
        def join(c: dict[str, Any]) -> None:
            for ns in c["linux"]["namespaces"]:
                if ns["type"] == "network":
                    ns["path"] = str(net)
                if ns["type"] == "user":
                    ns["path"] = str(user)

        shifted_bundle.edit(join)
        expected = [f"user:[{os.stat(user).st_ino}]", f"net:[{os.stat(net).st_ino}]"]
        for rt, cid in ((runtime, container_id), (crun, container_id + "-crun")):
            out = _run(rt, shifted_bundle, cid)
            assert out[:7] == ["0", str(HOST_ROOT), str(SIZE), "0", "0", "in-userns", "nobody"]
            assert out[7:9] == expected
    finally:
        netns.delete_netns(net)
        netns.delete_netns(user)


def test_exec_enters_the_user_namespace(shifted_bundle: Bundle, runtime: Runtime,
                                        container_id: str, subreaper: None,
                                        tmp_path: Path) -> None:
    shifted_bundle.edit(lambda c: c["process"].update(args=["sleep", "60"]))
    runtime.ok("run", "-d", "--bundle", str(shifted_bundle.path), container_id)
    try:
        out = runtime.ok("exec", container_id, "sh", "-c",
                         "cat /proc/self/uid_map; id -u; touch /tmp/e; stat -c %u /tmp/e")
        assert out.split() == ["0", str(HOST_ROOT), str(SIZE), "0", "0"]
        process = shifted_bundle.config()["process"]
        process["args"] = ["sh", "-c", "id -u; touch /tmp/u; stat -c %u /tmp/u"]
        process["user"] = {"uid": 1000, "gid": 1000}
        (tmp_path / "process.json").write_text(json.dumps(process))
        assert runtime.ok("exec", "--process", str(tmp_path / "process.json"),
                          container_id).split() == ["1000", "1000"]
        assert (shifted_bundle.rootfs / "tmp/u").stat().st_uid == HOST_ROOT + 1000
    finally:
        runtime.ok("delete", "--force", container_id)


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c["linux"].update(uidMappings=[], gidMappings=[]),
     "user namespaces enabled, but no user mappings found"),
    (lambda c: c["linux"].update(namespaces=[n for n in c["linux"]["namespaces"]
                                             if n["type"] != "user"]),
     "user namespace mappings specified, but USER namespace isn't enabled in the config"),
])
def test_inconsistent_user_namespace_config_is_refused(shifted_bundle: Bundle, runtime: Runtime,
                                                       container_id: str, change: Any,
                                                       message: str) -> None:
    shifted_bundle.edit(change)
    proc = runtime("run", "--bundle", str(shifted_bundle.path), container_id)
    assert proc.returncode == 1 and message in proc.stderr
