"""Throughput of a download through a published port: kernel DNAT (berth's choice) against the
container's address directly and against a userland proxy (an asyncio relay, the shape a proxy
inside berthd would take).

    python bench/network_publish.py -H unix:///run/berth/berth.sock [--mb 200]

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-H", "--host", required=True)
    ap.add_argument("--mb", type=int, default=200)
    args = ap.parse_args()
    script = (f"mkdir -p /www && dd if=/dev/zero of=/www/big bs=1M count={args.mb} 2>/dev/null"
              " && exec httpd -f -p 80 -h /www")
    cid = _berth(args.host, "run", "-d", "-p", "127.0.0.1::80", "busybox", "sh", "-c",
                 script).strip()
    try:
        info = json.loads(_berth(args.host, "inspect", cid))[0]["NetworkSettings"]
        host_port = info["Ports"]["80/tcp"][0]["HostPort"]
        ip = info["IPAddress"]
        deadline = time.monotonic() + 60
        while True:  # dd writes the file before httpd starts
            try:
                urllib.request.urlopen(f"http://{ip}/", timeout=2).close()  # noqa: S310
            except urllib.error.HTTPError:
                break  # httpd answers (404 for /)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
            else:
                break
        _, proxy_port = _start_proxy(ip, 80)
        for label, url in (("direct", f"http://{ip}/big"),
                           ("published (DNAT)", f"http://127.0.0.1:{host_port}/big"),
                           ("userland proxy", f"http://127.0.0.1:{proxy_port}/big")):
            rates = sorted(_download(url) for _ in range(3))
            print(f"{label:18} {rates[1]:8.0f} MB/s (median of 3, {args.mb} MB)")
    finally:
        _berth(args.host, "rm", "-f", cid)


if __name__ == "__main__":
    main()
