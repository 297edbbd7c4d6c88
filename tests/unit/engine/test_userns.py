"""--userns-remap resolution as dockerd does it: names, ranges, the data root, the refusals."""

from __future__ import annotations

import grp
import pwd
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from berth.engine.config import load_config, parse_args
from berth.engine.model import HostConfig
from berth.engine.userns import (
    RemapError,
    RemappedRoot,
    SubIDFiles,
    container_is_remapped,
    load_mapping,
    parse_remap,
    resolve_names,
    setup_daemon_root,
    setup_remapped_root,
    validate_host_config,
)
from berth.errors import InvalidArgument
from berth.oci.idmap import IdentityMapping, IDMap

ROOT_NAME = pwd.getpwuid(0).pw_name
ROOT_GROUP = grp.getgrgid(0).gr_name
REMAP = RemappedRoot("u", "g", IdentityMapping((IDMap(0, 100000, 65536),),
                                              (IDMap(0, 200000, 65536),)))


def _files(tmp_path: Path, subuid: str, subgid: str) -> SubIDFiles:
    (tmp_path / "subuid").write_text(subuid)
    (tmp_path / "subgid").write_text(subgid)
    return SubIDFiles(tmp_path / "subuid", tmp_path / "subgid")


@pytest.mark.parametrize(("value", "parts"), [
    ("default", ("default", None)), ("user", ("user", None)), ("u:g", ("u", "g")),
    ("1000", ("1000", None)), ("1000:1000", ("1000", "1000")),
])
def test_parse_remap(value: str, parts: tuple[str, str | None]) -> None:
    assert parse_remap(value) == parts


def test_three_parts_are_dockerds_error() -> None:
    with pytest.raises(RemapError, match=r'^Invalid user/group specification in '
                                         r'--userns-remap: "a:b:c"$'):
        parse_remap("a:b:c")


def test_names_and_ids_resolve_to_names() -> None:
    assert resolve_names("0") == (ROOT_NAME, ROOT_GROUP)
    assert resolve_names(f"{ROOT_NAME}:0") == (ROOT_NAME, ROOT_GROUP)
    assert resolve_names(f"0:{ROOT_GROUP}") == (ROOT_NAME, ROOT_GROUP)


@pytest.mark.parametrize(("value", "message"), [
    ("nosuchuser-berth", 'Error during uid lookup for "nosuchuser-berth": getent unable to '
                         'find entry "nosuchuser-berth" in passwd database'),
    ("root:nosuchgroup-berth", 'Error during groupname lookup for "nosuchgroup-berth": getent '
                               'unable to find entry "nosuchgroup-berth" in group database'),
    ("0:2147483000", 'Gid 2147483000 has no entry in /etc/passwd: getent unable to find entry '
                     '"2147483000" in group database'),
])
def test_lookup_failures_in_dockerds_words(value: str, message: str) -> None:
    with pytest.raises(RemapError) as err:
        resolve_names(value)
    assert str(err.value) == message


def test_mapping_comes_from_the_users_and_the_groups_ranges(tmp_path: Path) -> None:
    files = _files(tmp_path, f"other:1:2\n{ROOT_NAME}:300000:10\n0:100000:65536\n",
                   f"{ROOT_GROUP}:200000:65536\n")
    mapping = load_mapping(ROOT_NAME, ROOT_GROUP, files)
    assert mapping.uids == (IDMap(0, 100000, 65536), IDMap(65536, 300000, 10))
    assert mapping.gids == (IDMap(0, 200000, 65536),)


def test_missing_ranges_are_refused(tmp_path: Path) -> None:
    files = _files(tmp_path, "", f"{ROOT_GROUP}:200000:65536\n")
    with pytest.raises(RemapError, match=f'^Can\'t create ID mappings: no subuid ranges found '
                                         f'for user "{ROOT_NAME}"$'):
        load_mapping(ROOT_NAME, ROOT_GROUP, files)
    files = _files(tmp_path, f"{ROOT_NAME}:100000:65536\n", "")
    with pytest.raises(RemapError, match="no subgid ranges found for group"):
        load_mapping(ROOT_NAME, ROOT_GROUP, files)


def test_root_remapped_to_itself_is_off(tmp_path: Path) -> None:
    remap = setup_remapped_root("root", _files(tmp_path, "", ""))
    assert remap is not None and not remap.enabled
    assert remap.directory_name == "0.0"
    assert setup_remapped_root("") is None


def test_data_root_layout() -> None:
    base = Path(tempfile.mkdtemp(prefix="berth-test-userns-"))  # pytest's own dirs are 0700
    try:
        base.chmod(0o755)
        root = setup_daemon_root(base / "data", REMAP)
        assert root == base / "data" / "100000.200000"
        for path in (base / "data", root):
            st = path.stat()
            assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 200000, 0o710)
        plain = setup_daemon_root(base / "plain", None)
        assert plain == base / "plain" and plain.stat().st_mode & 0o777 == 0o711
    finally:
        shutil.rmtree(base)


def test_data_root_under_a_closed_directory_is_refused(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    with pytest.raises(RemapError, match=r"restricts access to the remapped root uid/gid; "
                                         r"please fix by allowing 'o\+x' permissions"):
        setup_daemon_root(closed / "data", REMAP)


@pytest.mark.parametrize(("host", "message"), [
    (HostConfig(privileged=True), "privileged mode is incompatible with user namespaces."),
    (HostConfig(network_mode="host"), "cannot share the host's network namespace"),
    (HostConfig(pid_mode="host"), "cannot share the host PID namespace"),
])
def test_host_namespaces_are_refused_unless_userns_host(host: HostConfig, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_host_config(REMAP, host)
    validate_host_config(REMAP, replace(host, userns_mode="host"))
    validate_host_config(None, host)


def test_which_containers_get_a_user_namespace() -> None:
    assert container_is_remapped(REMAP, HostConfig())
    assert not container_is_remapped(REMAP, HostConfig(userns_mode="host"))
    assert not container_is_remapped(None, HostConfig())
    off = RemappedRoot("root", "root", IdentityMapping())
    assert not container_is_remapped(off, HostConfig())


def test_flag_and_daemon_json_key(tmp_path: Path) -> None:
    config_file = tmp_path / "daemon.json"
    config_file.write_text('{"userns-remap": "default"}')
    assert load_config(parse_args(["--config-file", str(config_file)])).userns_remap == "default"
    config_file.write_text("{}")
    assert load_config(parse_args(["--config-file", str(config_file), "--userns-remap",
                                   "u:g"])).userns_remap == "u:g"
    config_file.write_text('{"userns-remap": "a"}')
    with pytest.raises(InvalidArgument, match=r"userns-remap: \(from flag: b, from file: a\)"):
        load_config(parse_args(["--config-file", str(config_file), "--userns-remap", "b"]))
