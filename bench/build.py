"""Build speed: berth against docker's classic builder, side by side in one run.

    .venv/bin/python bench/build.py [--runs 3] [--engines berth,docker] [--json out.json]

A 10-step Dockerfile (FROM, ARG, ENV, WORKDIR, COPY, RUN, RUN, LABEL, EXPOSE, CMD) on the
busybox test image (tagged ``berth-bench/busybox:latest`` as in ``bench/run.py``), built from
the same context by each engine:

- ``cold``: ``build --no-cache`` (every step executed; the base image is already loaded);
- ``rebuild``: the same build again with nothing changed (every step a cache hit).

berth runs on a berthd of the bench's own (temp data root, removed at the end). docker is used
when ``docker info`` answers, with ``DOCKER_BUILDKIT=0`` (the classic builder, which the docker
CLI uses anyway when no buildx plugin is installed); skipped with a note otherwise. Every image
the bench tags is removed afterwards. Numbers are medians (and p90) of ``--runs`` timed runs
after one warm-up; the issue's goal is berth's no-change rebuild faster than docker's.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (  # noqa: E402 - bench/ is not a package
    BENCH_REF,
    OwnBerthd,
    answering,
    bench_image,
    check,
    finish,
    summary,
    timed_wait4,
)

DOCKERFILE = f"""\
FROM {BENCH_REF}
ARG GREETING=hello
ENV APP_HOME=/app PATH=/app/bin:$PATH
WORKDIR /app
COPY src/ /app/src/
RUN mkdir -p /app/bin && cp /app/src/tool.sh /app/bin/tool && chmod 755 /app/bin/tool
RUN echo "$GREETING" > /app/greeting && tool > /app/tool.out
LABEL org.example.bench=build
EXPOSE 8080/tcp
CMD ["tool"]
"""


def make_context(root: Path) -> Path:
    ctx = root / "context"
    (ctx / "src" / "data").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "src" / "tool.sh").write_text("#!/bin/sh\necho tool ran\n")
    for i in range(50):  # a small source tree for COPY to hash
        (ctx / "src" / "data" / f"f{i:02d}.txt").write_text(f"line {i}\n" * 100)
    return ctx


def measure(label: str, cli: list[str], env: dict[str, str], ctx: Path,
            runs: int) -> tuple[dict[str, object], list[str]]:
    tags: list[str] = []

    def build(*flags: str) -> float:
        tag = f"berth-bench/build:{secrets.token_hex(4)}"
        tags.append(tag)
        t = check(timed_wait4([*cli, "build", "-q", *flags, "-t", tag, str(ctx)], env),
                  f"{label} build")
        return t.wall

    build("--no-cache")  # warm-up: page cache, daemon code paths
    cold = [build("--no-cache") for _ in range(runs)]
    rebuild = [build() for _ in range(runs)]
    return {"cold": summary(cold), "rebuild": summary(rebuild)}, tags


def render(results: dict[str, dict[str, object]]) -> str:
    labels = list(results)
    lines = ["| step | " + " | ".join(f"{x} median (p90)" for x in labels)
             + (" | berth/docker |" if "docker" in results else " |"),
             "|---|" + "---|" * len(labels) + ("---|" if "docker" in results else "")]
    for row in ("cold", "rebuild"):
        cells = []
        for label in labels:
            s = results[label][row]
            assert isinstance(s, dict)
            cells.append(f"{s['median'] * 1000:.0f} ms ({s['p90'] * 1000:.0f})")
        line = f"| {row} | " + " | ".join(cells) + " |"
        if "docker" in results and "berth" in results:
            b, d = results["berth"][row], results["docker"][row]
            assert isinstance(b, dict) and isinstance(d, dict)
            line += f" {b['median'] / d['median']:.2f} |"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="timed runs per measurement (default 3)")
    p.add_argument("--engines", default="berth,docker")
    p.add_argument("--json", help="also write the raw results here")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/build.py: berthd needs root", file=sys.stderr)
        return 2
    engines = args.engines.split(",")
    work = Path(tempfile.mkdtemp(prefix="berth-bench-build-"))
    results: dict[str, dict[str, object]] = {}
    notes: list[str] = []
    own: OwnBerthd | None = None
    docker_tags: list[str] = []
    try:
        image = bench_image(work)
        ctx = make_context(work)
        if "berth" in engines:
            own = OwnBerthd()
            check(timed_wait4([*own.cli, "load", "-i", str(image)]), "berth load")
            print("measuring berth ...", file=sys.stderr, flush=True)
            results["berth"], _ = measure("berth", own.cli, dict(os.environ), ctx, args.runs)
        if "docker" in engines:
            if answering(["docker", "info"]):
                env = {**os.environ, "DOCKER_BUILDKIT": "0"}
                check(timed_wait4(["docker", "load", "-i", str(image)]), "docker load")
                print("measuring docker ...", file=sys.stderr, flush=True)
                results["docker"], docker_tags = measure("docker", ["docker"], env, ctx,
                                                         args.runs)
            else:
                notes.append("docker: skipped (not installed or `docker info` does not answer;"
                              " /work/shared/tools/anchors-setup.sh installs it)")
    finally:
        if docker_tags:
            subprocess.run(["docker", "rmi", "-f", *docker_tags, BENCH_REF],
                           capture_output=True)
        if own is not None:
            own.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"runs={args.runs}  host: {os.uname().release}, {os.cpu_count()} CPUs; "
          "10-step Dockerfile, cold = --no-cache, rebuild = nothing changed")
    print(render(results))
    finish(notes, args.json, {"runs": args.runs, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
