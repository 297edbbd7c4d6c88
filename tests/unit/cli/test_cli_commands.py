"""Whole commands against the scripted daemon: the requests docker sends, the output it prints."""

from __future__ import annotations

import base64
import io
import json
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    CAPTURES,
    FakeDaemon,
    Reply,
    Request,
    Route,
    capture_bodies,
    capture_output,
    capture_response,
    run_cli,
)

Start = Callable[[Route], FakeDaemon]
CID = "f6d7a1bc755a8b6e4fa7edb7120eeae6049e3a279ff8b0a0bc766929b4133820"


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def api(d: FakeDaemon) -> list[str]:
    """``METHOD target`` of every request after the pings."""
    return [f"{r.method} {r.target}" for r in d.requests if r.target != "/_ping"]


def run_route(output: bytes, code: int = 0, stdin_sink: list[bytes] | None = None,
              tty: bool = False) -> Route:
    done = threading.Event()

    def on_upgrade(conn: Any) -> None:
        if stdin_sink is not None:
            data = b""
            while True:
                piece = conn.recv(4096)
                if not piece:
                    break
                data += piece
            stdin_sink.append(data)
        conn.sendall(output)
        done.set()

    def route(r: Request) -> Reply:
        if r.path == "/v1.41/containers/create":
            return Reply(201, {"Id": CID, "Warnings": []})
        if r.path.endswith("/attach"):
            return Reply(101, on_upgrade=on_upgrade)
        if r.path.endswith("/wait"):
            return Reply(200, {"Error": None, "StatusCode": code}, chunked=True, hold=done)
        if r.path.endswith("/start"):
            return Reply(204)
        return Reply(404, {"message": "unexpected"})

    return route


def test_run_attached_rm_sequence_and_output(fake_daemon: Start) -> None:
    d = fake_daemon(run_route(frame(1, b"hi\n")))
    result = run_cli(d.host, "run", "--rm", "busybox", "echo", "hi")
    assert (result.code, result.out, result.err) == (0, "hi\n", "")
    assert api(d) == [
        "POST /v1.41/containers/create",
        f"POST /v1.41/containers/{CID}/attach?stderr=1&stdout=1&stream=1",
        f"POST /v1.41/containers/{CID}/wait?condition=removed",
        f"POST /v1.41/containers/{CID}/start",
    ]
    _, expected = capture_bodies("09-run-attached-echo.txt")[0]
    assert d.requests[1].body == (expected + "\n").encode()
    # attach, wait and start each on a connection of their own, as docker does
    conns = [r.conn for r in d.requests if r.target != "/_ping"]
    assert conns[1] != conns[0] and conns[3] not in (conns[1], conns[2])


def test_run_exit_code_and_stderr(fake_daemon: Start) -> None:
    d = fake_daemon(run_route(frame(1, b"out\n") + frame(2, b"err\n"), code=3))
    result = run_cli(d.host, "run", "busybox", "sh", "-c", "x")
    assert (result.code, result.out, result.err) == (3, "out\n", "err\n")
    assert f"POST /v1.41/containers/{CID}/wait?condition=next-exit" in api(d)


def test_run_interactive_sends_stdin_then_half_closes(fake_daemon: Start) -> None:
    sink: list[bytes] = []
    d = fake_daemon(run_route(frame(1, b"line one\nline two\n"), stdin_sink=sink))
    result = run_cli(d.host, "run", "--rm", "-i", "busybox", "cat",
                     stdin=b"line one\nline two\n")
    assert result.out == "line one\nline two\n"
    assert sink == [b"line one\nline two\n"]
    assert f"POST /v1.41/containers/{CID}/attach?stderr=1&stdin=1&stdout=1&stream=1" in api(d)


def test_run_tty_stream_is_raw(fake_daemon: Start) -> None:
    d = fake_daemon(run_route(b"hi\r\n"))
    result = run_cli(d.host, "run", "--rm", "-t", "busybox", "echo", "hi")
    assert result.raw_out == b"hi\r\n"
    assert d.requests[1].json()["Tty"] is True


def test_run_detached_prints_id(fake_daemon: Start) -> None:
    d = fake_daemon(run_route(b""))
    result = run_cli(d.host, "container", "run", "-d", "-p", "30000:80", "--name", "web1",
                     "-e", "A=b", "busybox", "httpd", "-f", "-p", "80")
    assert (result.code, result.out) == (0, CID + "\n")
    assert api(d) == [
        "POST /v1.41/containers/create?name=web1",
        f"POST /v1.41/containers/{CID}/wait?condition=next-exit",
        f"POST /v1.41/containers/{CID}/start",
    ]
    _, expected = capture_bodies("03-run-d-publish.txt")[0]
    assert d.requests[1].body.decode() == expected + "\n"


def test_run_pulls_a_missing_image(fake_daemon: Start) -> None:
    state = {"pulled": False}
    inner = run_route(frame(1, b"ok\n"))

    def route(r: Request) -> Reply:
        if r.path == "/v1.41/containers/create" and not state["pulled"]:
            return Reply(404, {"message": "No such image: alpine:latest"})
        if r.path == "/v1.41/images/create":
            state["pulled"] = True
            return Reply(200, b'{"status":"Pulling from library/alpine","id":"latest"}\r\n'
                              b'{"status":"Status: Downloaded newer image for alpine:latest"}\r\n',
                         chunked=True)
        return inner(r)

    d = fake_daemon(route)
    result = run_cli(d.host, "run", "alpine")
    assert result.code == 0 and result.out == "ok\n"
    assert result.err.startswith("Unable to find image 'alpine:latest' locally\n")
    assert "latest: Pulling from library/alpine" in result.err
    assert "POST /v1.41/images/create?fromImage=alpine&tag=latest" in api(d)
    pull = next(r for r in d.requests if r.path == "/v1.41/images/create")
    assert pull.headers["x-registry-auth"] == "e30="


def test_run_error_exits_125(fake_daemon: Start) -> None:
    conflict = capture_output("40-error-409-name-in-use.txt").splitlines()[1].removeprefix(
        "Error response from daemon: ")
    d = fake_daemon(lambda r: Reply(409, {"message": conflict}))
    result = run_cli(d.host, "run", "--name", "x", "busybox")
    assert result.code == 125
    assert result.err.startswith(f"berth: Error response from daemon: {conflict}\n")
    result = run_cli(d.host, "create", "--name", "x", "busybox", "true")
    assert result.code == 125
    assert result.err == f"Error response from daemon: {conflict}\n"


def test_unknown_flag_exit_125() -> None:
    result = run_cli("unix:///nonexistent", "run", "--foo", "busybox")
    assert result.code == 125
    assert result.err == "unknown flag: --foo\nSee 'berth run --help'.\n"


def test_exec_sequence_and_exit_code(fake_daemon: Start) -> None:
    inspect = {"Id": "7e65", "State": {"Running": True}, "Config": {"Tty": False}}

    def route(r: Request) -> Reply:
        if r.path == "/v1.41/containers/web1/json":
            return Reply(200, inspect, chunked=True)
        if r.path == "/v1.41/containers/web1/exec":
            return Reply(201, {"Id": "ad96"})
        if r.path == "/v1.41/exec/ad96/start":
            return Reply(101, raw=frame(1, b"A=b\n"))
        if r.path == "/v1.41/exec/ad96/json":
            return Reply(200, {"ID": "ad96", "Running": False, "ExitCode": 7})
        return Reply(404, {"message": "unexpected"})

    d = fake_daemon(route)
    result = run_cli(d.host, "container", "exec", "web1", "printenv")
    assert (result.code, result.out) == (7, "A=b\n")
    assert api(d) == ["GET /v1.41/containers/web1/json", "POST /v1.41/containers/web1/exec",
                      "POST /v1.41/exec/ad96/start", "GET /v1.41/exec/ad96/json"]
    bodies = dict(capture_bodies("05-exec-printenv.txt"))
    assert d.requests[2].body.decode() == bodies["POST /v1.41/containers/web1/exec"] + "\n"
    assert d.requests[3].body == b'{"Detach":false,"Tty":false}\n'


def test_logs_demultiplexes(fake_daemon: Start) -> None:
    body = frame(1, b"out1\n") + frame(1, b"out2\n") + frame(2, b"err1\n")

    def route(r: Request) -> Reply:
        if r.path.endswith("/json"):
            return Reply(200, {"Id": "abc", "Config": {"Tty": False}})
        return Reply(200, body, chunked=True)

    d = fake_daemon(route)
    result = run_cli(d.host, "logs", "-f", "-t", "--tail", "2", "anchor-logger")
    assert result.out == "out1\nout2\n" and result.err == "err1\n"
    assert api(d)[-1] == ("GET /v1.41/containers/abc/logs?follow=1&stderr=1&stdout=1&tail=2"
                          "&timestamps=1")


def test_version_prints_client_then_server(fake_daemon: Start) -> None:
    version = json.loads(capture_response("01-version.txt", "GET /v1.41/version"))
    d = fake_daemon(lambda r: Reply(200, version))
    result = run_cli(d.host, "version")
    server = capture_output("01-version.txt").split("Server:", 1)[1]
    assert result.out.startswith("Client:\n Version:           0.1.0\n")
    assert result.out.split("Server:", 1)[1] == server


def test_version_without_daemon_prints_client_section(tmp_path: Path) -> None:
    result = run_cli(f"unix://{tmp_path}/x.sock", "version")
    assert result.code == 1
    assert result.out.startswith("Client:\n")
    assert "Cannot connect to the berth daemon" in result.err


def test_info_matches_capture(fake_daemon: Start) -> None:
    lines = (CAPTURES / "28-info.txt").read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith('{"ID"'))
    doc = json.loads(lines[start])
    d = fake_daemon(lambda r: Reply(200, doc))
    result = run_cli(d.host, "info")
    expected = capture_output("28-info.txt").split("Server:", 1)[1]
    assert result.out.split("Server:", 1)[1] == expected


def test_image_verbs(fake_daemon: Start) -> None:
    def route(r: Request) -> Reply:
        if r.method == "DELETE":
            return Reply(200, [{"Untagged": "me/bb:1.0"}, {"Deleted": "sha256:abc"}])
        if r.path.endswith("/tag"):
            return Reply(201, b"")
        if r.path == "/v1.41/commit":
            return Reply(201, {"Id": "sha256:1c92"})
        if r.path.endswith("/history"):
            return Reply(200, json.loads(capture_response("43-image-history.txt",
                                                          "GET /v1.41/images/busybox/history")))
        return Reply(404, {"message": "no such image: no-such-image:latest: No such image: "
                                      "no-such-image:latest"})

    d = fake_daemon(route)
    assert run_cli(d.host, "image", "tag", "busybox", "me/bb:1.0").code == 0
    assert api(d)[-1] == "POST /v1.41/images/busybox/tag?repo=docker.io%2Fme%2Fbb&tag=1.0"
    result = run_cli(d.host, "rmi", "me/bb:1.0")
    assert result.out == "Untagged: me/bb:1.0\nDeleted: sha256:abc\n"
    assert api(d)[-1] == "DELETE /v1.41/images/me/bb:1.0"
    result = run_cli(d.host, "commit", "-a", "anchor", "-m", "add /y", "-c", 'CMD ["sh"]',
                     "anchor-c1", "anchor-committed:1")
    assert result.out == "sha256:1c92\n"
    assert api(d)[-1] == ("POST /v1.41/commit?author=anchor&changes=CMD+%5B%22sh%22%5D&comment="
                          "add+%2Fy&container=anchor-c1&repo=docker.io%2Flibrary%2Fanchor-"
                          "committed&tag=1")
    result = run_cli(d.host, "image", "inspect", "no-such-image:latest")
    assert (result.code, result.out) == (1, "[]\n")
    assert result.err == capture_output("39-error-404-inspect.txt").split("\n", 1)[1]
    result = run_cli(d.host, "history", "busybox")
    header, row = result.out.splitlines()
    assert header.split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert row.startswith("c2fd7aaf3c3b   ") and row.endswith("   1.98MB    Imported from -")


def test_save_refuses_nothing_when_redirected_and_writes_file(fake_daemon: Start,
                                                                tmp_path: Path) -> None:
    d = fake_daemon(lambda r: Reply(200, b"TARDATA" * 1000, chunked=True,
                                    headers={"Content-Type": "application/x-tar"}))
    result = run_cli(d.host, "save", "busybox")
    assert result.raw_out == b"TARDATA" * 1000
    out = tmp_path / "img.tar"
    assert run_cli(d.host, "image", "save", "-o", str(out), "busybox", "alpine").code == 0
    assert out.read_bytes() == b"TARDATA" * 1000
    assert api(d)[-1] == "GET /v1.41/images/get?names=busybox&names=alpine"


def test_load_streams_stdin(fake_daemon: Start) -> None:
    d = fake_daemon(lambda r: Reply(200, b'{"stream":"Loaded image: busybox:latest\\n"}\r\n',
                                    chunked=True, headers={"Content-Type": "application/json"}))
    result = run_cli(d.host, "load", stdin=b"x" * 100_000)
    assert result.out == "Loaded image: busybox:latest\n"
    req = d.requests[-1]
    assert req.target == "/v1.41/images/load?quiet=0" and len(req.body) == 100_000


def test_volume_and_network_verbs(fake_daemon: Start) -> None:
    vol = json.loads(capture_response("14-volume-create.txt", "{\"Driver\""))

    def route(r: Request) -> Reply:
        if r.path == "/v1.41/volumes/create":
            return Reply(201, vol)
        if r.method == "DELETE":
            return Reply(204)
        if r.path == "/v1.41/networks":
            return Reply(200, json.loads(capture_response("22-network-ls.txt",
                                                          "GET /v1.41/networks")))
        return Reply(404, {"message": "x"})

    d = fake_daemon(route)
    result = run_cli(d.host, "volume", "create", "v1")
    assert result.out == "v1\n"
    assert d.requests[-1].body == b'{"Driver":"local","Name":"v1"}\n'
    assert run_cli(d.host, "volume", "rm", "v1").out == "v1\n"
    assert run_cli(d.host, "network", "ls").out == capture_output("22-network-ls.txt")
    assert run_cli(d.host, "network", "ls", "-q", "--no-trunc").out.splitlines()[0].startswith(
        "4513815986a0")


def test_container_prune_and_lifecycle(fake_daemon: Start) -> None:
    def route(r: Request) -> Reply:
        if r.path == "/v1.41/containers/prune":
            return Reply(200, json.loads(capture_response(
                "45-container-prune.txt", "POST /v1.41/containers/prune")))
        if r.path.endswith("/wait"):
            return Reply(200, {"Error": None, "StatusCode": 137}, chunked=True)
        if r.path.endswith("/top"):
            return Reply(200, json.loads(capture_response("30-top.txt", "GET /v1.41/")))
        return Reply(204)

    d = fake_daemon(route)
    result = run_cli(d.host, "container", "prune", "-f", "--filter", "label=anchor-capture=1")
    assert result.out == capture_output("45-container-prune.txt")
    assert api(d)[-1] == ("POST /v1.41/containers/prune?filters=%7B%22label%22%3A%7B%22anchor-"
                          "capture%3D1%22%3Atrue%7D%7D")
    assert run_cli(d.host, "wait", "anchor-p1").out == "137\n"
    for verb, expected in [("stop", "POST /v1.41/containers/anchor-p1/stop"),
                           ("kill", "POST /v1.41/containers/anchor-p1/kill"),
                           ("pause", "POST /v1.41/containers/anchor-p1/pause"),
                           ("unpause", "POST /v1.41/containers/anchor-p1/unpause"),
                           ("rm", "DELETE /v1.41/containers/anchor-p1")]:
        assert run_cli(d.host, verb, "anchor-p1").out == "anchor-p1\n"
        assert api(d)[-1] == expected
    run_cli(d.host, "rm", "-f", "web1")
    assert api(d)[-1] == "DELETE /v1.41/containers/web1?force=1"
    assert run_cli(d.host, "top", "anchor-p1").out == capture_output("30-top.txt")


def test_prune_prompt_declined(fake_daemon: Start) -> None:
    d = fake_daemon(lambda r: Reply(200, {}))
    result = run_cli(d.host, "container", "prune", stdin=b"n\n")
    assert result.out == ("WARNING! This will remove all stopped containers.\n"
                          "Are you sure you want to continue? [y/N] ")
    assert api(d) == []


def test_cp_both_directions(fake_daemon: Start, tmp_path: Path) -> None:
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        info = tarfile.TarInfo("passwd")
        data = b"nobody:x:65534:65534:nobody:/home:/bin/false\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    stat = base64.b64encode(json.dumps({"name": "passwd", "size": 45, "mode": 420}).encode())

    def route(r: Request) -> Reply:
        if r.method == "HEAD":
            return Reply(404, {"message": "Could not find the file /tmp/f in container"})
        if r.method == "PUT":
            return Reply(200, b"")
        return Reply(200, tar_bytes.getvalue(), headers={
            "Content-Type": "application/x-tar", "X-Docker-Container-Path-Stat": stat.decode()})

    d = fake_daemon(route)
    src = tmp_path / "f"
    src.write_text("hello\n")
    assert run_cli(d.host, "cp", str(src), "anchor-p1:/tmp/f").code == 0
    assert api(d)[-2:] == [
        "HEAD /v1.41/containers/anchor-p1/archive?path=%2Ftmp%2Ff",
        "PUT /v1.41/containers/anchor-p1/archive?noOverwriteDirNonDir=true&path=%2Ftmp"]
    with tarfile.open(fileobj=io.BytesIO(d.requests[-1].body)) as tar:
        member = tar.getmembers()[0]
        assert member.name == "f"
        assert tar.extractfile(member).read() == b"hello\n"  # type: ignore[union-attr]
    result = run_cli(d.host, "cp", "anchor-p1:/etc/passwd", "-")
    assert result.raw_out == tar_bytes.getvalue()
    dest = tmp_path / "copied"
    assert run_cli(d.host, "cp", "anchor-p1:/etc/passwd", str(dest)).code == 0
    assert dest.read_text() == "nobody:x:65534:65534:nobody:/home:/bin/false\n"


def test_build_sends_context_and_prints_stream(fake_daemon: Start, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY f /f\n")
    (ctx / "f").write_text("hello\n")
    (ctx / "secret.key").write_text("x")
    (ctx / "sub" / "keep.txt").write_text("k")
    (ctx / "sub" / "drop.log").write_text("d")
    (ctx / ".dockerignore").write_text("*.key\n**/*.log\n")
    stream = (b'{"stream":"Step 1/2 : FROM busybox"}\r\n{"stream":"\\n"}\r\n'
              b'{"stream":" ---\\u003e c2fd7aaf3c3b\\n"}\r\n{"aux":{"ID":"sha256:9ddf"}}\r\n'
              b'{"stream":"Successfully built 9ddf0eec3edb\\n"}\r\n'
              b'{"stream":"Successfully tagged t1:latest\\n"}\r\n')
    d = fake_daemon(lambda r: Reply(200, stream, chunked=True))
    result = run_cli(d.host, "build", "-t", "t1", "--build-arg", "A=1", str(ctx))
    assert result.code == 0
    assert result.out.splitlines()[1:] == [
        "Step 1/2 : FROM busybox", " ---> c2fd7aaf3c3b", "Successfully built 9ddf0eec3edb",
        "Successfully tagged t1:latest"]
    req = d.requests[-1]
    assert req.target == ("/v1.41/build?buildargs=%7B%22A%22%3A%221%22%7D&dockerfile=Dockerfile"
                          "&t=t1&version=1")
    assert req.headers["x-registry-config"] == "e30="
    assert req.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(req.body)) as tar:
        names = sorted(tar.getnames())
    assert names == [".dockerignore", "Dockerfile", "f", "sub", "sub/keep.txt"]


def test_build_error_in_stream(fake_daemon: Start, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM nothing\n")
    d = fake_daemon(lambda r: Reply(200, b'{"errorDetail":{"message":"pull access denied"},'
                                         b'"error":"pull access denied"}\r\n', chunked=True))
    result = run_cli(d.host, "build", "-q", str(tmp_path))
    assert result.code == 1 and result.err == "pull access denied\n"


def test_pull_push_and_missing_tag(fake_daemon: Start) -> None:
    def route(r: Request) -> Reply:
        if "tag=nope" in r.target:
            return Reply(404, {"message": "manifest for localhost:5000/anchor-bb:nope not found: "
                                          "manifest unknown: manifest unknown"})
        if r.path.endswith("/push"):
            return Reply(200, b"".join(
                json.dumps(m).encode() + b"\r\n" for m in [
                    {"status": "The push refers to repository [localhost:5000/anchor-bb]"},
                    {"status": "Preparing", "progressDetail": {}, "id": "e137cf8df50d"},
                    {"status": "Pushing", "progressDetail": {"current": 1, "total": 2},
                     "progress": "[>   ]", "id": "e137cf8df50d"},
                    {"status": "Pushed", "progressDetail": {}, "id": "e137cf8df50d"},
                    {"status": "1: digest: sha256:7f26 size: 527"},
                    {"progressDetail": {}, "aux": {"Tag": "1"}}]), chunked=True)
        return Reply(200, b'{"status":"Pulling from anchor-bb","id":"1"}\r\n'
                          b'{"status":"Digest: sha256:7f26"}\r\n'
                          b'{"status":"Status: Downloaded newer image for localhost:5000/'
                          b'anchor-bb:1"}\r\n', chunked=True)

    d = fake_daemon(route)
    result = run_cli(d.host, "pull", "localhost:5000/anchor-bb:1")
    assert result.out == ("1: Pulling from anchor-bb\nDigest: sha256:7f26\nStatus: Downloaded "
                          "newer image for localhost:5000/anchor-bb:1\n"
                          "localhost:5000/anchor-bb:1\n")
    assert api(d)[-1] == "POST /v1.41/images/create?fromImage=localhost%3A5000%2Fanchor-bb&tag=1"
    assert d.requests[-1].headers["x-registry-auth"] == "e30="
    result = run_cli(d.host, "push", "localhost:5000/anchor-bb:1")
    assert result.out == ("The push refers to repository [localhost:5000/anchor-bb]\n"
                          "e137cf8df50d: Preparing\ne137cf8df50d: Pushed\n"
                          "1: digest: sha256:7f26 size: 527\n")
    assert api(d)[-1] == "POST /v1.41/images/localhost:5000/anchor-bb/push?tag=1"
    result = run_cli(d.host, "pull", "localhost:5000/anchor-bb:nope")
    assert result.code == 1
    assert result.err == capture_output("48-pull-missing-tag.txt")


def test_login_stores_docker_compatible_credentials(fake_daemon: Start, tmp_path: Path) -> None:
    d = fake_daemon(lambda r: Reply(200, {"Status": "Login Succeeded", "IdentityToken": ""}))
    env = {"HOME": str(tmp_path)}
    result = run_cli(d.host, "login", "-u", "me", "--password-stdin", "localhost:5000",
                     stdin=b"s3cret\n", env=env)
    assert result.out == "Login Succeeded\n"
    assert d.requests[-1].json() == {"username": "me", "password": "s3cret",
                                     "serveraddress": "localhost:5000"}
    config = json.loads((tmp_path / ".berth" / "config.json").read_text())
    assert config == {"auths": {"localhost:5000": {"auth": base64.b64encode(
        b"me:s3cret").decode()}}}
    d.route = lambda r: Reply(200, b"", chunked=True)
    run_cli(d.host, "pull", "localhost:5000/x:1", env=env)
    auth = json.loads(base64.urlsafe_b64decode(d.requests[-1].headers["x-registry-auth"]))
    assert auth == {"username": "me", "password": "s3cret", "serveraddress": "localhost:5000"}
    assert run_cli(d.host, "logout", "localhost:5000", env=env).out == (
        "Removing login credentials for localhost:5000\n")


def test_inspect_tries_container_then_image(fake_daemon: Start) -> None:
    def route(r: Request) -> Reply:
        if r.path.startswith("/v1.41/images/"):
            return Reply(200, {"Id": "sha256:c2fd", "RepoTags": ["busybox:latest"]})
        return Reply(404, {"message": "No such container: busybox"})

    d = fake_daemon(route)
    result = run_cli(d.host, "inspect", "-f", "{{.Id}} {{index .RepoTags 0}}", "busybox")
    assert result.out == "sha256:c2fd busybox:latest\n"
    result = run_cli(d.host, "inspect", "busybox")
    assert result.out == ('[\n    {\n        "Id": "sha256:c2fd",\n        "RepoTags": [\n'
                          '            "busybox:latest"\n        ]\n    }\n]\n')
    assert run_cli(d.host, "inspect", "--type", "container", "busybox").err == (
        "Error: No such container: busybox\n")


def test_ps_quiet_and_format(fake_daemon: Start) -> None:
    items = json.loads(capture_response("04-container-ls.txt", "GET /v1.41/containers/json"))
    d = fake_daemon(lambda r: Reply(200, items))
    assert run_cli(d.host, "ps", "-q").out == "7e65bdc6d734\n5e424c210d41\n"
    assert run_cli(d.host, "ps", "--format", "{{.Names}} {{.State}}").out == (
        "web1 running\nvigilant_turing running\n")
    run_cli(d.host, "ps", "-a", "-n", "3", "-s", "--filter", "status=exited")
    assert api(d)[-1] == ("GET /v1.41/containers/json?all=1&filters=%7B%22status%22%3A%7B%22"
                          "exited%22%3Atrue%7D%7D&limit=3&size=1")


def test_help_and_unknown_command() -> None:
    result = run_cli("unix:///x", "frobnicate")
    assert result.code == 1 and "'frobnicate' is not a berth command" in result.err
    result = run_cli("unix:///x", "image", "--help")
    assert "Usage:  berth image COMMAND" in result.out
    result = run_cli("unix:///x", "image", "ls", "--help")
    assert "Usage:  berth image ls [OPTIONS] [REPOSITORY[:TAG]]" in result.out


def test_run_it_on_a_real_terminal_resizes_and_detaches(fake_daemon: Start) -> None:
    import os
    import termios

    from berth.cli.main import main

    master, slave = os.openpty()
    termios.tcsetwinsize(slave, (40, 120))
    before = termios.tcgetattr(slave)
    attached = threading.Event()

    def on_upgrade(conn: Any) -> None:
        conn.sendall(b"/ # ")
        attached.set()
        while conn.recv(4096):
            pass

    def route(r: Request) -> Reply:
        if r.path == "/v1.41/containers/create":
            return Reply(201, {"Id": CID, "Warnings": []})
        if r.path.endswith("/attach"):
            return Reply(101, on_upgrade=on_upgrade)
        if r.path.endswith("/wait"):
            return Reply(200, {"Error": None, "StatusCode": 0}, chunked=True,
                         hold=threading.Event())
        return Reply(204)

    d = fake_daemon(route)

    def detach() -> None:
        attached.wait(5)
        # Type only once the CLI has put the terminal in raw mode (that switch flushes input).
        for _ in range(500):
            if not termios.tcgetattr(slave)[3] & termios.ICANON:
                break
            threading.Event().wait(0.01)
        os.write(master, b"ls\x10\x11")

    typer = threading.Thread(target=detach)
    typer.start()
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    with open(slave, "rb", buffering=0, closefd=False) as tin, \
            open(slave, "w", encoding="utf-8", closefd=False) as tout:
        code = main(["-H", d.host, "run", "-it", "busybox", "sh"], stdout=tout, stderr=err,
                    stdin=tin, environ={})
    typer.join(5)
    echoed = os.read(master, 4096)
    after = termios.tcgetattr(slave)
    os.close(master)
    os.close(slave)
    assert code == 0
    assert b"/ # " in echoed
    create = next(r for r in d.requests if r.path == "/v1.41/containers/create").json()
    assert create["Tty"] and create["OpenStdin"] and create["AttachStdin"]
    assert create["HostConfig"]["ConsoleSize"] == [40, 120]
    assert f"POST /v1.41/containers/{CID}/resize?h=40&w=120" in api(d)
    assert after == before  # the local terminal is restored
    assert "read escape sequence" in err.buffer.getvalue().decode()


def test_run_forwards_signals_to_the_container(fake_daemon: Start) -> None:
    import os
    import signal

    killed = threading.Event()
    attached = threading.Event()

    def on_upgrade(conn: Any) -> None:
        attached.set()
        killed.wait(5)
        conn.sendall(frame(1, b"bye\n"))

    def route(r: Request) -> Reply:
        if r.path == "/v1.41/containers/create":
            return Reply(201, {"Id": CID, "Warnings": []})
        if r.path.endswith("/attach"):
            return Reply(101, on_upgrade=on_upgrade)
        if r.path.endswith("/wait"):
            return Reply(200, {"Error": None, "StatusCode": 130}, chunked=True, hold=killed)
        if r.path.endswith("/kill"):
            killed.set()
        return Reply(204)

    d = fake_daemon(route)

    before = signal.getsignal(signal.SIGUSR1)

    def interrupt() -> None:
        attached.wait(5)
        for _ in range(500):  # until the CLI has installed its proxy handler
            if signal.getsignal(signal.SIGUSR1) != before:
                break
            threading.Event().wait(0.01)
        else:
            killed.set()
            return
        os.kill(os.getpid(), signal.SIGUSR1)

    sender = threading.Thread(target=interrupt)
    sender.start()
    result = run_cli(d.host, "run", "busybox", "sleep", "9")
    sender.join(5)
    assert (result.code, result.out) == (130, "bye\n")
    assert f"POST /v1.41/containers/{CID}/kill?signal=SIGUSR1" in api(d)
    assert signal.getsignal(signal.SIGUSR1) == before


def test_start_attach_and_attach_verbs(fake_daemon: Start) -> None:
    info = {"Id": CID, "State": {"Running": True, "Paused": False, "ExitCode": 5},
            "Config": {"Tty": False, "OpenStdin": False}}

    def route(r: Request) -> Reply:
        if r.path.endswith("/json"):
            return Reply(200, info)
        if r.path.endswith("/attach"):
            return Reply(101, raw=frame(1, b"again\n"))
        if r.path.endswith("/wait"):
            return Reply(200, {"Error": None, "StatusCode": 5}, chunked=True)
        return Reply(204)

    d = fake_daemon(route)
    result = run_cli(d.host, "start", "-a", "c1")
    assert (result.code, result.out) == (5, "again\n")
    assert api(d) == [
        "GET /v1.41/containers/c1/json",
        f"POST /v1.41/containers/{CID}/attach?stderr=1&stdout=1&stream=1",
        f"POST /v1.41/containers/{CID}/wait?condition=next-exit",
        f"POST /v1.41/containers/{CID}/start"]
    result = run_cli(d.host, "attach", "c1")
    assert (result.code, result.out) == (5, "again\n")
    assert run_cli(d.host, "start", "c1", "c2").out == "c1\nc2\n"
    info["State"] = {"Running": False}
    result = run_cli(d.host, "attach", "c1")
    assert (result.code, result.err) == (
        1, "You cannot attach to a stopped container, start it first\n")


def test_exec_detached_and_not_running(fake_daemon: Start) -> None:
    running = {"value": True}

    def route(r: Request) -> Reply:
        if r.path.endswith("/json"):
            return Reply(200, {"Id": "abc", "State": {"Running": running["value"]}})
        if r.path.endswith("/exec"):
            return Reply(201, {"Id": "e1"})
        return Reply(200, b"")

    d = fake_daemon(route)
    assert run_cli(d.host, "exec", "-d", "-e", "A=1", "-u", "nobody", "-w", "/tmp", "c1",
                   "sleep", "1").code == 0
    body = next(r for r in d.requests if r.path.endswith("/exec")).json()
    assert body == {"User": "nobody", "Privileged": False, "Tty": False, "AttachStdin": False,
                    "AttachStderr": False, "AttachStdout": False, "Detach": True,
                    "DetachKeys": "", "Env": ["A=1"], "WorkingDir": "/tmp",
                    "Cmd": ["sleep", "1"]}
    assert d.requests[-1].body == b'{"Detach":true,"Tty":false}\n'
    running["value"] = False
    result = run_cli(d.host, "exec", "c1", "true")
    assert (result.code, result.err) == (1, "Error response from daemon: container abc is not "
                                            "running\n")


def test_import_from_stdin(fake_daemon: Start) -> None:
    d = fake_daemon(lambda r: Reply(200, b'{"status":"sha256:abcd"}\r\n', chunked=True))
    result = run_cli(d.host, "import", "-m", "msg", "-c", "CMD sh", "-", "me/img:2",
                     stdin=b"TAR" * 10)
    assert result.out == "sha256:abcd\n"
    req = d.requests[-1]
    assert req.target == ("/v1.41/images/create?changes=CMD+sh&fromSrc=-&message=msg&repo=me%2Fimg"
                          "&tag=2")
    assert req.body == b"TAR" * 10


def test_stats_no_stream_command(fake_daemon: Start) -> None:
    data = json.loads(capture_response("33-stats-no-stream.txt", "GET /v1.41/containers/"))
    d = fake_daemon(lambda r: Reply(200, data))
    result = run_cli(d.host, "stats", "--no-stream", "anchor-p1")
    assert result.out == capture_output("33-stats-no-stream.txt")
    assert api(d) == ["GET /v1.41/containers/anchor-p1/stats?stream=0"]


@pytest.mark.parametrize(("argv", "usage"), [
    (["volume", "rm"], "Usage:  berth volume rm [OPTIONS] VOLUME [VOLUME...]"),
    (["network", "rm"], "Usage:  berth network rm NETWORK [NETWORK...]"),
    (["container", "rm"], "Usage:  berth container rm [OPTIONS] CONTAINER [CONTAINER...]"),
    (["images"], "Usage:  berth images [OPTIONS] [REPOSITORY[:TAG]]"),
])
def test_help_names_the_command_once(tmp_path: Path, argv: list[str], usage: str) -> None:
    result = run_cli(f"unix://{tmp_path}/x.sock", *argv, "--help")
    assert result.out.splitlines()[1] == usage
