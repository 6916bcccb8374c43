"""A fault-injecting JSON-RPC proxy: a small threaded HTTP server on 127.0.0.1 in front of Anvil.

Each POST is forwarded to the upstream node, unless the proxy's seeded RNG picks a fault for it:

- ``drop``: the request is forwarded (so it takes effect: a transaction reaches the node) but
  the connection is closed without an answer: a lost response.
- ``reset``: the connection is reset (RST) before anything is forwarded.
- ``delay``: the answer comes ``delay`` seconds late.
- ``http5xx``: a 502 or 503 with an HTML body, nothing forwarded (a load balancer in trouble).
- ``lag``: ``eth_blockNumber`` answers 1..``max_lag`` blocks behind the real head: a lagging
  node, or, right after an up-to-date answer, a head that goes back.

``rate`` is the probability of a fault per request; ``weights`` share it among the kinds (a kind
not applicable to the method, ``lag`` for anything but ``eth_blockNumber``, falls back to
``delay``). ``stats()`` counts requests by method and faults by kind. With ``methods`` set, only
those methods are faulted. ``after``, when set, is called with the method of each request once
the node has answered it and before the answer is passed on (a test can change the chain there,
between two requests of the bridge).

Besides the random faults, three standing behaviours (attributes, change them at will):

- ``head_offset``: added to every ``eth_blockNumber`` answer (a node lying about its head:
  positive, a head it cannot serve; negative, a node that lags).
- ``log_range``: the most blocks one ``eth_getLogs`` may span; a larger range is refused with
  ``log_limit_message`` (default: Alchemy's wording), as providers do.
- ``refuse``: methods answered with a provider's rate-limit error (-32005), not forwarded.
- ``hide_1559``: the node looks like a legacy-fee chain: no ``baseFeePerGas`` in blocks,
  ``eth_feeHistory`` and ``eth_maxPriorityFeePerGas`` unknown, typed transactions refused.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bridge.lifecycle import Service

FAULTS = ("drop", "reset", "delay", "http5xx", "lag")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a reset or dropped connection is the point, not an error to print


class RpcFaultProxy(Service):
    """Forwards JSON-RPC to ``upstream`` with faults injected (see the module docstring).

    Args:
        upstream: the node's URL.
        rate: probability that a request gets a fault (0 disables faults; change it at will).
        seed: seed of the fault RNG.
        weights: relative weight of each fault kind (default: all equal).
        delay: seconds of a ``delay`` fault.
        max_lag: most blocks a ``lag`` fault reports behind the head.
        methods: fault only these JSON-RPC methods (None: all).
    """

    def __init__(
        self,
        upstream: str,
        *,
        rate: float = 0.0,
        seed: int = 0,
        weights: dict[str, float] | None = None,
        delay: float = 1.0,
        max_lag: int = 3,
        methods: frozenset[str] | None = None,
    ) -> None:
        self.upstream = upstream
        self.rate = rate
        self.delay = delay
        self.max_lag = max_lag
        self.weights = dict.fromkeys(FAULTS, 1.0) if weights is None else dict(weights)
        self.methods = methods
        self.after: Callable[[str], None] | None = None
        self.head_offset = 0
        self.log_range: int | None = None
        self.log_limit_message = (
            "Log response size exceeded. You can make eth_getLogs requests with up to a 2K "
            "block range and no limit on the response size"
        )
        self.hide_1559 = False
        self.refuse: frozenset[str] = frozenset()
        self.refused: Counter[str] = Counter()  # requests answered by a standing behaviour
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The proxy's URL (give it to the bridge as ``BRIDGE_RPC_URL``)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> RpcFaultProxy:
        """Serves from a daemon thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving and closes the socket."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def stats(self) -> dict[str, dict[str, int]]:
        """``{"requests": {method: n}, "faults": {kind: n}}``."""
        with self._lock:
            return {"requests": dict(self._requests), "faults": dict(self._faults)}

    # ------------------------------------------------------------------ internals

    def _draw(self, method: str) -> str | None:
        with self._lock:
            self._requests[method] += 1
            if self.methods is not None and method not in self.methods:
                return None
            if self._rng.random() >= self.rate:
                return None
            kinds = [k for k, w in self.weights.items() if w > 0]
            fault = self._rng.choices(kinds, [self.weights[k] for k in kinds])[0]
            if fault == "lag" and method != "eth_blockNumber":
                fault = "delay"
            self._faults[fault] += 1
            return fault

    def _lag(self) -> int:
        with self._lock:
            return self._rng.randint(1, self.max_lag)

    def _refusal(self, method: str, parsed: Any) -> bytes | None:
        """The error answer of a standing behaviour for this request, or None to forward it."""
        ident = parsed.get("id") if isinstance(parsed, dict) else None
        params = parsed.get("params") if isinstance(parsed, dict) else None

        def error(code: int, message: str) -> bytes:
            with self._lock:
                self.refused[method] += 1
            body = {"jsonrpc": "2.0", "id": ident, "error": {"code": code, "message": message}}
            return json.dumps(body).encode()

        if method in self.refuse:
            return error(-32005, "daily request count exceeded, request rate limited")
        if self.hide_1559 and method in ("eth_feeHistory", "eth_maxPriorityFeePerGas"):
            return error(-32601, f"the method {method} does not exist/is not available")
        typed = isinstance(params, list) and bool(params) and not str(params[0]).startswith("0xf")
        if self.hide_1559 and method == "eth_sendRawTransaction" and typed:
            return error(-32000, "transaction type not supported")
        if self.log_range is not None and method == "eth_getLogs" and params:
            query = params[0]
            start, end = query.get("fromBlock"), query.get("toBlock")
            numbers = isinstance(start, str) and isinstance(end, str) and start.startswith("0x")
            if numbers and int(end, 16) - int(start, 16) + 1 > self.log_range:
                return error(-32602, self.log_limit_message)
        return None

    def _rewrite(self, method: str, answer: bytes) -> bytes:
        """The node's answer changed by the standing behaviours."""
        if method == "eth_blockNumber" and self.head_offset:
            reply = json.loads(answer)
            if isinstance(reply.get("result"), str):
                reply["result"] = hex(max(0, int(reply["result"], 16) + self.head_offset))
                return json.dumps(reply).encode()
        if self.hide_1559 and method.startswith("eth_getBlockBy"):
            reply = json.loads(answer)
            if isinstance(reply.get("result"), dict):
                reply["result"].pop("baseFeePerGas", None)
                return json.dumps(reply).encode()
        return answer

    def _forward(self, body: bytes) -> bytes:
        request = urllib.request.Request(
            self.upstream, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            data: bytes = response.read()
            return data

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                try:
                    parsed = json.loads(body)
                    method = str(parsed.get("method", "?")) if isinstance(parsed, dict) else "batch"
                except ValueError:
                    parsed, method = None, "?"
                fault = proxy._draw(method)
                refusal = proxy._refusal(method, parsed)
                if refusal is not None:
                    self._answer(200, refusal, "application/json")
                    return
                if fault == "reset":
                    self._reset()
                    return
                if fault == "http5xx":
                    self._answer(
                        proxy._rng.choice((502, 503)), b"<html>bad gateway</html>", "text/html"
                    )
                    return
                if fault == "delay":
                    time.sleep(proxy.delay)
                try:
                    answer = proxy._forward(body)
                except OSError:
                    self._answer(502, b"<html>upstream unreachable</html>", "text/html")
                    return
                if proxy.after is not None:
                    proxy.after(method)
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                answer = proxy._rewrite(method, answer)
                if fault == "lag" and isinstance(parsed, dict):
                    reply = json.loads(answer)
                    if isinstance(reply.get("result"), str):
                        head = int(reply["result"], 16)
                        reply["result"] = hex(max(0, head - proxy._lag()))
                        answer = json.dumps(reply).encode()
                self._answer(200, answer, "application/json")

            def _answer(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _reset(self) -> None:
                self.close_connection = True
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()

        return Handler
