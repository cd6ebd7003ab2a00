"""Throwaway Redis topologies on loopback: a 3-master Redis Cluster and a Sentinel-watched
master with a replica, built from `tests.servers.RedisServer` so they share its lifecycle
(free ports, temporary directories, clean-up at exit)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Self

import redis

from tests.servers import HOST, Lifecycle, RedisServer, find_binary, free_port

READY_TIMEOUT = 20.0  # seconds for a cluster to agree on its slots, a sentinel on its master
SERVICE = "tokensvc"  # the Sentinel service name


def client(port: int) -> redis.Redis:
    """A plain synchronous client of one node or sentinel, for set-up and inspection."""
    return redis.Redis(host=HOST, port=port, socket_timeout=2.0, socket_connect_timeout=2.0)


def _wait(what: str, ready: Callable[[], bool], timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except (OSError, redis.RedisError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} within {timeout:.0f}s")


class ClusterNode(RedisServer):
    def __init__(self) -> None:
        super().__init__()
        self.bus_port = free_port()  # not port + 10000, which may not exist

    def _argv(self, binary: str) -> list[str]:
        return [
            *super()._argv(binary),
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            str(self.bus_port),
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
        ]


class _Group(Lifecycle):
    """Servers started together, then made to work together (`_join`), and closed together;
    a failed start closes whatever it started."""

    def __init__(self, *servers: RedisServer) -> None:
        self._servers = servers
        self._stack = ExitStack()

    def _join(self) -> None:
        """Block until the started servers work together."""
        raise NotImplementedError

    def start(self) -> Self:
        for server in self._servers:
            self._stack.enter_context(server)
        self._join()
        return self

    def close(self) -> None:
        self._stack.close()


class RedisClusterServers(_Group):
    """Three masters sharing the 16384 slots (no replicas): every multi-key script that
    spans slots fails here with CROSSSLOT, as it would in production."""

    def __init__(self, masters: int = 3) -> None:
        self.nodes = [ClusterNode() for _ in range(masters)]
        super().__init__(*self.nodes)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{HOST}:{n.port}" for n in self.nodes)

    def _join(self) -> None:
        addresses = [f"{HOST}:{n.port}" for n in self.nodes]
        subprocess.run(
            [
                find_binary("redis-cli", "redis-tools"),
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        _wait("the cluster did not agree on its slots", self._agreed)

    def _agreed(self) -> bool:
        def ok(port: int) -> bool:
            with client(port) as node:
                return bool(node.cluster("INFO")["cluster_state"] == "ok")

        return all(ok(n.port) for n in self.nodes)


class SentinelNode(RedisServer):
    """A sentinel watching `master_port` (quorum 2 of 3, down after one second)."""

    def __init__(self, master_port: int) -> None:
        super().__init__()
        self.master_port = master_port

    def _argv(self, binary: str) -> list[str]:
        assert self.dir is not None
        config = Path(self.dir) / "sentinel.conf"
        if not config.exists():  # sentinel rewrites its file; a restart keeps what it learnt
            config.write_text(
                f"port {self.port}\nbind {HOST}\ndir {self.dir}\n"
                f"sentinel monitor {SERVICE} {HOST} {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
        return [binary, str(config), "--sentinel"]


class Replica(RedisServer):
    def __init__(self, master_port: int) -> None:
        super().__init__()
        self.master_port = master_port

    def _argv(self, binary: str) -> list[str]:
        return [*super()._argv(binary), "--replicaof", HOST, str(self.master_port)]


class SentinelServers(_Group):
    """A master, one replica and three sentinels: enough for a real failover."""

    def __init__(self) -> None:
        self.master = RedisServer()
        self.replica = Replica(self.master.port)
        self.sentinels = [SentinelNode(self.master.port) for _ in range(3)]
        super().__init__(self.master, self.replica, *self.sentinels)

    def url(self, db: int = 0) -> str:
        hosts = ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/{db}"

    def master_port(self) -> int:
        """The port the sentinels currently name as master."""
        with client(self.sentinels[0].port) as sentinel:
            _, port = sentinel.sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def _join(self) -> None:
        _wait(
            "the replica did not sync",
            lambda: self._info(self.replica.port).get("master_link_status") == "up",
        )
        _wait("the sentinels did not see each other and the replica", self._watching)

    @staticmethod
    def _info(port: int) -> dict[str, Any]:
        with client(port) as node:
            return dict(node.info("replication"))

    def _watching(self) -> bool:
        for port in (s.port for s in self.sentinels):
            with client(port) as sentinel:
                seen = sentinel.sentinel_master(SERVICE)
            if seen["num-other-sentinels"] != 2 or seen["num-slaves"] != 1:
                return False
        return True

    def fail_over(self) -> int:
        """Kill the master outright; return the port of the replica the sentinels promote."""
        old = self.master_port()
        (self.master if old == self.master.port else self.replica).stop()
        _wait("no failover", lambda: self.master_port() != old)
        new = self.master_port()
        _wait(
            "the promoted replica does not take writes", lambda: self._info(new)["role"] == "master"
        )
        return new
