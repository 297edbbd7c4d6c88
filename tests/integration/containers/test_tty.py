"""`-it` gives a real terminal: the CLI on a pty of ours, driven as a person would."""

from __future__ import annotations

import pytest
from tests.integration.containers._probe import Terminal, wait_for

pytestmark = pytest.mark.usefixtures("daemon")


def test_run_it_is_a_terminal_and_returns_the_exit_code(daemon):
    term = Terminal(daemon, "run", "-it", "--rm", "busybox", "sh")
    try:
        term.read_until(b"# ")
        term.send(b"tty; echo hi; exit 4\r")
        seen = term.read_until(b"hi\r\n")
        assert b"/dev/pts/0\r\n" in seen  # the process's stdio is a terminal in the container
        assert term.wait() == 4
    finally:
        term.kill()
    assert b"\r\nhi\r\n" in term.output  # the pty's \r\n: output was not piped


def test_window_size_and_resize_reach_the_container(daemon):
    term = Terminal(daemon, "run", "-it", "--rm", "busybox", "sh", rows=30, cols=90)
    try:
        term.read_until(b"# ")
        term.send(b"stty size\r")
        assert b"30 90\r\n" in term.read_until(b"30 90")
        term.resize(33, 101)  # the kernel sends the CLI SIGWINCH; it must tell the daemon
        seen = b""
        for _ in range(20):  # the resize travels CLI → daemon → shim asynchronously
            term.send(b"stty size\r")
            seen = term.read_until(b"33 101", 0.5)
            if b"33 101" in seen:
                break
        assert b"33 101\r\n" in seen
        term.send(b"exit\r")
        assert term.wait() == 0
    finally:
        term.kill()


def test_detach_with_ctrl_p_ctrl_q_then_attach_again(daemon):
    term = Terminal(daemon, "run", "-it", "--name", "tty-detach", "busybox", "sh")
    again = None
    try:
        term.read_until(b"# ")
        term.send(b"\x10\x11")
        assert term.wait() == 0
        assert b"read escape sequence" in term.output
        status = daemon.out("inspect", "-f", "{{.State.Status}}", "tty-detach").strip()
        assert status == "running"
        again = Terminal(daemon, "attach", "tty-detach")
        again.read_until(b"\0never", 0.5)
        again.send(b"echo hi; exit 4\r")
        assert b"hi\r\n" in again.read_until(b"hi\r\n")
        assert again.wait() == 4
        assert wait_for(lambda: daemon.out(
            "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}",
            "tty-detach").strip() == "exited 4")
    finally:
        term.kill()
        if again is not None:
            again.kill()
        daemon.cli("rm", "-f", "tty-detach")


def test_start_attach_interactive(daemon):
    daemon.out("create", "-i", "--name", "start-ai", "busybox", "sh", "-c",
               "read line; echo got $line; exit 3")
    try:
        proc = daemon.cli("start", "-a", "-i", "start-ai", input=b"abc\n")
        assert proc.stdout == b"got abc\n", proc.stderr
        assert proc.returncode == 3
    finally:
        daemon.cli("rm", "-f", "start-ai")


def test_start_attach_interactive_with_tty(daemon):
    daemon.out("create", "-it", "--name", "start-ait", "busybox", "sh")
    term = Terminal(daemon, "start", "-a", "-i", "start-ait")
    try:
        term.read_until(b"# ")
        term.send(b"echo hi; exit 5\r")
        assert b"hi\r\n" in term.read_until(b"hi\r\n")
        assert term.wait() == 5
    finally:
        term.kill()
        daemon.cli("rm", "-f", "start-ait")
