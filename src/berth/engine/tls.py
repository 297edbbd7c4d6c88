"""TLS for berthd's TCP listeners (dockerd's ``--tls``/``--tlsverify`` flags).

``--tls`` serves TCP hosts over TLS with the daemon's certificate; ``--tlsverify`` (which
implies ``--tls``) also requires every client to present a certificate signed by
``--tlscacert``. Unix sockets never use TLS: their file mode is their access control.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from berth.errors import InvalidArgument

# dockerd's defaults: the files in ~/.docker of the user running the daemon.
DEFAULT_CERT_DIR = Path("~/.docker")


@dataclass(frozen=True)
class TLSSettings:
    enabled: bool = False
    verify: bool = False
    cacert: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @property
    def active(self) -> bool:
        return self.enabled or self.verify


def _file(path: Path | None, default: str) -> Path:
    return path if path is not None else (DEFAULT_CERT_DIR / default).expanduser()


def server_context(settings: TLSSettings) -> ssl.SSLContext | None:
    """The SSL context for TCP listeners, or None when TLS is off.

    TLS 1.2 at least (dockerd's minimum); with ``verify`` a client without a certificate
    signed by the CA fails the handshake, before any HTTP is read."""
    if not settings.active:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    cert, key = _file(settings.cert, "cert.pem"), _file(settings.key, "key.pem")
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as err:
        raise InvalidArgument(f"Could not load X509 key pair ({cert}, {key}): {err}") from err
    if settings.verify:
        ca = _file(settings.cacert, "ca.pem")
        try:
            ctx.load_verify_locations(cafile=str(ca))
        except (OSError, ssl.SSLError) as err:
            raise InvalidArgument(f"Could not read CA certificate {ca}: {err}") from err
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
