"""CORS for the public read routes, so a dapp on another origin can read jobs and result files.

Guarantees:

- Only a request whose ``Origin`` is one of ``BRIDGE_CORS_ORIGINS`` (exact match) gets
  ``Access-Control-Allow-Origin``, naming that origin (never ``*``), with ``Vary: Origin``.
- Only ``GET`` and ``HEAD`` (and their preflight ``OPTIONS``) are answered, and never under
  ``/admin``: a page on another origin can never make a browser call an admin route for it.
- No credentials are allowed (``Access-Control-Allow-Credentials`` is never sent).
- With no origins configured the middleware adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Response headers a cross-origin page may read besides the CORS-safelisted ones.
_EXPOSED = "ETag, Content-Length, Content-Disposition"
_READ_METHODS = frozenset({"GET", "HEAD"})


def is_public_read(path: str) -> bool:
    """True for the paths that may answer cross-origin reads: everything but ``/admin``."""
    return not (path == "/admin" or path.startswith("/admin/"))


class PublicReadCors:
    """ASGI middleware adding CORS headers to the public GET routes for the allowed origins."""

    def __init__(self, app: ASGIApp, origins: Iterable[str]) -> None:
        self.app = app
        self.origins = frozenset(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Passes the request on, adding CORS headers when it is an allowed cross-origin read."""
        if scope["type"] != "http" or not self.origins or not is_public_read(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None or origin not in self.origins:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(origin, headers, scope, receive, send)
            return
        if method not in _READ_METHODS:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["Access-Control-Allow-Origin"] = origin
                out["Access-Control-Expose-Headers"] = _EXPOSED
                out.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(
        self, origin: str, headers: Headers, scope: Scope, receive: Receive, send: Send
    ) -> None:
        requested = headers["access-control-request-method"].upper()
        if requested not in _READ_METHODS:
            response = PlainTextResponse("only GET and HEAD are allowed cross-origin", 400)
        else:
            response = PlainTextResponse(
                "OK",
                headers={
                    "Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Methods": "GET, HEAD",
                    "Access-Control-Max-Age": "600",
                    "Vary": "Origin",
                },
            )
        await response(scope, receive, send)
