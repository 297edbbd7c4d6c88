"""Image reference parsing and normalisation, as distribution's reference package behaves."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from berth.cli._ref import plainly_valid
from berth.errors import InvalidReference
from berth.reference import (
    Reference,
    is_full_id,
    looks_like_id_prefix,
    parse_named,
    parse_reference,
)

D = "sha256:" + "0" * 64

# text -> (full string, familiar string)
VALID = [
    ("nginx", "docker.io/library/nginx:latest", "nginx:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("user/repo:tag", "docker.io/user/repo:tag", "user/repo:tag"),
    ("docker.io/library/nginx", "docker.io/library/nginx:latest", "nginx:latest"),
    ("index.docker.io/library/nginx:1", "docker.io/library/nginx:1", "nginx:1"),
    ("index.docker.io/user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("docker.io/nginx", "docker.io/library/nginx:latest", "nginx:latest"),
    ("registry:5000/a/b:tag", "registry:5000/a/b:tag", "registry:5000/a/b:tag"),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
    ("localhost:5000/x/y", "localhost:5000/x/y:latest", "localhost:5000/x/y:latest"),
    ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest", "127.0.0.1:5000/app:latest"),
    ("my.reg/app", "my.reg/app:latest", "my.reg/app:latest"),
    ("myreg/app", "docker.io/myreg/app:latest", "myreg/app:latest"),
    ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
    (f"name@{D}", f"docker.io/library/name@{D}", f"name@{D}"),
    (f"name:tag@{D}", f"docker.io/library/name:tag@{D}", f"name:tag@{D}"),
    ("a__b-c---e/f_g.h", "docker.io/a__b-c---e/f_g.h:latest", "a__b-c---e/f_g.h:latest"),
    ("ns/x:Mixed_Case-tag.1", "docker.io/ns/x:Mixed_Case-tag.1", "ns/x:Mixed_Case-tag.1"),
    ("Example.COM/app", "Example.COM/app:latest", "Example.COM/app:latest"),
]

INVALID = [
    ("", "invalid reference format"),
    ("name:tag:extra", "invalid reference format"),
    ("name//x", "invalid reference format"),
    ("-name", "invalid reference format"),
    ("name-", "invalid reference format"),
    ("a/b:", "invalid reference format"),
    ("a:" + "t" * 129, "invalid reference format"),
    (":tag", "invalid reference format"),
    ("name@sha256:abc", "invalid reference format"),
    ("Uppercase", "invalid reference format: repository name must be lowercase"),
    ("Casetest-033/app", "invalid reference format: repository name must be lowercase"),
    ("reg.io/App", "invalid reference format: repository name must be lowercase"),
    ("name@md5:" + "0" * 32, "unsupported digest algorithm"),
    ("name@sha256:" + "0" * 63 + "00", "invalid checksum digest length"),
    ("a" * 64, f"invalid repository name ({'a' * 64}), cannot specify 64-byte hexadecimal strings"),
    ("x/" + "a" * 250, "repository name must not be more than 255 characters"),
]


@pytest.mark.parametrize(("text", "full", "familiar"), VALID)
def test_valid_references_normalise(text: str, full: str, familiar: str) -> None:
    ref = parse_reference(text)
    assert ref.string() == full
    assert str(ref) == full
    assert ref.familiar_string() == familiar


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_invalid_references_use_dockers_wording(text: str, message: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference(text)
    assert str(info.value) == message


def test_fields_and_names() -> None:
    ref = parse_reference("busybox")
    assert ref == Reference("docker.io", "library/busybox", "latest", None)
    assert ref.name == "docker.io/library/busybox"
    assert ref.familiar_name == "busybox"
    assert parse_reference("user/name").familiar_name == "user/name"
    assert parse_reference("localhost:5000/x/y").familiar_name == "localhost:5000/x/y"


def test_digest_given_means_no_default_tag() -> None:
    ref = parse_reference(f"busybox@{D}")
    assert ref.tag is None
    assert ref.digest == D
    both = parse_reference(f"busybox:1@{D}")
    assert (both.tag, both.digest) == ("1", D)


def test_parse_named_keeps_tag_absent() -> None:
    assert parse_named("busybox").tag is None
    assert parse_named("busybox").with_tag("x").familiar_string() == "busybox:x"
    with pytest.raises(InvalidReference, match="invalid tag format"):
        parse_named("busybox").with_tag("-bad")


@pytest.mark.parametrize(
    ("text", "prefix", "full"),
    [
        ("a", True, False),
        ("abc123", True, False),
        ("sha256:abc", True, False),
        ("f" * 64, True, True),
        ("sha256:" + "f" * 64, True, True),
        ("busybox", False, False),
        ("ABC", False, False),
        ("f" * 65, False, False),
        ("", False, False),
    ],
)
def test_id_prefix_helper(text: str, prefix: bool, full: bool) -> None:
    assert looks_like_id_prefix(text) is prefix
    assert is_full_id(text) is full


# Case 033 (docker tag on 20.10): which targets are accepted, how listings show them, which fail.
CASE_033_OK = [
    ("casetest-033", "casetest-033:latest"),
    ("docker.io/library/casetest-033:two", "casetest-033:two"),
    ("index.docker.io/library/casetest-033:three", "casetest-033:three"),
    ("casetest-ns/casetest-033:Mixed_Case-tag.1", "casetest-ns/casetest-033:Mixed_Case-tag.1"),
    ("localhost:5000/casetest-033/app:v1", "localhost:5000/casetest-033/app:v1"),
    ("localhost/casetest-033", "localhost/casetest-033:latest"),
]


@pytest.mark.parametrize(("target", "listed"), CASE_033_OK)
def test_case_033_accepted_targets(target: str, listed: str) -> None:
    assert parse_reference(target).familiar_string() == listed


def test_case_033_rejections() -> None:
    with pytest.raises(InvalidReference, match="^invalid reference format: repository name must"):
        parse_reference("Casetest-033/app")
    with pytest.raises(InvalidReference, match="^invalid reference format$"):
        parse_reference("casetest-033:a:b")
    ref = parse_reference("casetest-033@sha256:" + "0" * 64)
    assert ref.digest is not None  # the tag command refuses it (tested in the image store)
    alias = parse_reference("index.docker.io/library/casetest-033:two")
    assert alias == parse_reference("casetest-033:two")


# -- the CLI's fast path ----------------------------------------------------------------------


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="ab09._-/:A@", max_size=24))
def test_what_the_cli_accepts_without_the_parser_the_parser_accepts(text: str) -> None:
    if plainly_valid(text):
        parse_named(text)


@pytest.mark.parametrize("text", ["app:1.0", "berth-bench/build:ab12cd34", "a.b/c_d:Tag-1",
                                  "localhost/x", "registry.example/team/app"])
def test_the_cli_fast_path_covers_everyday_tags(text: str) -> None:
    assert plainly_valid(text)


@pytest.mark.parametrize("text", ["a_b.c/x", "App", "a:b:c", "x:", "a//b", "a" * 64,
                                  "localhost:5000/x:1", "a@sha256:" + "0" * 64])
def test_the_cli_fast_path_leaves_the_rest_to_the_parser(text: str) -> None:
    assert not plainly_valid(text)
