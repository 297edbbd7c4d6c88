"""The shim with a real runtime (crun) on a busybox rootfs: logs, attach, tty, kill, survival."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.integration.shim.conftest import Container, wait_for_shim_exit

from berth.errors import Conflict, NotFound, RuntimeFailure
from berth.runtime.shim.client import (
    ShimClient,
    iter_frames,
    read_frame,
    start_shim,
    start_shim_async,
)
from berth.runtime.shim.main import serve
from berth.runtime.shim.protocol import load_exit_file
from berth.runtime.spec import Resources

Make = Callable[..., Container]


def _collect(sock: socket.socket) -> list[tuple[int, bytes]]:
    with sock:
        return list(iter_frames(sock))


def test_output_goes_to_log_and_attach_and_exit_code_is_recorded(make_container: Make) -> None:
    c = make_container(("/bin/sh", "-c", "echo hello; echo err >&2; exit 3"))
    client = start_shim(c.config)
    assert client.state().status == "created"
    attached = client.attach(stdout=True, stderr=True)
    pid = client.start()
    assert pid > 0
    frames = _collect(attached)
    status = client.wait(timeout=20)
    assert status.exit_code == 3 and status.oom_killed is False and status.pid == pid
    assert sorted(frames) == [(1, b"hello\n"), (2, b"err\n")]

    entries = [json.loads(line) for line in c.log_lines]
    assert sorted((e["log"], e["stream"]) for e in entries) == [
        ("err\n", "stderr"),
        ("hello\n", "stdout"),
    ]
    for e in entries:
        assert list(e) == ["log", "stream", "time"]
        assert len(e["time"]) == 30 and e["time"].endswith("Z")  # nine fraction digits
    recorded = load_exit_file(c.config.exit_file)
    assert recorded == status
    wait_for_shim_exit(c.config)
    # The shim is gone: the exit file answers.
    assert client.wait() == status
    assert client.state().status == "stopped"
    assert not os.path.exists(c.config.socket_path)


def test_attach_filters_streams(make_container: Make) -> None:
    c = make_container(("/bin/sh", "-c", "echo out; echo err >&2"))
    client = start_shim(c.config)
    only_err = client.attach(stdout=False, stderr=True)
    client.start()
    assert _collect(only_err) == [(2, b"err\n")]
    assert client.wait(timeout=20).exit_code == 0
    wait_for_shim_exit(c.config)


def test_stdin_once_closes_container_stdin(make_container: Make) -> None:
    c = make_container(("/bin/sh", "-c", "cat; echo done"), open_stdin=True, stdin_once=True)
    client = start_shim(c.config)
    sock = client.attach(stdin=True, stdout=True, stderr=True)
    client.start()
    sock.sendall(b"line one\nline two\n")
    sock.shutdown(socket.SHUT_WR)
    frames = _collect(sock)
    assert b"".join(data for _, data in frames) == b"line one\nline two\ndone\n"
    assert client.wait(timeout=20).exit_code == 0
    wait_for_shim_exit(c.config)


def test_tty_output_is_stream_one_and_resize_reaches_the_pty(make_container: Make) -> None:
    c = make_container(
        ("/bin/sh", "-c", "read x; stty size; echo got $x"),
        tty=True,
        open_stdin=True,
    )
    client = start_shim(c.config)
    sock = client.attach(stdin=True, stdout=True, stderr=True)
    client.start()
    client.resize(40, 123)
    sock.sendall(b"go\n")
    frames = _collect(sock)
    assert {stream for stream, _ in frames} == {1}
    output = b"".join(data for _, data in frames)
    assert b"40 123\r\n" in output and b"got go\r\n" in output
    assert client.wait(timeout=20).exit_code == 0
    entries = [json.loads(line) for line in c.log_lines]
    assert {e["stream"] for e in entries} == {"stdout"}
    assert "got go\r\n" in [e["log"] for e in entries]
    wait_for_shim_exit(c.config)


def test_kill_sigkill_gives_137(make_container: Make) -> None:
    c = make_container(("/bin/sleep", "100"))
    client = start_shim(c.config)
    client.start()
    assert client.state().status == "running"
    client.kill(signal.SIGKILL)
    assert client.wait(timeout=20).exit_code == 137
    with pytest.raises(Conflict):
        client.kill(signal.SIGKILL)
    wait_for_shim_exit(c.config)


def test_pause_and_resume(make_container: Make) -> None:
    c = make_container(("/bin/sleep", "100"))
    client = start_shim(c.config)
    client.start()
    client.pause()
    assert client.state().status == "paused"
    client.resume()
    assert client.state().status == "running"
    client.kill(signal.SIGKILL)
    assert client.wait(timeout=20).exit_code == 137
    wait_for_shim_exit(c.config)


def test_kill_before_start(make_container: Make) -> None:
    c = make_container(("/bin/true",))
    client = start_shim(c.config)
    client.kill(signal.SIGKILL)
    assert client.wait(timeout=20).exit_code == 137
    wait_for_shim_exit(c.config)


def test_create_failure_raises_runtime_error(make_container: Make) -> None:
    c = make_container(("/no/such/binary",))
    with pytest.raises(RuntimeFailure) as err:
        client = start_shim(c.config)
        client.start()  # some runtimes only look up the executable at start
    assert "/no/such/binary" in str(err.value) or "No such file" in str(err.value)
    assert err.value.exit_code == 127
    if os.path.exists(c.config.socket_path):
        ShimClient(c.config.socket_path).kill(signal.SIGKILL)
    wait_for_shim_exit(c.config)


def test_shim_survives_its_launcher(make_container: Make, tmp_path: Path) -> None:
    c = make_container(("/bin/sleep", "100"))
    launcher = textwrap.dedent(
        f"""
        import sys
        from berth.runtime.shim.client import start_shim
        from berth.runtime.shim.protocol import ShimConfig
        config = ShimConfig.from_json(open({str(tmp_path / "cfg.json")!r}).read())
        start_shim(config).start()
        """
    )
    (tmp_path / "cfg.json").write_text(c.config.to_json())
    proc = subprocess.run([sys.executable, "-c", launcher], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode()
    shim_pid = int(Path(c.config.pid_file).read_text())
    os.kill(shim_pid, 0)  # alive although its launcher is gone
    fresh = ShimClient(c.config.socket_path, exit_file=c.config.exit_file)
    state = fresh.state()
    assert state.status == "running"
    os.kill(state.pid, 0)
    fresh.kill(signal.SIGKILL)
    status = ShimClient(c.config.socket_path).wait(timeout=20)
    assert status.exit_code == 137
    wait_for_shim_exit(c.config)


def test_slow_client_does_not_block_the_container(make_container: Make) -> None:
    # 8 MiB of output to a client that never reads: the container still finishes.
    c = make_container(("/bin/sh", "-c", "head -c 8388608 /dev/zero | tr '\\0' a; echo"))
    client = start_shim(c.config)
    idle = client.attach(stdout=True, stderr=True)
    idle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.start()
    start = time.monotonic()
    assert client.wait(timeout=30).exit_code == 0
    assert time.monotonic() - start < 30
    idle.close()
    size = sum(len(json.loads(line)["log"]) for line in c.log_lines)
    assert size == 8 * 1024 * 1024 + 1
    wait_for_shim_exit(c.config)


def test_async_client_from_an_event_loop(make_container: Make) -> None:
    c = make_container(
        ("/bin/sh", "-c", "read x; echo got $x; echo bye >&2; exit 4"), open_stdin=True
    )

    async def scenario() -> tuple[list[tuple[int, bytes]], int, str]:
        client = await start_shim_async(c.config)
        reader, writer = await client.attach(stdin=True)
        await client.start()
        writer.write(b"ping\n")
        await writer.drain()
        frames = []
        while (item := await read_frame(reader)) is not None:
            frames.append(item)
        writer.close()
        status = await client.wait()
        return frames, status.exit_code, (await client.state()).status

    frames, code, state = asyncio.run(scenario())
    assert sorted(frames) == [(1, b"got ping\n"), (2, b"bye\n")]
    assert code == 4 and state == "stopped"
    wait_for_shim_exit(c.config)


def test_oom_kill_is_recorded(make_container: Make) -> None:
    c = make_container(
        ("/bin/sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"),
        resources=Resources(memory=16 << 20),
    )
    client = start_shim(c.config)
    client.start()
    status = client.wait(timeout=30)
    assert (status.exit_code, status.oom_killed) == (137, True)
    assert load_exit_file(c.config.exit_file) == status
    wait_for_shim_exit(c.config)


def test_serve_in_a_forked_process(make_container: Make) -> None:
    # The fork-server path: no new interpreter, the shim runs in a forked child.
    c = make_container(("/bin/sh", "-c", "echo forked"))
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns to pytest
        code = 1
        try:
            os.close(ready_r)
            code = serve(c.config, ready_w)
        finally:
            os._exit(code)
    os.close(ready_w)
    with os.fdopen(ready_r, "rb") as ready:
        assert json.loads(ready.readline())["ok"] is True
    client = ShimClient(c.config.socket_path, exit_file=c.config.exit_file)
    attached = client.attach()
    client.start()
    assert _collect(attached) == [(1, b"forked\n")]
    assert client.wait(timeout=20).exit_code == 0
    assert os.waitpid(pid, 0)[1] == 0


def test_large_stdin_round_trip(make_container: Make) -> None:
    c = make_container(("/bin/cat",), open_stdin=True, stdin_once=True)
    client = start_shim(c.config)
    sock = client.attach(stdin=True)
    client.start()
    payload = bytes(range(256)) * (12 * 1024)  # 3 MiB

    def feed() -> None:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=feed)
    sender.start()
    received = b"".join(data for _, data in _collect(sock))
    sender.join()
    assert received == payload
    assert client.wait(timeout=20).exit_code == 0
    wait_for_shim_exit(c.config)


def test_attach_after_exit_ends_at_once(make_container: Make) -> None:
    c = make_container(("/bin/true",), linger=1.0)
    client = start_shim(c.config)
    client.start()
    assert client.wait(timeout=20).exit_code == 0
    assert _collect(client.attach()) == []
    assert client.state().status == "stopped"
    wait_for_shim_exit(c.config)


def _process(*args: str) -> dict[str, object]:
    return {"args": list(args), "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}


def test_exec_streams_and_exit_code(make_container: Make) -> None:
    c = make_container(("/bin/sleep", "100"))
    client = start_shim(c.config)
    client.start()
    pid, sock = client.exec("e1", _process("/bin/sh", "-c", "echo out; echo err >&2; exit 5"))
    assert pid > 0 and sock is not None
    assert sorted(_collect(sock)) == [(1, b"out\n"), (2, b"err\n")]
    state = client.exec_state("e1")
    assert (state.running, state.exit_code) == (False, 5)
    # stdin, closed by the client's half-close
    _, sock = client.exec("e2", _process("/bin/cat"), stdin=True)
    assert sock is not None
    sock.sendall(b"via exec\n")
    sock.shutdown(socket.SHUT_WR)
    assert _collect(sock) == [(1, b"via exec\n")]
    assert client.exec_state("e2").exit_code == 0
    assert c.log_lines == []  # exec output is not the container's log
    with pytest.raises(NotFound):
        client.exec_state("nope")
    client.kill(signal.SIGKILL)
    assert client.wait(timeout=20).exit_code == 137
    wait_for_shim_exit(c.config)


def test_exec_tty_resize_and_detach(make_container: Make) -> None:
    c = make_container(("/bin/sleep", "100"))
    client = start_shim(c.config)
    client.start()
    _, sock = client.exec(
        "t1", _process("/bin/sh", "-c", "read x; stty size; echo $x"), tty=True, stdin=True
    )
    assert sock is not None
    client.exec_resize("t1", 33, 77)
    sock.sendall(b"hey\n")
    output = b"".join(data for stream, data in _collect(sock) if stream == 1)
    assert b"33 77\r\n" in output and b"hey\r\n" in output
    pid, none = client.exec("d1", _process("/bin/sh", "-c", "echo saved > /tmp/f"), detach=True)
    assert none is None
    deadline = time.monotonic() + 10
    while client.exec_state("d1").running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.exec_state("d1").exit_code == 0
    _, sock = client.exec("r1", _process("/bin/cat", "/tmp/f"))
    assert sock is not None and _collect(sock) == [(1, b"saved\n")]
    client.kill(signal.SIGKILL)
    assert client.wait(timeout=20).exit_code == 137
    wait_for_shim_exit(c.config)


def test_exec_needs_a_running_container(make_container: Make) -> None:
    c = make_container(("/bin/sleep", "100"))
    client = start_shim(c.config)
    with pytest.raises(Conflict, match="is not running"):
        client.exec("x", _process("/bin/true"))
    client.start()
    client.pause()
    with pytest.raises(Conflict, match="is paused"):
        client.exec("x", _process("/bin/true"))
    client.resume()
    with pytest.raises(RuntimeFailure):
        client.exec("bad", _process("/no/such/thing"))
    client.kill(signal.SIGKILL)
    assert client.wait(timeout=20).exit_code == 137
    wait_for_shim_exit(c.config)


def test_shim_kills_a_container_whose_bundle_was_removed(make_container: Make) -> None:
    """A crash mid-start can leave a created container that the engine then removes: its shim
    must not keep it (and itself) alive forever."""
    import shutil

    from tests.integration.shim.conftest import _pid_alive

    c = make_container(("/bin/sleep", "100"))
    client = start_shim(c.config)
    pid = client.state().pid
    assert _pid_alive(pid)
    shutil.rmtree(c.config.bundle)
    state = Path(c.config.runtime_root or "") / c.config.container_id
    deadline = time.monotonic() + 15
    while (_pid_alive(pid) or state.exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _pid_alive(pid), "the container outlived its removed bundle"
    assert not state.exists(), "the runtime's state was not deleted"
