"""A local Redis Cluster: 3 masters and 3 replicas on free loopback ports, for the tests
(``make test-cluster``) and the benchmark table (``bench/bench_table.py --redis-cluster``).

Started with the redis-server the project already uses (``store.embedded.find_redis_server``),
each node in its own folder with the embedded server's persistence settings, joined with CLUSTER
MEET, the 16384 slots split over the masters, one replica per master. ``stop()`` kills them all.
Nothing here is a fake: the service's cluster client talks to these servers as to any cluster.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.child_processes import die_with_parent, free_port
from store.embedded import find_redis_server, persistence_args

SLOTS = 16384


@dataclass
class Node:
    port: int
    bus_port: int
    folder: Path
    proc: subprocess.Popen | None = None
    node_id: str = ""

    def client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=5, decode_responses=True
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class LocalCluster:
    def __init__(
        self,
        workdir: Path,
        masters: int = 3,
        replicas: int = 1,
        fsync: str = "everysec",
        node_timeout_ms: int = 1000,
        tie_to_parent: bool = False,
    ) -> None:
        self.workdir = workdir
        self.n_masters = masters
        self.replicas = replicas
        self.fsync = fsync
        self.node_timeout_ms = node_timeout_ms
        # A benchmark killed by SIGKILL must not leave six servers behind. Opt-in: the signal
        # comes when the *thread* that started a node ends, and a test may restart one from a
        # short-lived thread.
        self.tie_to_parent = tie_to_parent
        self.binary = find_redis_server()
        self.nodes: list[Node] = []

    @property
    def url(self) -> str:
        """The service's URL for it: every master as a seed node."""
        seeds = ",".join(n.address for n in self.nodes[: self.n_masters])
        return f"redis+cluster://{seeds}"

    # -- life cycle ------------------------------------------------------------------------------
    def _spawn(self, node: Node) -> None:
        node.folder.mkdir(parents=True, exist_ok=True)
        log = open(node.folder / "redis.log", "ab")  # noqa: SIM115 - kept open by the process
        node.proc = subprocess.Popen(
            [self.binary, "--port", str(node.port), "--bind", "127.0.0.1",
             "--cluster-enabled", "yes", "--cluster-port", str(node.bus_port),
             "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(self.node_timeout_ms),
             # A replica takes over however long it was cut off (tests kill masters on purpose).
             "--cluster-replica-validity-factor", "0",
             "--dir", str(node.folder), *persistence_args(self.fsync)],
            stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent if self.tie_to_parent else None,
        )  # fmt: skip
        log.close()

    def start(self, timeout: float = 30.0) -> LocalCluster:
        total = self.n_masters * (1 + self.replicas)
        for i in range(total):
            node = Node(free_port(), free_port(), self.workdir / f"node-{i}")
            self.nodes.append(node)
            self._spawn(node)
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            self._wait_ping(node, deadline)
            node.node_id = node.client().execute_command("CLUSTER", "MYID")
        first = self.nodes[0].client()
        for node in self.nodes[1:]:
            first.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, node.bus_port)
        masters = self.nodes[: self.n_masters]
        per = SLOTS // self.n_masters
        for i, node in enumerate(masters):
            lo, hi = i * per, SLOTS - 1 if i == self.n_masters - 1 else (i + 1) * per - 1
            node.client().execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
        self._wait(lambda: all(self._known(n) >= total for n in self.nodes), deadline, "nodes meet")
        for i, node in enumerate(self.nodes[self.n_masters :]):
            master = masters[i % self.n_masters]
            node.client().execute_command("CLUSTER", "REPLICATE", master.node_id)
        self.wait_ok(deadline)
        return self

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.kill()
        for node in self.nodes:
            if node.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.proc.wait(timeout=10)

    # -- state ---------------------------------------------------------------------------------
    def _wait_ping(self, node: Node, deadline: float) -> None:
        def up() -> bool:
            try:
                return bool(node.client().ping())
            except redis.ConnectionError:
                assert node.proc is not None and node.proc.poll() is None, (
                    f"redis-server on {node.port} exited; see {node.folder / 'redis.log'}"
                )
                return False

        self._wait(up, deadline, f"node {node.port} answers")

    @staticmethod
    def _wait(check, deadline: float, what: str) -> None:
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"local cluster: {what} timed out")
            time.sleep(0.05)

    @staticmethod
    def _known(node: Node) -> int:
        return len(node.client().execute_command("CLUSTER", "NODES").strip().splitlines())

    def roles(self) -> dict[int, str]:
        """Port -> "master" or "slave", as each live node sees itself."""
        out = {}
        for node in self.live():
            with contextlib.suppress(redis.RedisError):
                out[node.port] = node.client().execute_command("ROLE")[0]
        return out

    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def masters(self) -> list[Node]:
        roles = self.roles()
        return [n for n in self.live() if roles.get(n.port) == "master"]

    def healthy(self) -> bool:
        """Every live node says the cluster is ok, and every live replica is in sync."""
        try:
            for node in self.live():
                c = node.client()
                if "cluster_state:ok" not in c.execute_command("CLUSTER", "INFO"):
                    return False
                role = c.execute_command("ROLE")
                if role[0] == "slave" and role[3] != "connected":
                    return False
            return len(self.masters()) == self.n_masters
        except redis.RedisError:
            return False

    def wait_ok(self, deadline: float | None = None) -> None:
        self._wait(self.healthy, deadline or time.monotonic() + 30, "cluster_state ok")

    def master_of(self, key: str) -> Node:
        """The master serving ``key``'s slot now."""
        c = self.masters()[0].client()
        slot = c.execute_command("CLUSTER", "KEYSLOT", key)
        for lo, hi, master, *_ in c.execute_command("CLUSTER", "SLOTS"):
            if lo <= slot <= hi:
                return next(n for n in self.nodes if n.port == int(master[1]))
        raise LookupError(f"no master serves slot {slot}")

    def replica_of(self, master: Node) -> Node:
        for node in self.live():
            role = node.client().execute_command("ROLE")
            if role[0] == "slave" and int(role[2]) == master.port:
                return node
        raise LookupError(f"no live replica of {master.port}")

    def kill(self, node: Node) -> None:
        """kill -9: no shutdown, no final fsync."""
        assert node.proc is not None
        node.proc.kill()
        node.proc.wait(timeout=10)

    def restart(self, node: Node) -> None:
        """Start a killed node again on its folder (it rejoins as its successor's replica)."""
        self._spawn(node)
        self._wait_ping(node, time.monotonic() + 30)

    def flush(self) -> None:
        for node in self.masters():
            node.client().flushall()
