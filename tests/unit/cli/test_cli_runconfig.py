"""The create body built from run flags equals, byte for byte, what the docker CLI sent."""

from __future__ import annotations

import pytest

from berth.cli.client import go_json
from berth.cli.flags import parse
from berth.cli.runconfig import CREATE, RUN, build_create, parse_mount, parse_port_spec

from .conftest import capture_bodies

CASES = [
    ("03-run-d-publish.txt",
     ["-d", "-p", "30000:80", "--name", "web1", "-e", "A=b", "busybox", "httpd", "-f", "-p", "80"],
     {"name": "web1"}),
    ("09-run-attached-echo.txt", ["--rm", "busybox", "echo", "hi"], {}),
    ("10-run-stdin-cat.txt", ["--rm", "-i", "busybox", "cat"], {}),
    ("15-run-volume.txt", ["--rm", "-v", "v1:/data", "busybox", "sh", "-c", "echo x > /data/f"],
     {}),
    ("25-run-tty.txt", ["--rm", "-t", "busybox", "echo", "hi"], {}),
    ("41-run-network-none-rm.txt",
     ["--rm", "--network=none", "-w", "/tmp", "-u", "65534", "--hostname", "h1", "--label", "k=v",
      "-m", "64m", "busybox", "id"], {}),
]


@pytest.mark.parametrize("capture, argv, query", CASES, ids=[c[0] for c in CASES])
def test_run_body_matches_docker_bytes(capture: str, argv: list[str],
                                       query: dict[str, str]) -> None:
    opts, args = parse(RUN, argv)
    got_query, body = build_create(opts, args, RUN, detach=opts["detach"])
    line, expected = next((ln, b) for ln, b in capture_bodies(capture)
                          if ln.startswith("POST /v1.41/containers/create"))
    assert go_json(body) == expected
    assert got_query == query


def test_create_body_matches_capture_40() -> None:
    opts, args = parse(CREATE, ["--name", "anchor-dup", "busybox", "true"])
    query, body = build_create(opts, args, CREATE)
    _, expected = capture_bodies("40-error-409-name-in-use.txt")[0]
    assert go_json(body) == expected
    assert query == {"name": "anchor-dup"}


def test_many_flags_land_in_docker_fields() -> None:
    argv = ["--cap-add", "NET_ADMIN", "--cap-drop", "ALL", "--privileged", "--read-only",
            "--restart", "on-failure:3", "--init", "--tmpfs", "/run:size=64m",
            "--ulimit", "nofile=1024:2048", "--add-host", "a:1.2.3.4", "--dns", "8.8.8.8",
            "--device", "/dev/fuse", "--sysctl", "net.ipv4.ip_forward=1",
            "--security-opt", "no-new-privileges", "--cpus", "1.5", "--cpu-shares", "512",
            "--pids-limit", "100", "--memory-swap", "-1", "--runtime", "crun",
            "--entrypoint", "sh", "--stop-signal", "SIGINT", "--stop-timeout", "5",
            "-P", "--expose", "8080", "--mount", "type=volume,source=v,target=/data,readonly",
            "-v", "/anon", "--network", "mynet", "--network-alias", "web",
            "--platform", "linux/amd64", "busybox"]
    opts, args = parse(RUN, argv)
    query, body = build_create(opts, args, RUN)
    host = body["HostConfig"]
    assert host["CapAdd"] == ["NET_ADMIN"] and host["CapDrop"] == ["ALL"]
    assert host["Privileged"] and host["ReadonlyRootfs"] and host["Init"] is True
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert host["Tmpfs"] == {"/run": "size=64m"}
    assert host["Ulimits"] == [{"Name": "nofile", "Hard": 2048, "Soft": 1024}]
    assert host["ExtraHosts"] == ["a:1.2.3.4"] and host["Dns"] == ["8.8.8.8"]
    assert host["Devices"] == [{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse",
                                "CgroupPermissions": "rwm"}]
    assert host["Sysctls"] == {"net.ipv4.ip_forward": "1"}
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["NanoCpus"] == 1_500_000_000 and host["CpuShares"] == 512
    assert host["PidsLimit"] == 100 and host["MemorySwap"] == -1
    assert host["Runtime"] == "crun" and host["PublishAllPorts"] is True
    assert host["Mounts"] == [{"Type": "volume", "Source": "v", "Target": "/data",
                               "ReadOnly": True}]
    assert host["NetworkMode"] == "mynet"
    assert body["NetworkingConfig"]["EndpointsConfig"]["mynet"]["Aliases"] == ["web"]
    assert body["Entrypoint"] == ["sh"] and body["Cmd"] is None
    assert body["StopSignal"] == "SIGINT" and body["StopTimeout"] == 5
    assert body["ExposedPorts"] == {"8080/tcp": {}}
    assert body["Volumes"] == {"/anon": {}}
    assert query == {"platform": "linux/amd64"}
    keys = list(host)
    # Go struct order: optional fields sit where the struct declares them.
    assert keys.index("Tmpfs") == keys.index("SecurityOpt") + 1
    assert keys.index("Runtime") == keys.index("Sysctls") + 1 == keys.index("Isolation") - 1
    assert keys[-1] == "Init" and keys[-4] == "Mounts"


def test_entrypoint_empty_string_resets() -> None:
    opts, args = parse(RUN, ["--entrypoint", "", "busybox"])
    assert build_create(opts, args, RUN)[1]["Entrypoint"] == [""]


def test_env_file_and_bare_env_names() -> None:
    files = {"e.env": "# comment\nA=1\n\nHOME_X\nB=two words\n"}
    opts, args = parse(RUN, ["--env-file", "e.env", "-e", "C", "-e", "MISSING", "busybox"])
    _, body = build_create(opts, args, RUN, environ={"HOME_X": "/h", "C": "c"},
                           read_file=files.__getitem__)
    assert body["Env"] == ["A=1", "HOME_X=/h", "B=two words", "C=c"]


def test_attach_flags() -> None:
    opts, args = parse(RUN, ["-a", "stdout", "busybox"])
    _, body = build_create(opts, args, RUN)
    assert (body["AttachStdin"], body["AttachStdout"], body["AttachStderr"]) == (
        False, True, False)
    opts, args = parse(RUN, ["-d", "-i", "busybox"])
    _, body = build_create(opts, args, RUN, detach=True)
    assert body["OpenStdin"] and not body["AttachStdin"] and not body["StdinOnce"]


@pytest.mark.parametrize("spec, expected", [
    ("80", [("80/tcp", "", "")]),
    ("30000:80", [("80/tcp", "", "30000")]),
    ("127.0.0.1:8080:80/udp", [("80/udp", "127.0.0.1", "8080")]),
    ("8000-8001:80-81", [("80/tcp", "", "8000"), ("81/tcp", "", "8001")]),
    ("[::1]:8080:80", [("80/tcp", "::1", "8080")]),
    ("127.0.0.1::80", [("80/tcp", "127.0.0.1", "")]),
    ("28081:80/UDP", [("80/udp", "", "28081")]),
    ("28100-28102:8080", [("8080/tcp", "", "28100-28102")]),
])
def test_port_specs(spec: str, expected: list[tuple[str, str, str]]) -> None:
    assert parse_port_spec(spec) == expected


@pytest.mark.parametrize("spec, message", [  # case 027, in the docker 28 CLI's words
    ("abc", "invalid containerPort: abc"),
    ("28200-28202:8000-8001",
     "invalid ranges specified for container and host Ports: 8000-8001 and 28200-28202"),
    ("80/bogus", "invalid proto: bogus"),
])
def test_port_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_port_spec(spec)
    assert str(err.value) == message


def test_mount_spec() -> None:
    assert parse_mount("type=bind,src=/a,dst=/b,bind-propagation=rshared") == {
        "Type": "bind", "Source": "/a", "Target": "/b",
        "BindOptions": {"Propagation": "rshared"}}
    assert parse_mount("type=tmpfs,target=/t,tmpfs-size=1m") == {
        "Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20}}
    with pytest.raises(ValueError):
        parse_mount("type=volume,source=v")
