"""Install, start and stop the peer brokers the suite measures dledgermq against.

    python -m bench.peers install          # apt-get the missing Debian packages
    python -m bench.peers smoke            # start each peer, declare its queue, stop it

- `NatsCluster`: three `nats-server` processes on free loopback ports as one JetStream
  cluster (own store dir each, routes between them), and a file-storage stream with 3
  replicas.
- `RabbitMQ`: one `rabbitmq-server` node in a temp dir with its own node name, ports
  and epmd, and a quorum queue. One node, not three: three Erlang VMs next to the
  dledgermq group and the load client on a 2-core machine is not practical (each node
  alone takes seconds of both cores to boot), so its quorum has a single member.

Everything started here is stopped by PID: the processes we spawned, plus the
descendants they spawned (recorded with their start time so a recycled PID is never
signalled). Nothing we did not start is touched. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.raft import free_port

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
# name -> (Debian package, executable that proves it is installed)
PACKAGES = {
    "nats": ("nats-server", "nats-server"),
    "rabbitmq": ("rabbitmq-server", str(RABBITMQ_BIN / "rabbitmq-server")),
}
STREAM = "BENCH"
SUBJECT = "bench.publish"
QUEUE = "bench-quorum"


class PeerUnavailable(RuntimeError):
    """A peer did not start this time; the suite skips it for this run with the reason."""


class PeerMissing(PeerUnavailable):
    """A peer cannot be had at all (package or client missing): skipped for every run."""


# --- installing ---------------------------------------------------------------------------


def _require_client(module: str, package: str) -> None:
    """The Python client is an optional extra; without it the peer is skipped, not failed."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise PeerMissing(f"{package} is not installed (pip install -e '.[bench]')")


def installed(name: str) -> bool:
    executable = PACKAGES[name][1]
    return Path(executable).is_file() if "/" in executable else shutil.which(executable) is not None


def install(names: tuple[str, ...] = ("nats", "rabbitmq")) -> dict[str, str | None]:
    """apt-get install the missing peers; returns name -> None if usable, else the reason.

    Never raises for a peer that cannot be had: the suite prints the reason and skips it.
    (Debian's maintainer scripts would start rabbitmq-server as a system service where no
    policy-rc.d forbids it; in containers one does, and we start our own node anyway.)
    """
    missing = [PACKAGES[n][0] for n in names if not installed(n)]
    reasons: dict[str, str | None] = {}
    failure = ""
    if missing:
        if shutil.which("apt-get") is None:
            failure = "apt-get not found"
        else:
            print(f"installing {' '.join(missing)} with apt-get", file=sys.stderr, flush=True)
            failure = _apt_install(missing)
    for name in names:
        package, executable = PACKAGES[name]
        missing_after = failure or f"installed, but {executable} is not found"
        reasons[name] = None if installed(name) else f"{package}: {missing_after}"
    return reasons


def _apt_install(packages: list[str]) -> str:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    for attempt in range(2):
        try:
            done = subprocess.run(
                argv, check=False, env=env, capture_output=True, text=True, timeout=900
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"apt-get failed: {exc}"
        if done.returncode == 0:
            return ""
        if attempt == 0:  # Stale or missing package lists: refresh once and retry.
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(
                    ["apt-get", "update"], check=False, env=env, capture_output=True, timeout=300
                )
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return f"apt-get install exited {done.returncode}: {' / '.join(tail)}"


# --- processes we own ---------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: tells a live process from a later one with its PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class Owned:
    """The processes one peer started: direct children and recorded descendants."""

    procs: list[subprocess.Popen] = field(default_factory=list)
    recorded: dict[int, str] = field(default_factory=dict)  # pid -> start time

    def spawn(self, argv: list[str], log: Path, **kwargs: object) -> subprocess.Popen:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
            )
        self.procs.append(proc)
        return proc

    def record_descendants(self) -> None:
        """Remember our children's children while they are still ours to find."""
        for proc in self.procs:
            for pid in _descendants(proc.pid):
                started = _start_time(pid)
                if started is not None:
                    self.recorded.setdefault(pid, started)

    def stop(self, grace_s: float = 10.0) -> None:
        self.record_descendants()
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        deadline = time.monotonic() + grace_s
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
        for pid, started in self.recorded.items():
            if _start_time(pid) == started:  # Still the process we recorded.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.procs.clear()
        self.recorded.clear()


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " / ".join(text[-lines:])


# --- NATS JetStream ---------------------------------------------------------------------

NATS_CONFIG = """
server_name: {name}
listen: 127.0.0.1:{port}
http: 127.0.0.1:{http}
jetstream {{ store_dir: "{store}", max_memory_store: 256MB, max_file_store: 16GB }}
cluster {{
  name: bench
  listen: 127.0.0.1:{route}
  routes: [{routes}]
}}
"""


class NatsCluster:
    """Three nats-server processes, one JetStream cluster, one R3 file-storage stream."""

    name = "nats"
    semantics = (
        "JetStream publish ack after the R3 stream's quorum stored the message "
        "(nats-server 2.9 file store: written, fsync on its own 2-minute timer; "
        "`sync_interval: always` only exists from 2.10)"
    )
    tuning = "GOMAXPROCS=1 per nats-server (three Go runtimes on two shared cores)"

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.owned = Owned()
        self.nodes = [f"n{i}" for i in (1, 2, 3)]
        self.ports = {n: (free_port(), free_port(), free_port()) for n in self.nodes}
        self.url = ""  # client URL of the server leading the stream, once started
        self.procs: dict[str, subprocess.Popen] = {}  # the live process of each node
        self.env: dict[str, str] = {}

    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{self.ports[n][0]}" for n in self.nodes]

    def start(self, timeout_s: float = 60.0) -> None:
        if not installed("nats"):
            raise PeerMissing("nats-server is not installed")
        _require_client("nats", "nats-py")
        # Three Go runtimes on two shared cores: one P each, or their idle spinning costs
        # about three times the CPU per message (measured here); an explicit value wins.
        self.env = {**os.environ, "GOMAXPROCS": os.environ.get("GOMAXPROCS", "1")}
        for node in self.nodes:
            port, http, route = self.ports[node]
            routes = ", ".join(
                f"nats-route://127.0.0.1:{self.ports[o][2]}" for o in self.nodes if o != node
            )
            config = self.dir / f"{node}.conf"
            config.write_text(
                NATS_CONFIG.format(
                    name=node,
                    port=port,
                    http=http,
                    route=route,
                    routes=routes,
                    store=self.dir / node / "js",
                )
            )
            self._spawn(node)
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            self._wait_healthy(node, deadline)
        leader = asyncio.run(self._create_stream(deadline))
        self.url = f"nats://127.0.0.1:{self.ports[leader][0]}"

    def _spawn(self, node: str) -> None:
        binary = shutil.which("nats-server") or "nats-server"
        config = self.dir / f"{node}.conf"
        log = self.dir / f"{node}.log"
        self.procs[node] = self.owned.spawn([binary, "-c", str(config)], log, env=self.env)

    def kill(self, node: str) -> None:
        """SIGKILL one node (the failover scenario): our own child, by its PID."""
        proc = self.procs[node]
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def restart(self, node: str, timeout_s: float = 30.0) -> None:
        """Start a killed node again on its ports and store; returns once it is healthy."""
        self.owned.procs.remove(self.procs[node])
        self._spawn(node)
        self._wait_healthy(node, time.monotonic() + timeout_s)

    def _wait_healthy(self, node: str, deadline: float) -> None:
        url = f"http://127.0.0.1:{self.ports[node][1]}/healthz"
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    log = self.dir / f"{name}.log"
                    raise PeerUnavailable(f"nats-server {name} exited: {_log_tail(log)}")
            with (
                contextlib.suppress(OSError, ValueError),
                urllib.request.urlopen(url, timeout=1) as response,
            ):
                if json.loads(response.read()).get("status") == "ok":
                    return
            time.sleep(0.1)  # Polling another process's health endpoint.
        raise PeerUnavailable(f"nats {node} not healthy in time")

    async def _create_stream(self, deadline: float) -> str:
        """Add the R3 stream (retrying until the meta group has all peers); its leader."""
        import nats
        from nats.js.api import StorageType, StreamConfig

        client = await nats.connect(servers=self.urls(), connect_timeout=5)
        try:
            js = client.jetstream()
            config = StreamConfig(
                name=STREAM, subjects=[SUBJECT], storage=StorageType.FILE, num_replicas=3
            )
            last: Exception | None = None
            while time.monotonic() < deadline:
                try:
                    await js.add_stream(config)
                    info = await js.stream_info(STREAM)
                    if info.cluster and info.cluster.leader and info.config.num_replicas == 3:
                        return info.cluster.leader
                except Exception as exc:  # Not ready yet: no meta leader, peers missing.
                    last = exc
                await asyncio.sleep(0.2)
            raise PeerUnavailable(f"nats stream not ready in time: {last!r}")
        finally:
            await client.close()

    def stop(self) -> None:
        self.owned.stop()


# --- RabbitMQ ---------------------------------------------------------------------------


class RabbitMQ:
    """One rabbitmq-server node (own name, ports, epmd, data dir) and a quorum queue."""

    name = "rabbitmq"
    semantics = (
        "publisher confirm from a quorum queue (confirmed after the Ra log fsync); "
        "one node, so the quorum is that node alone"
    )
    tuning = "one node; Erlang schedulers without busy-waiting (+sbwt none), no plugins"

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.owned = Owned()
        self.port, self.dist_port, self.epmd_port = free_port(), free_port(), free_port()
        self.node = f"bench{os.getpid()}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self.server: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        base = self.dir
        (base / "rabbitmq-env.conf").touch()
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq.conf").write_text(
            "log.console = false\nlog.file.level = warning\ndisk_free_limit.absolute = 50MB\n"
        )
        return {
            **os.environ,
            "HOME": str(base),  # The Erlang cookie lives here, shared with rabbitmqctl.
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            # No scheduler busy-waiting: RabbitMQ's advice for hosts whose cores are shared.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                "-kernel inet_dist_use_interface {127,0,0,1} "
                "+sbwt none +sbwtdcpu none +sbwtdio none"
            ),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_CRASH_DUMP": str(base / "erl_crash.dump"),
        }

    def start(self, timeout_s: float = 180.0) -> None:
        if not installed("rabbitmq"):
            raise PeerMissing("rabbitmq-server is not installed")
        _require_client("aio_pika", "aio-pika")
        env = self.env()
        epmd = shutil.which("epmd")
        if epmd is None:
            raise PeerMissing("epmd (erlang-base) not found")
        # Our own epmd in the foreground on its own port: its PID is ours to stop, and it
        # cannot clash with an epmd someone else runs on 4369.
        self.owned.spawn(
            [epmd, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            self.dir / "epmd.log",
            env=env,
        )
        self.server = self.owned.spawn(
            [str(RABBITMQ_BIN / "rabbitmq-server")], self.dir / "server.log", env=env, cwd=self.dir
        )
        deadline = time.monotonic() + timeout_s
        asyncio.run(self._declare_queue(deadline))
        self.owned.record_descendants()

    async def _declare_queue(self, deadline: float) -> None:
        import aio_pika

        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.server is not None and self.server.poll() is not None:
                raise PeerUnavailable(
                    f"rabbitmq-server exited {self.server.returncode}: "
                    f"{_log_tail(self.dir / 'server.log')}"
                )
            try:
                # Probe the port first: aiormq logs every refused connection attempt.
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                connection = await aio_pika.connect(self.url, timeout=5)
            except Exception as exc:  # Still booting: connection refused or reset.
                last = exc
                await asyncio.sleep(0.5)
                continue
            async with connection:
                channel = await connection.channel()
                await channel.declare_queue(
                    QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
                )
                return
        raise PeerUnavailable(f"rabbitmq not reachable in time: {last!r}")

    def stop(self) -> None:
        """`rabbitmqctl stop` for a clean shutdown, then our recorded PIDs, epmd last."""
        self.owned.record_descendants()
        if self.server is not None and self.server.poll() is None:
            ctl = subprocess.Popen(
                [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node, "stop"],
                env=self.env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                ctl.wait(timeout=60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(ctl.pid, signal.SIGKILL)  # The group we just created.
                ctl.wait(timeout=10)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.server.wait(timeout=30)
        self.owned.stop()


# --- context managers and CLI -------------------------------------------------------------

Peer = NatsCluster | RabbitMQ


@contextlib.contextmanager
def running(kind: type[NatsCluster] | type[RabbitMQ]) -> Iterator[Peer]:
    """A started peer in a temp dir; stopped by PID on the way out, also on failure."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind.name}-") as tmp:
        peer = kind(Path(tmp))
        try:
            peer.start()
            yield peer
        finally:
            peer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("install", "smoke"))
    args = parser.parse_args()
    reasons = install()
    print(json.dumps({"install": reasons}), flush=True)
    if args.command == "smoke":
        for kind in (NatsCluster, RabbitMQ):
            if reasons[kind.name]:
                continue
            started = time.monotonic()
            try:
                with running(kind) as peer:
                    up = round(time.monotonic() - started, 2)
                    print(json.dumps({"peer": kind.name, "url": peer.url, "start_s": up}))
            except PeerUnavailable as exc:
                print(json.dumps({"peer": kind.name, "skipped": str(exc)}))


if __name__ == "__main__":
    main()
