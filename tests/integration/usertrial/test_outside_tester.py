"""Bugs an outside tester found using berth the way Docker is used (one test per bug)."""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from pathlib import Path


def _name(prefix: str) -> str:
    return f"ut-{prefix}-{uuid.uuid4().hex[:8]}"


def test_rmi_refuses_last_tag_of_image_a_container_uses(daemon) -> None:  # type: ignore[no-untyped-def]
    # docker: untagging the only name of an image a container runs on is a conflict (exit 1);
    # berth untagged it and deleted the layers under the running container's rootfs
    tag, ctr = f"{_name('rmi')}:v1", _name("rmi")
    daemon.out("run", "--name", ctr, "busybox", "true")
    try:
        daemon.out("commit", ctr, tag)  # a new image whose only name is `tag`
        daemon.out("rm", ctr)
        daemon.out("create", "--name", ctr, tag, "true")
        proc = daemon.cli("rmi", tag)
        assert proc.returncode == 1, proc.stdout
        assert b"(must force) - container" in proc.stderr
        assert daemon.cli("image", "inspect", tag).returncode == 0
    finally:
        daemon.cli("rm", "-f", ctr)
        daemon.cli("rmi", "-f", tag)


def test_commit_created_container(daemon) -> None:  # type: ignore[no-untyped-def]
    # docker commits a never-started container (an empty layer); berth failed on its upper dir
    tag, ctr = f"{_name('commit')}:v1", _name("commit")
    daemon.out("create", "--name", ctr, "busybox", "true")
    try:
        daemon.out("commit", ctr, tag)
        assert daemon.out("run", "--rm", tag, "echo", "ok") == "ok\n"
    finally:
        daemon.cli("rm", "-f", ctr)
        daemon.cli("rmi", "-f", tag)


def test_ps_format_json(daemon) -> None:  # type: ignore[no-untyped-def]
    # docker ps --format json prints one JSON object per container
    ctr = _name("psjson")
    daemon.out("create", "--name", ctr, "-l", "k=v", "busybox", "true")
    try:
        out = daemon.out("ps", "-a", "--filter", f"name={ctr}", "--format", "json")
        doc = json.loads(out.strip())
        assert doc["Names"] == ctr and doc["Labels"] == "k=v"
        out = daemon.out("ps", "-a", "--filter", f"name={ctr}", "--format", "{{json .}}")
        assert json.loads(out.strip())["Names"] == ctr
    finally:
        daemon.cli("rm", "-f", ctr)


def test_rm_force_missing_container_exits_zero(daemon) -> None:  # type: ignore[no-untyped-def]
    # docker rm -f prints the not-found error but exits 0
    proc = daemon.cli("rm", "-f", "ut-no-such-container")
    assert proc.returncode == 0
    assert b"No such container: ut-no-such-container" in proc.stderr
    assert daemon.cli("rm", "ut-no-such-container").returncode == 1


def test_missing_env_file_and_import_file_are_errors_not_tracebacks(daemon) -> None:  # type: ignore[no-untyped-def]
    proc = daemon.cli("run", "--rm", "--env-file", "/ut-no-such-file", "busybox", "true")
    assert proc.returncode == 125
    assert b"open /ut-no-such-file: no such file or directory" in proc.stderr
    assert b"Traceback" not in proc.stderr
    proc = daemon.cli("import", "/ut-no-such-file.tar", "ut-import:x")
    assert proc.returncode == 1
    assert proc.stderr.strip() == b"open /ut-no-such-file.tar: no such file or directory"
    proc = daemon.cli("save", "-o", "/ut-no-such-dir/x.tar", "busybox")
    assert (proc.returncode, proc.stderr) == (1, b"failed to save image: invalid output path: "
                                              b"stat /ut-no-such-dir: no such file or directory\n")
    proc = daemon.cli("load", "-i", "/ut-no-such-file.tar")
    assert proc.returncode == 1
    assert proc.stderr.strip() == b"open /ut-no-such-file.tar: no such file or directory"


def test_entrypoint_empty_string_resets_entrypoint(daemon) -> None:  # type: ignore[no-untyped-def]
    # docker: --entrypoint '' clears the entrypoint and runs the given command
    assert daemon.out("run", "--rm", "--entrypoint", "", "busybox", "echo", "x") == "x\n"


def test_cp_dir_contents_with_trailing_dot(daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # docker cp ctr:/dir/. dest copies the contents of dir into dest, nothing outside dest
    ctr = _name("cpdot")
    daemon.out("run", "-d", "--name", ctr, "busybox", "sh", "-c",
               "mkdir -p /d/sub && echo a > /d/a && echo s > /d/sub/s && sleep 60")
    try:
        dest = tmp_path / "out"
        daemon.out("cp", f"{ctr}:/d/.", str(dest))
        assert (dest / "a").read_text() == "a\n"
        assert (dest / "sub" / "s").read_text() == "s\n"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
        raw = daemon.cli("cp", f"{ctr}:/d/.", "-", check=True).stdout
        names = tarfile.open(fileobj=io.BytesIO(raw)).getnames()
        assert all(n == "." or n.startswith("./") for n in names), names
    finally:
        daemon.cli("rm", "-f", ctr)


def test_export(daemon) -> None:  # type: ignore[no-untyped-def]
    # GET /containers/{id}/export and `berth export` were not implemented
    ctr = _name("export")
    daemon.out("create", "--name", ctr, "busybox", "true")
    try:
        raw = daemon.cli("export", ctr, check=True).stdout
        assert "bin/busybox" in tarfile.open(fileobj=io.BytesIO(raw)).getnames()
    finally:
        daemon.cli("rm", "-f", ctr)


def test_build_rejects_bad_tag_before_building(daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # docker validates -t up front (exit 125); berth built the image, then failed to tag it
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo should-not-run\n")
    proc = daemon.cli("build", "-t", "Bad Tag", str(tmp_path))
    assert proc.returncode == 125
    assert b'invalid argument "Bad Tag" for "-t, --tag" flag: invalid reference format' \
        in proc.stderr
    assert b"should-not-run" not in proc.stdout


def test_ps_filters_before_since_and_invalid(daemon) -> None:  # type: ignore[no-untyped-def]
    names = [_name("order") for _ in range(3)]
    try:
        for n in names:
            daemon.out("create", "--name", n, "busybox", "true")
        ours = set(names)

        def ps(*f: str) -> set[str]:
            out = daemon.out("ps", "-a", "--format", "{{.Names}}", *f)
            return set(out.split()) & ours

        assert ps("-f", f"before={names[1]}") == {names[0]}
        assert ps("-f", f"since={names[1]}") == {names[2]}
        proc = daemon.cli("ps", "-f", "bogus=1")
        assert (proc.returncode, proc.stderr) == (
            1, b"Error response from daemon: Invalid filter 'bogus'\n")
        proc = daemon.cli("ps", "-f", "status=bogus")
        assert (proc.returncode, proc.stderr) == (
            1, b"Error response from daemon: Invalid filter 'status=bogus'\n")
    finally:
        daemon.cli("rm", "-f", *names)


def test_existing_cidfile_is_refused_before_create(daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # docker refuses up front (exit 125, no container made); berth created one, then crashed
    cidfile = tmp_path / "cid"
    cidfile.write_text("old")
    name = _name("cid")
    try:
        proc = daemon.cli("run", "--name", name, "--cidfile", str(cidfile), "busybox", "true")
        assert proc.returncode == 125
        assert b"container ID file found" in proc.stderr and b"Traceback" not in proc.stderr
        assert daemon.out("ps", "-aq", "--filter", f"name={name}") == ""
    finally:
        daemon.cli("rm", "-f", name)


def test_repeated_identical_volume_flag_is_one_mount(daemon) -> None:  # type: ignore[no-untyped-def]
    # the docker CLI sends `-v v:/d -v v:/d` as one bind; berth failed "Duplicate mount point"
    vol = _name("dupvol")
    try:
        daemon.out("run", "--rm", "-v", f"{vol}:/d", "-v", f"{vol}:/d", "busybox", "true")
    finally:
        daemon.cli("volume", "rm", vol)


def _create(daemon, body: dict) -> tuple[int, dict]:  # type: ignore[no-untyped-def,type-arg]
    """POST /containers/create as the docker CLI sends it (the berth CLI fills in -e itself)."""
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(str(daemon.socket))

    conn = Conn("localhost")
    try:
        conn.request("POST", "/v1.41/containers/create", json.dumps(body),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def test_env_name_without_value_is_unset(daemon) -> None:  # type: ignore[no-untyped-def]
    # `docker run -e NAME` with NAME unset on the client sends "NAME"; dockerd drops it
    # (berth passed it on and runc refused "invalid environment variable")
    status, doc = _create(daemon, {"Image": "busybox", "Env": ["UT_UNSET", "UT_SET=1"],
                                   "Cmd": ["sh", "-c", "echo ${UT_UNSET-unset} $UT_SET"]})
    assert status == 201, doc
    try:
        daemon.out("start", doc["Id"])
        daemon.out("wait", doc["Id"])
        assert daemon.out("logs", doc["Id"]) == "unset 1\n"
    finally:
        daemon.cli("rm", "-f", doc["Id"])


def test_create_validates_workdir_and_cpus(daemon) -> None:  # type: ignore[no-untyped-def]
    proc = daemon.cli("run", "--rm", "-w", "rel", "busybox", "pwd")
    assert proc.returncode == 125
    assert b"the working directory 'rel' is invalid, it needs to be an absolute path" \
        in proc.stderr
    proc = daemon.cli("run", "--rm", "--cpus", "9999", "busybox", "true")
    assert proc.returncode == 125
    assert b"Range of CPUs is from 0.01 to " in proc.stderr


def test_dockerfile_parse_error_wording(daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # the classic builder's wording is 'dockerfile parse error line N: ...' (cases/013); berth
    # said 'Dockerfile:N: ...'
    (tmp_path / "Dockerfile").write_text("FROM busybox\nFOO bar\n")
    proc = daemon.cli("build", str(tmp_path))
    assert b"Error response from daemon: dockerfile parse error line 2: unknown instruction: " \
        b"FOO" in proc.stderr


def test_inspect_unknown_field_is_an_error(daemon) -> None:  # type: ignore[no-untyped-def]
    # docker inspect falls back to the raw JSON with missingkey=error; berth printed <no value>
    ctr = _name("insp")
    daemon.out("create", "--name", ctr, "busybox", "true")
    try:
        proc = daemon.cli("inspect", "-f", "{{.Bogus}}", ctr)
        assert proc.returncode == 1
        assert proc.stderr == (b'Template parsing error: template: :1:2: executing "" at '
                               b'<.Bogus>: map has no entry for key "Bogus"\n')
        assert proc.stdout == b""
        # a map (Labels) is not a struct: a missing key prints <no value>, as in docker
        assert daemon.out("inspect", "-f", "{{.Config.Labels.nope}}", ctr) == "<no value>\n"
    finally:
        daemon.cli("rm", "-f", ctr)


def test_logs_with_log_driver_none(daemon) -> None:  # type: ignore[no-untyped-def]
    # berth kept json-file logs for --log-driver none
    ctr = _name("nolog")
    assert daemon.out("run", "--name", ctr, "--log-driver", "none", "busybox", "echo", "x") \
        == "x\n"  # attached output does not go through the log
    try:
        proc = daemon.cli("logs", ctr)
        assert (proc.returncode, proc.stderr) == (
            1, b"Error response from daemon: configured logging driver does not support "
               b"reading\n")
        assert daemon.out("inspect", "-f", "{{json .HostConfig.LogConfig}} [{{.LogPath}}]",
                          ctr) == '{"Type":"none","Config":{}} []\n'
        cid = daemon.out("inspect", "-f", "{{.Id}}", ctr).strip()
        assert not list((daemon.data_root / "containers" / cid).glob("*-json.log*"))
    finally:
        daemon.cli("rm", "-f", ctr)


def test_bad_stop_signal_is_refused(daemon) -> None:  # type: ignore[no-untyped-def]
    # berth accepted an unknown --stop-signal
    ctr = _name("stopsig")
    try:
        proc = daemon.cli("create", "--name", ctr, "--stop-signal", "BOGUS", "busybox", "true")
        assert proc.returncode == 125
        assert proc.stderr == b"Error response from daemon: Invalid signal: BOGUS\n"
        assert daemon.out("ps", "-aq", "--filter", f"name={ctr}") == ""
    finally:
        daemon.cli("rm", "-f", ctr)


def test_cp_container_root_stays_inside_destination(daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # `berth cp ctr:/ dest` wrote bin/, etc/, ... beside dest instead of into it
    ctr = _name("cproot")
    daemon.out("create", "--name", ctr, "busybox", "true")
    try:
        daemon.out("cp", f"{ctr}:/", str(tmp_path / "root"))
        assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]
        assert (tmp_path / "root" / "bin" / "busybox").is_file()
    finally:
        daemon.cli("rm", "-f", ctr)


# -- a second trial (2026-12-03); expected texts are dockerd 20.10.24 + docker CLI 28's ---------


def test_rename_to_the_same_name_is_refused_as_docker(daemon) -> None:  # type: ignore[no-untyped-def]
    ctr = _name("same")
    daemon.out("create", "--name", ctr, "busybox", "true")
    try:
        proc = daemon.cli("rename", ctr, ctr)
        assert proc.returncode == 1
        assert proc.stderr.decode() == (
            "Error response from daemon: Renaming a container with the same name as its "
            f"current name\nError: failed to rename container named {ctr}\n")
    finally:
        daemon.cli("rm", "-f", ctr)


def test_exec_in_a_paused_container_names_it_as_typed(daemon) -> None:  # type: ignore[no-untyped-def]
    ctr = _name("paused")
    daemon.out("run", "-d", "--name", ctr, "busybox", "sleep", "30")
    try:
        daemon.out("pause", ctr)
        proc = daemon.cli("exec", ctr, "true")
        assert proc.returncode == 1
        assert proc.stderr.decode() == (f"Error response from daemon: Container {ctr} is paused, "
                                        "unpause the container before exec\n")
    finally:
        daemon.cli("rm", "-f", ctr)


def test_empty_dockerfile_and_bad_expose_use_dockerds_words(daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "Dockerfile").write_text("")
    proc = daemon.cli("build", "-q", str(tmp_path))
    assert proc.returncode == 1
    assert b"the Dockerfile (Dockerfile) cannot be empty" in proc.stderr
    (tmp_path / "Dockerfile").write_text("FROM busybox\nEXPOSE notaport\n")
    proc = daemon.cli("build", "-q", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.decode().strip().endswith("Invalid containerPort: notaport")
