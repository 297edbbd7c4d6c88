"""The same bundle under berth-runtime and under crun: the container must see the same world."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Bundle, Runtime  # type: ignore[import-not-found]

PROBE = r"""#!/bin/sh
echo "hostname=$(hostname)"
echo "id=$(id)"
echo "cwd=$(pwd)"
env | sort | sed 's/^/env:/'
for ns in pid mnt uts ipc net; do echo "ns_$ns=$(readlink /proc/self/ns/$ns)"; done
awk '{ for (i = 7; $i != "-"; i++) ; print "mount:" $5 " " $(i+1) " " substr($6, 1, 2) }' \
  /proc/self/mountinfo | sort
ls /dev | sort | sed 's/^/dev:/'
"""


def _lines(output: str) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for line in output.splitlines():
        key = line.split("=", 1)[0] if "=" in line and ":" not in line[:6] else line.split(":")[0]
        seen.setdefault(key, []).append(line)
    return seen


@pytest.fixture()
def probe_bundle(bundle: Bundle) -> Bundle:
    path = bundle.rootfs / "probe"
    path.write_text(PROBE)
    path.chmod(0o755)

    def change(c: dict[str, Any]) -> None:
        c["process"]["args"] = ["/probe"]
        c["process"]["env"].append("PROBE=1")
        c["hostname"] = "same-host"

    bundle.edit(change)
    return bundle


def _crun(bundle: Path, container_id: str) -> str:
    with tempfile.TemporaryDirectory() as root:
        proc = subprocess.run(["crun", "--root", root, "run", "--bundle", str(bundle),
                               container_id], capture_output=True, text=True, timeout=30)
        subprocess.run(["crun", "--root", root, "delete", "-f", container_id],
                       capture_output=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_container_sees_what_it_sees_under_crun(
    probe_bundle: Bundle, runtime: Runtime, container_id: str, crun_hybrid_ready: None
) -> None:
    ours = _lines(runtime.ok("run", "--bundle", str(probe_bundle.path), container_id))
    theirs = _lines(_crun(probe_bundle.path, container_id + "-crun"))

    for key in ("hostname", "id", "cwd", "env"):
        assert ours[key] == theirs[key], key
    # crun always adds /dev/core -> /proc/kcore; runc (Docker's runtime) and berth only when
    # /proc/kcore exists, which it does not on every kernel.
    assert ours["dev"] == [d for d in theirs["dev"] if d != "dev:core" or "dev:core" in ours["dev"]]
    host_ns = {ns: os.readlink(f"/proc/self/ns/{ns}") for ns in ("pid", "mnt", "uts", "ipc", "net")}
    for ns, link in host_ns.items():
        (line,) = ours[f"ns_{ns}"]
        assert line.split("=", 1)[1] != link, f"{ns} namespace is the host's"
    # Same mount points with the same types and rw/ro; below /sys/fs/cgroup crun shows each v1
    # hierarchy as its own cgroup mount where we bind the container's group: compare the names.
    # The /sys/fs/cgroup tmpfs itself is read-only under runc (Docker) and berth, rw under crun.
    def normal(lines: list[str]) -> list[str]:
        return sorted(" ".join(line.split()[:2]) if "/sys/fs/cgroup/" in line else line
                      for line in lines)

    def without_cgroup_types(lines: list[str]) -> list[str]:
        return [line.split()[0] if "/sys/fs/cgroup/" in line else line for line in normal(lines)]

    # Masked files: runc and berth bind the container's /dev/null (a tmpfs node), crun the
    # host's; compare where the masks are, not which null device they show.
    masked = set(probe_bundle.config()["linux"]["maskedPaths"])

    def comparable(lines: list[str]) -> list[str]:
        return [line.split()[0] if line.split()[0][6:] in masked else
                line.rsplit(" ", 1)[0] if line.startswith("mount:/sys/fs/cgroup ") else line
                for line in without_cgroup_types(lines)]

    assert comparable(ours["mount"]) == comparable(theirs["mount"])
