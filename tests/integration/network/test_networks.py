"""Container networking end to end: bridges, published ports, user networks with DNS.

Traffic stays on this machine: the tests talk to 127.0.0.1 and to the containers they make.
Every test removes what it created, even when it fails.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

HTTPD = "mkdir -p /www; echo {page} > /www/index.html; exec httpd -f -p 80 -h /www"


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback only
                return str(resp.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _inspect(daemon, ref: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    return json.loads(daemon.out("inspect", ref))[0]  # type: ignore[no-any-return]


def _bridge(daemon, network: str = "bridge") -> str:  # type: ignore[no-untyped-def]
    data = json.loads(daemon.out("network", "inspect", network))[0]
    opts = data["Options"]
    return opts.get("com.docker.network.bridge.name") or "br-" + data["Id"][:12]


def _links_on(bridge: str) -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show", "master", bridge],
                         capture_output=True, text=True).stdout
    return [line.split(":")[1].strip() for line in out.splitlines() if line.strip()]


def _nat_rules() -> str:
    return subprocess.run(["iptables-save", "-t", "nat"], capture_output=True,
                          text=True).stdout


@contextlib.contextmanager
def _cleanup(daemon, containers: list[str] | None = None,  # type: ignore[no-untyped-def]
             networks: list[str] | None = None) -> Iterator[None]:
    try:
        yield
    finally:
        if containers:
            daemon.cli("rm", "-f", *containers)
        for net in networks or ():
            daemon.cli("network", "rm", net)


def test_published_loopback_port_serves_the_page(daemon):
    port = _free_port()
    name = "pub-" + secrets.token_hex(4)
    with _cleanup(daemon, [name, name + "-2"]):
        cid = daemon.out("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80", "busybox",
                         "sh", "-c", HTTPD.format(page="hello-from-ctr")).strip()
        assert _get(f"http://127.0.0.1:{port}/") == "hello-from-ctr\n"
        assert daemon.out("port", name) == f"80/tcp -> 127.0.0.1:{port}\n"
        settings = _inspect(daemon, name)["NetworkSettings"]
        assert settings["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
        ip = settings["IPAddress"]
        assert ip and settings["Gateway"] and settings["MacAddress"].startswith("02:42:")
        bridge_net = settings["Networks"]["bridge"]
        assert bridge_net["IPAddress"] == ip and bridge_net["EndpointID"]
        assert f"127.0.0.1:{port}->80/tcp" in daemon.out("ps", "--format", "{{.Ports}}",
                                                         "--filter", f"name={name}")
        # the container's own /etc/hosts names it
        hosts = daemon.out("exec", name, "cat", "/etc/hosts").splitlines()
        assert hosts[-1] == f"{ip}\t{cid[:12]}"
        # a taken host port: Docker's message and exit status
        proc = daemon.cli("run", "--name", name + "-2", "-p", f"127.0.0.1:{port}:80",
                          "busybox", "true")
        assert proc.returncode == 125
        assert f"Bind for 127.0.0.1:{port} failed: port is already allocated" in \
            proc.stderr.decode()
        bridge = _bridge(daemon)
        assert _links_on(bridge)
        daemon.out("rm", "-f", name)
    assert f"--dport {port} " not in _nat_rules()
    assert not any(ip in line for line in _nat_rules().splitlines() if "DNAT" in line)


def _free_block(count: int) -> int:
    """The first of ``count`` consecutive ports free for TCP and UDP on every address."""
    for _ in range(50):
        base = _free_port()
        if base + count > 65535:
            continue
        socks = []
        try:
            for port in range(base, base + count):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    sock = socket.socket(socket.AF_INET, kind)
                    socks.append(sock)
                    sock.bind(("0.0.0.0", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise AssertionError("no block of free ports")


def test_case_027_publish_port_forms(daemon):
    """Case 027: ``[ip:][hostPort:]containerPort[/proto]``, ranges, conflicts, bad specs.

    Docker also lists ``[::]:<port>`` for the 0.0.0.0 bindings on IPv6 hosts; berth publishes
    IPv4 only (docs/compatibility.md).
    """
    base = _free_block(7)
    fixed, udp, pair, spread = base, base + 1, base + 2, base + 4  # pair: 2 ports, spread: 3
    name = "case027-" + secrets.token_hex(4)
    with _cleanup(daemon, [name, name + "-2"]):
        daemon.out("run", "-d", "--name", name, "-p", f"127.0.0.1:{fixed}:80",
                   "-p", "127.0.0.1::80", "-p", f"{udp}:80/udp",
                   "-p", f"{pair}-{pair + 1}:9000-9001", "-p", f"{spread}-{spread + 2}:8080",
                   "busybox", "sh", "-c", HTTPD.format(page="hello-from-ctr"))
        lines = sorted(daemon.out("port", name).splitlines())
        random_line = next(ln for ln in lines if ln.startswith("80/tcp -> 127.0.0.1:")
                           and ln != f"80/tcp -> 127.0.0.1:{fixed}")
        random_port = int(random_line.rsplit(":", 1)[1])
        assert random_port not in (fixed, 0)
        assert lines == sorted([
            f"80/tcp -> 127.0.0.1:{fixed}", random_line, f"80/udp -> 0.0.0.0:{udp}",
            f"8080/tcp -> 0.0.0.0:{spread}", f"9000/tcp -> 0.0.0.0:{pair}",
            f"9001/tcp -> 0.0.0.0:{pair + 1}"])
        assert _get(f"http://127.0.0.1:{fixed}/") == "hello-from-ctr\n"
        assert _get(f"http://127.0.0.1:{random_port}/") == "hello-from-ctr\n"
        exposed = _inspect(daemon, name)["Config"]["ExposedPorts"]
        assert set(exposed) == {"80/tcp", "80/udp", "8080/tcp", "9000/tcp", "9001/tcp"}

        proc = daemon.cli("run", "--rm", "--name", name + "-2", "-p", f"127.0.0.1:{fixed}:80",
                          "busybox", "true")
        assert proc.returncode == 125
        assert f"Bind for 127.0.0.1:{fixed} failed: port is already allocated" in \
            proc.stderr.decode().splitlines()[0]

    for spec, message in [
        (f"{base}-{base + 2}:8000-8001", "invalid ranges specified for container and host Ports: "
                                         f"8000-8001 and {base}-{base + 2}"),
        ("80/bogus", "invalid proto: bogus"),
    ]:
        proc = daemon.cli("run", "--rm", "-p", spec, "busybox", "true")
        assert proc.returncode == 125
        # the docker 28 CLI's words (the 20.10 CLI capitalised "Invalid")
        assert proc.stderr.decode() == (f"berth: {message}\n\n"
                                        "Run 'berth run --help' for more information\n")


def test_publish_all_exposed_ports_from_the_image(daemon):
    tag = "exposed-" + secrets.token_hex(4)
    src = tag + "-src"
    with _cleanup(daemon, [src, tag]):
        daemon.out("run", "--name", src, "busybox", "true")
        daemon.out("commit", "--change", "EXPOSE 80", src, tag)
        try:
            daemon.out("run", "-d", "--name", tag, "-P", tag,
                       "sh", "-c", HTTPD.format(page="from-P"))
            line = daemon.out("port", tag, "80")
            host_port = int(line.strip().rsplit(":", 1)[1])
            assert line.startswith("0.0.0.0:")
            assert _get(f"http://127.0.0.1:{host_port}/") == "from-P\n"
        finally:
            daemon.cli("rm", "-f", tag)
            daemon.cli("rmi", tag)


def test_published_udp_port(daemon):
    name = "udp-" + secrets.token_hex(4)
    with _cleanup(daemon, [name]):
        daemon.out("run", "-d", "--name", name, "-p", "127.0.0.1::9999/udp", "busybox",
                   "sleep", "60")
        host_port = int(daemon.out("port", name, "9999/udp").strip().rsplit(":", 1)[1])
        netns = _inspect(daemon, name)["NetworkSettings"]["SandboxKey"]
        # Debian's busybox has no UDP server applet: echo from inside the container's netns
        echo = ("import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                "s.bind(('0.0.0.0', 9999)); print('ready', flush=True); "
                "d, a = s.recvfrom(100); s.sendto(d.upper(), a)")
        with subprocess.Popen(["nsenter", f"--net={netns}", sys.executable, "-c", echo],
                              stdout=subprocess.PIPE) as server:
            try:
                assert server.stdout is not None and server.stdout.readline() == b"ready\n"
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.settimeout(5)
                    s.sendto(b"ping", ("127.0.0.1", host_port))
                    assert s.recvfrom(100)[0] == b"PING"
            finally:
                server.kill()


def test_user_network_resolves_names_and_aliases(daemon):
    suffix = secrets.token_hex(4)
    net, web = "appnet-" + suffix, "web-" + suffix
    with _cleanup(daemon, [web], [net]):
        daemon.out("network", "create", net)
        daemon.out("run", "-d", "--name", web, "--network", net, "--network-alias",
                   "alias-" + suffix, "busybox", "sh", "-c", HTTPD.format(page="by-name"))
        out = daemon.out("run", "--rm", "--network", net, "busybox", "sh", "-c",
                         f"cat /etc/resolv.conf; for i in 1 2 3 4 5 6 7 8 9 10; do "
                         f"wget -qO- http://{web}/ && break; sleep 0.2; done; "
                         f"wget -qO- http://alias-{suffix}/")
        assert "nameserver 127.0.0.11" in out and "options ndots:0" in out
        assert out.endswith("by-name\nby-name\n"), out
        info = json.loads(daemon.out("network", "inspect", net))[0]
        assert [c["Name"] for c in info["Containers"].values()] == [web]
        proc = daemon.cli("network", "rm", net)
        assert proc.returncode != 0 and b"has active endpoints" in proc.stderr
        # the default bridge has no embedded DNS: nothing answers at 127.0.0.11
        proc = daemon.cli("run", "--rm", "busybox", "nslookup", "-timeout=1", web,
                          "127.0.0.11")
        assert proc.returncode != 0
        bridge = _bridge(daemon, net)
        daemon.out("rm", "-f", web)
        daemon.out("network", "rm", net)
        assert subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode


def test_connect_and_disconnect_a_running_container(daemon):
    suffix = secrets.token_hex(4)
    net, box = "conn-" + suffix, "box-" + suffix
    with _cleanup(daemon, [box], [net]):
        daemon.out("network", "create", "--subnet", "10.231.7.0/24", net)
        daemon.out("run", "-d", "--name", box, "busybox", "sleep", "60")
        daemon.out("network", "connect", "--alias", "extra-" + suffix, net, box)
        addrs = daemon.out("exec", box, "ip", "-o", "-4", "addr")
        assert "eth1" in addrs and "10.231.7.2/24" in addrs
        nets = _inspect(daemon, box)["NetworkSettings"]["Networks"]
        assert set(nets) == {"bridge", net} and "extra-" + suffix in nets[net]["Aliases"]
        daemon.out("network", "disconnect", net, box)
        assert "eth1" not in daemon.out("exec", box, "ip", "-o", "link")


def test_network_none_has_only_loopback(daemon):
    out = daemon.out("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link")
    assert [line.split(":")[1].strip() for line in out.splitlines()] == ["lo"]


def test_network_host_sees_the_host_interfaces(daemon):
    host = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    first = next(line.split(":")[1].strip() for line in host.splitlines()
                 if ": lo:" not in line)
    out = daemon.out("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link")
    assert f": {first.split('@')[0]}" in out


def test_hosts_file_with_hostname_and_add_host(daemon):
    out = daemon.out("run", "--rm", "--hostname", "web.example.com", "--add-host",
                     "db.internal:192.0.2.10", "busybox", "cat", "/etc/hosts")
    lines = out.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert lines[-2] == "192.0.2.10\tdb.internal"
    ip, names = lines[-1].split("\t")
    assert names == "web.example.com web" and ip.count(".") == 3


HOSTS_HEAD = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
              "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes",
              "ff02::2\tip6-allrouters"]


def _host_nameservers() -> list[str]:
    """The host's resolv.conf nameservers as a default-bridge container gets them."""
    with open("/etc/resolv.conf") as f:
        found = [ln.split()[1] for ln in f if ln.startswith("nameserver") and len(ln.split()) > 1]
    kept = [ns for ns in found if not ns.startswith("127.") and ns != "::1"]
    return kept or ["8.8.8.8", "8.8.4.4"]


def test_case_031_hostname_hosts_and_resolv_conf(daemon):
    """Case 031: hostname is the short ID, /etc/hosts and /etc/resolv.conf are generated per
    container (bind mounts: writable, never committed)."""
    suffix = secrets.token_hex(4)
    name, net, image = "case031-" + suffix, "case031net-" + suffix, "case031img-" + suffix
    with _cleanup(daemon, [name], [net]):
        cid = daemon.out("run", "-d", "--name", name, "--add-host", "db.internal:192.0.2.10",
                         "busybox", "sleep", "30").strip()
        short = cid[:12]
        assert daemon.out("exec", name, "hostname") == f"{short}\n"
        assert daemon.out("exec", name, "sh", "-c", "echo $HOSTNAME") == f"{short}\n"
        ip = _inspect(daemon, name)["NetworkSettings"]["IPAddress"]
        assert daemon.out("exec", name, "cat", "/etc/hosts").splitlines() == [
            *HOSTS_HEAD, "192.0.2.10\tdb.internal", f"{ip}\t{short}"]
        resolv = daemon.out("exec", name, "cat", "/etc/resolv.conf").splitlines()
        assert [ln.split()[1] for ln in resolv if ln.startswith("nameserver")] == \
            _host_nameservers()
        info = _inspect(daemon, name)
        assert all(info[key] for key in ("HostsPath", "ResolvConfPath", "HostnamePath"))
        # writable at run time, but not part of the container's changes
        daemon.out("exec", name, "sh", "-c",
                   "echo 192.0.2.99 extra >> /etc/hosts && echo x >> /etc/resolv.conf")
        daemon.out("commit", name, image)
        try:
            committed = daemon.out("run", "--rm", "--network", "none", "--entrypoint", "cat",
                                   image, "/etc/hosts")
            assert "extra" not in committed
        finally:
            daemon.cli("rmi", image)

        out = daemon.out("run", "--rm", "--hostname", "web.example.com", "busybox", "sh", "-c",
                         "hostname; tail -1 /etc/hosts")
        first, last = out.splitlines()
        assert first == "web.example.com"
        host_ip, names = last.split("\t")
        assert names == "web.example.com web" and host_ip.count(".") == 3

        out = daemon.out("run", "--rm", "--dns", "192.0.2.53", "--dns-search", "corp.example",
                         "--dns-option", "ndots:2", "busybox", "cat", "/etc/resolv.conf")
        assert out.splitlines() == ["search corp.example", "nameserver 192.0.2.53",
                                    "options ndots:2"]

        daemon.out("network", "create", net)
        out = daemon.out("run", "--rm", "--network", net, "busybox", "grep", "-E",
                         "^(nameserver|options)", "/etc/resolv.conf")
        assert out.splitlines() == ["nameserver 127.0.0.11", "options ndots:0"]


def test_restart_keeps_ports_and_stop_leaves_nothing(fresh_daemon, test_images):
    d = fresh_daemon
    d.out("load", "-i", str(test_images.busybox_docker_tar))
    name = "keep-" + secrets.token_hex(4)
    d.out("network", "create", "own-" + name)
    d.out("run", "-d", "--name", name, "-p", "127.0.0.1::80", "busybox", "sh", "-c",
          HTTPD.format(page="survives"))
    port = int(d.out("port", name, "80").strip().rsplit(":", 1)[1])
    assert _get(f"http://127.0.0.1:{port}/") == "survives\n"
    bridges = [_bridge(d), _bridge(d, "own-" + name)]
    prefix = bridges[0].upper() + "-"
    d.restart()
    assert _get(f"http://127.0.0.1:{port}/") == "survives\n"
    d.out("rm", "-f", name)
    d.out("network", "rm", "own-" + name)
    assert f"--dport {port} " not in _nat_rules()
    d.stop()
    for bridge in bridges:
        assert subprocess.run(["ip", "link", "show", bridge],
                              capture_output=True).returncode != 0, bridge
    rules = _nat_rules() + subprocess.run(["iptables-save", "-t", "filter"],
                                          capture_output=True, text=True).stdout
    assert prefix not in rules
    assert not list((d.exec_root / "netns").glob("*"))


@pytest.mark.parametrize("args", [["--network", "nosuchnet"]])
def test_unknown_network_is_refused(daemon, args):
    proc = daemon.cli("run", "--rm", *args, "busybox", "true")
    assert proc.returncode == 125
    assert b"network nosuchnet not found" in proc.stderr
