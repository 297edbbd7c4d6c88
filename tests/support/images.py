"""Real OCI test images, made by tools we did not write (umoci, skopeo) from static busybox.

``build_test_images(out_dir)`` makes, under ``out_dir``:

- ``busybox:latest``: one layer with ``/bin/busybox``, a symlink per applet, a ``printenv``
  stand-in, ``/etc/passwd``/``/etc/group`` (root, nobody), ``/tmp`` (1777) and the usual empty
  directories and files; ``Cmd ["sh"]`` and Docker's default ``PATH``.
- ``layered:latest`` on top of it: umoci-made layers that delete files and directories
  (whiteouts), replace a directory (opaque marker from ``umoci insert --opaque``), add hard
  links, symlinks, a fifo, set-id modes, numeric owners and an xattr, and a whiteout-only layer
  from ``umoci insert --whiteout`` (whose tar has no end-of-archive blocks: a real-world quirk).

Each image comes as an OCI layout directory (tag ``latest``), an OCI archive tarball and a
docker-archive tarball (``skopeo copy``). The build is cached: a complete build carries a stamp
keyed by the sha256 of ``/bin/busybox`` and this module's version, written last. Timestamps are
fixed, so a rebuild gives the same digests.

Run as ``python -m tests.support.images OUT_DIR`` to build and print the paths.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass, fields
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
DOCKER_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# bump when the recipe below changes, so cached builds are redone
RECIPE_VERSION = "3"
EPOCH = 1704067200  # 2024-01-01T00:00:00Z: every timestamp in the images
CREATED = "2024-01-01T00:00:00Z"
_STAMP = "build.stamp"

PRINTENV = """#!/bin/sh
# printenv stand-in: Debian's static busybox has no printenv applet
[ $# -eq 0 ] && exec env
rc=0
for name in "$@"; do
  case "$name" in ''|*[!A-Za-z0-9_]*) rc=1; continue;; esac
  if eval "[ \\"\\${$name+set}\\" = set ]"; then eval "printf '%s\\n' \\"\\$$name\\""; else rc=1; fi
done
exit $rc
"""
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
GROUP = "root:x:0:\nnobody:x:65534:\n"


@dataclass(frozen=True)
class TestImages:
    """Paths of the built images (all under one output directory)."""

    __test__ = False  # not a pytest test class

    root: Path
    busybox_oci_dir: Path
    busybox_oci_tar: Path
    busybox_docker_tar: Path
    layered_oci_dir: Path
    layered_oci_tar: Path
    layered_docker_tar: Path
    busybox_sha256: str


def _paths(out_dir: Path, busybox_sha256: str) -> TestImages:
    return TestImages(
        root=out_dir,
        busybox_oci_dir=out_dir / "busybox-oci",
        busybox_oci_tar=out_dir / "busybox-oci.tar",
        busybox_docker_tar=out_dir / "busybox-docker.tar",
        layered_oci_dir=out_dir / "layered-oci",
        layered_oci_tar=out_dir / "layered-oci.tar",
        layered_docker_tar=out_dir / "layered-docker.tar",
        busybox_sha256=busybox_sha256,
    )


def build_test_images(out_dir: Path) -> TestImages:
    """Build (or reuse) the test images under ``out_dir``."""
    out_dir = Path(out_dir).absolute()
    digest = hashlib.sha256(BUSYBOX.read_bytes()).hexdigest()
    images = _paths(out_dir, digest)
    key = f"{digest} recipe={RECIPE_VERSION}\n"
    stamp = out_dir / _STAMP
    if stamp.is_file() and stamp.read_text() == key and _complete(images):
        return images
    out_dir.mkdir(parents=True, exist_ok=True)
    # concurrent test sessions share the cache: one builds, the others wait and reuse
    with open(out_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text() == key and _complete(images):
            return images
        _build(images, key)
    return images


def _build(images: TestImages, key: str) -> None:
    out_dir = images.root
    stamp = out_dir / _STAMP
    stamp.unlink(missing_ok=True)
    work = out_dir / f".build-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        _build_busybox(work, images.busybox_oci_dir)
        _build_layered(work, images.busybox_oci_dir, images.layered_oci_dir)
        for layout, tar, docker_tar, name in (
            (images.busybox_oci_dir, images.busybox_oci_tar, images.busybox_docker_tar, "busybox"),
            (images.layered_oci_dir, images.layered_oci_tar, images.layered_docker_tar, "layered"),
        ):
            _write_oci_archive(layout, tar)
            docker_tar.unlink(missing_ok=True)
            _run(
                "skopeo", "--insecure-policy", "copy", "--quiet",
                f"oci:{layout}:latest", f"docker-archive:{docker_tar}:{name}:latest",
            )  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stamp.write_text(key)


def _complete(images: TestImages) -> bool:
    return all(
        getattr(images, f.name).exists()
        for f in fields(images)
        if isinstance(getattr(images, f.name), Path)
    )


# -- busybox ---------------------------------------------------------------------------------


def _build_busybox(work: Path, layout: Path) -> None:
    shutil.rmtree(layout, ignore_errors=True)
    _run("umoci", "init", "--layout", str(layout))
    _run("umoci", "new", "--image", f"{layout}:latest")
    bundle = work / "busybox-bundle"
    _run("umoci", "unpack", "--image", f"{layout}:latest", str(bundle))
    rootfs = bundle / "rootfs"
    _populate_busybox(rootfs)
    _fix_times(rootfs)
    _run(
        "umoci", "repack", "--image", f"{layout}:latest",
        "--history.created", CREATED, "--history.created_by", "berth test image: busybox",
        str(bundle),
    )  # fmt: skip
    _run(
        "umoci", "config", "--image", f"{layout}:latest", "--no-history",
        "--created", CREATED, "--os", "linux",
        "--config.cmd", "sh", "--config.env", f"PATH={DOCKER_DEFAULT_PATH}",
    )  # fmt: skip
    _run("umoci", "gc", "--layout", str(layout))


def _populate_busybox(rootfs: Path) -> None:
    os.chmod(rootfs, 0o755)
    for name, mode in (
        ("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("root", 0o700), ("home", 0o755),
        ("var", 0o755), ("dev", 0o755), ("proc", 0o755), ("sys", 0o755),
    ):  # fmt: skip
        (rootfs / name).mkdir()
        os.chmod(rootfs / name, mode)
    shutil.copyfile(BUSYBOX, rootfs / "bin/busybox")
    os.chmod(rootfs / "bin/busybox", 0o755)
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in sorted(set(applets) - {"busybox"}):
        os.symlink("busybox", rootfs / "bin" / applet)
    if "printenv" not in applets:
        (rootfs / "bin/printenv").write_text(PRINTENV)
        os.chmod(rootfs / "bin/printenv", 0o755)
    (rootfs / "etc/passwd").write_text(PASSWD)
    (rootfs / "etc/group").write_text(GROUP)
    for name in ("hosts", "resolv.conf", "hostname"):
        (rootfs / "etc" / name).write_text("")
    for path in (rootfs / "etc").iterdir():
        os.chmod(path, 0o644)


# -- layered ---------------------------------------------------------------------------------


def _build_layered(work: Path, base: Path, layout: Path) -> None:
    shutil.rmtree(layout, ignore_errors=True)
    shutil.copytree(base, layout, symlinks=True)
    image = f"{layout}:latest"

    # layer 2: content to be changed later
    bundle = work / "layered-2"
    _run("umoci", "unpack", "--image", image, str(bundle))
    data = bundle / "rootfs/data"
    _tree(data, {
        "dir/a": "a\n", "dir/b": "b\n", "dir/sub/c": "c\n",
        "keep/stay.txt": "stay\n", "keep/gone.txt": "gone\n",
        "gone-dir/x/y": "y\n", "file": "shared\n", "rdir/r1": "r1\n",
    })  # fmt: skip
    _repack(bundle, image, "add /data")

    # layer 3: deletions, a replaced directory, links, modes, owners (umoci's own diff)
    bundle = work / "layered-3"
    _run("umoci", "unpack", "--image", image, str(bundle))
    rootfs = bundle / "rootfs"
    data = rootfs / "data"
    (data / "keep/gone.txt").unlink()
    shutil.rmtree(data / "gone-dir")
    shutil.rmtree(data / "rdir")
    _tree(data, {"rdir/r2": "r2\n", "new": "new\n"})
    (rootfs / "etc/hostname").unlink()
    os.link(data / "file", data / "file-hardlink")
    os.link(data / "new", data / "new-hardlink")
    os.symlink("../bin/busybox", data / "rel-link")
    os.symlink("/etc/passwd", data / "abs-link")
    os.mkfifo(data / "fifo", 0o600)
    special = data / "special"
    special.write_text("special\n")
    os.chown(special, 1234, 5678)
    os.chmod(special, 0o4750)
    os.setxattr(special, "user.berth.test", b"value")
    (data / "sticky").mkdir()
    os.chown(data / "sticky", 42, 43)
    os.chmod(data / "sticky", 0o1770)
    _repack(bundle, image, "change /data")

    # layer 4: an opaque directory, by umoci insert --opaque
    source = work / "opaque-src"
    _tree(source, {"fresh": "fresh\n", "nested/deep": "deep\n"})
    _fix_times(source)
    _run(
        "umoci", "insert", "--image", image, "--opaque",
        "--history.created", CREATED, "--history.created_by", "replace /data/dir",
        str(source), "/data/dir",
    )  # fmt: skip

    # layer 5: a whiteout-only layer (its tar lacks the end-of-archive blocks)
    _run(
        "umoci", "insert", "--image", image, "--whiteout",
        "--history.created", CREATED, "--history.created_by", "remove /bin/vi",
        "/bin/vi",
    )  # fmt: skip
    _run(
        "umoci", "config", "--image", image, "--no-history", "--created", CREATED,
        "--config.label", "org.berth.test=layered",
    )  # fmt: skip
    _run("umoci", "gc", "--layout", str(layout))


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _repack(bundle: Path, image: str, created_by: str) -> None:
    _fix_times(bundle / "rootfs")
    _run(
        "umoci", "repack", "--image", image,
        "--history.created", CREATED, "--history.created_by", created_by,
        str(bundle),
    )  # fmt: skip


# -- helpers ---------------------------------------------------------------------------------


def _fix_times(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.utime(os.path.join(dirpath, name), (EPOCH, EPOCH), follow_symlinks=False)
    os.utime(root, (EPOCH, EPOCH))


def _write_oci_archive(layout: Path, out: Path) -> None:
    """The layout directory as a deterministic tar (the oci-archive format)."""
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in sorted(os.walk(layout)):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, layout)
            if rel_dir != ".":
                tar.addfile(_archive_info(rel_dir, tarfile.DIRTYPE, 0o755, 0))
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                rel = os.path.normpath(os.path.join(rel_dir, name))
                size = os.path.getsize(path)
                with open(path, "rb") as f:
                    tar.addfile(_archive_info(rel, tarfile.REGTYPE, 0o644, size), f)
    os.replace(tmp, out)


def _archive_info(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _run(*argv: str) -> None:
    if shutil.which(argv[0]) is None:
        raise RuntimeError(f"{argv[0]} is not installed (Debian package {argv[0]})")
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(EPOCH))
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.support.images OUT_DIR", file=sys.stderr)
        return 2
    images = build_test_images(Path(argv[0]))
    for f in fields(images):
        print(f"{f.name}\t{getattr(images, f.name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
