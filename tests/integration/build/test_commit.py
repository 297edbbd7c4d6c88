"""`berth commit`: a container's changes as a new image, with -c, -m, -a."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.usefixtures("daemon")


def test_commit_with_change_message_and_author(builder):
    name = "commit-src-1"
    builder.containers.append(name)
    builder.out("run", "--name", name, "busybox", "sh", "-c", "echo kept > /committed")
    tag = builder.tag()
    image_id = builder.out("commit", "-c", 'CMD ["cat", "/committed"]', "-c", "ENV X=1",
                           "-m", "add /committed", "-a", "A. Tester <t@example.com>",
                           name, tag).strip()
    assert image_id.startswith("sha256:")
    assert builder.run(tag) == "kept\n"
    info = json.loads(builder.out("inspect", tag))[0]
    assert info["Id"] == image_id
    assert info["Comment"] == "add /committed"
    assert info["Author"] == "A. Tester <t@example.com>"
    assert info["Config"]["Cmd"] == ["cat", "/committed"]
    assert "X=1" in info["Config"]["Env"]
    assert len(info["RootFS"]["Layers"]) == builder.layers("busybox") + 1
    assert builder.run(tag, "sh", "-c", "echo $X") == "1\n"


def test_commit_of_a_running_container_pauses_it(builder):
    name = "commit-src-2"
    builder.containers.append(name)
    builder.out("run", "-d", "--name", name, "busybox", "sh", "-c",
                "echo live > /live && sleep 60")
    tag = builder.tag()
    for _ in range(50):
        image_id = builder.out("commit", name, tag).strip()
        if builder.run(tag, "sh", "-c", "cat /live 2>/dev/null; true") == "live\n":
            break
    assert builder.out("inspect", "-f", "{{.State.Status}}", name).strip() == "running"
    assert image_id.startswith("sha256:")


def test_commit_rejects_a_bad_change(builder):
    name = "commit-src-3"
    builder.containers.append(name)
    builder.out("run", "--name", name, "busybox", "true")
    proc = builder.daemon.cli("commit", "-c", "RUN echo no", name)
    assert proc.returncode != 0
    assert b"RUN is not a valid change command" in proc.stderr
