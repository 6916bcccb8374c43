"""The API's first line: request bodies are bounded, and admin calls are authenticated before
anything of their body is read.

``RequestGuard`` is plain ASGI middleware (it sees each request before FastAPI parses it):

- A body declared larger than ``max_bytes`` (``Content-Length``) is answered 413 at once,
  unread. A body without a declared length (chunked) is counted as it is received and answered
  413 as soon as it passes ``max_bytes``: no more than ``max_bytes`` plus one chunk is read.
- A request under ``/admin`` is answered 401 unless it carries ``Authorization: Bearer <token>``
  with the configured token (compared in constant time; none configured refuses every call), so
  an anonymous caller cannot make the process read, buffer or parse any body. The routes check
  the token again (``bridge.api.deps.require_admin``).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ADMIN_PREFIX = "/admin"


class RequestGuard:
    """Bounds request bodies and authenticates admin requests before the app reads them.

    Args:
        app: the ASGI app to guard.
        max_bytes: the largest body read (413 above it).
        admin_token: the admin bearer token; None or empty refuses every admin request.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, admin_token: str | None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self._token = (admin_token or "").encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        path = str(scope.get("path", ""))
        if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
            refusal = self._admin_refusal(headers.get(b"authorization"))
            if refusal is not None:
                await _answer(send, 401, refusal, {"www-authenticate": "Bearer"})
                return
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await _answer(send, 400, "Content-Length is not a number")
                return
            if length > self.max_bytes:
                await _answer(send, 413, self._too_large())
                return
        await self.app(scope, self._capped(receive), send)

    def _admin_refusal(self, header: bytes | None) -> str | None:
        if not self._token:
            return "admin endpoints are disabled: BRIDGE_ADMIN_TOKEN is not set"
        scheme, _, sent = (header or b"").partition(b" ")
        if header is None or scheme.lower() != b"bearer" or not sent.strip():
            return "missing admin token: send Authorization: Bearer <BRIDGE_ADMIN_TOKEN>"
        if not hmac.compare_digest(sent.strip(), self._token):
            return "wrong admin token"
        return None

    def _too_large(self) -> str:
        return f"request body over the {self.max_bytes}-byte limit"

    def _capped(self, receive: Receive) -> Receive:
        received = 0

        async def capped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the route's body read: answered 413 by the app.
                    raise HTTPException(413, self._too_large())
            return message

        return capped


async def _answer(
    send: Send, status: int, detail: str, extra: dict[str, str] | None = None
) -> None:
    """Sends a JSON ``{"detail": ...}`` answer and asks the server to close the connection
    (the unread body is never read)."""
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
