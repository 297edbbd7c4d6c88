"""The registry client's pure parts: challenges, X-Registry-Auth, tokens, insecure checks, errors,
platform selection and Docker's progress bar."""

from __future__ import annotations

import base64
import json

import pytest

from berth.errors import InvalidArgument, NotFound
from berth.image.progress import human_size, progress_bar
from berth.image.pull import parse_platform, select_manifest
from berth.oci.descriptor import Descriptor, Platform
from berth.oci.digest import Digest
from berth.oci.image import Index
from berth.registry._http import error_text
from berth.registry.auth import (
    AuthConfig,
    Challenge,
    decode_registry_auth,
    parse_challenges,
    parse_token_response,
)
from berth.registry.client import api_host, is_insecure, next_link


def test_bearer_challenge_with_quoted_commas_and_several_scopes():
    header = ('Bearer realm="https://auth.example/token",service="registry.example",'
              'scope="repository:a/b:pull,push repository:c:pull"')
    assert parse_challenges(header) == [Challenge("bearer", {
        "realm": "https://auth.example/token", "service": "registry.example",
        "scope": "repository:a/b:pull,push repository:c:pull"})]


def test_basic_and_bearer_challenges_in_one_header():
    got = parse_challenges('Basic realm="r1", Bearer realm="http://t/x",service=s')
    assert [c.scheme for c in got] == ["basic", "bearer"]
    assert got[1].params == {"realm": "http://t/x", "service": "s"}


def _b64url(data: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.mark.parametrize(("header", "want"), [
    (None, AuthConfig()),
    ("e30=", AuthConfig()),
    ("not base64 !!", AuthConfig()),
    (_b64url({"username": "u", "password": "p", "serveraddress": "h:5000"}),
     AuthConfig("u", "p", server_address="h:5000")),
    (_b64url({"identitytoken": "tok"}), AuthConfig(identity_token="tok")),
    (_b64url({"auth": base64.b64encode(b"me:pw:x").decode()}), AuthConfig("me", "pw:x")),
])
def test_x_registry_auth_decoding(header, want):
    assert decode_registry_auth(header) == want


def test_token_response_prefers_access_token_and_floors_expiry():
    token = parse_token_response(b'{"token":"a","access_token":"b","expires_in":5}', 1000.0)
    assert token.value == "b" and token.expires_at == 1060.0
    with pytest.raises(ValueError, match="did not include a token"):
        parse_token_response(b"{}", 0)


@pytest.mark.parametrize(("domain", "insecure", "want"), [
    ("127.0.0.1:5000", ("127.0.0.0/8",), True),
    ("localhost:5000", ("127.0.0.0/8",), True),
    ("127.0.0.1:5000", (), False),
    ("reg.example:443", ("reg.example:443",), True),
    ("reg.example", ("10.0.0.0/8",), False),
    ("10.1.2.3", ("10.0.0.0/8",), True),
])
def test_insecure_registries(domain, insecure, want):
    assert is_insecure(domain, insecure) is want


def test_docker_hub_api_host():
    assert api_host("docker.io") == "registry-1.docker.io"
    assert api_host("127.0.0.1:5000") == "127.0.0.1:5000"


def test_registry_error_body_as_docker_prints_it():
    body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}'
    assert error_text(404, "Not Found", body) == "manifest unknown: manifest unknown"
    assert error_text(401, "Unauthorized", b"") == "unauthorized: authentication required"


def _entry(arch: str, variant: str | None = None, os: str = "linux") -> Descriptor:
    return Descriptor("application/vnd.oci.image.manifest.v1+json",
                      Digest("sha256:" + f"{arch}{variant}".encode().hex().ljust(64, "0")[:64]),
                      10, platform=Platform(arch, os, variant=variant))


def test_select_manifest_by_platform():
    index = Index((_entry("unknown", os="unknown"), _entry("arm", "v7"), _entry("arm64", "v8"),
                   _entry("amd64")))
    assert select_manifest(index, parse_platform("linux/amd64")) == index.manifests[3]
    assert select_manifest(index, parse_platform("linux/arm64")) == index.manifests[2]
    assert select_manifest(index, parse_platform("linux/arm/v7")) == index.manifests[1]
    with pytest.raises(NotFound, match="^no matching manifest for linux/s390x in the "
                                       "manifest list entries$"):
        select_manifest(index, parse_platform("linux/s390x"))


def test_bad_platform():
    with pytest.raises(InvalidArgument):
        parse_platform("linux//")


def test_progress_bar_matches_dockerd():
    assert progress_bar(19968, 1984459) == f"[>{' ' * 50}]  19.97kB/1.984MB"
    assert progress_bar(2140160, 1984459) == f"[{'=' * 50}>]   2.14MB"
    assert human_size(527) == "527B"


@pytest.mark.parametrize("header, expected", [
    ('</v2/a/tags/list?last=b&n=2>; rel="next"', "/v2/a/tags/list?last=b&n=2"),
    ('<https://r.example/v2/a/tags/list?last=b>; rel=next', "https://r.example/v2/a/tags/list?last=b"),
    ('</x>; rel="prev", </y>; rel="next"', "/y"),
    ('</x>; rel="prev"', None),
    ("", None),
    ("garbage", None),
])
def test_next_link(header, expected):
    assert next_link(header) == expected


def test_tag_list_follows_link_pages():
    """Pagination against a tiny HTTP server on loopback (Debian's registry ignores ``n``)."""
    import http.server
    import threading

    from berth.registry.client import RegistryClient, RegistryConfig

    pages = {"/v2/a/b/tags/list": (["z", "b"], "/v2/a/b/tags/list?last=b&n=2"),
             "/v2/a/b/tags/list?last=b&n=2": (["c"], "/v2/a/b/tags/list?last=c&n=2"),
             "/v2/a/b/tags/list?last=c&n=2": ([], None)}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/v2/":
                body, link = b"{}", None
            else:
                tags, link = pages[self.path]
                body = json.dumps({"name": "a/b", "tags": tags or None}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            if link:
                self.send_header("Link", f'<{link}>; rel="next"')
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = RegistryClient(RegistryConfig(insecure_registries=("127.0.0.0/8",)))
        host = f"127.0.0.1:{server.server_address[1]}"
        repo = client.repository(host, "a/b", AuthConfig(), "pull")
        assert repo.list_tags() == ["z", "b", "c"]  # the registry's order, every page
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
