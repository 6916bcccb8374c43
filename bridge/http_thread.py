"""An ASGI app served by uvicorn from a daemon thread: the bridge's API and the CE emulator.

``ThreadedServer`` binds its socket itself (so port 0 picks a free port and a busy one fails at
once), returns only once a probe path answers 200 (polling, no fixed sleep), and ``stop()``
waits for the thread. Safe to stop twice.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

import httpx
import uvicorn

from bridge.errors import BridgeError, ConfigError
from bridge.lifecycle import Service
from bridge.waiting import wait_until

_POLL_INTERVAL = 0.01


class ThreadedServer(Service):
    """Serves ``app`` on ``host:port`` from a daemon thread named ``name``.

    Raises:
        ConfigError: the address cannot be bound (in use, not local, no permission).
        BridgeError: the server did not answer ``probe_path`` within ``startup_timeout``.
    """

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        *,
        probe_path: str,
        name: str,
        lifespan: str = "on",
        startup_timeout: float = 10.0,
    ) -> None:
        self.host = host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only for
        # sockets whose proto says TCP; with proto 0 every answer waits ~40 ms (Nagle and
        # delayed ACKs, as uvicorn writes headers and body separately).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self._socket = sock
        self.port: int = sock.getsockname()[1]
        self._name = name
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_config=None,
                access_log=False,
                lifespan=lifespan,  # type: ignore[arg-type]
                timeout_graceful_shutdown=1,
            )
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=name, daemon=True
        )
        self._thread.start()
        try:
            self._wait_until_answering(probe_path, startup_timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (no trailing slash)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        """Stops serving and waits for the thread (up to 10 s). Safe to call twice."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._socket.close()

    def _wait_until_answering(self, probe_path: str, timeout: float) -> None:
        probe_host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        probe_host = f"[{probe_host}]" if ":" in probe_host else probe_host
        probe = f"http://{probe_host}:{self.port}{probe_path}"
        with httpx.Client(timeout=1.0) as http:

            def answers() -> bool:
                if not self._thread.is_alive():
                    raise BridgeError(f"the {self._name} server thread exited during startup")
                try:
                    return http.get(probe).status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(
                answers, timeout, _POLL_INTERVAL, f"the {self._name} server", error=BridgeError
            )
