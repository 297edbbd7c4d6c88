"""Throughput of a download through a published port: kernel DNAT (berth's choice) against the
container's address directly and against a userland proxy (an asyncio relay, the shape a proxy
inside berthd would take).

    python bench/network_publish.py -H unix:///run/berth/berth.sock [--mb 200] [--docker]

With ``--docker`` the same server also runs under the real docker (when its daemon answers), and
its published port (docker-proxy for 127.0.0.1) is measured in the same run.

Traffic stays on this host: 127.0.0.1 and the container's own address.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request


def _berth(host: str, *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "berth.cli.main", "-H", host, *args],
                          check=True, capture_output=True, text=True).stdout


def _download(url: str) -> float:
    start = time.perf_counter()
    total = 0
    with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - local only
        while chunk := resp.read(1 << 20):
            total += len(chunk)
    return total / (time.perf_counter() - start) / 1e6


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1 << 16):
        writer.write(data)
        await writer.drain()
    writer.close()


def _start_proxy(target: str, port: int) -> tuple[asyncio.AbstractEventLoop, int]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    bound: list[int] = []

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        tr, tw = await asyncio.open_connection(target, port)
        await asyncio.gather(_relay(r, tw), _relay(tr, w))

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        bound.append(server.sockets[0].getsockname()[1])
        ready.set()
        await server.serve_forever()

    threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True).start()
    ready.wait()
    return loop, bound[0]


def _wait_http(ip: str) -> None:
    deadline = time.monotonic() + 60
    while True:  # dd writes the file before httpd starts
        try:
            urllib.request.urlopen(f"http://{ip}/", timeout=2).close()  # noqa: S310
        except urllib.error.HTTPError:
            return  # httpd answers (404 for /)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        else:
            return


def _measure(label: str, url: str, mb: int) -> None:
    rates = sorted(_download(url) for _ in range(3))
    print(f"{label:26} {rates[1]:8.0f} MB/s (median of 3, {mb} MB)")


def _serve(cli: list[str], script: str) -> tuple[str, str, str]:
    """(container id, its address, its published host port) of an httpd container."""
    cid = subprocess.run([*cli, "run", "-d", "-p", "127.0.0.1::80", "busybox", "sh", "-c",
                          script], check=True, capture_output=True, text=True).stdout.strip()
    info = json.loads(subprocess.run([*cli, "inspect", cid], check=True, capture_output=True,
                                     text=True).stdout)[0]["NetworkSettings"]
    return cid, info["IPAddress"], info["Ports"]["80/tcp"][0]["HostPort"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-H", "--host", required=True)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--docker", action="store_true", help="also measure the real docker")
    args = ap.parse_args()
    script = (f"mkdir -p /www && dd if=/dev/zero of=/www/big bs=1M count={args.mb} 2>/dev/null"
              " && exec httpd -f -p 80 -h /www")
    berth = [sys.executable, "-m", "berth.cli.main", "-H", args.host]
    cid, ip, host_port = _serve(berth, script)
    try:
        _wait_http(ip)
        _, proxy_port = _start_proxy(ip, 80)
        _measure("berth direct", f"http://{ip}/big", args.mb)
        _measure("berth published (DNAT)", f"http://127.0.0.1:{host_port}/big", args.mb)
        _measure("userland proxy (asyncio)", f"http://127.0.0.1:{proxy_port}/big", args.mb)
    finally:
        _berth(args.host, "rm", "-f", cid)
    docker = ["docker", "-H", "unix:///var/run/docker.sock"]
    if args.docker and subprocess.run([*docker, "info"], capture_output=True).returncode == 0:
        cid, ip, host_port = _serve(docker, script)
        try:
            _wait_http(ip)
            _measure("docker direct", f"http://{ip}/big", args.mb)
            _measure("docker published", f"http://127.0.0.1:{host_port}/big", args.mb)
        finally:
            subprocess.run([*docker, "rm", "-f", cid], capture_output=True)


if __name__ == "__main__":
    main()
