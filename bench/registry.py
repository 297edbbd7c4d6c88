"""Registry throughput: berth push/pull against skopeo (and docker), side by side in one run.

    .venv/bin/python bench/registry.py [--runs 3] [--size-mb 300] [--layers 4] [--content text]
                                       [--engines berth,skopeo,docker] [--json out.json]

Everything talks to Debian's ``docker-registry`` on 127.0.0.1 (``tests.support.registry``);
no other network traffic. The bench image is made here: ``--layers`` layers of random bytes
(incompressible, so gzip saves nothing and every byte crosses the wire; ``--content text``:
words from a small vocabulary, which gzip shrinks about threefold), ``--size-mb`` in all,
written as a docker-archive tarball that berth and docker ``load`` and skopeo reads directly.

- ``push``: each run goes to a registry started for that run alone (fresh repository, no blob
  the registry already has, no cross-repository mount), from the image in the engine's store
  (skopeo: from the docker-archive). berth, skopeo and docker all gzip the layers on the way
  (berth stores a pushed piece that does not compress instead of deflating it; random bytes
  never compress). skopeo is also timed pushing stored gzip blobs from a ``dir:`` copy: pure
  upload, no compression at all.
- ``pull``: from one registry seeded once by skopeo (gzip layers); before each run the image is
  removed (``rmi``) so no layer is present. berth and docker also unpack into their stores;
  skopeo only downloads and verifies blobs into a ``dir:`` destination.

MB/s = the image's uncompressed layer bytes / wall time of the CLI command; median of
``--runs`` (no warm-up: 300 MB moves are not dominated by first-use costs). The engines take
turns run by run (berth, skopeo, docker, berth, ...), so on a shared machine whose load comes
and goes they all meet the same conditions. berth runs on a
berthd of the bench's own; docker when ``docker info`` answers (127.0.0.1 is an insecure
registry for docker by default). Everything the bench makes is removed at the end: registries,
the berthd, docker images it tagged, temp dirs.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (  # noqa: E402
    REPO,
    OwnBerthd,
    answering,
    check,
    finish,
    summary,
    timed_wait4,
)

sys.path.insert(0, str(REPO))

from tests.support.registry import Registry, start_registry  # noqa: E402

LOCAL_REF = "berth-bench/registry:latest"
CHUNK = 1 << 20


def text_bytes(size: int, seed: int) -> bytes:
    """Compressible filler: words of a fixed vocabulary in a random order (no two layers alike)."""
    rng = random.Random(seed)
    vocabulary = [bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 10)))
                  for _ in range(2000)]
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rng.choices(vocabulary, k=4096)) + b"\n"
    return bytes(out[:size])


def make_image(work: Path, size_mb: int, layers: int,
               content: str = "random") -> tuple[Path, int]:
    """A docker-archive of ``layers`` layers of random files; returns (path, layer bytes)."""
    folder = work / "archive"
    folder.mkdir()
    per_layer = size_mb * CHUNK // layers
    diff_ids, layer_paths, total = [], [], 0
    for n in range(layers):
        raw = folder / f"layer{n}.tar"
        with tarfile.open(raw, "w", format=tarfile.PAX_FORMAT) as tar:
            for f in range(3):  # a few files per layer, as real layers have
                data = os.urandom(per_layer // 3) if content == "random" else \
                    text_bytes(per_layer // 3, n * 3 + f)
                info = tarfile.TarInfo(f"bench/l{n}/f{f}.bin")
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
        digest = hashlib.sha256()
        with open(raw, "rb") as fh:
            while block := fh.read(CHUNK):
                digest.update(block)
        hexpart = digest.hexdigest()
        (folder / hexpart).mkdir()
        raw.rename(folder / hexpart / "layer.tar")
        diff_ids.append(f"sha256:{hexpart}")
        layer_paths.append(f"{hexpart}/layer.tar")
        total += (folder / hexpart / "layer.tar").stat().st_size
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": f"bench layer {i}"}
                    for i in range(layers)],
    }).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    (folder / config_name).write_bytes(config)
    (folder / "manifest.json").write_text(json.dumps(
        [{"Config": config_name, "RepoTags": [LOCAL_REF], "Layers": layer_paths}]))
    out = work / "bench-image.tar"
    with tarfile.open(out, "w") as tar:
        for entry in sorted(folder.iterdir()):
            tar.add(entry, arcname=entry.name)
    shutil.rmtree(folder)
    return out, total


class Registries:
    """Registries on 127.0.0.1, each under its own temp folder; all stopped in ``stop``."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.running: list[Registry] = []

    def start(self) -> Registry:
        reg = start_registry(self.work / f"registry-{secrets.token_hex(4)}")
        self.running.append(reg)
        return reg

    def drop(self, reg: Registry) -> None:
        reg.stop()
        self.running.remove(reg)
        shutil.rmtree(reg.root, ignore_errors=True)

    def stop(self) -> None:
        for reg in list(self.running):
            self.drop(reg)


def timed(argv: list[str], what: str) -> float:
    return check(timed_wait4(argv), what).wall


def run_cli(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed: {done.stderr.decode()[-500:]}")


class CliEngine:
    """berth or docker: load once; push to a fresh registry per run; pull after ``rmi``."""

    def __init__(self, cli: list[str], label: str, image: Path, regs: Registries, seed: str,
                 tags: list[str]) -> None:
        self.cli, self.label, self.image, self.regs, self.seed = cli, label, image, regs, seed
        self.tags = tags  # what this engine has tagged: removed at the end if still there

    def before(self, op: str) -> None:
        if op == "push":
            run_cli([*self.cli, "load", "-i", str(self.image)], f"{self.label} load")
            self.tags.append(LOCAL_REF)
        else:  # no local layer left for the pulls
            run_cli([*self.cli, "rmi", LOCAL_REF], f"{self.label} rmi")
            self.tags.remove(LOCAL_REF)

    def once(self, op: str) -> dict[str, float]:
        return self._push_once() if op == "push" else self._pull_once()

    def _push_once(self) -> dict[str, float]:
        reg = self.regs.start()
        try:
            ref = f"{reg.host}/bench/{self.label}-{secrets.token_hex(3)}:latest"
            run_cli([*self.cli, "tag", LOCAL_REF, ref], f"{self.label} tag")
            self.tags.append(ref)
            took = timed([*self.cli, "push", ref], f"{self.label} push")
            run_cli([*self.cli, "rmi", ref], f"{self.label} rmi")
            self.tags.remove(ref)
            return {"push": took}
        finally:
            self.regs.drop(reg)

    def _pull_once(self) -> dict[str, float]:
        self.tags.append(self.seed)
        took = timed([*self.cli, "pull", self.seed], f"{self.label} pull")
        run_cli([*self.cli, "rmi", self.seed], f"{self.label} rmi")
        self.tags.remove(self.seed)
        return {"pull": took}


class Skopeo:
    """push from the docker-archive (and, upload alone, of stored gzip blobs from a ``dir:``
    copy); pull into a ``dir:`` destination."""

    label = "skopeo"
    insecure = ["--src-tls-verify=false", "--dest-tls-verify=false"]

    def __init__(self, image: Path, regs: Registries, seed: str, work: Path) -> None:
        self.image, self.regs, self.seed, self.work = image, regs, seed, work
        self.stored = work / "skopeo-stored"

    def before(self, op: str) -> None:
        if op == "push":
            run_cli(["skopeo", "copy", "--quiet", *self.insecure, f"docker://{self.seed}",
                     f"dir:{self.stored}"], "skopeo pull to dir")
        else:
            shutil.rmtree(self.stored, ignore_errors=True)

    def once(self, op: str) -> dict[str, float]:
        if op == "pull":
            dest = self.work / f"skopeo-dir-{secrets.token_hex(3)}"
            try:
                return {"pull": timed(["skopeo", "copy", "--quiet", *self.insecure,
                                       f"docker://{self.seed}", f"dir:{dest}"], "skopeo pull")}
            finally:
                shutil.rmtree(dest, ignore_errors=True)
        return {"push": self._push(f"docker-archive:{self.image}"),
                "push_stored": self._push(f"dir:{self.stored}")}

    def _push(self, source: str) -> float:
        reg = self.regs.start()
        try:
            return timed(["skopeo", "copy", "--quiet", *self.insecure, source,
                          f"docker://{reg.host}/bench/skopeo:latest"], "skopeo push")
        finally:
            self.regs.drop(reg)


def measure(engines: list[CliEngine | Skopeo], runs: int) -> dict[str, dict[str, object]]:
    """Every op run by run, engine after engine in each run: all see the same machine load."""
    times: dict[str, dict[str, list[float]]] = {e.label: {} for e in engines}
    for op in ("push", "pull"):
        for engine in engines:
            engine.before(op)
        for n in range(runs):
            for engine in engines:
                print(f"  {op} {n + 1}/{runs}: {engine.label} ...", file=sys.stderr, flush=True)
                for key, took in engine.once(op).items():
                    times[engine.label].setdefault(key, []).append(took)
    return {label: {key: summary(values) for key, values in ops.items()}
            for label, ops in times.items()}


def render(results: dict[str, dict[str, object]], size: int) -> str:
    labels = list(results)
    mb = size / 1e6
    bases = [b for b in ("skopeo", "docker") if b in results and "berth" in results]
    head = "| op | " + " | ".join(f"{x} MB/s (median s)" for x in labels)
    head += "".join(f" | berth/{b} |" if i == 0 else f" berth/{b} |"
                    for i, b in enumerate(bases)) or " |"
    lines = [head, "|---|" + "---|" * (len(labels) + len(bases))]
    for op in ("push", "pull"):
        cells = []
        for label in labels:
            s = results[label][op]
            assert isinstance(s, dict)
            cells.append(f"{mb / s['median']:.0f} ({s['median']:.2f})")
        line = f"| {op} | " + " | ".join(cells) + " |"
        for b in bases:  # ratio of throughputs: > 1 means berth is faster
            own, other = results["berth"][op], results[b][op]
            assert isinstance(own, dict) and isinstance(other, dict)
            line += f" {other['median'] / own['median']:.2f} |"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="timed runs per measurement (default 3)")
    p.add_argument("--size-mb", type=int, default=300, help="image size in MiB (default 300)")
    p.add_argument("--content", choices=("random", "text"), default="random",
                   help="layer bytes: random (incompressible, the default) or text")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--engines", default="berth,skopeo,docker")
    p.add_argument("--json", help="also write the raw results here")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/registry.py: berthd needs root", file=sys.stderr)
        return 2
    engines = args.engines.split(",")
    work = Path(tempfile.mkdtemp(prefix="berth-bench-registry-"))
    regs = Registries(work)
    results: dict[str, dict[str, object]] = {}
    notes: list[str] = []
    own: OwnBerthd | None = None
    docker_tags: list[str] = []
    size = 0
    try:
        print("making the image ...", file=sys.stderr, flush=True)
        image, size = make_image(work, args.size_mb, args.layers, args.content)
        seed_reg = regs.start()
        seed = f"{seed_reg.host}/bench/seed:latest"
        run_cli(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                 f"docker-archive:{image}", f"docker://{seed}"], "seeding the registry")
        chosen: list[CliEngine | Skopeo] = []
        if "berth" in engines:
            own = OwnBerthd()
            chosen.append(CliEngine(own.cli, "berth", image, regs, seed, []))
        if "skopeo" in engines:
            chosen.append(Skopeo(image, regs, seed, work))
        if "docker" in engines:
            if answering(["docker", "info"]):
                chosen.append(CliEngine(["docker"], "docker", image, regs, seed, docker_tags))
            else:
                notes.append("docker: skipped (not installed or `docker info` does not answer)")
        print("measuring ...", file=sys.stderr, flush=True)
        results = measure(chosen, args.runs)
    finally:
        if docker_tags:
            subprocess.run(["docker", "rmi", "-f", *docker_tags], capture_output=True)
        if own is not None:
            own.stop()
        regs.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"runs={args.runs}  host: {os.uname().release}, {os.cpu_count()} CPUs; "
          f"{args.layers} layers of {args.content} bytes, {size / 1e6:.0f} MB; push = fresh "
          "registry per run, pull = after rmi; ratio = throughput berth / other (> 1: berth "
          "faster)")
    print(render(results, size))
    stored = results.get("skopeo", {}).get("push_stored")
    if isinstance(stored, dict):
        line = (f"skopeo push of stored gzip blobs (dir: source, no compression): "
                f"{size / 1e6 / stored['median']:.0f} MB/s ({stored['median']:.2f} s)")
        own_push = results.get("berth", {}).get("push")
        if isinstance(own_push, dict):
            line += f"; berth/skopeo {stored['median'] / own_push['median']:.2f}"
        print(line)
    finish(notes, args.json, {"runs": args.runs, "bytes": size, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
