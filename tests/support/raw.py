"""HTTP over a bare socket, for what a client library would not send: partial or trickled bodies,
odd framing, headers a library rewrites."""

from __future__ import annotations

import socket


def raw_http(port: int, data: bytes, timeout_s: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; return the status, headers and body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as conn:
        conn.sendall(data)
        received = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            headers = header_map(head)
            if "content-length" in headers and len(body) >= int(headers["content-length"]):
                break
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, header_map(head), body


def header_map(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}


def port_of(stack) -> int:
    return int(stack.base_url.rsplit(":", 1)[1])
