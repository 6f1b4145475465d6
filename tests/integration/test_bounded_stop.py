"""Stopping is bounded: every process ends within its bound after a stop request, whatever
state the broker is in, and whatever happens to the supervisor or its output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from order_engine.config import PROJECT_ROOT
from order_engine.ops.launch import child_settings, start_process, stop_process, worker_argv
from tests.support.servers import RedisServer
from tests.support.watchers import wait_until

pytestmark = pytest.mark.integration

# The shortest timings `Settings.checked` accepts (the task time limit must exceed the longest
# wait on the chain, CONFIRM_TIMEOUT_S + 4 × RPC_TIMEOUT_S): the worker's stop bound is 6 + 10 s.
STOP_BOUND_S = 16
SHORT_TIMINGS = {
    "CONFIRM_TIMEOUT_S": "1",
    "RPC_TIMEOUT_S": "1",
    "TASK_TIME_LIMIT_S": "6",
    "ORDER_LEASE_S": "7",
    "BROKER_VISIBILITY_TIMEOUT_S": "10",
    "ORDER_RETRY_BACKOFF_S": "0",
    "ORDER_RETRY_BACKOFF_MAX_S": "1",
    "WORKER_POOL": "threads",
    "WORKER_CONCURRENCY": "2",
}

# Children that log like Python's logging does: a failed write is swallowed, not fatal.
CHATTY_CHILD = """
import time
while True:
    try:
        print("tick", flush=True)
    except OSError:
        pass
    time.sleep(0.005)
"""
CHATTY_SUPERVISOR = f"""
import sys
from order_engine.ops.supervisor import Program, Supervisor

chatty = [sys.executable, "-c", {CHATTY_CHILD!r}]
sys.exit(Supervisor([Program("a", chatty), Program("b", chatty)], {{}}).run())
"""


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def test_the_supervisor_stops_its_children_after_its_stdout_is_gone():
    supervisor = subprocess.Popen(
        [sys.executable, "-c", CHATTY_SUPERVISOR],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert supervisor.stdout is not None
        wait_until(lambda: b"tick" in supervisor.stdout.readline(), 10, "the children to print")
        children = descendants(supervisor.pid)
        assert len(children) == 2
        supervisor.stdout.close()  # the terminal is gone: every write now fails with EPIPE
        time.sleep(0.5)  # let both output pumps hit the broken pipe

        supervisor.send_signal(signal.SIGTERM)

        supervisor.wait(timeout=15)
        gone, alive = psutil.wait_procs(children, timeout=5)
        assert alive == []
    finally:
        stop_process(supervisor)


def test_killing_make_worker_s_process_group_stops_the_worker(test_settings, tmp_path):
    settings = {**test_settings, **SHORT_TIMINGS, "LOG_LEVEL": "INFO"}
    log = (tmp_path / "make.log").open("wb")
    make = subprocess.Popen(
        ["make", "-s", "worker"],
        cwd=PROJECT_ROOT,
        env={**os.environ, **settings},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group, like a terminal's foreground job
    )
    worker: psutil.Process | None = None
    try:

        def celery_worker() -> psutil.Process | None:
            for process in descendants(make.pid):
                if "celery" in " ".join(process.cmdline()):
                    return process
            return None

        worker = wait_until(celery_worker, 30, "make to start the Celery worker")
        wait_until(lambda: "ready" in (tmp_path / "make.log").read_text(), 60, "worker ready")

        os.killpg(make.pid, signal.SIGKILL)  # make and the supervisor die at once

        gone, alive = psutil.wait_procs([worker], timeout=STOP_BOUND_S)
        assert alive == [], "the worker outlived its supervisor"
    finally:
        if worker is not None and worker.is_running():
            worker.kill()
        stop_process(make)
        log.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("pool", "broker_fault", "stop_signal"),
    [
        ("gevent", "gone", signal.SIGTERM),
        ("gevent", "flushed", signal.SIGINT),
        ("gevent", "frozen", signal.SIGTERM),
    ],
)
def test_a_worker_stops_within_its_bound_whatever_its_broker_s_state(
    pool: str, broker_fault: str, stop_signal: signal.Signals, test_settings, tmp_path: Path
):
    broker = RedisServer(tmp_path / "broker")
    broker.start()
    settings = {
        **test_settings,
        **SHORT_TIMINGS,
        "REDIS_URL": broker.url(0),
        "CELERY_BROKER_URL": broker.url(1),
        "WORKER_POOL": pool,
    }
    log_path = tmp_path / "worker.log"
    worker = start_process(
        worker_argv(child_settings(settings), "bounded-stop@%h", loglevel="INFO"),
        {**os.environ, **settings},
        log_path,
    )
    try:
        wait_until(lambda: " ready." in log_path.read_text(), 60, "the worker to be ready")
        if broker_fault == "gone":
            broker.shutdown()  # the worker now loops in the broker's connection retry
            wait_until(
                lambda: "Connection to broker lost" in log_path.read_text(), 20, "the broker loss"
            )
        elif broker_fault == "flushed":
            with broker.client(1) as client:
                client.flushdb()
            time.sleep(2)  # the worker polls its (now missing) queues
        else:
            assert broker.process is not None
            broker.process.send_signal(signal.SIGSTOP)

        started = time.monotonic()
        worker.send_signal(stop_signal)
        bound = STOP_BOUND_S
        try:
            worker.wait(timeout=bound + 3)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker ignored SIGTERM for {bound + 3}s:\n{log_path.read_text()}")
        assert time.monotonic() - started <= bound + 3
    finally:
        stop_process(worker)
        if broker.process is not None and broker_fault == "frozen":
            broker.process.send_signal(signal.SIGCONT)
        broker.stop()
