"""RUN --mount: cache, bind and tmpfs mounts; secret/ssh refused."""

from __future__ import annotations

import secrets

import pytest

pytestmark = pytest.mark.usefixtures("daemon")


def test_cache_mount_persists_between_builds_and_stays_out_of_the_image(builder):
    cid = f"berth-test-{secrets.token_hex(4)}"
    dockerfile = (f"FROM busybox:latest\nARG N\n"
                  f"RUN --mount=type=cache,target=/cache/x,id={cid} "
                  "echo run-$N >> /cache/x/log && cat /cache/x/log\n")
    tag, out = builder.build_ok(dockerfile, None, "--build-arg", "N=1")
    assert "run-1" in out
    tag2, out2 = builder.build_ok(dockerfile, None, "--build-arg", "N=2")
    assert "run-1\nrun-2" in out2  # the file written by the first build is still there
    # neither the file nor the mount point is in the image
    assert builder.run(tag2, "sh", "-c", "ls /cache 2>&1 || true").strip().endswith(
        "No such file or directory")
    # the step wrote only into the cache: an empty diff, so no layer (as for any such RUN)
    assert builder.layers(tag2) == builder.layers("busybox:latest")


def test_bind_mount_of_the_context_reads_files_without_copy(builder):
    dockerfile = ("FROM busybox:latest\n"
                  "RUN --mount=target=/src cat /src/data.txt > /copied\n"
                  "RUN --mount=type=bind,source=sub,target=/s,rw "
                  "cat /s/inner && echo x > /s/inner\n")
    tag, _ = builder.build_ok(dockerfile, {"data.txt": "hello\n", "sub/inner": "in\n"})
    assert builder.run(tag, "cat", "/copied") == "hello\n"
    assert builder.run(tag, "sh", "-c", "ls /src /s 2>&1 || true").count("No such file") == 2
    # the content of the mounted files is part of the cache key
    ctx = builder.context(dockerfile, {"data.txt": "changed\n", "sub/inner": "in\n"})
    tag3 = builder.tag()
    proc = builder.build(ctx, tag=tag3)
    assert proc.returncode == 0, proc.stderr
    assert builder.run(tag3, "cat", "/copied") == "changed\n"
    assert (ctx / "sub/inner").read_text() == "in\n"  # rw writes thrown away


def test_bind_mount_from_a_stage(builder):
    dockerfile = ("FROM busybox:latest AS gen\nRUN echo artifact > /out\n"
                  "FROM busybox:latest\n"
                  "RUN --mount=type=bind,from=gen,source=/out,target=/in cp /in /got\n")
    tag, _ = builder.build_ok(dockerfile)
    assert builder.run(tag, "cat", "/got") == "artifact\n"
    assert "No such file" in builder.run(tag, "sh", "-c", "ls /in 2>&1 || true")


def test_tmpfs_mount_leaves_nothing_in_the_layer(builder):
    dockerfile = ("FROM busybox:latest\n"
                  "RUN --mount=type=tmpfs,target=/scratch/t "
                  "echo big > /scratch/t/f && grep tmpfs /proc/mounts | grep -c /scratch/t\n"
                  f"RUN --mount=type=cache,target=/c,id=berth-test-{secrets.token_hex(4)},"
                  "uid=1000,gid=2000,mode=0700,sharing=locked stat -c 'owner %u:%g %a' /c\n")
    tag, out = builder.build_ok(dockerfile, None, "--no-cache")
    assert "\n1\n" in out
    assert "owner 1000:2000 700" in out
    # no layer at all: the only change was inside the tmpfs (and its removed mount point)
    assert builder.layers(tag) == builder.layers("busybox:latest")


@pytest.mark.parametrize("kind", ["secret", "ssh"])
def test_secret_and_ssh_mounts_are_refused(builder, kind):
    ctx = builder.context(f"FROM busybox:latest\nRUN --mount=type={kind},id=x true\n")
    proc = builder.build(ctx)
    assert proc.returncode == 1
    assert f"RUN --mount=type={kind} is not supported" in proc.stderr.decode()
