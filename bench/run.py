"""berth against docker and podman, side by side in one run, on the same machine and image.

    .venv/bin/python bench/run.py [--runs 5] [--ps-count 50] [--json out.json]
                                  [--engines berth,docker,podman] [--runtimes runc,crun,berth]

berth runs on a berthd of the bench's own (temp data root, stopped at the end); docker and podman
are used when their CLI is installed and answers (``docker info`` / ``podman info``), skipped with
a note otherwise (``/work/shared/tools/anchors-setup.sh`` installs them). Every engine gets the
same busybox image, loaded under a tag of the bench's own (``berth-bench/busybox:latest``), so a
user's ``busybox`` is never touched; bench containers are removed at the end.

Measured per engine (berth once per OCI runtime):
- wall time of ``run --rm IMG true``; of ``create IMG true`` + ``rm ID``; of ``ps -a`` with no
  bench containers and with ``--ps-count`` created ones: median and p90 over ``--runs``;
- the CLI's peak RSS (``ru_maxrss`` of the process from ``wait4``) over those commands;
- the memory a running ``sleep`` container costs besides its own process: the processes between
  it and the engine (berth's shim; docker's containerd-shim; podman's conmon), RSS and PSS from
  /proc (PSS shares copy-on-write pages fairly; RSS counts them in full).
Ratios berth/docker and berth/podman are of numbers from this same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
IMAGE_CACHE = Path(os.environ.get("BERTH_TEST_IMAGES", "/var/tmp/berth-test-images"))
BENCH_REF = "berth-bench/busybox:latest"


@dataclass
class Engine:
    """One CLI to measure: ``argv`` prefix, a label, and the runtime flag (berth only)."""

    label: str
    argv: list[str]
    env: dict[str, str]
    extra_run: list[str] = field(default_factory=list)


@dataclass
class Timed:
    wall: float
    maxrss_kib: int
    code: int
    out: bytes


def timed_wait4(argv: list[str], env: dict[str, str] | None = None) -> Timed:
    """Run to completion; wall time and the peak RSS of that one process (``wait4``'s
    rusage: only the CLI, not the daemon it talks to)."""
    read_fd, write_fd = os.pipe()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child: stdout to the pipe, stderr to /dev/null, become the CLI
        os.dup2(write_fd, 1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(read_fd)
        try:
            os.execvpe(argv[0], argv, env or os.environ)
        finally:
            os._exit(127)
    os.close(write_fd)
    chunks = []
    while data := os.read(read_fd, 65536):
        chunks.append(data)
    os.close(read_fd)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    return Timed(wall, int(usage.ru_maxrss), os.waitstatus_to_exitcode(status), b"".join(chunks))


def check(t: Timed, what: str) -> Timed:
    if t.code != 0:
        raise RuntimeError(f"{what} failed with {t.code}: {t.out[-500:]!r}")
    return t


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, max(0, round(0.9 * len(ordered)) - 1))]
    return {"median": statistics.median(ordered), "p90": p90, "n": len(ordered)}


# -- memory of the processes that watch a container ---------------------------------------

def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if _ppid(int(entry.name)) == pid:
                    kids.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return kids


ENGINE_PROCESSES = {"dockerd", "containerd", "podman", "systemd", "init", "berthd"}


def monitor_memory(container_pid: int) -> dict[str, object]:
    """The container's monitor (its parent) and the monitor's other children (a runtime left
    running), walking up while the parent is not the engine itself or init."""
    watchers: list[int] = []
    pid = _ppid(container_pid)
    while pid > 1 and _comm(pid) not in ENGINE_PROCESSES and "berthd" not in _cmdline(pid):
        watchers.append(pid)
        pid = _ppid(pid)
    for w in list(watchers):
        watchers += [k for k in _children(w) if k != container_pid and k not in watchers]
    return {"processes": [f"{p}:{_comm(p)}" for p in watchers],
            "rss_kib": sum(_status_kib(p, "VmRSS") for p in watchers),
            "pss_kib": sum(_pss_kib(p) for p in watchers)}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# -- engines ------------------------------------------------------------------------------

class OwnBerthd:
    """A berthd on a temp root, as the test suite starts one."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="berth-bench-"))
        (self.root / "daemon.json").write_text("{}")
        self.sock = self.root / "berth.sock"
        berthd = VENV_BIN / "berthd"
        cmd = [str(berthd)] if berthd.exists() else [sys.executable, "-m", "berth.engine.daemon"]
        self.log = open(self.root / "berthd.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*cmd, "-H", f"unix://{self.sock}", "--data-root", str(self.root / "data"),
             "--exec-root", str(self.root / "exec"), "--pidfile", str(self.root / "berthd.pid"),
             "--config-file", str(self.root / "daemon.json")],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        berth = VENV_BIN / "berth"
        self.cli = ([str(berth)] if berth.exists() else [sys.executable, "-m", "berth.cli.main"])
        self.cli += ["-H", f"unix://{self.sock}"]
        deadline = time.monotonic() + 30
        while subprocess.run([*self.cli, "version"], capture_output=True).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("berthd did not start: "
                                   + (self.root / "berthd.log").read_text()[-2000:])
            time.sleep(0.1)

    def stop(self) -> None:
        ids = subprocess.run([*self.cli, "ps", "-aq"], capture_output=True,
                             text=True).stdout.split()
        if ids:
            subprocess.run([*self.cli, "rm", "-f", *ids], capture_output=True)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        with open("/proc/self/mountinfo") as f:
            left = [line.split()[4] for line in f if line.split()[4].startswith(str(self.root))]
        for target in reversed(left):
            subprocess.run(["umount", "-l", target], check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def answering(argv: list[str]) -> bool:
    if shutil.which(argv[0]) is None:
        return False
    try:
        return subprocess.run(argv, capture_output=True, timeout=10).returncode == 0
    except (subprocess.TimeoutExpired, OSError):
        return False


def bench_image(work: Path) -> Path:
    """The busybox test image as a docker-archive tagged ``BENCH_REF`` (skopeo rewrites the
    tag; the content and so the image ID stay those of the test image)."""
    src = IMAGE_CACHE / "busybox-docker.tar"
    if not src.exists():
        sys.path.insert(0, str(REPO))
        from tests.support.images import build_test_images

        src = build_test_images(IMAGE_CACHE).busybox_docker_tar
    out = work / "bench-busybox.tar"
    subprocess.run(["skopeo", "copy", "--quiet", f"docker-archive:{src}",
                    f"docker-archive:{out}:{BENCH_REF}"], check=True, capture_output=True)
    return out


# -- the measurements -----------------------------------------------------------------------

def measure(engine: Engine, runs: int, ps_count: int, what: set[str]) -> dict[str, object]:
    cli, env = engine.argv, engine.env
    result: dict[str, object] = {}
    rss: list[int] = []

    def series(name: str, one: Callable[[], float]) -> None:
        one()  # warm-up: first-use caches (page cache, cgroup creation) are not what we compare
        result[name] = summary([one() for _ in range(runs)])

    def run_rm() -> float:
        t = check(timed_wait4([*cli, "run", "--rm", *engine.extra_run, BENCH_REF, "true"], env),
                  "run --rm")
        rss.append(t.maxrss_kib)
        return t.wall

    def create_rm() -> float:
        a = check(timed_wait4([*cli, "create", *engine.extra_run, BENCH_REF, "true"], env),
                  "create")
        b = check(timed_wait4([*cli, "rm", a.out.decode().strip()], env), "rm")
        rss.extend((a.maxrss_kib, b.maxrss_kib))
        return a.wall + b.wall

    def ps() -> float:
        t = check(timed_wait4([*cli, "ps", "-a"], env), "ps")
        rss.append(t.maxrss_kib)
        return t.wall

    if "run" in what:
        series("run --rm true", run_rm)
    if "create" in what:
        series("create + rm", create_rm)
    if "ps" in what:
        series("ps -a (0)", ps)
        made = [check(timed_wait4([*cli, "create", BENCH_REF, "true"], env), "create").out
                .decode().strip() for _ in range(ps_count)]
        try:
            series(f"ps -a ({ps_count})", ps)
        finally:
            subprocess.run([*cli, "rm", "-f", *made], capture_output=True, env=env)
    if "memory" in what:
        cid = check(timed_wait4([*cli, "run", "-d", *engine.extra_run, BENCH_REF, "sleep",
                                 "300"], env), "run -d").out.decode().strip()
        try:
            time.sleep(0.5)  # let the monitor settle (lazy imports, buffers)
            pid = int(check(timed_wait4([*cli, "inspect", "-f", "{{.State.Pid}}", cid], env),
                            "inspect").out)
            result["monitor memory"] = monitor_memory(pid)
        finally:
            subprocess.run([*cli, "rm", "-f", cid], capture_output=True, env=env)
    result["cli peak rss kib"] = max(rss) if rss else 0
    return result


# -- output -----------------------------------------------------------------------------------

def render(results: dict[str, dict[str, object]], ps_count: int) -> str:
    labels = list(results)
    base = next((k for k in labels if k.startswith("berth")), None)
    others = [k for k in labels if k in ("docker", "podman")]
    rows: list[list[str]] = [["metric", *labels] + [f"{base}/{o}" for o in others]]

    def add(name: str, pick: Callable[[dict[str, object]], float | None], unit: str) -> None:
        vals = {k: pick(results[k]) for k in labels}
        row = [name] + [("-" if vals[k] is None else f"{vals[k]:.1f}{unit}") for k in labels]
        for o in others:
            b, v = vals.get(base) if base else None, vals[o]
            row.append("-" if not b or not v else f"{b / v:.2f}")
        rows.append(row)

    def stat(metric: str, key: str) -> Callable[[dict[str, object]], float | None]:
        def pick(r: dict[str, object]) -> float | None:
            s = r.get(metric)
            return None if not isinstance(s, dict) else float(s[key]) * 1000
        return pick

    for metric in ("run --rm true", "create + rm", "ps -a (0)", f"ps -a ({ps_count})"):
        add(f"{metric} median", stat(metric, "median"), " ms")
        add(f"{metric} p90", stat(metric, "p90"), " ms")
    add("CLI peak RSS", lambda r: int(str(r.get("cli peak rss kib") or 0)) / 1024 or None,
        " MiB")

    def mem(key: str) -> Callable[[dict[str, object]], float | None]:
        def pick(r: dict[str, object]) -> float | None:
            m = r.get("monitor memory")
            return None if not isinstance(m, dict) else float(m[key]) / 1024
        return pick

    add("per-container RSS", mem("rss_kib"), " MiB")
    add("per-container PSS", mem("pss_kib"), " MiB")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(r, widths, strict=True))) for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="timed runs per measurement (default 5)")
    p.add_argument("--ps-count", type=int, default=50, help="containers for the big ps")
    p.add_argument("--engines", default="berth,docker,podman")
    p.add_argument("--runtimes", default="runc,crun,berth",
                   help="OCI runtimes to measure berth with (the first is the ratios' base)")
    p.add_argument("--only", default="run,create,ps,memory",
                   help="which measurements (run,create,ps,memory)")
    p.add_argument("--json", help="also write the raw results here")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/run.py: berthd needs root", file=sys.stderr)
        return 2
    engines = args.engines.split(",")
    what = set(args.only.split(","))
    work = Path(tempfile.mkdtemp(prefix="berth-bench-img-"))
    results: dict[str, dict[str, object]] = {}
    notes: list[str] = []
    own: OwnBerthd | None = None
    try:
        image = bench_image(work)
        plan: list[tuple[Engine, set[str]]] = []
        if "berth" in engines:
            own = OwnBerthd()
            check(timed_wait4([*own.cli, "load", "-i", str(image)]), "berth load")
            for i, rt in enumerate(args.runtimes.split(",")):
                # create/ps never reach the runtime: measured once, with the first runtime
                sel = what if i == 0 else what & {"run", "memory"}
                plan.append((Engine(f"berth[{rt}]", own.cli, dict(os.environ),
                                    ["--runtime", rt]), sel))
        for name in ("docker", "podman"):
            if name not in engines:
                continue
            if not answering([name, "info"]):
                notes.append(f"{name}: skipped (not installed or `{name} info` does not answer;"
                             " /work/shared/tools/anchors-setup.sh installs it)")
                continue
            check(timed_wait4([name, "load", "-i", str(image)]), f"{name} load")
            plan.append((Engine(name, [name], dict(os.environ)), what))
        for engine, sel in plan:
            print(f"measuring {engine.label} ...", file=sys.stderr, flush=True)
            results[engine.label] = measure(engine, args.runs, args.ps_count, sel)
        for name in ("docker", "podman"):
            if name in results:
                subprocess.run([name, "rmi", BENCH_REF], capture_output=True)
    finally:
        if own is not None:
            own.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"runs={args.runs}  host: {os.uname().release}, {os.cpu_count()} CPUs")
    print(render(results, args.ps_count))
    for label, r in results.items():
        m = r.get("monitor memory")
        if isinstance(m, dict):
            print(f"  {label} monitor processes: {', '.join(m['processes'])}")
    finish(notes, args.json, {"runs": args.runs, "results": results})
    return 0


def finish(notes: list[str], json_path: str | None, raw: dict[str, object]) -> None:
    """Print the notes under the table; keep the raw numbers when ``--json`` asked for them."""
    for note in notes:
        print(note)
    if json_path:
        Path(json_path).write_text(json.dumps({**raw, "notes": notes}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
