"""The CLI's TLS options: docker's flag and environment rules, file defaults, error wording, and
``ssl`` staying out of commands that do not use TLS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from berth.cli.client import DEFAULT_HOST, Client, resolve_host
from berth.cli.tls import TLSOptions, TLSSetupError, client_context, resolve


def _dir(tmp_path: Path, *names: str) -> Path:
    d = tmp_path / "certs"
    d.mkdir(exist_ok=True)
    for name in names:
        (d / name).write_text("")
    return d


@pytest.mark.parametrize(("flags", "env", "want"), [
    # nothing asked: no TLS, whatever files exist
    ({}, {}, None),
    ({"tlscacert": "/x/ca.pem"}, {}, None),  # a file flag alone does not turn TLS on
    ({"tls": "false"}, {}, None),
    # --tls: no verification; the CA is still named (docker reads it either way)
    ({"tls": None}, {}, TLSOptions(False, "{d}/ca.pem", "{d}/cert.pem", "{d}/key.pem")),
    ({}, {"BERTH_TLS": "1"}, TLSOptions(False, "{d}/ca.pem", "{d}/cert.pem", "{d}/key.pem")),
    # --tlsverify, any value of BERTH_TLS_VERIFY (even 0), --tlsverify=false still means TLS
    ({"tlsverify": None}, {}, TLSOptions(True, "{d}/ca.pem", "{d}/cert.pem", "{d}/key.pem")),
    ({}, {"BERTH_TLS_VERIFY": "0"}, TLSOptions(True, "{d}/ca.pem", "{d}/cert.pem",
                                                "{d}/key.pem")),
    ({}, {"BERTH_TLS_VERIFY": ""}, None),
    ({"tlsverify": "false"}, {"BERTH_TLS_VERIFY": "1"},
     TLSOptions(False, "{d}/ca.pem", "{d}/cert.pem", "{d}/key.pem")),
    # flags name the files
    ({"tlsverify": None, "tlscacert": "/a/ca", "tlscert": "/a/c", "tlskey": "/a/k"}, {},
     TLSOptions(True, "/a/ca", "/a/c", "/a/k")),
])
def test_flags_and_environment(tmp_path: Path, flags: dict[str, str | None],
                               env: dict[str, str], want: TLSOptions | None) -> None:
    d = _dir(tmp_path, "ca.pem", "cert.pem", "key.pem")
    got = resolve(flags, {"BERTH_CERT_PATH": str(d), **env})
    if want is not None:
        want = TLSOptions(want.verify, want.cacert.format(d=d),
                          want.cert.format(d=d) if want.cert else None,
                          want.key.format(d=d) if want.key else None)
    assert got == want


def test_default_directory_is_home_dot_berth(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".berth").mkdir(parents=True)
    (home / ".berth" / "cert.pem").write_text("")
    got = resolve({"tlsverify": None}, {"HOME": str(home)})
    # a default certificate without its key, or a missing default, is left out; the CA is not
    assert got == TLSOptions(True, f"{home}/.berth/ca.pem", f"{home}/.berth/cert.pem", None)
    assert resolve({"tls": None}, {"HOME": str(home), "BERTH_CONFIG": str(tmp_path)}
                   ) == TLSOptions(False, f"{tmp_path}/ca.pem", None, None)


def test_default_host_with_tls_is_docker_tls_port() -> None:
    assert resolve_host(None, {}, tls=True) == "tcp://localhost:2376"
    assert resolve_host(None, {}) == DEFAULT_HOST
    assert resolve_host(None, {"BERTH_HOST": "tcp://h:1"}, tls=True) == "tcp://h:1"


def test_unix_sockets_never_use_tls(tmp_path: Path) -> None:
    c = Client(f"unix://{tmp_path}/s.sock", tls=TLSOptions(True, "/none", None, None))
    assert c._tls is None


@pytest.mark.parametrize(("files", "message"), [
    ({"ca": None}, "Failed to initialize: unable to resolve berth endpoint: open {ca}: "
                   "no such file or directory"),
    ({"ca": "not a certificate"}, "Failed to initialize: failed to retrieve context tls info: "
                                  "ca.pem seems invalid"),
])
def test_unusable_files_read_as_docker_says(tmp_path: Path, files: dict[str, str | None],
                                            message: str) -> None:
    ca = tmp_path / "ca.pem"
    if files["ca"] is not None:
        ca.write_text(files["ca"])
    with pytest.raises(TLSSetupError) as err:
        client_context(TLSOptions(True, str(ca), None, None))
    assert err.value.message == message.format(ca=ca)


def test_global_flags_are_parsed_before_the_command(tmp_path: Path) -> None:
    from .conftest import run_cli

    res = run_cli("tcp://127.0.0.1:1", "--tlsverify", f"--tlscacert={tmp_path}/nope.pem", "ps",
                  env={"HOME": str(tmp_path)})
    assert (res.code, res.err) == (1, "Failed to initialize: unable to resolve berth endpoint: "
                                      f"open {tmp_path}/nope.pem: no such file or directory\n")
    res = run_cli("tcp://127.0.0.1:1", "--tlskey")
    assert (res.code, res.err) == (125, "flag needs an argument: --tlskey\n")


def test_plain_commands_do_not_import_ssl(tmp_path: Path) -> None:
    """ssl costs ~40 ms at start-up: only a TLS connection may pull it in."""
    code = ("import sys\nfrom berth.cli.main import main\n"
            f"main(['-H', 'unix://{tmp_path}/none.sock', 'ps'])\n"
            "print('ssl' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr
