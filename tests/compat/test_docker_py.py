"""docker-py (and testcontainers-python on top of it) drive berthd as they drive dockerd.

Image builds through docker-py are covered elsewhere.
"""

from __future__ import annotations

import socket
import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

docker = pytest.importorskip("docker", reason="docker-py is not installed")

pytestmark = pytest.mark.compat


@pytest.fixture()
def client(daemon) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    c = docker.DockerClient(base_url=daemon.host, version="1.41", timeout=60)
    created: list[str] = []
    c.berth_names = created  # names to remove at the end
    try:
        yield c
    finally:
        for name in created:
            try:
                c.api.remove_container(name, force=True)
            except docker.errors.NotFound:
                pass
        c.close()


def new_name(client: Any) -> str:
    name = f"dpy-{uuid.uuid4().hex[:10]}"
    client.berth_names.append(name)
    return name


def test_ping_version(client: Any) -> None:
    assert client.ping() is True
    assert client.version()["ApiVersion"] == "1.41"
    assert client.info()["OSType"] == "linux"


def test_run_attached(client: Any) -> None:
    out = client.containers.run("busybox", ["sh", "-c", "echo hi; echo err >&2"],
                                remove=True, stderr=True)
    assert sorted(out.split()) == [b"err", b"hi"]
    with pytest.raises(docker.errors.ContainerError) as info:
        client.containers.run("busybox", ["sh", "-c", "exit 3"], remove=True)
    assert info.value.exit_status == 3


def test_run_detached_logs_wait(client: Any) -> None:
    name = new_name(client)
    c = client.containers.run("busybox", ["sh", "-c", "for i in 1 2 3; do echo $i; done"],
                              detach=True, name=name, environment={"A": "b"})
    assert c.wait(timeout=30) == {"Error": None, "StatusCode": 0}
    assert b"".join(c.logs(stream=True)) == b"1\n2\n3\n"
    c.reload()
    assert c.status == "exited"
    assert "A=b" in c.attrs["Config"]["Env"]


def test_logs_follow_while_running(client: Any) -> None:
    name = new_name(client)
    c = client.containers.run("busybox", ["sh", "-c", "echo a; sleep 0.3; echo b"],
                              detach=True, name=name)
    lines = list(c.logs(stream=True, follow=True))
    assert b"".join(lines) == b"a\nb\n"


def test_exec_run(client: Any) -> None:
    name = new_name(client)
    c = client.containers.run("busybox", ["sleep", "300"], detach=True, name=name)
    code, (out, err) = c.exec_run(["sh", "-c", "echo out; echo err >&2; exit 2"], demux=True)
    assert (code, out, err) == (2, b"out\n", b"err\n")
    code, out = c.exec_run("sh -c 'echo $X $PWD; id -u'", environment={"X": "y"},
                           workdir="/tmp", user="nobody")
    assert (code, out) == (0, b"y /tmp\n65534\n")
    code, out = c.exec_run(["no-such-command"])
    assert code == 127
    assert b"executable file not found" in out
    exec_id = client.api.exec_create(c.id, ["true"])["Id"]
    client.api.exec_start(exec_id)
    info = client.api.exec_inspect(exec_id)
    assert info["ExitCode"] == 0 and info["Running"] is False and info["ContainerID"] == c.id
    with pytest.raises(docker.errors.APIError) as again:
        client.api.exec_start(exec_id)
    assert again.value.status_code == 409
    with pytest.raises(docker.errors.NotFound):
        client.api.exec_inspect("0" * 64)


def test_images_load_and_list(client: Any, test_images) -> None:  # type: ignore[no-untyped-def]
    with open(test_images.busybox_docker_tar, "rb") as f:
        images = client.images.load(f.read())
    assert [t for img in images for t in img.tags] == ["busybox:latest"]
    assert "busybox:latest" in [t for img in client.images.list() for t in img.tags]


def test_attach_socket(client: Any) -> None:
    name = new_name(client)
    c = client.containers.create("busybox", ["cat"], stdin_open=True, name=name)
    sock = client.api.attach_socket(c.id, params={"stdin": 1, "stdout": 1, "stream": 1})
    raw: socket.socket = getattr(sock, "_sock", sock)
    try:
        c.start()
        raw.sendall(b"hello\n")
        raw.shutdown(socket.SHUT_WR)  # not stdin_once: the container keeps stdin open
        raw.settimeout(10)
        header = b""
        while len(header) < 8:
            header += raw.recv(8 - len(header))
        stream, size = struct.unpack(">BxxxL", header)
        payload = b""
        while len(payload) < size:
            payload += raw.recv(size - len(payload))
        assert (stream, payload) == (1, b"hello\n")
    finally:
        response = getattr(sock, "_response", None)
        if response is not None:
            response.close()  # docker-py keeps the HTTP response (and its socket) here
        raw.close()
        sock.close()


def test_containers_list_filters(client: Any) -> None:
    running, stopped = new_name(client), new_name(client)
    client.containers.run("busybox", ["sleep", "300"], detach=True, name=running,
                          labels={"berth.test": "yes"})
    client.containers.create("busybox", ["true"], name=stopped)
    names = [c.name for c in client.containers.list(filters={"label": "berth.test=yes"})]
    assert names == [running]
    names = {c.name for c in client.containers.list(all=True, filters={"status": "created"})}
    assert stopped in names and running not in names
    assert [c.name for c in client.containers.list(filters={"name": running})] == [running]


def test_events_decode(client: Any) -> None:
    name = new_name(client)
    since = int(time.time()) - 1
    client.containers.run("busybox", ["true"], name=name)
    client.api.remove_container(name)
    until = int(time.time()) + 1
    events = list(client.events(since=since, until=until, decode=True,
                                filters={"container": name}))
    assert [e["Action"] for e in events] == ["create", "start", "die", "destroy"]
    first = events[0]
    assert first["Type"] == "container" and first["from"] == "busybox"
    assert first["Actor"]["Attributes"]["name"] == name
    assert first["timeNano"] // 10**9 == first["time"]


def test_events_live_stream(client: Any) -> None:
    name = new_name(client)
    stream = client.events(decode=True, filters={"container": name, "event": "create"})
    try:
        client.containers.create("busybox", ["true"], name=name)
        event = next(stream)
        assert (event["Action"], event["Actor"]["Attributes"]["name"]) == ("create", name)
    finally:
        stream.close()


def test_stats_one_shot(client: Any) -> None:
    name = new_name(client)
    c = client.containers.run("busybox", ["sleep", "300"], detach=True, name=name)
    stats = c.stats(stream=False)
    assert stats["name"] == "/" + name and stats["id"] == c.id
    assert stats["pids_stats"]["current"] == 1
    assert stats["memory_stats"]["usage"] > 0
    assert stats["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    assert stats["precpu_stats"]["system_cpu_usage"] < stats["cpu_stats"]["system_cpu_usage"]
    stream = c.stats(decode=True)
    first = next(stream)
    assert first["preread"] == "0001-01-01T00:00:00Z"
    stream.close()


def test_testcontainers(daemon, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")  # its reaper image is not here
    monkeypatch.setenv("DOCKER_HOST", daemon.host)
    try:
        from testcontainers.core.config import testcontainers_config
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.wait_strategies import LogMessageWaitStrategy
    except ImportError as err:
        pytest.skip(f"testcontainers cannot be imported: {err}")
    monkeypatch.setattr(testcontainers_config, "ryuk_disabled", True)
    container = DockerContainer("busybox").with_command(
        ["sh", "-c", "echo ready; exec sleep 300"]).waiting_for(
        LogMessageWaitStrategy("ready").with_startup_timeout(20))
    with container:
        out, _ = container.get_logs()
        assert out == b"ready\n"
        wrapped = container.get_wrapped_container()
        wrapped.reload()
        assert wrapped.status == "running"
        cid = wrapped.id
    client = docker.DockerClient(base_url=daemon.host)
    try:
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(cid)
    finally:
        client.close()


def test_diff_export_update(client: Any) -> None:
    name = new_name(client)
    container = client.containers.run("busybox", ["sh", "-c", "touch /tmp/t; sleep 300"],
                                      name=name, detach=True)
    deadline = time.monotonic() + 10
    while not container.diff() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert container.diff() == [{"Path": "/tmp", "Kind": 0}, {"Path": "/tmp/t", "Kind": 1}]
    data = b"".join(container.export())
    import io
    import tarfile

    assert "tmp/t" in tarfile.open(fileobj=io.BytesIO(data)).getnames()
    assert container.update(cpu_shares=512, mem_limit="64m", memswap_limit="128m") \
        == {"Warnings": None}
    container.reload()
    assert (container.attrs["HostConfig"]["CpuShares"],
            container.attrs["HostConfig"]["Memory"]) == (512, 64 << 20)
