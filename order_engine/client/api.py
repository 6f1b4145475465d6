"""The API as the client reaches it: one HTTP request at a time, each answer's JSON, and every
error as `ApiError` carrying the API's envelope (or saying why it could not be reached)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED, EXIT_REFUSED = 0, 1, 2, 3, 4
DEFAULT_URL = "http://localhost:8000"
FINAL = {"confirmed": EXIT_OK, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}


class ApiError(Exception):
    """The API answered with an error envelope, or could not be reached."""

    def __init__(self, status: int | None, body: dict[str, Any]) -> None:
        super().__init__(body.get("description") or body.get("message") or "error")
        self.status, self.body = status, body

    def describe(self) -> str:
        head = f"error {self.status}" if self.status else "error"
        lines = [f"{head}: {self.body.get('description') or self.body.get('message')}"]
        for field, reasons in (self.body.get("errors") or {}).items():
            lines.append(f"  {field}: {'; '.join(str(r) for r in reasons)}")
        return "\n".join(lines)


@dataclass
class Api:
    url: str
    key: str | None
    timeout_s: float = 15.0

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        all_headers = {"Accept": "application/json", **(headers or {})}
        if self.key:
            all_headers["Authorization"] = f"Bearer {self.key}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            raise ApiError(error.code, envelope(error.read(), error.code)) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(
                None, {"description": f"cannot reach the API at {self.url}: {reason}"}
            ) from None

    def ws_url(self, order_id: str, after_seq: int = 0) -> str:
        parts = urllib.parse.urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        query = {"orderId": order_id, **({"afterSeq": str(after_seq)} if after_seq else {})}
        return urllib.parse.urlunsplit(
            (scheme, parts.netloc, "/api/orders/execute", urllib.parse.urlencode(query), "")
        )


def envelope(raw: bytes, status: int) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    return {"code": status, "description": raw.decode(errors="replace")[:200] or "no body"}


# -- the commands ------------------------------------------------------------------------------
