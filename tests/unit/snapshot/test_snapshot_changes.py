"""``docker diff`` from an overlay upper directory over image layers (``layer_changes``)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from berth.snapshot.archive import OPAQUE_XATTR
from berth.snapshot.changes import Change, ChangeKind, layer_changes

C, A, D = ChangeKind.MODIFIED, ChangeKind.ADDED, ChangeKind.DELETED


def _tree(root: Path, spec: dict[str, str | None]) -> Path:
    """``name/`` a directory, ``name`` a file with that text, None a whiteout, ``name/!`` an
    opaque directory; parents are made as needed."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in spec.items():
        path = root / name.rstrip("/!")
        path.parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))
        elif name.endswith("/!"):
            path.mkdir(exist_ok=True)
            os.setxattr(path, OPAQUE_XATTR, b"y")
        elif name.endswith("/"):
            path.mkdir(exist_ok=True)
        else:
            path.write_text(text)
    return root


def _same_times(upper: Path, lower: Path, *names: str) -> None:
    """A copied-up directory keeps the lower one's metadata (as overlayfs does)."""
    for name in names:
        st = os.stat(lower / name)
        os.chmod(upper / name, stat.S_IMODE(st.st_mode))


def _changes(upper: Path, *lowers: Path, hidden: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    return [(c.kind.letter, c.path) for c in layer_changes(upper, list(lowers), hidden)]


def test_added_modified_deleted(tmp_path: Path) -> None:
    image = _tree(tmp_path / "l1", {"bin/busybox": "bb", "bin/printenv": "pe", "etc/passwd": "root",
                                    "srv/": "", "usr/bin/x": "x", "usr/sbin/y": "y"})
    upper = _tree(tmp_path / "upper", {
        "bin/printenv": None,            # rm /bin/printenv
        "etc/passwd": "root\nx",         # echo x >> /etc/passwd
        "new/sub/f": "a",                # mkdir -p /new/sub; echo a > /new/sub/f
        "srv": None,                     # rmdir /srv
        "usr/!": "", "usr/z": "",        # rm -rf /usr; mkdir /usr; touch /usr/z
    })
    _same_times(upper, image, "bin", "etc", "usr")
    assert _changes(upper, image) == [
        ("C", "/bin"), ("D", "/bin/printenv"),
        ("C", "/etc"), ("C", "/etc/passwd"),
        ("A", "/new"), ("A", "/new/sub"), ("A", "/new/sub/f"),
        ("D", "/srv"),
        ("C", "/usr"), ("D", "/usr/bin"), ("D", "/usr/sbin"), ("A", "/usr/z"),
    ]


def test_copied_up_but_unchanged_is_no_change(tmp_path: Path) -> None:
    image = _tree(tmp_path / "l1", {"etc/f": "same"})
    upper = _tree(tmp_path / "upper", {"etc/f": "same"})
    _same_times(upper, image, "etc", "etc/f")
    st = os.stat(image / "etc/f")
    os.utime(upper / "etc/f", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _changes(upper, image) == []
    os.chmod(upper / "etc/f", 0o600)
    assert _changes(upper, image) == [("C", "/etc"), ("C", "/etc/f")]


def test_layers_merge_with_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    bottom = _tree(tmp_path / "l1", {"a/old": "1", "b/keep": "1", "gone": "1"})
    top = _tree(tmp_path / "l2", {"a/!": "", "a/new": "2", "gone": None})
    upper = _tree(tmp_path / "upper", {"a/": "", "gone": "back", "b/": "", "b/keep": None})
    _same_times(upper, top, "a")
    _same_times(upper, bottom, "b")
    # the image has a/new (a/old is hidden by the opaque a/) and no /gone
    assert _changes(upper, top, bottom) == [("C", "/b"), ("D", "/b/keep"), ("A", "/gone")]


def test_type_changes(tmp_path: Path) -> None:
    image = _tree(tmp_path / "l1", {"d/x": "1", "d/y": "2", "f": "1"})
    upper = _tree(tmp_path / "upper", {"d": "now a file", "f/": "", "f/inner": "i"})
    assert _changes(upper, image) == [
        ("C", "/d"), ("D", "/d/x"), ("D", "/d/y"), ("C", "/f"), ("A", "/f/inner")]


def test_hidden_paths_and_dirs_made_only_for_them(tmp_path: Path) -> None:
    image = _tree(tmp_path / "l1", {"bin/sh": "sh"})
    upper = _tree(tmp_path / "upper", {"etc/hostname": "", "dev/pts/": "", "proc/": "",
                                       "data/": ""})
    hidden = ("/etc/hostname", "/dev", "/proc")
    assert _changes(upper, image, hidden=hidden) == [("A", "/data")]
    (upper / "etc/mine").write_text("x")
    assert _changes(upper, image, hidden=hidden) == [("A", "/data"), ("A", "/etc"),
                                                    ("A", "/etc/mine")]


def test_symlinked_directories_are_not_followed(tmp_path: Path) -> None:
    image = _tree(tmp_path / "l1", {"d/x": "1"})
    upper = _tree(tmp_path / "upper", {})
    os.symlink("/", upper / "d")  # a container replaced /d by a link to the root
    assert _changes(upper, image) == [("C", "/d"), ("D", "/d/x")]


def test_no_upper_directory_means_no_change(tmp_path: Path) -> None:
    assert layer_changes(tmp_path / "missing", [], ()) == []
    assert Change("/x", ChangeKind.ADDED).kind == 1 and ChangeKind.DELETED.letter == "D"
