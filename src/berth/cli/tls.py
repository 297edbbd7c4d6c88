"""TLS for the CLI's TCP connections, with the docker CLI's flags, environment and rules.

- ``--tlsverify`` (or a non-empty ``BERTH_TLS_VERIFY``, as ``DOCKER_TLS_VERIFY``) turns TLS on
  and verifies the daemon's certificate against the CA; ``--tlsverify=false`` still turns TLS
  on, without verification. ``--tls`` (or a non-empty ``BERTH_TLS``) is TLS without verifying.
- Files: ``--tlscacert``, ``--tlscert``, ``--tlskey``, else ``ca.pem``, ``cert.pem``,
  ``key.pem`` in ``BERTH_CERT_PATH`` (``DOCKER_CERT_PATH``), else in the configuration
  directory (``BERTH_CONFIG``, else ``~/.berth``, as docker's ``~/.docker``). A default
  certificate or key that does not exist is left out; the CA must exist even without
  verification (docker reads it either way). A client certificate is presented only with both
  its files.
- TLS applies to ``tcp://`` hosts only; with TLS on and no host given, the host is
  ``tcp://localhost:2376``.

``ssl`` costs ~40 ms to import, so this module imports it only when a connection is made.
Errors read as the docker CLI's do (Go's wording), berth's names in place of docker's.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    import ssl
    from collections.abc import Mapping

DEFAULT_TLS_HOST = "tcp://localhost:2376"

# Go's names for the TLS alerts a daemon may send (crypto/tls alert.go), by OpenSSL's reason
_ALERTS = {
    "UNKNOWN_CA": "unknown certificate authority",
    "BAD_CERTIFICATE": "bad certificate",
    "CERTIFICATE_REQUIRED": "certificate required",
    "CERTIFICATE_UNKNOWN": "unknown certificate",
    "CERTIFICATE_EXPIRED": "expired certificate",
    "CERTIFICATE_REVOKED": "revoked certificate",
    "UNSUPPORTED_CERTIFICATE": "unsupported certificate",
    "HANDSHAKE_FAILURE": "handshake failure",
    "PROTOCOL_VERSION": "protocol version not supported",
    "DECRYPT_ERROR": "error decrypting message",
    "ACCESS_DENIED": "access denied",
    "INTERNAL_ERROR": "internal error",
}


class TLSOptions:
    """How to speak TLS to the daemon: verify it or not; the CA; the client's key pair."""

    __slots__ = ("verify", "cacert", "cert", "key")

    def __init__(self, verify: bool, cacert: str, cert: str | None, key: str | None) -> None:
        self.verify = verify
        self.cacert = cacert
        self.cert = cert
        self.key = key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TLSOptions) and all(
            getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __repr__(self) -> str:
        return "TLSOptions(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"


class TLSSetupError(Exception):
    """The TLS files cannot be used; the message is the docker CLI's."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def resolve(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> TLSOptions | None:
    """docker's rules over the global flags given (name → value, None for a bare boolean) and
    the environment; None when TLS stays off."""
    use_tls = _flag_bool(flags, "tls", bool(environ.get("BERTH_TLS")))
    verify = _flag_bool(flags, "tlsverify", bool(environ.get("BERTH_TLS_VERIFY")))
    if "tlsverify" in flags or verify:
        use_tls = True  # any --tlsverify, even =false, means TLS (docker's rule)
    if not use_tls:
        return None
    cert_dir = environ.get("BERTH_CERT_PATH") or environ.get("BERTH_CONFIG") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".berth")

    def path(name: str, default: str, optional: bool) -> str | None:
        given = flags.get(name)
        if given:
            return given
        found = os.path.join(cert_dir, default)
        return None if optional and not os.path.exists(found) else found

    cacert = path("tlscacert", "ca.pem", optional=False)
    assert cacert is not None
    return TLSOptions(verify, cacert, path("tlscert", "cert.pem", True),
                      path("tlskey", "key.pem", True))


def _flag_bool(flags: Mapping[str, str | None], name: str, default: bool) -> bool:
    if name not in flags:
        return default
    value = flags[name]
    return value is None or value.lower() in ("1", "t", "true")


def client_context(opts: TLSOptions) -> ssl.SSLContext:
    """The context for connections to the daemon; TLSSetupError for files that do not do."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # as the docker CLI
    try:
        ctx.load_verify_locations(cafile=opts.cacert)
    except OSError as err:
        if not isinstance(err, ssl.SSLError):
            raise TLSSetupError(_open_failed(opts.cacert, err)) from err
        raise TLSSetupError("Failed to initialize: failed to retrieve context tls info: "
                            "ca.pem seems invalid") from err
    if opts.cert and opts.key:
        try:
            ctx.load_cert_chain(opts.cert, opts.key)
        except OSError as err:
            if not isinstance(err, ssl.SSLError):
                missing = opts.cert if not os.path.exists(opts.cert) else opts.key
                raise TLSSetupError(_open_failed(missing, err)) from err
            reason = ("private key does not match public key"
                      if getattr(err, "reason", "") == "KEY_VALUES_MISMATCH"
                      else "failed to find any PEM data in certificate input")
            raise TLSSetupError("Failed to initialize: failed to retrieve context tls info: "
                                f"tls: {reason}") from err
    if not opts.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _open_failed(path: str, err: OSError) -> str:
    why = (err.strerror or str(err)).lower()
    return f"Failed to initialize: unable to resolve berth endpoint: open {path}: {why}"


def wrap(sock: _socket.socket, ctx: ssl.SSLContext, server_name: str) -> ssl.SSLSocket:
    """Run the handshake on a connected socket (``_socket.socket`` → ``ssl.SSLSocket``)."""
    import socket

    # ssl wants a socket.socket; adopt the descriptor (the low-level object lets it go)
    full = socket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    return ctx.wrap_socket(full, server_hostname=server_name)


def describe(err: BaseException) -> str:
    """Go's words for what went wrong on a TLS connection (the tail of docker's
    ``error during connect: ...``)."""
    import ssl

    if isinstance(err, ssl.SSLCertVerificationError):
        code = err.verify_code
        if code in (2, 18, 19, 20, 21):  # issuer unknown, self-signed, unverifiable chain
            what = "x509: certificate signed by unknown authority"
        elif code == 10:
            what = "x509: certificate has expired or is not yet valid"
        elif code == 62:
            what = "x509: certificate is not valid for this host"
        else:
            what = f"x509: {err.verify_message}"
        return f"tls: failed to verify certificate: {what}"
    if isinstance(err, ssl.SSLEOFError | ssl.SSLZeroReturnError | ConnectionResetError
                  | BrokenPipeError):
        return "EOF"
    if isinstance(err, ssl.SSLError):
        reason = str(getattr(err, "reason", "") or "")
        _, alert, name = reason.partition("ALERT_")
        if alert:
            return f"remote error: tls: {_ALERTS.get(name, name.lower().replace('_', ' '))}"
        if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE"):
            return "tls: first record does not look like a TLS handshake"
        return f"tls: {reason.lower().replace('_', ' ') or err}"
    return str(err)
