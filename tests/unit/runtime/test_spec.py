"""OCI runtime spec generation: Docker's defaults, schema validity, and real runc/crun runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import referencing
import referencing.jsonschema

from berth.errors import InvalidArgument
from berth.oci.idmap import IdentityMapping, IDMap
from berth.runtime.spec import (
    ALL_CAPABILITIES,
    DEFAULT_CAPABILITIES,
    DEFAULT_MASKED_PATHS,
    MountSpec,
    Resources,
    Rlimit,
    SpecInput,
    bind_mount,
    build_process,
    build_spec,
    resolve_capabilities,
    tmpfs_mount,
)

SCHEMA_DIR = Path(__file__).parent / "oci-runtime-schema"
BASE_URI = "https://berth.invalid/oci-runtime-schema/"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft4Validator:
    resources = []
    for path in SCHEMA_DIR.glob("*.json"):
        contents = json.loads(path.read_text())
        resource = referencing.Resource.from_contents(
            contents, default_specification=referencing.jsonschema.DRAFT4
        )
        resources.append((BASE_URI + path.name, resource))
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(resources)
    root = dict(json.loads((SCHEMA_DIR / "config-schema.json").read_text()))
    root["id"] = BASE_URI + "config-schema.json"
    return jsonschema.Draft4Validator(root, registry=registry)


def _input(**kw: Any) -> SpecInput:
    base: dict[str, Any] = {"root_path": "rootfs", "args": ("/bin/sh",), "hostname": "abc"}
    base.update(kw)
    return SpecInput(**base)


def _mount(spec: dict[str, Any], dest: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [m for m in spec["mounts"] if m["destination"] == dest]
    assert len(found) == 1, f"{dest}: {found}"
    return found[0]


# ---------------------------------------------------------------- schema


@pytest.mark.parametrize(
    "inp",
    [
        _input(),
        _input(tty=True, privileged=True, readonly_rootfs=True),
        _input(
            uid=1000,
            gid=1000,
            additional_gids=(10, 20),
            cgroups_path="/berth/abc",
            resources=Resources(
                memory=64 << 20,
                memory_swap=128 << 20,
                cpu_shares=512,
                cpu_quota=50000,
                cpu_period=100000,
                cpuset_cpus="0",
                pids_limit=100,
                blkio_weight=300,
            ),
            rlimits=(Rlimit("nofile", 1024, 2048),),
            no_new_privileges=True,
            oom_score_adj=500,
            sysctls={"net.core.somaxconn": "1024"},
            annotations={"org.example": "x"},
            network_mode="/proc/1/ns/net",
            ipc_mode="host",
            pid_mode="host",
            uts_mode="host",
            mounts=(bind_mount("/tmp/hosts", "/etc/hosts"), tmpfs_mount("/run", ("size=1m",))),
            seccomp={"defaultAction": "SCMP_ACT_ALLOW"},
        ),
        _input(userns_mode="private", id_mapping=IdentityMapping(
            (IDMap(0, 100000, 65536),), (IDMap(0, 100000, 65536),))),
    ],
    ids=["default", "privileged-ro", "everything", "userns"],
)
def test_spec_validates_against_oci_schema(
    validator: jsonschema.Draft4Validator, inp: SpecInput
) -> None:
    spec = build_spec(inp)
    errors = [e.message for e in validator.iter_errors(spec)]
    assert errors == []
    assert spec["ociVersion"] == "1.0.2-dev"


def test_schema_catches_a_broken_spec(validator: jsonschema.Draft4Validator) -> None:
    spec = build_spec(_input())
    spec["process"]["user"]["uid"] = "root"
    assert not validator.is_valid(spec)


# ---------------------------------------------------------------- Docker's defaults


def test_defaults_match_docker() -> None:
    spec = build_spec(_input())
    caps = spec["process"]["capabilities"]
    assert caps["bounding"] == list(DEFAULT_CAPABILITIES)
    assert caps["effective"] == caps["permitted"] == caps["bounding"]
    assert "inheritable" not in caps and "ambient" not in caps
    assert [m["destination"] for m in spec["mounts"]] == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/sys",
        "/sys/fs/cgroup",
        "/dev/mqueue",
        "/dev/shm",
    ]
    assert _mount(spec, "/dev/pts")["options"] == [
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
        "gid=5",
    ]
    assert "size=67108864" in _mount(spec, "/dev/shm")["options"]
    assert "ro" in _mount(spec, "/sys")["options"]
    linux = spec["linux"]
    assert linux["maskedPaths"] == list(DEFAULT_MASKED_PATHS)
    assert [n["type"] for n in linux["namespaces"]] == ["pid", "network", "ipc", "uts", "mount"]
    assert linux["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"} in linux[
        "resources"
    ]["devices"]
    assert linux["sysctl"]["net.ipv4.ip_unprivileged_port_start"] == "0"
    assert spec["hostname"] == "abc"
    assert spec["process"]["terminal"] is False
    assert "rlimits" not in spec["process"]  # Docker sets none: inherit
    assert "noNewPrivileges" not in spec["process"]
    assert spec["process"]["oomScoreAdj"] == 0  # never the daemon's own score


@pytest.mark.parametrize(
    ("add", "drop", "expected"),
    [
        ((), (), DEFAULT_CAPABILITIES),
        (
            ("net_admin",),
            ("CAP_CHOWN", "mknod"),
            DEFAULT_CAPABILITIES[1:4] + DEFAULT_CAPABILITIES[5:] + ("CAP_NET_ADMIN",),
        ),
        (("ALL",), ("SYS_ADMIN",), tuple(c for c in ALL_CAPABILITIES if c != "CAP_SYS_ADMIN")),
        (("NET_BIND_SERVICE",), ("ALL",), ("CAP_NET_BIND_SERVICE",)),
        ((), ("all",), ()),
    ],
)
def test_cap_add_and_drop(
    add: tuple[str, ...], drop: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    assert resolve_capabilities(add, drop) == expected


def test_unknown_capability_is_docker_error() -> None:
    with pytest.raises(InvalidArgument, match='unknown capability: "CAP_FOO"'):
        resolve_capabilities(("foo",))


def test_privileged() -> None:
    spec = build_spec(_input(privileged=True))
    assert spec["process"]["capabilities"]["bounding"] == list(ALL_CAPABILITIES)
    assert "maskedPaths" not in spec["linux"] and "readonlyPaths" not in spec["linux"]
    assert spec["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert "ro" not in _mount(spec, "/sys")["options"]
    assert "ro" not in _mount(spec, "/sys/fs/cgroup")["options"]


def test_readonly_rootfs_keeps_dev_and_proc_writable() -> None:
    spec = build_spec(_input(readonly_rootfs=True))
    assert spec["root"]["readonly"] is True
    for dest in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"):
        assert "ro" not in _mount(spec, dest).get("options", []), dest
    assert "ro" in _mount(spec, "/sys/fs/cgroup")["options"]


def test_user_mount_replaces_default_and_dev_drops_children() -> None:
    shm = bind_mount("/var/lib/berth/containers/x/shm", "/dev/shm")
    spec = build_spec(_input(mounts=(shm,)))
    assert _mount(spec, "/dev/shm")["type"] == "bind"
    spec = build_spec(_input(mounts=(MountSpec("/dev", "bind", "/dev", ("rbind",)),)))
    assert [m["destination"] for m in spec["mounts"] if m["destination"].startswith("/dev")] == [
        "/dev"
    ]


def test_user_mounts_sorted_parent_first_after_defaults() -> None:
    deep = bind_mount("/a", "/data/x/y")
    top = bind_mount("/b", "/data")
    spec = build_spec(_input(mounts=(deep, top)))
    assert [m["destination"] for m in spec["mounts"]][-2:] == ["/data", "/data/x/y"]
    assert _mount(spec, "/data")["options"] == ["rbind", "rprivate"]


@pytest.mark.parametrize(
    ("ipc", "has_ns", "shm_type"),
    [("private", True, "tmpfs"), ("none", True, None), ("host", False, "bind")],
)
def test_ipc_modes(ipc: str, has_ns: bool, shm_type: str | None) -> None:
    spec = build_spec(_input(ipc_mode=ipc))
    assert any(n["type"] == "ipc" for n in spec["linux"]["namespaces"]) is has_ns
    shm = [m for m in spec["mounts"] if m["destination"] == "/dev/shm"]
    assert (shm[0]["type"] if shm else None) == shm_type


def test_host_network_and_uts() -> None:
    spec = build_spec(_input(network_mode="host", uts_mode="host"))
    types = [n["type"] for n in spec["linux"]["namespaces"]]
    assert "network" not in types and "uts" not in types
    assert "hostname" not in spec  # runc refuses a hostname without a UTS namespace
    assert "sysctl" not in spec["linux"]


def test_join_namespace_path_and_cgroupns() -> None:
    spec = build_spec(_input(network_mode="/run/netns/x", cgroupns_mode="private"))
    assert {"type": "network", "path": "/run/netns/x"} in spec["linux"]["namespaces"]
    assert {"type": "cgroup"} in spec["linux"]["namespaces"]


REMAP = IdentityMapping((IDMap(0, 100000, 65536), IDMap(65536, 300000, 10)),
                        (IDMap(0, 200000, 65536),))


def test_user_namespace_as_docker_writes_it_for_a_remapped_daemon() -> None:
    spec = build_spec(_input(userns_mode="private", id_mapping=REMAP))
    linux = spec["linux"]
    assert linux["namespaces"][-1] == {"type": "user"}
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": 100000, "size": 65536},
                                    {"containerID": 65536, "hostID": 300000, "size": 10}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": 200000, "size": 65536}]
    # dockerd leaves out the ping range (its group IDs are not mapped) and the cgroup "ro"
    assert linux["sysctl"] == {"net.ipv4.ip_unprivileged_port_start": "0"}
    assert _mount(spec, "/sys/fs/cgroup")["options"] == ["nosuid", "noexec", "nodev"]
    assert "ro" in _mount(spec, "/sys")["options"]


def test_joined_user_namespace_keeps_its_mappings() -> None:
    spec = build_spec(_input(userns_mode="/run/berth/netns/x.user", id_mapping=REMAP,
                             network_mode="/run/berth/netns/x"))
    assert {"type": "user", "path": "/run/berth/netns/x.user"} in spec["linux"]["namespaces"]
    assert spec["linux"]["uidMappings"][0]["hostID"] == 100000


def test_no_user_namespace_by_default() -> None:
    spec = build_spec(_input(id_mapping=REMAP))
    assert all(n["type"] != "user" for n in spec["linux"]["namespaces"])
    assert "uidMappings" not in spec["linux"]
    assert spec["linux"]["sysctl"]["net.ipv4.ping_group_range"] == "0 2147483647"


def test_tmpfs_user_options_win() -> None:
    m = tmpfs_mount("/run", ("exec", "size=1m"))
    assert m.options == ("nosuid", "nodev", "rprivate", "exec", "size=1m")


@pytest.mark.parametrize(
    "bad",
    [
        {"args": ()},
        {"network_mode": "bridge"},
        {"pid_mode": "container"},
        {"rlimits": (Rlimit("nofile", 10, 5),)},
        {"userns_mode": "remap"},
        {"userns_mode": "private"},  # without a mapping
    ],
)
def test_invalid_input(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        build_spec(_input(**bad))


# ---------------------------------------------------------------- real runtimes


def _ensure_crun_cgroup_layout() -> None:
    """crun 1.8 refuses a hybrid host with controllers left on cgroup2 (here: hugetlb).

    Same host fix as shared/tools/anchors-setup.sh 2a: mount each such controller as its own
    v1 hierarchy, which moves it off cgroup2. Idempotent; left in place as host configuration.
    """
    controllers = Path("/sys/fs/cgroup/unified/cgroup.controllers")
    if not controllers.exists():
        return
    for name in controllers.read_text().split():
        target = Path("/sys/fs/cgroup") / name
        target.mkdir(exist_ok=True)
        if not os.path.ismount(target):
            subprocess.run(["mount", "-t", "cgroup", "-o", name, "cgroup", str(target)], check=True)


def _build_busybox_rootfs(root: Path) -> None:
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    applets = subprocess.run(
        ["/bin/busybox", "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")


def _cgroup_dirs(parent: str) -> list[Path]:
    return [p for p in Path("/sys/fs/cgroup").glob("*" + parent) if p.is_dir()]


@pytest.fixture()
def cgroup_parent() -> Iterator[str]:
    parent = f"/berth-test-{uuid.uuid4().hex[:12]}"
    yield parent
    for d in _cgroup_dirs(parent):
        for child in sorted(d.glob("*/"), reverse=True):
            if child.is_dir():
                child.rmdir()
        d.rmdir()
    assert _cgroup_dirs(parent) == []


@pytest.mark.parametrize("runtime", ["crun", "runc"])
def test_spec_runs_under_real_runtime(runtime: str, tmp_path: Path, cgroup_parent: str) -> None:
    if shutil.which(runtime) is None:
        pytest.skip(f"{runtime} not installed")
    if runtime == "crun":
        _ensure_crun_cgroup_layout()
    bundle = tmp_path / "bundle"
    _build_busybox_rootfs(bundle / "rootfs")
    hostname_file = tmp_path / "hostname"
    hostname_file.write_text("spectest\n")
    cid = f"berth-spec-{uuid.uuid4().hex[:12]}"
    inp = SpecInput(
        root_path=str(bundle / "rootfs"),
        args=(
            "/bin/sh",
            "-c",
            "echo hello; id -u; hostname; cat /etc/hostname; cat /proc/self/status | "
            "grep CapEff; echo err >&2; exit 7",
        ),
        hostname="spectest",
        mounts=(bind_mount(str(hostname_file), "/etc/hostname", readonly=True),),
        cgroups_path=f"{cgroup_parent}/{cid}",
        resources=Resources(memory=64 << 20, pids_limit=64),
    )
    (bundle / "config.json").write_text(json.dumps(build_spec(inp)))
    state_root = tmp_path / "state"
    try:
        proc = subprocess.run(
            [runtime, "--root", str(state_root), "run", "--bundle", str(bundle), cid],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        subprocess.run(
            [runtime, "--root", str(state_root), "delete", "--force", cid], capture_output=True
        )
    assert proc.returncode == 7, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:4] == ["hello", "0", "spectest", "spectest"]
    # The 14 default capabilities: CapEff 0x00000000a80425fb.
    assert lines[4].split()[-1] == "00000000a80425fb"
    assert proc.stderr.strip() == "err"


def test_build_process_for_exec_keeps_container_security() -> None:
    container = _input(cap_add=("NET_ADMIN",), no_new_privileges=True)
    process = build_process(replace(container, args=("/bin/ls",), tty=True, uid=1000))
    assert process["args"] == ["/bin/ls"] and process["terminal"] is True
    assert process["user"] == {"uid": 1000, "gid": 0}
    assert "CAP_NET_ADMIN" in process["capabilities"]["bounding"]
    assert process["noNewPrivileges"] is True
