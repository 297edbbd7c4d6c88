"""Registry verbs: login, logout, pull, push, and the ``X-Registry-Auth`` header.

Credentials live in a Docker-compatible ``~/.berth/config.json`` (``{"auths": {server:
{"auth": base64("user:password")}}}``), written atomically with mode 0600 — or, when the file
names a ``credsStore`` (or a ``credHelpers`` entry for the registry), in the external program
``docker-credential-<name>`` (``get``/``store``/``erase``, JSON over stdin/stdout), as docker does.
"""

from __future__ import annotations

import os

from berth.cli import _ref
from berth.cli.context import StatusError
from berth.cli.flags import Command, Flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from berth.cli.context import Cli

INDEX_SERVER = "https://index.docker.io/v1/"


def config_path(environ: Any) -> str:
    base = environ.get("BERTH_CONFIG") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".berth")
    return os.path.join(base, "config.json")


def load_config(path: str) -> dict[str, Any]:
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        return {}
    return doc if isinstance(doc, dict) else {}


def save_config(path: str, doc: dict[str, Any]) -> None:
    import json

    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent="\t")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def server_key(registry: str) -> str:
    return INDEX_SERVER if registry in ("docker.io", "index.docker.io", "") else registry


def credential_helper(doc: dict[str, Any], registry: str) -> str:
    """The helper for ``registry``: its ``credHelpers`` entry, else ``credsStore``, else ""."""
    helpers = doc.get("credHelpers") or {}
    host = server_key(registry)
    name = helpers.get(registry) or helpers.get(host) or doc.get("credsStore") or ""
    return name if isinstance(name, str) else ""


def run_helper(cli: Cli, helper: str, action: str, payload: str) -> str:
    """``docker-credential-<helper> <action>`` with ``payload`` on stdin; its stdout."""
    import subprocess

    try:
        proc = subprocess.run([f"docker-credential-{helper}", action], input=payload.encode(),
                              capture_output=True, env=dict(cli.environ), timeout=60)
    except OSError as err:
        raise StatusError(f"Error: error getting credentials - err: exec: "
                          f"\"docker-credential-{helper}\": {err.strerror}", 1) from None
    out = proc.stdout.decode().strip()
    if proc.returncode != 0:
        raise LookupError(out or proc.stderr.decode().strip())
    return out


def credentials(cli: Cli, registry: str) -> dict[str, str]:
    import base64
    import json

    doc = load_config(config_path(cli.environ))
    key = server_key(registry)
    helper = credential_helper(doc, registry)
    if helper:
        try:
            found = json.loads(run_helper(cli, helper, "get", key) or "{}")
        except (LookupError, ValueError):
            return {}  # "credentials not found in native keychain": anonymous
        user, secret = str(found.get("Username") or ""), str(found.get("Secret") or "")
        if user == "<token>":
            return {"identitytoken": secret, "serveraddress": key}
        return {"username": user, "password": secret, "serveraddress": key} if user else {}
    entry = (doc.get("auths") or {}).get(key) or {}
    if entry.get("identitytoken"):
        return {"identitytoken": entry["identitytoken"], "serveraddress": key}
    if not entry.get("auth"):
        return {}
    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    return {"username": user, "password": password, "serveraddress": key}


def encode_auth(auth: dict[str, str]) -> str:
    import base64

    from berth.cli.client import go_json

    return base64.urlsafe_b64encode(go_json(auth).encode()).decode()


def auth_header(cli: Cli, repo: str) -> str:
    """base64url of ``{"username","password","serveraddress"}``; ``e30=`` (``{}``) if none."""
    return encode_auth(credentials(cli, _ref.registry_of(repo)))


LOGIN = Command("login", "login [OPTIONS] [SERVER]", "Log in to a registry", [
    Flag("password", "p", "str", help="Password"),
    Flag("password-stdin", "", help="Take the password from stdin"),
    Flag("username", "u", "str", help="Username"),
], max_args=1)


def login(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(LOGIN, argv)
    server = args[0] if args else INDEX_SERVER
    if server.startswith(("http://", "https://")) and server != INDEX_SERVER:
        server = server.split("://", 1)[1].rstrip("/")
    user = opts["username"]
    password = opts["password"]
    if opts["password_stdin"]:
        if password:
            raise StatusError("--password and --password-stdin are mutually exclusive", 1)
        if not user:
            raise StatusError("Must provide --username with --password-stdin", 1)
        password = cli.stdin.read().decode().rstrip("\r\n")
    elif password:
        cli.err("WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
    if not user:
        cli.stdout.write("Username: ")
        cli.stdout.flush()
        user = cli.stdin.readline().decode().strip()
    if not password:
        import getpass

        password = getpass.getpass("Password: ")
    if not user or not password:
        raise StatusError("Error: Non-null Username and Password Required", 1)
    key = server_key(server)
    result = cli.client.post_json("/auth", json={"username": user, "password": password,
                                                 "serveraddress": key}) or {}
    import base64
    import json

    path = config_path(cli.environ)
    doc = load_config(path)
    helper = credential_helper(doc, server)
    token = str(result.get("IdentityToken") or "")
    if helper:
        payload = {"ServerURL": key, "Username": "<token>" if token else user,
                   "Secret": token or password}
        try:
            run_helper(cli, helper, "store", json.dumps(payload))
        except LookupError as err:
            raise StatusError(f"Error saving credentials: {err}", 1) from None
        doc.setdefault("auths", {})[key] = {}  # docker leaves an empty entry beside a helper
    else:
        entry: dict[str, str] = {
            "auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
        if token:
            entry = {"identitytoken": token}
        doc.setdefault("auths", {})[key] = entry
    save_config(path, doc)
    if not helper:
        cli.err(f"\nWARNING! Your credentials are stored unencrypted in '{path}'.\n"
                "Configure a credential helper to remove this warning. See\n"
                "https://docs.docker.com/go/credential-store/\n")
    cli.out(str(result.get("Status") or "Login Succeeded"))
    return 0


LOGOUT = Command("logout", "logout [SERVER]", "Log out from a registry", max_args=1)


def logout(cli: Cli, argv: list[str]) -> int:
    _, args = cli.parse(LOGOUT, argv)
    key = server_key(args[0]) if args else INDEX_SERVER
    path = config_path(cli.environ)
    doc = load_config(path)
    auths = doc.get("auths") or {}
    helper = credential_helper(doc, key)
    if key not in auths and not helper:
        cli.out(f"Not logged in to {key}")
        return 0
    cli.out(f"Removing login credentials for {key}")
    if helper:
        try:
            run_helper(cli, helper, "erase", key)
        except LookupError as err:
            cli.err(f"WARNING: could not erase credentials: {err}")
    auths.pop(key, None)
    save_config(path, doc)
    return 0


PULL = Command("pull", "pull [OPTIONS] NAME[:TAG|@DIGEST]", "Download an image from a registry", [
    Flag("all-tags", "a", help="Download all tagged images in the repository"),
    Flag("platform", "", "str", help="Set platform if server is multi-platform capable"),
    Flag("quiet", "q", help="Suppress verbose output"),
], min_args=1, max_args=1, aliases=("image pull", "pull"))


def _isatty(stream: Any) -> bool:
    try:
        return bool(os.isatty(stream.fileno()))
    except (OSError, ValueError, AttributeError):
        return False


def pull(cli: Cli, argv: list[str]) -> int:
    from berth.cli.render import print_json_messages

    opts, args = cli.parse(PULL, argv)
    repo, tag, digest = _ref.split(args[0])
    if opts["all_tags"] and (tag or digest):
        raise StatusError("tag can't be used with --all-tags/-a", 1)
    if not tag and not digest and not opts["all_tags"]:
        tag = "latest"
        if not opts["quiet"]:
            cli.out("Using default tag: latest")
    query: dict[str, Any] = {"fromImage": _ref.familiar_repo(repo),
                             "tag": digest or (tag if not opts["all_tags"] else None)}
    if opts["platform"]:
        query["platform"] = opts["platform"]
    resp = cli.client.request("POST", "/images/create", query,
                              headers={"X-Registry-Auth": auth_header(cli, repo)})
    messages = resp.iter_json()
    if opts["quiet"]:
        error = next((m for m in messages if m.get("error") or m.get("errorDetail")), None)
        if error:
            raise StatusError((error.get("errorDetail") or {}).get("message")
                              or error.get("error", ""), 1)
    else:
        err = print_json_messages(messages, cli.stdout, _isatty(cli.stdout))
        if err:
            raise StatusError(err["message"], 1)
    # docker 28 ends with the fully qualified reference it pulled.
    suffix = f"@{digest}" if digest else (f":{tag}" if tag else "")
    cli.out(_ref.qualified_repo(repo) + suffix)
    return 0


PUSH = Command("push", "push [OPTIONS] NAME[:TAG]", "Upload an image to a registry", [
    Flag("all-tags", "a", help="Push all tags of an image to the repository"),
    Flag("platform", "", "str", help="Push a platform-specific manifest"),
    Flag("quiet", "q", help="Suppress verbose output"),
], min_args=1, max_args=1, aliases=("image push", "push"))


def push(cli: Cli, argv: list[str]) -> int:
    from berth.cli.render import print_json_messages

    opts, args = cli.parse(PUSH, argv)
    repo, tag, digest = _ref.split(args[0])
    if digest:
        raise StatusError("cannot push a digest reference", 1)
    if not tag and not opts["all_tags"]:
        tag = "latest"
        if not opts["quiet"]:
            cli.out("Using default tag: latest")
    query = {"tag": tag or None}
    if opts["platform"]:
        query["platform"] = opts["platform"]
    resp = cli.client.request("POST", f"/images/{_ref.familiar_repo(repo)}/push", query,
                              headers={"X-Registry-Auth": auth_header(cli, repo)})
    messages = resp.iter_json()
    if opts["quiet"]:
        for m in messages:
            if m.get("error") or m.get("errorDetail"):
                raise StatusError((m.get("errorDetail") or {}).get("message")
                                  or m.get("error", ""), 1)
        cli.out(args[0])
        return 0
    err = print_json_messages(messages, cli.stdout, _isatty(cli.stdout))
    if err:
        raise StatusError(err["message"], 1)
    return 0
