"""ID mapping math for --userns-remap: /etc/subuid ranges → the mapping → shifted IDs."""

from __future__ import annotations

import pytest

from berth.errors import InvalidArgument
from berth.oci.idmap import (
    IdentityMapping,
    IDMap,
    SubIDRange,
    UnmappedID,
    build_mapping,
    next_free_start,
    parse_subid,
    ranges_for,
)

SUBUID = """\
# comment
dockremap:100000:65536

alice:231072:65536
dockremap:300000:1000
"""

REMAP = build_mapping((SubIDRange("d", 100000, 65536),), (SubIDRange("d", 100000, 65536),))


def test_parse_subid_skips_comments_and_blanks() -> None:
    assert parse_subid(SUBUID) == (
        SubIDRange("dockremap", 100000, 65536), SubIDRange("alice", 231072, 65536),
        SubIDRange("dockremap", 300000, 1000))


@pytest.mark.parametrize("line", ["dockremap:100000", "a:b:c", "x:1:2:3", "x:-1:5"])
def test_parse_subid_refuses_malformed_lines_with_dockerds_message(line: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_subid(line, "/etc/subgid")
    assert str(err.value) == ("Cannot parse subuid/gid information: Format not correct for "
                              "/etc/subgid file")


def test_ranges_are_stacked_from_container_id_zero_in_start_order() -> None:
    mine = ranges_for(parse_subid(SUBUID), "dockremap", "103")
    mapping = build_mapping(tuple(reversed(mine)), mine)
    assert mapping.uids == (IDMap(0, 100000, 65536), IDMap(65536, 300000, 1000))
    assert mapping.root_pair() == (100000, 100000)
    assert mapping.to_host(65537, 1) == (300001, 100001)
    assert mapping.to_container(300999, 165535) == (66535, 65535)


@pytest.mark.parametrize(("uid", "gid"), [(0, 0), (1000, 5), (65535, 65535)])
def test_to_host_and_back_round_trip(uid: int, gid: int) -> None:
    host = REMAP.to_host(uid, gid)
    assert host == (uid + 100000, gid + 100000)
    assert REMAP.host_owns(*host)
    assert REMAP.to_container(*host) == (uid, gid)


def test_ids_outside_the_ranges_fail_with_dockerds_wording() -> None:
    with pytest.raises(UnmappedID, match="^Container ID 65536 cannot be mapped to a host ID$"):
        REMAP.to_host(65536, 0)
    with pytest.raises(UnmappedID, match="^Host ID 0 cannot be mapped to a container ID$"):
        REMAP.to_container(0, 100000)
    assert not REMAP.host_owns(0, 100000)


def test_an_empty_mapping_is_the_identity() -> None:
    none = IdentityMapping()
    assert none.empty
    assert none.root_pair() == (0, 0)
    assert none.to_host(7, 8) == (7, 8) == none.to_container(7, 8)


def test_proc_text_and_oci_spec_forms() -> None:
    assert REMAP.proc_text("uid") == "0 100000 65536\n"
    assert REMAP.to_spec() == {
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]}


@pytest.mark.parametrize(("existing", "expected"), [
    ((), 100000),
    ((SubIDRange("a", 100000, 65536),), 165536),
    ((SubIDRange("a", 0, 10), SubIDRange("b", 120000, 5)), 120005),
    ((SubIDRange("b", 200000, 65536), SubIDRange("a", 100000, 65536)), 265536),
    ((SubIDRange("a", 500000, 10),), 100000),
])
def test_next_free_start_skips_every_overlap(existing: tuple[SubIDRange, ...],
                                             expected: int) -> None:
    assert next_free_start(existing, 65536) == expected
