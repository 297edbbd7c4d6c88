"""The distribution (registry v2) client: HTTP only, it hands back bytes, streams and digests.

What it knows: endpoints (HTTPS with the system CAs plus ``<certs_dir>/<host:port>/ca.crt``;
for insecure registries HTTPS without verification, then plain HTTP, as dockerd), Docker Hub's
names, the ``/v2/`` ping, ``WWW-Authenticate`` challenges (bearer tokens fetched per scope and
reused, basic credentials), manifests by tag or digest, blob downloads (redirects followed
without leaking ``Authorization`` to another host), existence checks, uploads (monolithic and
chunked), cross-repository mounts and manifest uploads. What it does not know: the content
store, manifests' meaning, unpacking — that is ``berth.image.pull``/``push``.

Blocking (stdlib ``http.client``): the daemon runs pulls and pushes in worker threads, and a
response body is a plain file object the content store can verify while it streams.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from berth.errors import (
    BerthError,
    DigestMismatch,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthorized,
    Unavailable,
)
from berth.oci.digest import Digest, parse_digest
from berth.registry import _http
from berth.registry._http import Endpoint, Response, error_text
from berth.registry.auth import (
    HUB_API_HOST,
    HUB_DOMAIN,
    AuthConfig,
    Challenge,
    TokenCache,
    basic_header,
    parse_challenges,
    parse_token_response,
    repository_scope,
)

log = logging.getLogger(__name__)

MANIFEST_ACCEPT = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
))
_MAX_MANIFEST = 4 << 20  # distribution's own limit on manifest PUTs
_MAX_REDIRECTS = 5
_MAX_PAGES = 1000  # of a tag list
DEFAULT_CERTS_DIR = Path("/etc/berth/certs.d")


@dataclass(frozen=True)
class RegistryConfig:
    insecure_registries: tuple[str, ...] = ("127.0.0.0/8",)
    mirrors: tuple[str, ...] = ()
    certs_dir: Path = DEFAULT_CERTS_DIR
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    retries: int = 2  # extra attempts after a connection failure, with a short back-off


@dataclass(frozen=True)
class RemoteManifest:
    media_type: str  # from Content-Type (parameters dropped), "" if the registry sent none
    digest: Digest  # sha256 of ``data``
    data: bytes


def api_host(domain: str) -> str:
    """The host to contact for a reference's domain (Docker Hub's API lives elsewhere)."""
    return HUB_API_HOST if domain == HUB_DOMAIN else domain


def is_insecure(domain: str, insecure: Sequence[str]) -> bool:
    """A registry listed by name, or whose IP literal (or ``localhost``) is in a listed CIDR."""
    if domain in insecure:
        return True
    host = urllib.parse.urlsplit("//" + domain).hostname or domain
    if host in insecure:
        return True
    try:
        address = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
    except ValueError:
        return False
    for entry in insecure:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


class RegistryClient:
    """One per daemon: knows how to reach each registry and caches tokens and endpoints."""

    def __init__(self, config: RegistryConfig) -> None:
        self.config = config
        self.tokens = TokenCache()
        self._lock = threading.Lock()
        self._endpoints: dict[str, Endpoint] = {}

    # -- endpoints -----------------------------------------------------------------------------

    def _candidates(self, domain: str) -> list[Endpoint]:
        host = api_host(domain)
        secure = Endpoint("https", host, self._tls_context(host, verify=True))
        if not is_insecure(domain, self.config.insecure_registries):
            return [secure]
        return [Endpoint("https", host, self._tls_context(host, verify=False)),
                Endpoint("http", host, None)]

    def _tls_context(self, host: str, verify: bool) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        folder = self.config.certs_dir / host
        if folder.is_dir():
            # as dockerd's certs.d: *.crt are extra roots, *.cert + *.key a client certificate
            for ca in sorted(folder.glob("*.crt")):
                ctx.load_verify_locations(cafile=str(ca))
            for cert in sorted(folder.glob("*.cert")):
                key = cert.with_suffix(".key")
                if key.exists():
                    ctx.load_cert_chain(str(cert), str(key))
        return ctx

    def _ping(self, domain: str, candidates: Sequence[Endpoint] = ()
              ) -> tuple[Endpoint, Response]:
        """GET /v2/ on the first endpoint that answers; remember it for this registry."""
        with self._lock:
            known = self._endpoints.get(domain)
        if not candidates:
            candidates = [known] if known is not None else self._candidates(domain)
        last: BerthError | None = None
        for endpoint in candidates:
            try:
                resp = self.send(endpoint, "GET", "/v2/", {}, retries=self.config.retries)
            except Unavailable as err:
                last = err
                continue
            resp.read_all()
            if resp.status not in (200, 401):
                last = Unavailable(f'Get "{endpoint.url("/v2/")}": unexpected status '
                                   f"{resp.status} {resp.reason}: not a v2 registry")
                continue
            with self._lock:
                self._endpoints[domain] = endpoint
            return endpoint, resp
        assert last is not None
        raise last

    # -- one HTTP exchange ---------------------------------------------------------------------

    def send(self, endpoint: Endpoint, method: str, target: str, headers: dict[str, str],
             body: bytes | BinaryIO | None = None, *, retries: int = 0) -> Response:
        """One request; connection failures are retried (only when the body can be re-sent)."""
        attempt = 0
        while True:
            try:
                return _http.request(endpoint, method, target, headers, body,
                                     self.config.connect_timeout, self.config.read_timeout)
            except Unavailable as err:
                if (attempt >= retries or not (body is None or isinstance(body, bytes))
                        or isinstance(err.__cause__, socket.gaierror | ssl.SSLError)):
                    raise  # a name that does not resolve or a TLS failure will not heal
                time.sleep(0.2 * (2 ** attempt))
                attempt += 1

    # -- sessions ------------------------------------------------------------------------------

    def mirrors(self, domain: str, path: str, auth: AuthConfig) -> list[Repository]:
        """Sessions on the configured mirrors that answer (Docker Hub pulls only, as dockerd)."""
        if domain != HUB_DOMAIN:
            return []
        out = []
        for url in self.config.mirrors:
            parts = urllib.parse.urlsplit(url if "://" in url else f"https://{url}")
            if parts.scheme not in ("http", "https") or not parts.netloc:
                log.warning("ignoring registry mirror %r: not an http(s) URL", url)
                continue
            endpoint = Endpoint(parts.scheme, parts.netloc,
                                self._tls_context(parts.netloc, verify=True)
                                if parts.scheme == "https" else None)
            try:
                out.append(self._session(f"mirror {url}", [endpoint], path, auth, "pull", ()))
            except BerthError as err:
                log.warning("registry mirror %s is not usable: %s", url, err)
        return out

    def repository(self, domain: str, path: str, auth: AuthConfig,
                   actions: str = "pull", extra_scopes: Sequence[str] = ()) -> Repository:
        """Ping the registry and authenticate for ``path`` with ``actions`` (``push,pull``)."""
        return self._session(domain, [], path, auth, actions, extra_scopes)

    def _session(self, domain: str, candidates: Sequence[Endpoint], path: str,
                 auth: AuthConfig, actions: str, extra_scopes: Sequence[str]) -> Repository:
        endpoint, ping = self._ping(domain, candidates)
        scopes = (repository_scope(path, actions), *extra_scopes)
        repo = Repository(self, endpoint, domain, path, auth, scopes)
        if ping.status == 401:
            repo.authenticate(parse_challenges(ping.header("WWW-Authenticate")))
        return repo

    def login(self, server: str, auth: AuthConfig) -> str:
        """Check credentials as ``docker login``; returns an identity token (or "")."""
        endpoint, ping = self._ping(server)
        url = endpoint.url("/v2/")
        if ping.status == 200:
            return ""
        challenges = parse_challenges(ping.header("WWW-Authenticate"))
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        if bearer is not None:
            token = self.fetch_token(bearer, (), auth, offline=True)
            headers = {"Authorization": f"Bearer {token}"}
        elif auth.username:
            headers = {"Authorization": basic_header(auth)}
        else:
            raise Unauthorized(f"login attempt to {url} failed with status: 401 Unauthorized")
        resp = self.send(endpoint, "GET", "/v2/", headers)
        resp.read_all()
        if resp.status != 200:
            raise Unauthorized(f"login attempt to {url} failed with status: "
                               f"{resp.status} {resp.reason}")
        return ""

    def fetch_token(self, challenge: Challenge, scopes: Sequence[str], auth: AuthConfig,
                    offline: bool = False) -> str:
        """A bearer token from the challenge's realm (GET form), cached per scope set."""
        realm = challenge.params.get("realm", "")
        service = challenge.params.get("service", "")
        wanted = tuple(sorted({*scopes, *challenge.params.get("scope", "").split()} - {""}))
        key = (realm, service, wanted, auth.username)
        if not offline:
            cached = self.tokens.get(key)
            if cached is not None:
                return cached
        if auth.registry_token:
            return auth.registry_token
        parts = urllib.parse.urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise Unauthorized(f"invalid token realm {realm!r} in the registry's challenge")
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if service:
            query.append(("service", service))
        query += [("scope", s) for s in wanted]
        headers: dict[str, str] = {}
        if auth.username and auth.password:
            query.append(("account", auth.username))
            headers["Authorization"] = basic_header(auth)
        if offline:
            query += [("client_id", "docker"), ("offline_token", "true")]
        # encoded as Go's url.Values: keys sorted, each key's values in the order added
        target = (parts.path or "/") + "?" + urllib.parse.urlencode(
            sorted(query, key=lambda pair: pair[0]))
        endpoint = Endpoint(parts.scheme, parts.netloc,
                            self._tls_context(parts.netloc, verify=True)
                            if parts.scheme == "https" else None)
        method = "GET"
        resp = None
        if auth.identity_token:
            # OAuth2 refresh-token form; a server without it (404/405) gets the GET form
            form = urllib.parse.urlencode([
                ("grant_type", "refresh_token"), ("refresh_token", auth.identity_token),
                ("service", service), ("client_id", "docker"), ("scope", " ".join(wanted))])
            resp = self.send(endpoint, "POST", parts.path or "/",
                             {"Content-Type": "application/x-www-form-urlencoded"},
                             form.encode(), retries=self.config.retries)
            if resp.status in (404, 405):
                resp.read_all()
                resp = None
            else:
                method, target = "POST", parts.path or "/"
        if resp is None:
            resp = self.send(endpoint, "GET", target, headers, retries=self.config.retries)
        raw = resp.read_all(1 << 20)
        if resp.status != 200:
            text = error_text(resp.status, resp.reason, raw)
            where = f'{method.title()} "{endpoint.url(target)}": '
            if resp.status == 401:
                raise Unauthorized(where + text)
            raise Unavailable(where + text)
        try:
            token = parse_token_response(raw, time.time())
        except ValueError as err:
            raise Unavailable(str(err)) from err
        self.tokens.put(key, token)
        return token.value


class Repository:
    """Requests to one repository of one registry, carrying its credentials."""

    def __init__(self, client: RegistryClient, endpoint: Endpoint, domain: str, path: str,
                 auth: AuthConfig, scopes: Sequence[str]) -> None:
        self.client = client
        self.endpoint = endpoint
        self.domain = domain
        self.path = path
        self._auth = auth
        self._scopes = tuple(scopes)
        self._lock = threading.Lock()
        self._authorization: str | None = None

    @property
    def base(self) -> str:
        return f"/v2/{self.path}"

    def authenticate(self, challenges: Sequence[Challenge]) -> bool:
        """Answer a 401's challenges; False if there is nothing new to try."""
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        if bearer is not None:
            value = "Bearer " + self.client.fetch_token(bearer, self._scopes, self._auth)
        elif any(c.scheme == "basic" for c in challenges) and self._auth.username:
            value = basic_header(self._auth)
        else:
            return False
        with self._lock:
            if value == self._authorization:
                return False
            self._authorization = value
        return True

    def _request(self, method: str, target: str, headers: dict[str, str] | None = None,
                 body: bytes | BinaryIO | None = None, endpoint: Endpoint | None = None,
                 ) -> Response:
        endpoint = endpoint or self.endpoint
        resendable = body is None or isinstance(body, bytes)
        for _ in range(2):
            sent = dict(headers or {})
            with self._lock:
                if self._authorization and endpoint.host == self.endpoint.host:
                    sent["Authorization"] = self._authorization
            resp = self.client.send(endpoint, method, target, sent, body,
                                    retries=self.client.config.retries if resendable else 0)
            if resp.status != 401 or not resendable:
                return resp
            challenges = parse_challenges(resp.header("WWW-Authenticate"))
            if not self.authenticate(challenges):
                return resp
            resp.read_all()
        return resp

    def _fail(self, resp: Response, method: str, target: str, raw: bytes | None = None) -> None:
        body = raw if raw is not None else resp.read_all(1 << 20)
        text = error_text(resp.status, resp.reason, body)
        url = self.endpoint.url(target)
        if resp.status == 401:
            challenge = resp.header("WWW-Authenticate").lower()
            if not self._auth.has_credentials and challenge.startswith("basic"):
                raise Unauthorized(f'{method.title()} "{url}": no basic auth credentials')
            raise Unauthorized(f'{method.title()} "{url}": {text}')
        if resp.status == 403:
            raise PermissionDenied(text)
        if resp.status == 404:
            raise NotFound(text)
        if 400 <= resp.status < 500:
            raise InvalidArgument(text)
        raise Unavailable(f'{method.title()} "{url}": {text}')

    # -- manifests -----------------------------------------------------------------------------

    def resolve_tag(self, tag: str) -> Digest | None:
        """The sha256 digest ``tag`` points at, from a HEAD request; None when the registry does
        not answer it with a ``Docker-Content-Digest`` (then GET the tag instead, as dockerd)."""
        target = f"{self.base}/manifests/{tag}"
        resp = self._request("HEAD", target, {"Accept": MANIFEST_ACCEPT})
        resp.read_all()
        digest = resp.header("Docker-Content-Digest").strip()
        if not 200 <= resp.status < 400 or not digest.startswith("sha256:"):
            return None
        try:
            return parse_digest(digest)
        except InvalidArgument:
            return None

    def get_manifest(self, reference: str) -> RemoteManifest:
        target = f"{self.base}/manifests/{reference}"
        resp = self._request("GET", target, {"Accept": MANIFEST_ACCEPT})
        raw = resp.read_all(_MAX_MANIFEST + 1)
        if resp.status != 200:
            self._fail(resp, "GET", target, raw)
        if len(raw) > _MAX_MANIFEST:
            raise InvalidArgument(f"manifest {reference} is larger than {_MAX_MANIFEST} bytes")
        digest = Digest("sha256:" + hashlib.sha256(raw).hexdigest())
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatch(f"manifest verification failed for digest {reference}")
        media_type = resp.header("Content-Type").split(";", 1)[0].strip()
        return RemoteManifest(media_type, digest, raw)

    def put_manifest(self, reference: str, media_type: str, data: bytes) -> Digest:
        target = f"{self.base}/manifests/{reference}"
        resp = self._request("PUT", target, {"Content-Type": media_type}, data)
        raw = resp.read_all(1 << 20)
        if resp.status not in (200, 201):
            self._fail(resp, "PUT", target, raw)
        digest = Digest("sha256:" + hashlib.sha256(data).hexdigest())
        told = resp.header("Docker-Content-Digest")
        if told and told != digest:
            raise DigestMismatch(f"registry stored the manifest as {told}, expected {digest}")
        return digest

    # -- tags ----------------------------------------------------------------------------------

    def list_tags(self) -> list[str]:
        """Every tag of the repository, in the registry's order, following ``Link`` pages."""
        target = f"{self.base}/tags/list"
        endpoint = self.endpoint
        tags: list[str] = []
        seen: set[str] = set()
        while target not in seen and len(seen) < _MAX_PAGES:
            seen.add(target)
            resp = self._request("GET", target, endpoint=endpoint)
            raw = resp.read_all(_MAX_MANIFEST + 1)
            if resp.status != 200:
                self._fail(resp, "GET", target, raw)
            tags += _parse_tags(raw, self.path)
            link = next_link(resp.header("Link"))
            if link is None:
                break
            endpoint, target = self._resolve(endpoint, link)
        return tags

    # -- blobs ---------------------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        target = f"{self.base}/blobs/{digest}"
        resp = self._request("HEAD", target)
        resp.read_all()
        if resp.status == 200:
            return True
        if resp.status == 404:
            return False
        self._fail(resp, "HEAD", target, b"")
        return False

    @contextmanager
    def open_blob(self, digest: str) -> Iterator[Response]:
        """The blob's bytes as a stream (``resp.length`` is its size when the registry says)."""
        target = f"{self.base}/blobs/{digest}"
        endpoint = self.endpoint
        resp = self._request("GET", target)
        for _ in range(_MAX_REDIRECTS):
            if resp.status not in (301, 302, 303, 307, 308):
                break
            location = resp.header("Location")
            resp.read_all()
            endpoint, target = self._resolve(endpoint, location)
            resp = self._request("GET", target, endpoint=endpoint)
        try:
            if resp.status != 200:
                self._fail(resp, "GET", target)
            yield resp
        finally:
            resp.close()

    def _resolve(self, base: Endpoint, location: str) -> tuple[Endpoint, str]:
        """A Location header (absolute or relative) as an endpoint and request target."""
        parts = urllib.parse.urlsplit(location)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if not parts.netloc or (parts.netloc == base.host and parts.scheme == base.scheme):
            return base, target
        if parts.scheme not in ("http", "https"):
            raise Unavailable(f"registry redirected to an unsupported URL: {location}")
        ctx = self.client._tls_context(parts.netloc, verify=base.tls_verified) \
            if parts.scheme == "https" else None
        return Endpoint(parts.scheme, parts.netloc, ctx), target

    def mount_blob(self, digest: str, source_path: str) -> str | None:
        """Cross-repository mount; None when mounted, else the upload session it opened."""
        target = (f"{self.base}/blobs/uploads/?mount={urllib.parse.quote(digest, safe=':')}"
                  f"&from={urllib.parse.quote(source_path, safe='/')}")
        resp = self._request("POST", target)
        resp.read_all()
        if resp.status == 201:
            return None
        if resp.status != 202:
            self._fail(resp, "POST", target, b"")
        return resp.header("Location")

    def start_upload(self) -> str:
        target = f"{self.base}/blobs/uploads/"
        resp = self._request("POST", target)
        raw = resp.read_all(1 << 20)
        if resp.status != 202:
            self._fail(resp, "POST", target, raw)
        location = resp.header("Location")
        if not location:
            raise Unavailable("registry answered an upload request without a Location")
        return location

    def upload_blob(self, digest: str, size: int, stream: BinaryIO,
                    location: str | None = None, chunk_size: int | None = None,
                    progress: Callable[[int], None] | None = None) -> None:
        """Upload ``size`` bytes from ``stream``: one PUT, or PATCHes of ``chunk_size`` + PUT."""
        endpoint, target = self._resolve(self.endpoint, location or self.start_upload())
        reader = _Counting(stream, progress)
        if chunk_size:
            offset = 0
            while offset < size:
                n = min(chunk_size, size - offset)
                data = reader.read_exact(n)
                headers = {"Content-Type": "application/octet-stream",
                           "Content-Range": f"{offset}-{offset + n - 1}",
                           "Content-Length": str(n)}
                resp = self._request("PATCH", target, headers, data, endpoint=endpoint)
                raw = resp.read_all(1 << 20)
                if resp.status != 202:
                    self._fail(resp, "PATCH", target, raw)
                endpoint, target = self._resolve(endpoint, resp.header("Location") or target)
                offset += n
            body: bytes | BinaryIO = b""
            length = 0
        else:
            body, length = reader, size  # type: ignore[assignment]
        self._finish_upload(endpoint, target, digest, body, length)

    def upload_stream(self, stream: BinaryIO, digest_of: Callable[[], str],
                      location: str | None = None) -> str:
        """Upload a blob whose digest is known only once it is sent (compressed on the way).

        As dockerd: the whole stream in one PATCH (chunked transfer encoding), then the
        closing PUT with ``digest_of()``, which is asked after the stream ended. Returns it.
        """
        endpoint, target = self._resolve(self.endpoint, location or self.start_upload())
        resp = self._request("PATCH", target, {"Content-Type": "application/octet-stream"},
                             stream, endpoint=endpoint)
        raw = resp.read_all(1 << 20)
        if resp.status != 202:
            self._fail(resp, "PATCH", target, raw)
        endpoint, target = self._resolve(endpoint, resp.header("Location") or target)
        digest = digest_of()
        self._finish_upload(endpoint, target, digest, b"", 0)
        return digest

    def _finish_upload(self, endpoint: Endpoint, target: str, digest: str,
                       body: bytes | BinaryIO, length: int) -> None:
        """The closing ``PUT ...?digest=``; the registry must name the same digest back."""
        sep = "&" if "?" in target else "?"
        target += f"{sep}digest={urllib.parse.quote(digest, safe=':')}"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        resp = self._request("PUT", target, headers, body, endpoint=endpoint)
        raw = resp.read_all(1 << 20)
        if resp.status not in (201, 204):
            self._fail(resp, "PUT", target, raw)
        told = resp.header("Docker-Content-Digest")
        if told and told != digest:
            raise DigestMismatch(f"registry stored the blob as {told}, expected {digest}")


def next_link(header: str) -> str | None:
    """The ``rel="next"`` URL of a ``Link`` header (RFC 8288), as registries paginate."""
    for part in header.split(","):
        url, _, params = part.strip().partition(";")
        url = url.strip()
        if not (url.startswith("<") and url.endswith(">")):
            continue
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "rel" and "next" in value.strip().strip('"').split():
                return url[1:-1]
    return None


def _parse_tags(raw: bytes, path: str) -> list[str]:
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise Unavailable(f"invalid tag list for {path}: {err}") from err
    tags = data.get("tags") if isinstance(data, dict) else None
    if tags is None:
        return []  # a repository whose tags were all deleted
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise Unavailable(f"invalid tag list for {path}")
    return tags


class _Counting:
    """A reader that reports how many bytes went through it."""

    def __init__(self, source: BinaryIO, progress: Callable[[int], None] | None) -> None:
        self._source = source
        self._progress = progress
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self.count += len(data)
        if self._progress is not None and data:
            self._progress(self.count)
        return data

    def read_exact(self, size: int) -> bytes:
        parts: list[bytes] = []
        left = size
        while left > 0:
            data = self.read(left)
            if not data:
                raise InvalidArgument("blob ended before its declared size")
            parts.append(data)
            left -= len(data)
        return b"".join(parts)
