"""JSON-RPC endpoints behind one web3 provider: bare HTTP, failover, head checks, log-range limits.

``FailoverProvider`` talks to each URL of ``BRIDGE_RPC_URLS`` (in the order given: the first is
preferred; one URL is the usual case) over its own ``JsonRpcHttp`` and keeps a health record per
endpoint. What it guarantees:

- **Bare HTTP**: a request is one HTTP POST on a kept-alive connection (``http.client``, one
  connection per concurrent caller), its answer read whole and parsed with orjson, to the same
  values ``json.loads`` gives (see ``_decode``); no
  web3 ``HTTPProvider`` (``requests`` reads a 20 MB ``eth_getLogs`` answer in 10 KB chunks, ~1.6
  times the cost, measured with ``bench/ingest.py``). ``make_batch`` sends several calls as one
  JSON-RPC batch (the transaction manager's receipts). A URL's user info is sent as Basic auth;
  proxies from the environment (``HTTP(S)_PROXY``) are not used: the node is reached directly.
- **Reads go to the first usable endpoint**, in order. An endpoint is skipped while it is *down*
  (a transport error, an HTTP error, or a refusal: rate limit, method not allowed, quota — see
  ``is_refusal``), for a cool-down that doubles with each failure in a row (1 s to 60 s), or
  while it *lags*: its head more than ``max_lag`` blocks behind the best head of the others.
  When every endpoint is skipped, all are tried anyway, best first: a request never fails
  without each endpoint having had its chance.
- **The head (``eth_blockNumber``) is asked of every endpoint not down**; the answer is the head
  of the first endpoint in sync. An endpoint whose head is above everyone else's by more than
  ``max_lag`` must serve that block; if it cannot, it lied and is taken down.
- **A node's answer is passed on as it is**: a revert, "nonce too low" or any other error that
  is not a refusal is the node's verdict, not a fault of the endpoint, and is not retried
  elsewhere.
- **``eth_getLogs`` range limits are per endpoint**: a "range too large" / "too many results"
  answer (the known wordings of geth, Alchemy, Infura, QuickNode, Ankr and others:
  ``LOG_LIMIT_WORDINGS``) halves that endpoint's range and the query is split for it; the other
  endpoints keep theirs.
- **Broadcasts (``eth_sendRawTransaction``) go to every endpoint not down**; any acceptance is
  the answer, else the first node's error (the transaction manager classifies it).
- **All endpoints must serve one chain**: ``eth_chainId`` is asked of each once; one on another
  chain is never used again (and logged once).
- **No URL reaches an exception or a log line** unredacted (``bridge.logs.redact_url``).
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar, cast
from urllib.parse import unquote, urlsplit

import orjson
from web3 import Web3
from web3._utils.encoding import Web3JsonEncoder
from web3.exceptions import Web3Exception, Web3RPCError
from web3.providers.base import JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from bridge.chain.submitted import json_has_float
from bridge.http_pool import ConnectionPool
from bridge.logs import redact, redact_url, url_secrets

log = logging.getLogger("bridge.chain.rpc")

_R = TypeVar("_R")

#: Lowercase substrings of ``eth_getLogs`` errors that mean "ask for fewer blocks or fewer logs",
#: by the provider that words it so. Ranges are split on any of them.
LOG_LIMIT_WORDINGS: Final[dict[str, tuple[str, ...]]] = {
    # geth, Erigon, Nethermind, Besu, reth: a result cap (10,000 logs by default) or a timeout.
    "geth and other clients": (
        "query returned more than",
        "query timeout exceeded",
        "too many logs",
        "max results",
        "exceeds the max",
    ),
    # Alchemy: "Log response size exceeded. You can make eth_getLogs requests with up to a 2K
    # block range and no limit on the response size, or ..."; "query exceeds max block range".
    "Alchemy": ("log response size exceeded", "block range", "exceeds max block range"),
    # Infura: "query returned more than 10000 results. Try with this block range [0x.., 0x..]."
    "Infura": ("more than 10000 results", "try with this block range"),
    # QuickNode: "eth_getLogs is limited to a 10,000 range", "eth_getLogs and eth_newFilter are
    # limited to a 10000 blocks range".
    "QuickNode": ("is limited to a", "blocks range"),
    # Ankr: "block range is too wide", "Requested too many blocks from X to Y, maximum is set
    # to 1000".
    "Ankr": ("block range is too wide", "requested too many blocks", "maximum is set to"),
    # Chainstack / BlastAPI / dRPC / NodeReal / Cloudflare / LlamaRPC / public OP and Base RPCs.
    "others": (
        "range too large",
        "range is too large",
        "block range limit",
        "exceed maximum block range",
        "too many blocks",
        "response size exceeded",
        "response size should not",
        "limit exceeded",
        "too many results",
        "range limit",
    ),
}
_LOG_LIMIT_NEEDLES: Final = tuple(n for group in LOG_LIMIT_WORDINGS.values() for n in group)

#: Lowercase substrings of JSON-RPC errors by which an endpoint refuses to serve the request
#: (rate limits, quotas, plans, methods not offered, a node not ready): the next endpoint may.
REFUSAL_WORDINGS: Final = (
    "rate limit",
    "too many requests",
    "request limit",
    "capacity",
    "compute units",
    "daily request count",
    "quota",
    "exceeded the allowed",
    "upgrade your plan",
    "method not found",
    "method not supported",
    "not supported",
    "unsupported method",
    "not whitelisted",
    "not allowed",
    "forbidden",
    "unauthorized",
    "invalid api key",
    "api key",
    "project id",
    "header not found",
    "unknown block",
    "syncing",
    "service unavailable",
    "bad gateway",
    "temporarily unavailable",
    "backend",
)
#: JSON-RPC error codes that mean a refusal: limit exceeded, method not found, request limit.
REFUSAL_CODES: Final = frozenset({-32005, -32601, -32029, 429})


def is_log_limit(message: str) -> bool:
    """Whether an ``eth_getLogs`` error message asks for a smaller range (any provider's wording,
    or a timeout)."""
    text = message.lower()
    return "timeout" in text or "timed out" in text or any(n in text for n in _LOG_LIMIT_NEEDLES)


def is_refusal(error: object) -> bool:
    """Whether a JSON-RPC ``error`` object means the endpoint will not serve the request (so
    another endpoint should be asked), as opposed to the node's answer to it (a revert, a
    nonce too low...), which is passed on."""
    if isinstance(error, dict):
        code = error.get("code")
        message = str(error.get("message", ""))
    else:
        code, message = None, str(error)
    text = message.lower()
    if "revert" in text or "nonce" in text or "insufficient funds" in text:
        return False
    return code in REFUSAL_CODES or any(w in text for w in REFUSAL_WORDINGS)


class RpcEndpointsDown(Web3Exception, ConnectionError):
    """Every endpoint failed for one request (a ``ConnectionError``: callers treat it like a
    node that does not answer). The message names the endpoints redacted, never their URLs."""


@dataclass
class EndpointHealth:
    """What the provider knows of one endpoint (read it with ``FailoverProvider.health()``)."""

    shown: str  # the URL, redacted
    down_until: float = 0.0
    failures: int = 0  # in a row
    head: int | None = None
    lagging: bool = False
    wrong_chain: bool = False
    log_range: int | None = None  # largest eth_getLogs range it accepted after a limit
    last_error: str | None = None
    requests: int = 0
    errors: int = 0


@dataclass
class _Endpoint:
    url: str
    http: JsonRpcHttp
    health: EndpointHealth
    secrets: tuple[str, ...] = field(default_factory=tuple)


class _Refused(Exception):
    """An endpoint failed or refused; ``reason`` is redacted."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class HttpStatusError(OSError):
    """An endpoint answered with an HTTP status other than 2xx (``status``)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}")
        self.status = status


class JsonRpcHttp:
    """JSON-RPC over HTTP(S) to one URL, with ``http.client`` connections kept alive.

    Thread-safe: each request takes an idle connection (or opens one) and puts it back after
    the whole answer is read, so concurrent callers never share a connection. The URL's user
    info becomes a Basic ``Authorization`` header; its path and query are the request target.
    Nothing here logs or raises the URL: errors carry the host at most (callers redact anyway).

    Raises (from ``call`` and ``batch``): ``OSError`` (transport, timeout, ``HttpStatusError``),
    ``http.client.HTTPException`` (a malformed answer), ``ValueError`` (not JSON).
    """

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an RPC URL must be http:// or https:// with a host")
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if parts.username is not None or parts.password is not None:
            userinfo = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            token = base64.b64encode(userinfo.encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        # resend: every call the bridge makes is safe to repeat (reads, and signed
        # transactions, which the node knows by their hash: "already known" is a success).
        self._pool = ConnectionPool(
            parts.hostname, parts.port, https=parts.scheme == "https", timeout=timeout, resend=True
        )
        self._ids = itertools.count(1)

    def call(self, method: str, params: Any) -> RPCResponse:
        """One JSON-RPC request; the node's answer (``result`` or ``error``) as parsed."""
        ask = {"jsonrpc": "2.0", "method": method, "params": params or [], "id": next(self._ids)}
        answer = self._post(_encode(ask))
        if not isinstance(answer, dict):
            raise ValueError("the answer is not a JSON-RPC object")
        return cast(RPCResponse, answer)

    def batch(self, calls: Sequence[tuple[str, Any]]) -> list[RPCResponse] | RPCResponse:
        """Several requests in one JSON-RPC batch: their answers in the order of ``calls``, or
        the one error object of a node that refuses the batch as a whole."""
        ids = [next(self._ids) for _ in calls]
        body = [
            {"jsonrpc": "2.0", "method": m, "params": p or [], "id": i}
            for i, (m, p) in zip(ids, calls, strict=True)
        ]
        answer = self._post(_encode(body))
        if isinstance(answer, dict):
            return cast(RPCResponse, answer)
        if not isinstance(answer, list):
            raise ValueError("the answer to a batch is not a JSON-RPC list")
        by_id = {a.get("id"): a for a in answer if isinstance(a, dict)}
        missing = {"jsonrpc": "2.0", "error": {"code": -32603, "message": "no answer in the batch"}}
        return [cast(RPCResponse, by_id.get(i, missing)) for i in ids]

    def close(self) -> None:
        """Closes the connections (one in use once its answer is read)."""
        self._pool.close()

    def _post(self, body: bytes) -> Any:
        with self._pool.exchange("POST", self._target, body, self._headers) as response:
            raw = response.read()  # the whole body at once (Content-Length or chunked)
        if not 200 <= response.status < 300:
            raise HttpStatusError(response.status, response.reason)
        return _decode(raw)


def _encode(payload: object) -> bytes:
    """A JSON-RPC request as bytes; web3's encoder turns ``bytes``/``HexBytes`` into 0x-hex
    and an ``AttributeDict`` into an object, as web3's own providers do."""
    return json.dumps(payload, cls=Web3JsonEncoder, separators=(",", ":")).encode()


def _decode(raw: bytes) -> Any:
    """The parsed answer, exactly what ``json.loads(raw)`` gives (``ValueError`` when it is not
    JSON: ``json.JSONDecodeError``, or ``UnicodeDecodeError`` for bytes that are no text).

    orjson parses it: ~1.5 times faster than ``json.loads`` on an ``eth_getLogs`` answer
    (docs/BENCHMARKS.md, "The sixth session"). Where the two could differ, ``json.loads``
    parses the body again and its answer (or its error) is the one returned:

    - orjson refuses the body (not JSON, or JSON that ``json.loads`` takes and orjson does not:
      ``NaN``/``Infinity``, a lone surrogate escape, UTF-16 or UTF-32 text);
    - the answer holds a float (``json_has_float``): orjson reads an integer beyond 64 bits as a
      float, losing digits. JSON-RPC sends every quantity as a hex string, but a node's error
      ``data`` or a non-standard field may be a bare number; legitimate floats are rare
      (``eth_feeHistory``'s ``gasUsedRatio``).
    """
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)
    if json_has_float(answer):
        return json.loads(raw)
    return answer


#: Methods whose answer does not change: asked once.
_CACHED: Final = frozenset({"eth_chainId", "net_version"})


class FailoverProvider(JSONBaseProvider):
    """A web3 provider over several HTTP endpoints (see the module docstring).

    Args:
        urls: the endpoints, preferred first (at least one).
        timeout: seconds one HTTP request may take.
        max_lag: blocks an endpoint may trail the best head before it is skipped for reads.
        clock: monotonic seconds (tests may pass their own).
    """

    #: Cool-down after a failure: doubles per failure in a row, up to the maximum.
    MIN_COOLDOWN: Final = 1.0
    MAX_COOLDOWN: Final = 60.0

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout: float = 30.0,
        max_lag: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not urls:
            raise ValueError("FailoverProvider needs at least one URL")
        super().__init__()
        self._endpoints = [
            _Endpoint(
                url=url,
                http=JsonRpcHttp(url, timeout=timeout),
                health=EndpointHealth(shown=redact_url(url)),
                secrets=url_secrets(url),
            )
            for url in urls
        ]
        self._secrets = tuple(s for e in self._endpoints for s in e.secrets)
        self._max_lag = max_lag
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, RPCResponse] = {}
        self._chain_id: str | None = None

    def __str__(self) -> str:
        return "FailoverProvider(" + ", ".join(e.health.shown for e in self._endpoints) + ")"

    @property
    def endpoint_uri(self) -> str:
        """The preferred endpoint, redacted (what a log line may name)."""
        return self._endpoints[0].health.shown

    def health(self) -> list[EndpointHealth]:
        """A copy of every endpoint's health record, in the configured order."""
        with self._lock:
            return [EndpointHealth(**vars(e.health)) for e in self._endpoints]

    def is_connected(self, show_traceback: bool = False) -> bool:
        """Whether some endpoint answers ``web3_clientVersion``."""
        try:
            return "result" in self.make_request(RPCEndpoint("web3_clientVersion"), [])
        except (Web3Exception, OSError):
            if show_traceback:
                raise
            return False

    # ------------------------------------------------------------------ requests

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        """Answers one JSON-RPC request from the endpoints (see the module docstring).

        Raises:
            RpcEndpointsDown: no endpoint answered.
        """
        if method in _CACHED and method in self._cache:
            return self._cache[method]
        if method == "eth_chainId":
            return self._chain_id_request()
        if method == "eth_blockNumber":
            return self._head_request()
        if method == "eth_sendRawTransaction":
            return self._broadcast(method, params)
        if method == "eth_getLogs":
            return self._over_endpoints(lambda e: self._get_logs(e, params))
        reply = self._over_endpoints(lambda e: self._checked(e, method, params))
        if method in _CACHED and "result" in reply:
            self._cache[method] = reply
        return reply

    def make_batch(self, calls: Sequence[tuple[str, Any]]) -> list[RPCResponse]:
        """Answers several read requests from one endpoint in one JSON-RPC batch, in the order
        of ``calls``, with the failover of ``make_request``: an endpoint that fails, or refuses
        one of the calls, is marked down and the next one is asked for the whole batch. An
        endpoint that refuses batches as such answers the calls one by one.

        Only for reads that need no special handling (not ``eth_blockNumber``, ``eth_chainId``,
        ``eth_getLogs`` or ``eth_sendRawTransaction``, which ``make_request`` treats apart).

        Raises:
            RpcEndpointsDown: no endpoint answered.
        """
        if not calls:
            return []
        return self._over_endpoints(lambda e: self._batch_on(e, list(calls)))

    def make_batch_request(
        self, requests: list[tuple[RPCEndpoint, Any]]
    ) -> list[RPCResponse] | RPCResponse:
        """web3's batch interface (``w3.batch_requests()``): ``make_batch``."""
        return self.make_batch(requests)

    def _batch_on(self, endpoint: _Endpoint, calls: list[tuple[str, Any]]) -> list[RPCResponse]:
        """The batch on one endpoint (``_Refused`` if it fails or refuses one of the calls)."""
        with self._lock:
            endpoint.health.requests += 1
        try:
            answer = endpoint.http.batch(calls)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise _Refused(self._failure_text(exc)) from None
        if isinstance(answer, dict):  # the batch as a whole refused: one call at a time
            replies = [self._send(endpoint, method, params) for method, params in calls]
        else:
            replies = answer
        for reply in replies:
            error = reply.get("error")
            if error is not None and is_refusal(error):
                raise _Refused(self._error_text(error))
        return replies

    def _order(self) -> list[_Endpoint]:
        """Usable endpoints in order, then the rest (soonest back first)."""
        now = self._clock()
        with self._lock:
            live = [e for e in self._endpoints if not e.health.wrong_chain]
            usable = [e for e in live if e.health.down_until <= now and not e.health.lagging]
            rest = sorted((e for e in live if e not in usable), key=lambda e: e.health.down_until)
        return usable + rest

    def _over_endpoints(self, call: Callable[[_Endpoint], _R]) -> _R:
        """``call`` on the endpoints in order until one answers (each failure marks it down)."""
        reasons: list[str] = []
        for endpoint in self._order():
            try:
                reply = call(endpoint)
            except _Refused as exc:
                self._mark_down(endpoint, exc.reason)
                reasons.append(f"{endpoint.health.shown}: {exc.reason}")
                continue
            self._mark_up(endpoint)
            return reply
        raise RpcEndpointsDown("every RPC endpoint failed: " + "; ".join(reasons))

    def _send(self, endpoint: _Endpoint, method: str, params: Any) -> RPCResponse:
        """One request to one endpoint; transport and HTTP errors become ``_Refused``."""
        with self._lock:
            endpoint.health.requests += 1
        try:
            return endpoint.http.call(method, params)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise _Refused(self._failure_text(exc)) from None

    def _failure_text(self, exc: BaseException) -> str:
        return redact(f"{type(exc).__name__}: {exc}", self._secrets)[:300]

    def _checked(self, endpoint: _Endpoint, method: str, params: Any) -> RPCResponse:
        """``_send``, with a refusal raised as ``_Refused``."""
        reply = self._send(endpoint, method, params)
        error = reply.get("error")
        if error is not None and is_refusal(error):
            raise _Refused(self._error_text(error))
        return reply

    def _error_text(self, error: object) -> str:
        message = error.get("message", error) if isinstance(error, dict) else error
        return redact(str(message), self._secrets)[:300]

    # ------------------------------------------------------------------ chain id and head

    def _chain_id_request(self) -> RPCResponse:
        answers: list[tuple[_Endpoint, RPCResponse]] = []
        for endpoint in self._order():
            try:
                reply = self._checked(endpoint, "eth_chainId", [])
            except _Refused as exc:
                self._mark_down(endpoint, exc.reason)
                continue
            if "result" in reply:
                answers.append((endpoint, reply))
        if not answers:
            raise RpcEndpointsDown("no RPC endpoint answered eth_chainId")
        first = answers[0][1]
        with self._lock:
            if self._chain_id is None:
                self._chain_id = str(first["result"])
            for endpoint, reply in answers:
                if str(reply["result"]) != self._chain_id and not endpoint.health.wrong_chain:
                    endpoint.health.wrong_chain = True
                    log.error(
                        "RPC endpoint %s serves chain %s, not %s: it is not used",
                        endpoint.health.shown,
                        int(str(reply["result"]), 16),
                        int(self._chain_id, 16),
                    )
        self._cache["eth_chainId"] = first
        return first

    def _head_request(self) -> RPCResponse:
        heads: list[tuple[_Endpoint, int, RPCResponse]] = []
        now = self._clock()
        for endpoint in self._endpoints:
            if endpoint.health.wrong_chain or endpoint.health.down_until > now:
                continue
            try:
                reply = self._checked(endpoint, "eth_blockNumber", [])
                head = int(str(reply["result"]), 16)
            except _Refused as exc:
                self._mark_down(endpoint, exc.reason)
                continue
            except (KeyError, ValueError, TypeError):
                self._mark_down(endpoint, "eth_blockNumber: no block number in the answer")
                continue
            heads.append((endpoint, head, reply))
        if not heads:
            # Everything is down or cooling: ask them all in order, once.
            reply = self._over_endpoints(lambda e: self._checked(e, "eth_blockNumber", []))
            return reply
        heads = self._drop_liars(heads)
        best = max(h for _, h, _ in heads)
        with self._lock:
            for endpoint, head, _ in heads:
                endpoint.health.head = head
                lagging = head < best - self._max_lag
                if lagging and not endpoint.health.lagging:
                    log.warning(
                        "RPC endpoint %s lags: head %d, others at %d; reading elsewhere",
                        endpoint.health.shown,
                        head,
                        best,
                    )
                endpoint.health.lagging = lagging
        for endpoint, _, reply in heads:
            if not endpoint.health.lagging:
                self._mark_up(endpoint)
                return reply
        return heads[0][2]  # unreachable: the best head is never lagging

    def _drop_liars(
        self, heads: list[tuple[_Endpoint, int, RPCResponse]]
    ) -> list[tuple[_Endpoint, int, RPCResponse]]:
        """Heads without those of endpoints that claim a block no other has and cannot serve."""
        while len(heads) > 1:
            ranked = sorted(heads, key=lambda h: h[1], reverse=True)
            top, runner_up = ranked[0], ranked[1]
            if top[1] - runner_up[1] <= self._max_lag:
                return heads
            try:
                block = self._send(top[0], "eth_getBlockByNumber", [hex(top[1]), False])
                served = isinstance(block.get("result"), dict)
            except _Refused:
                served = False
            if served:
                return heads
            self._mark_down(top[0], f"claimed head {top[1]} but cannot serve that block")
            heads = [h for h in heads if h[0] is not top[0]]
        return heads

    # ------------------------------------------------------------------ logs and broadcasts

    def _get_logs(self, endpoint: _Endpoint, params: Any) -> RPCResponse:
        """``eth_getLogs`` on one endpoint, split into ranges it accepts."""
        query = dict(params[0]) if params and isinstance(params[0], dict) else None
        if (
            query is None
            or not _is_number(query.get("fromBlock"))
            or not _is_number(query.get("toBlock"))
        ):
            return self._checked(endpoint, "eth_getLogs", params)
        start, end = int(query["fromBlock"], 16), int(query["toBlock"], 16)
        logs: list[Any] = []
        low = start
        while low <= end:
            span = endpoint.health.log_range or (end - start + 1)
            high = min(end, low + span - 1)
            part = {**query, "fromBlock": hex(low), "toBlock": hex(high)}
            reply = self._send(endpoint, "eth_getLogs", [part])
            error = reply.get("error")
            if error is not None:
                text = self._error_text(error)
                if is_log_limit(text) and high > low:
                    with self._lock:
                        endpoint.health.log_range = max(1, (high - low + 1) // 2)
                    log.info(
                        "RPC endpoint %s limits eth_getLogs (%s): ranges of %d blocks from now",
                        endpoint.health.shown,
                        text[:120],
                        endpoint.health.log_range,
                    )
                    continue
                if is_refusal(error) or is_log_limit(text):
                    raise _Refused(text)
                return reply
            result = reply.get("result")
            if not isinstance(result, list):
                raise _Refused("eth_getLogs: no list of logs in the answer")
            logs.extend(result)
            low = high + 1
        return cast(RPCResponse, {"jsonrpc": "2.0", "id": 0, "result": logs})

    def _broadcast(self, method: str, params: Any) -> RPCResponse:
        """Sends to every endpoint not down; an acceptance wins, else the first node error."""
        now = self._clock()
        targets = [e for e in self._order() if e.health.down_until <= now] or self._order()
        accepted: RPCResponse | None = None
        node_error: RPCResponse | None = None
        reasons: list[str] = []
        for endpoint in targets:
            try:
                reply = self._checked(endpoint, method, params)
            except _Refused as exc:
                self._mark_down(endpoint, exc.reason)
                reasons.append(f"{endpoint.health.shown}: {exc.reason}")
                continue
            self._mark_up(endpoint)
            if "error" not in reply and accepted is None:
                accepted = reply
            elif "error" in reply and node_error is None:
                node_error = reply
        if accepted is not None:
            return accepted
        if node_error is not None:
            return node_error
        raise RpcEndpointsDown("no RPC endpoint took the transaction: " + "; ".join(reasons))

    # ------------------------------------------------------------------ health

    def _mark_down(self, endpoint: _Endpoint, reason: str) -> None:
        with self._lock:
            health = endpoint.health
            health.failures += 1
            health.errors += 1
            cooldown = min(self.MAX_COOLDOWN, self.MIN_COOLDOWN * 2 ** (health.failures - 1))
            health.down_until = self._clock() + cooldown
            health.last_error = reason
        if len(self._endpoints) > 1:
            log.warning(
                "RPC endpoint %s failed (%s); skipping it for %g s",
                health.shown,
                reason,
                cooldown,
            )

    def _mark_up(self, endpoint: _Endpoint) -> None:
        with self._lock:
            if endpoint.health.failures:
                log.info("RPC endpoint %s answers again", endpoint.health.shown)
            endpoint.health.failures = 0
            endpoint.health.down_until = 0.0


def _is_number(value: object) -> bool:
    return isinstance(value, str) and value.startswith("0x")


def read(w3: Web3, method: str, params: Sequence[Any]) -> Any:
    """The ``result`` of one read request through ``w3``'s provider, as the node sent it (hex
    strings, plain dicts): no web3 middleware, no request or result formatters, which cost more
    than the bare request itself (``bench/throughput.py``'s profile). Use it for reads whose
    answer the caller parses (block numbers, blocks, receipts, nonces); through a
    ``FailoverProvider`` it has the same failover and head checks as any other request.

    Raises:
        Web3RPCError: the node answered with an error (its message).
        RpcEndpointsDown, OSError: no answer.
    """
    return _result(method, w3.provider.make_request(RPCEndpoint(method), list(params)))


def read_many(w3: Web3, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
    """``read`` of every call, in order: one JSON-RPC batch through a ``FailoverProvider``
    (``make_batch``), one request each through any other provider.

    Raises:
        Web3RPCError: the node answered one of them with an error.
        RpcEndpointsDown, OSError: no answer.
    """
    pairs = [(method, list(params)) for method, params in calls]
    provider = w3.provider
    if isinstance(provider, FailoverProvider):
        replies = provider.make_batch(pairs)
    else:
        replies = [provider.make_request(RPCEndpoint(m), p) for m, p in pairs]
    return [_result(m, reply) for (m, _), reply in zip(pairs, replies, strict=True)]


def _result(method: str, reply: RPCResponse) -> Any:
    error = reply.get("error")
    if error is not None:
        message = error.get("message", error) if isinstance(error, dict) else error
        raise Web3RPCError(f"{method}: {message}", rpc_response=reply)
    return reply.get("result")
