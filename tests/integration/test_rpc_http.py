"""The bare JSON-RPC transport (``JsonRpcHttp``) and ``FailoverProvider.make_batch`` over real
HTTP: a small threaded server on 127.0.0.1 whose answers each test scripts (what a node or a
provider's gateway would send), so the client's side is what is tested."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bridge.chain.rpc import FailoverProvider, JsonRpcHttp, RpcEndpointsDown

#: One JSON-RPC request object -> its answer object (or, for a batch, see ``Node.whole_batch``).
Answer = Callable[[dict[str, Any]], dict[str, Any]]


class Node:
    """A JSON-RPC server answering each request with ``answer``; records what it received."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.whole_batch: dict[str, Any] | None = None  # answer to any batch, as a whole
        self.status = 200
        self.close_after_answer = False  # closes the connection without saying so
        self.reverse_batches = False
        self.bodies: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.connections: set[tuple[str, int]] = set()
        node = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                node.bodies.append(body)
                node.headers.append(dict(self.headers))
                node.connections.add(self.client_address)
                if isinstance(body, list):
                    reply: Any = node.whole_batch or [node.answer(r) for r in body]
                    if node.reverse_batches and isinstance(reply, list):
                        reply.reverse()
                else:
                    reply = node.answer(body)
                data = json.dumps(reply).encode()
                self.send_response(node.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
                if node.close_after_answer:
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, userinfo: str = "") -> str:
        host, port = self.server.server_address[:2]
        if isinstance(host, bytes | bytearray):  # typeshed allows bytes; the socket names text
            host = host.decode()
        return f"http://{userinfo}{host}:{port}/v3/path?key=k"


@pytest.fixture
def nodes() -> Iterator[Callable[[Answer], Node]]:
    started: list[Node] = []

    def start(answer: Answer) -> Node:
        node = Node(answer)
        node.thread.start()
        started.append(node)
        return node

    yield start
    for node in started:
        node.server.shutdown()
        node.server.server_close()


def result(value: Any) -> Answer:
    return lambda r: {"jsonrpc": "2.0", "id": r["id"], "result": value}


def echo_method(r: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": r["id"], "result": [r["method"], r["params"]]}


def test_one_connection_is_kept_alive_and_user_info_becomes_basic_auth(nodes: Any) -> None:
    node = nodes(result("0x7a69"))
    http = JsonRpcHttp(node.url("user:pa%40ss@"), timeout=5)
    for _ in range(5):
        reply = http.call("eth_chainId", [])
        assert reply == {"jsonrpc": "2.0", "id": node.bodies[-1]["id"], "result": "0x7a69"}
    assert len(node.connections) == 1, "five sequential requests on one kept-alive connection"
    expected = "Basic " + base64.b64encode(b"user:pa@ss").decode()
    assert {h["Authorization"] for h in node.headers} == {expected}
    assert {b["method"] for b in node.bodies} == {"eth_chainId"}


def test_a_connection_the_server_closed_while_idle_is_replaced_once(nodes: Any) -> None:
    node = nodes(result("0x1"))
    node.close_after_answer = True  # every answer, then the connection is gone unannounced
    http = JsonRpcHttp(node.url(), timeout=5)
    for _ in range(3):
        assert http.call("eth_blockNumber", [])["result"] == "0x1"
    assert len(node.bodies) == 3, "each request reached the node exactly once"
    assert len(node.connections) == 3, "a new connection for each, none failed"


def test_a_batch_answers_in_the_order_asked_whatever_the_order_sent(nodes: Any) -> None:
    node = nodes(echo_method)
    node.reverse_batches = True  # JSON-RPC lets a node answer a batch in any order
    http = JsonRpcHttp(node.url(), timeout=5)
    calls = [("eth_a", [1]), ("eth_b", [2]), ("eth_c", [3])]
    replies = http.batch(calls)
    assert isinstance(replies, list)
    assert [r["result"] for r in replies] == [["eth_a", [1]], ["eth_b", [2]], ["eth_c", [3]]]
    assert len({b["id"] for b in node.bodies[-1]}) == 3, "one id a call"
    node.whole_batch = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "x"}}
    assert http.batch(calls) == node.whole_batch, "a batch refused as a whole is that error"


def test_make_batch_fails_over_on_a_refusal_and_reads_one_by_one_where_batches_are_refused(
    nodes: Any,
) -> None:
    def rate_limited_b(r: dict[str, Any]) -> dict[str, Any]:
        if r["method"] != "eth_b":
            return echo_method(r)
        return {"jsonrpc": "2.0", "id": r["id"], "error": {"code": -32005, "message": "rate limit"}}

    limited = nodes(rate_limited_b)
    no_batches = nodes(echo_method)
    refused = {"code": -32600, "message": "batches not supported"}
    no_batches.whole_batch = {"jsonrpc": "2.0", "id": None, "error": refused}
    provider = FailoverProvider([limited.url(), no_batches.url()], timeout=5)
    replies = provider.make_batch([("eth_a", [1]), ("eth_b", [2])])
    assert [r["result"] for r in replies] == [["eth_a", [1]], ["eth_b", [2]]]
    assert isinstance(no_batches.bodies[0], list), "asked as a batch first"
    assert [b["method"] for b in no_batches.bodies[1:]] == ["eth_a", "eth_b"], "then one by one"
    first, second = provider.health()
    assert first.failures == 1 and first.last_error == "rate limit"
    assert second.failures == 0
    assert "key=k" not in first.shown, "the endpoint is named redacted"


def test_http_errors_take_every_endpoint_down_and_say_so_redacted(nodes: Any) -> None:
    gateways = [nodes(result("0x1")), nodes(result("0x1"))]
    for gateway in gateways:
        gateway.status = 503
    provider = FailoverProvider([g.url("u:secret-pw@") for g in gateways], timeout=5)
    with pytest.raises(RpcEndpointsDown) as raised:
        provider.make_batch([("eth_getTransactionReceipt", ["0x" + "00" * 32])])
    assert "HTTP 503" in str(raised.value) and "secret-pw" not in str(raised.value)
    assert all(h.failures == 1 for h in provider.health())
