"""``--user`` resolution inside a container rootfs (real files in tmp_path)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from berth.errors import FailedPrecondition, InvalidArgument
from berth.runtime.users import ResolvedUser, open_in_root, resolve_user

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:1001::/home/bob:/bin/sh
dup:x:1000:5000::/dup:/bin/sh
"""

GROUP = """\
root:x:0:
wheel:x:10:alice,root
alice:x:1000:
bob:x:1001:
audio:x:29:bob,alice
staff:x:50:
"""


@pytest.fixture()
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    return root


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", (0, 0, (0, 10), "/root")),
        ("root", (0, 0, (0, 10), "/root")),
        ("alice", (1000, 1000, (1000, 10, 29), "/home/alice")),
        ("1000", (1000, 1000, (1000, 10, 29), "/home/alice")),  # first uid match wins
        ("bob:staff", (1001, 50, (50,), "/home/bob")),  # explicit group: no supplementary gids
        ("bob:29", (1001, 29, (29,), "/home/bob")),
        ("bob:4242", (1001, 4242, (4242,), "/home/bob")),  # numeric gid needs no entry
        ("4242", (4242, 0, (0,), "/")),  # numeric uid needs no entry
        ("4242:4343", (4242, 4343, (4343,), "/")),
        ("daemon", (1, 1, (1,), "/usr/sbin")),
    ],
)
def test_resolve(rootfs: Path, spec: str, expected: tuple[int, int, tuple[int, ...], str]) -> None:
    assert tuple(resolve_user(str(rootfs), spec)) == expected


def test_result_is_named(rootfs: Path) -> None:
    user = resolve_user(str(rootfs), "alice")
    assert isinstance(user, ResolvedUser)
    assert (user.uid, user.gid, user.home) == (1000, 1000, "/home/alice")


def test_unknown_user_is_docker_error(rootfs: Path) -> None:
    with pytest.raises(FailedPrecondition) as err:
        resolve_user(str(rootfs), "xyz")
    assert str(err.value) == "unable to find user xyz: no matching entries in passwd file"


def test_unknown_group_is_docker_error(rootfs: Path) -> None:
    with pytest.raises(FailedPrecondition) as err:
        resolve_user(str(rootfs), "alice:nogroup")
    assert str(err.value) == "unable to find group nogroup: no matching entries in group file"


def test_group_add(rootfs: Path) -> None:
    user = resolve_user(str(rootfs), "bob", group_add=("staff", "777", "audio"))
    assert user.additional_gids == (1001, 29, 50, 777)
    with pytest.raises(FailedPrecondition, match="Unable to find group nope"):
        resolve_user(str(rootfs), "bob", group_add=("nope",))


def test_out_of_range(rootfs: Path) -> None:
    with pytest.raises(InvalidArgument, match="uids and gids must be in range"):
        resolve_user(str(rootfs), "4294967296")


def test_no_passwd_file(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    assert tuple(resolve_user(str(root), "123:456")) == (123, 456, (456,), "/")
    assert tuple(resolve_user(str(root), "")) == (0, 0, (0,), "/")
    with pytest.raises(FailedPrecondition, match="unable to find user www"):
        resolve_user(str(root), "www")


def test_never_reads_host_files_through_symlinks(tmp_path: Path) -> None:
    # The image's /etc/passwd points at a file outside the rootfs; it must resolve inside.
    host_passwd = tmp_path / "host-passwd"
    host_passwd.write_text("evil:x:0:0::/:/bin/sh\n")
    (tmp_path / "host-group").write_text("evilgroup:x:0:\n")
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").symlink_to(host_passwd)
    (root / "etc" / "group").symlink_to("../../../../../../../" + str(tmp_path / "host-group"))
    with pytest.raises(FailedPrecondition, match="unable to find user evil"):
        resolve_user(str(root), "evil")
    with pytest.raises(FailedPrecondition, match="unable to find group evilgroup"):
        resolve_user(str(root), "0:evilgroup")
    # A self-referencing link is an error, not a hang.
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(FailedPrecondition, match="Too many levels of symbolic links"):
        resolve_user(str(root), "root")
    # A symlinked /etc dir that escapes, and one that stays inside.
    root2 = tmp_path / "rootfs2"
    (root2 / "real").mkdir(parents=True)
    (root2 / "real" / "passwd").write_text("web:x:33:33::/var/www:/bin/sh\n")
    (root2 / "etc").symlink_to("/real")
    assert tuple(resolve_user(str(root2), "web")) == (33, 33, (33,), "/var/www")


def test_open_in_root_confines_dotdot_and_absolute_links(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "a" / "b").mkdir(parents=True)
    (root / "target").write_text("inside")
    (root / "a" / "b" / "up").symlink_to("../../../../../../target")
    (root / "a" / "abs").symlink_to("/target")
    (root / "loop").symlink_to("loop")
    (tmp_path / "target").write_text("outside")
    for path in ("/a/b/up", "/a/abs", "a/../../../target"):
        fd = open_in_root(str(root), path)
        with os.fdopen(fd) as f:
            assert f.read() == "inside", path
    with pytest.raises(OSError):
        open_in_root(str(root), "/loop")
    with pytest.raises(FileNotFoundError):
        open_in_root(str(root), "/missing")
