"""Hosts as Linux network namespaces on one machine, joined by a bridge (root only).

``NetworkLab`` makes a bridge in the root namespace (the "internet": the test harness, the
WhatsApp sandboxes) with the gateway address ``10.<n>.0.1/24`` and, per host, a namespace
with loopback up and one veth pair: the inside end ``eth0`` carries the host's address, the
outside end is a port of the bridge. Cutting a host's network is taking its bridge port down
(nothing in or out; its sockets stay open and time out as on a real partition)::

    with NetworkLab("i17") as lab:
        db = lab.add_host("db")               # Host(name, netns, address)
        h1 = lab.add_host("h1")
        lab.exec_args(h1, "python", "-V")     # ip netns exec … unshare --uts (own hostname) …
        lab.link(h1, up=False)                # the partition
        lab.link(h1, up=True)

Every namespace, veth and the bridge are deleted on exit, failure or not; names carry a
random tag so two labs (or a lab left by a killed run) never collide.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass

LEFTOVER_PREFIX = "bgl"  # every name this module creates starts with it (cleanup of killed runs)


def netns_unavailable() -> str | None:
    """Why this machine cannot build a lab (None: it can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        return "the ip (iproute2) and unshare (util-linux) commands are missing"
    probe = f"{LEFTOVER_PREFIX}probe{secrets.token_hex(2)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def _ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", *(["-n", netns] if netns else []), *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")


@dataclass(frozen=True)
class Host:
    """One namespace: its name (also its hostname), its netns and its address on the bridge."""

    name: str
    netns: str
    address: str
    port_iface: str  # the bridge's end of its veth pair (root namespace)


class NetworkLab:
    """The bridge and the hosts (see module docstring)."""

    def __init__(self, label: str = "lab") -> None:
        self.tag = secrets.token_hex(2)
        self.subnet = 100 + int(self.tag, 16) % 100  # 10.<subnet>.0.0/24
        self.bridge = f"{LEFTOVER_PREFIX}br{self.tag}"
        self.label = label
        self.gateway = f"10.{self.subnet}.0.1"
        self.hosts: dict[str, Host] = {}

    def __enter__(self) -> NetworkLab:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add_host(self, name: str) -> Host:
        """A new namespace with loopback up and the next address on the bridge."""
        index = len(self.hosts) + 2
        netns = f"{LEFTOVER_PREFIX}{self.tag}{name}"
        outside, inside = f"{LEFTOVER_PREFIX}{self.tag}{name}o", f"{LEFTOVER_PREFIX}{self.tag}{name}i"
        host = Host(name, netns, f"10.{self.subnet}.0.{index}", outside)
        _ip("netns", "add", netns)
        self.hosts[name] = host
        _ip("link", "set", "lo", "up", netns=netns)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", netns)
        _ip("link", "set", inside, "name", "eth0", netns=netns)
        _ip("addr", "add", f"{host.address}/24", "dev", "eth0", netns=netns)
        _ip("link", "set", "eth0", "up", netns=netns)
        _ip("route", "add", "default", "via", self.gateway, netns=netns)
        _ip("link", "set", outside, "master", self.bridge)
        _ip("link", "set", outside, "up")
        return host

    def exec_args(self, host: Host, *command: str) -> list[str]:
        """``command`` run inside ``host``: its network namespace and its own hostname (UTS namespace)."""
        script = 'hostname "$0" && exec "$@"'
        return ["ip", "netns", "exec", host.netns, "unshare", "--uts", "sh", "-c", script, host.name, *command]

    def link(self, host: Host, *, up: bool) -> None:
        """Connect or cut ``host`` (its port on the bridge)."""
        _ip("link", "set", host.port_iface, "up" if up else "down")

    def close(self) -> None:
        """Delete every namespace (their veth ends go with them) and the bridge."""
        for host in list(self.hosts.values()):
            with contextlib.suppress(RuntimeError):
                _ip("netns", "del", host.netns)
            with contextlib.suppress(RuntimeError):
                _ip("link", "del", host.port_iface)
        self.hosts.clear()
        with contextlib.suppress(RuntimeError):
            _ip("link", "del", self.bridge)

