"""Deadlines on reads from a client's socket (api/deadlines.py) and the per-address count of
bodies being read (api/body.py), on real sockets and threads."""

from __future__ import annotations

import socket
import threading
import time

from order_engine.api.body import BodyReaders
from order_engine.api.deadlines import Deadlines


def test_a_read_still_waiting_at_its_deadline_returns_and_is_marked_expired():
    client, server = socket.socketpair()
    deadlines = Deadlines(0.3)
    started = time.monotonic()
    with client, server, deadlines.watch(server) as watch:
        server.settimeout(10)
        assert server.recv(10) == b""  # what a server's read sees once the read side is shut
        took_s = time.monotonic() - started
    assert watch.expired
    assert 0.25 <= took_s < 5


def test_a_byte_now_and_then_does_not_renew_the_deadline():
    client, server = socket.socketpair()
    deadlines = Deadlines(0.5)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.1):
            client.sendall(b"x")

    sender = threading.Thread(target=trickle)
    with client, server, deadlines.watch(server) as watch:
        sender.start()
        server.settimeout(10)
        while server.recv(1):
            pass
    stop.set()
    sender.join()
    assert watch.expired


def test_a_read_that_ends_in_time_is_left_alone_after_its_deadline():
    first_client, first_server = socket.socketpair()
    later_client, later_server = socket.socketpair()
    deadlines = Deadlines(0.3)
    with deadlines.watch(first_server) as first:
        first_client.sendall(b"x")
        assert first_server.recv(1) == b"x"
    # Deadlines fall due in the order they were set: once the later one has passed, the first
    # one's has too.
    with deadlines.watch(later_server) as later:
        later_server.settimeout(10)
        assert later_server.recv(1) == b""
    assert later.expired
    assert not first.expired
    first_client.sendall(b"y")
    assert first_server.recv(1) == b"y"  # still open for reading
    for sock in (first_client, first_server, later_client, later_server):
        sock.close()


def test_an_address_reads_up_to_its_cap_of_bodies_at_once():
    readers = BodyReaders(cap=2)
    assert readers.take("10.0.0.1")
    assert readers.take("10.0.0.1")
    assert not readers.take("10.0.0.1")
    assert readers.take("10.0.0.2")  # each address has its own
    readers.release("10.0.0.1")
    assert readers.take("10.0.0.1")
    for address in ("10.0.0.1", "10.0.0.1", "10.0.0.2"):
        readers.release(address)
    assert readers._reading == {}  # nothing kept for addresses that are done
