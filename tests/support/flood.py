"""A flooding client, run as its own process: `python -m tests.support.flood URL KEY SECONDS
THREADS`. Each thread POSTs orders back to back on a keep-alive connection; prints a JSON
count of the answers by status."""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from collections import Counter
from urllib.parse import urlsplit


def main() -> None:
    url, key, seconds, threads = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    parts = urlsplit(url)
    body = json.dumps(
        {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "0.01"}
    ).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    counts: Counter[int] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def flood() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        while time.monotonic() < deadline:
            try:
                conn.request("POST", "/api/orders/execute", body, headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
                status = 0
            with lock:
                counts[status] += 1

    workers = [threading.Thread(target=flood) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(json.dumps(dict(counts)))


if __name__ == "__main__":
    main()
