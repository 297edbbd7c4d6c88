"""Registries that want credentials (htpasswd basic auth, token auth) or present a TLS certificate.

Login goes through the daemon's ``POST /auth``; the CLI stores credentials in its
``config.json`` and sends them as ``X-Registry-Auth`` on push and pull.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess

from tests.support.registry import PASSWORD, USER


def _config(daemon) -> dict:  # type: ignore[no-untyped-def, type-arg]
    path = daemon.root / "home/.berth/config.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _remote_digest(ref: str, *extra: str) -> str:
    import hashlib

    proc = subprocess.run(["skopeo", "inspect", "--raw", *extra, f"docker://{ref}"],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return "sha256:" + hashlib.sha256(proc.stdout).hexdigest()


def _round_trip(daemon, ref: str) -> str:  # type: ignore[no-untyped-def]
    """tag busybox → push → rmi → run (pulls); returns the pushed digest."""
    daemon.out("tag", "busybox", ref)
    try:
        lines = daemon.out("push", ref).splitlines()
        digest = lines[-1].split()[2]
        daemon.out("rmi", ref)
        run = daemon.cli("run", "--rm", "--pull", "always", ref, "echo", "ok")
        assert run.returncode == 0, run.stderr
        assert run.stdout == b"ok\n"
        return digest
    finally:
        daemon.cli("rmi", ref)


def _repo_stored(registry, path: str) -> bool:  # type: ignore[no-untyped-def]
    return (registry.storage / "docker/registry/v2/repositories" / path).exists()


def test_basic_auth_login_push_pull_logout(reg_daemon, basic_registry):
    host = basic_registry.host
    ref = f"{host}/me/bb:1.0"
    bad = reg_daemon.cli("login", host, "-u", USER, "--password-stdin", input=b"wrong\n")
    assert bad.returncode == 1
    assert (f"Error response from daemon: login attempt to http://{host}/v2/ failed with "
            "status: 401 Unauthorized") in bad.stderr.decode()
    assert host not in _config(reg_daemon).get("auths", {})

    reg_daemon.out("tag", "busybox", ref)
    try:
        anon = reg_daemon.cli("push", ref)
        assert anon.returncode == 1
        assert "no basic auth credentials" in (anon.stdout + anon.stderr).decode()
        assert not _repo_stored(basic_registry, "me/bb")
    finally:
        reg_daemon.cli("rmi", ref)

    ok = reg_daemon.cli("login", host, "-u", USER, "--password-stdin",
                        input=PASSWORD.encode() + b"\n")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.decode().strip().endswith("Login Succeeded")
    entry = _config(reg_daemon)["auths"][host]
    assert base64.b64decode(entry["auth"]).decode() == f"{USER}:{PASSWORD}"
    try:
        digest = _round_trip(reg_daemon, ref)
        assert _remote_digest(ref, "--tls-verify=false",
                              f"--creds={USER}:{PASSWORD}") == digest
    finally:
        out = reg_daemon.out("logout", host)
    assert out.strip() == f"Removing login credentials for {host}"
    assert host not in _config(reg_daemon).get("auths", {})


def test_token_auth_scopes_and_login(reg_daemon, token_registry, token_server):
    host = token_registry.host
    bad = reg_daemon.cli("login", host, "-u", USER, "-p", "nope")
    assert bad.returncode == 1
    assert "unauthorized: incorrect username or password" in bad.stderr.decode()

    ok = reg_daemon.cli("login", host, "-u", USER, "--password-stdin",
                        input=PASSWORD.encode())
    assert ok.returncode == 0, ok.stderr
    token_server.requests.clear()
    try:
        digest = _round_trip(reg_daemon, f"{host}/team/app:1")
    finally:
        reg_daemon.out("logout", host)
    scopes = [s for q in token_server.requests for s in q.get("scope", [])]
    assert "repository:team/app:push,pull" in scopes
    assert "repository:team/app:pull" in scopes
    assert all(q.get("service") == [token_server.service] for q in token_server.requests)
    assert all(q.get("account") == [USER] for q in token_server.requests)
    # logged out: the token server still grants anonymous pulls
    ref = f"{host}/team/app:1"
    try:
        pulled = reg_daemon.out("pull", ref)
        assert f"Digest: {digest}" in pulled
    finally:
        reg_daemon.cli("rmi", ref)
    denied = reg_daemon.cli("push", f"{host}/team/app:1")
    assert denied.returncode == 1


def test_case_041_mount_under_token_auth_asks_to_pull_the_source(reg_daemon, token_registry,
                                                                  token_server):
    """Case 041: pushing layers another repository has, the token request adds
    ``repository:<source>:pull`` to the push scope, and the layers are mounted."""
    host = token_registry.host
    ok = reg_daemon.cli("login", host, "-u", USER, "--password-stdin",
                        input=PASSWORD.encode())
    assert ok.returncode == 0, ok.stderr
    first, second = f"{host}/mnt/x:1", f"{host}/mnt/y:1"
    for ref in (first, second):
        reg_daemon.out("tag", "busybox", ref)
    try:
        reg_daemon.out("push", first)
        token_server.requests.clear()
        lines = reg_daemon.out("push", second).splitlines()
    finally:
        reg_daemon.cli("rmi", first, second)
        reg_daemon.out("logout", host)
    assert any(ln.endswith(": Mounted from mnt/x") for ln in lines), lines
    assert any(sorted(q.get("scope", [])) == ["repository:mnt/x:pull",
                                              "repository:mnt/y:push,pull"]
               for q in token_server.requests), token_server.requests


def test_tls_registry_needs_the_ca_in_certs_d(tls_daemon, tls_registry, test_ca, certs_dir):
    host = tls_registry.host
    ref = f"{host}/secure/bb:1"
    proc = tls_daemon.cli("pull", ref)
    assert proc.returncode == 1
    assert (f'Get "https://{host}/v2/": x509: certificate signed by unknown authority'
            in proc.stderr.decode())
    (certs_dir / host).mkdir(parents=True, exist_ok=True)
    shutil.copy(test_ca.ca_cert, certs_dir / host / "ca.crt")
    try:
        digest = _round_trip(tls_daemon, ref)
        assert _remote_digest(ref, f"--cert-dir={certs_dir / host}") == digest
    finally:
        shutil.rmtree(certs_dir / host)


_HELPER = """#!/usr/bin/env python3
# docker-credential-<name> protocol: get/store/erase with JSON on stdin, for one test
import json, os, sys
path = os.environ["BERTH_TEST_CRED_FILE"]
data = json.load(open(path)) if os.path.exists(path) else {}
action, payload = sys.argv[1], sys.stdin.read().strip()
if action == "store":
    item = json.loads(payload); data[item["ServerURL"]] = item
elif action == "erase":
    data.pop(payload, None)
elif action == "get":
    if payload not in data:
        print("credentials not found in native keychain"); sys.exit(1)
    print(json.dumps(data[payload])); sys.exit(0)
json.dump(data, open(path, "w"))
"""


def test_credential_helper_keeps_the_secret(reg_daemon, basic_registry, tmp_path):
    import dataclasses
    import os

    host = basic_registry.host
    bindir, store = tmp_path / "bin", tmp_path / "creds.json"
    bindir.mkdir()
    helper = bindir / "docker-credential-berthtest"
    helper.write_text(_HELPER)
    helper.chmod(0o755)
    home = tmp_path / "home"
    (home / ".berth").mkdir(parents=True)
    (home / ".berth/config.json").write_text(json.dumps({"credsStore": "berthtest"}))
    env = {**reg_daemon.env, "HOME": str(home), "BERTH_TEST_CRED_FILE": str(store),
           "PATH": f"{bindir}{os.pathsep}{reg_daemon.env.get('PATH', '')}"}
    d = dataclasses.replace(reg_daemon, env=env)
    ok = d.cli("login", host, "-u", USER, "--password-stdin", input=PASSWORD.encode())
    assert ok.returncode == 0, ok.stderr
    config = json.loads((home / ".berth/config.json").read_text())
    assert config["auths"] == {host: {}}  # the secret is with the helper, not in the file
    assert json.loads(store.read_text())[host]["Secret"] == PASSWORD
    ref = f"{host}/helper/bb:1"
    _round_trip(d, ref)
    d.out("logout", host)
    assert host not in json.loads(store.read_text())
