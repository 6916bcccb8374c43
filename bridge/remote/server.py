"""Running the CE emulator with uvicorn: in a background thread (tests, demo) or blocking (CLI).

:class:`EmulatorServer` binds its socket before the server thread starts, so the port is known
at once (``port=0`` picks a free one), and :meth:`EmulatorServer.start` returns only once the
emulator answers HTTP. Unless the config names a ``data_dir``, output files live in a temporary
directory removed by :meth:`EmulatorServer.stop`.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import uvicorn

from bridge.http_thread import ThreadedServer
from bridge.lifecycle import Service
from bridge.remote.emulator import API_PREFIX, Emulator, EmulatorConfig, create_emulator_app

log = logging.getLogger("bridge.remote.server")


class EmulatorServer(Service):
    """The emulator served over real HTTP from a daemon thread.

    Args:
        config: The emulator's settings (default :class:`EmulatorConfig`).
        host: The interface to bind (default ``127.0.0.1``).
        port: The port; 0 picks a free one.
        startup_timeout: Seconds :meth:`start` waits for the first answer.
        clock: The emulator's monotonic seconds (jobs move through their states by it);
            tests may drive time by hand.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config or EmulatorConfig()
        self._clock = clock
        self._host = host
        self._port = port
        self._startup_timeout = startup_timeout
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._server: ThreadedServer | None = None
        self._emulator: Emulator | None = None

    @property
    def url(self) -> str:
        """The server's root URL, ``http://HOST:PORT/`` (valid once started)."""
        if self._server is None:
            raise RuntimeError("the emulator server is not started")
        return self._server.url + "/"

    @property
    def base_url(self) -> str:
        """The CE API base URL, ``http://HOST:PORT/remotejobs/v2/`` (valid once started)."""
        return self.url.rstrip("/") + API_PREFIX

    @property
    def emulator(self) -> Emulator:
        """The running emulator's state (valid once started)."""
        if self._emulator is None:
            raise RuntimeError("the emulator server is not started")
        return self._emulator

    def start(self) -> EmulatorServer:
        """Start serving and return once the emulator answers HTTP.

        Raises:
            RuntimeError: Already started.
            ConfigError: The address cannot be bound.
            BridgeError: The server did not answer within ``startup_timeout`` (it is stopped
                again).
        """
        if self._server is not None:
            raise RuntimeError("the emulator server is already started")
        config = self._config
        if config.data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="ce-emulator-")
            config = config.model_copy(update={"data_dir": Path(self._tmp.name)})
        app = create_emulator_app(config, clock=self._clock)
        self._emulator = app.state.emulator
        try:
            self._server = ThreadedServer(
                app,
                self._host,
                self._port,
                probe_path="/_emulator/stats",
                name="ce-emulator",
                lifespan="off",
                startup_timeout=self._startup_timeout,
            )
        except BaseException:
            self.stop()
            raise
        self._port = self._server.port
        log.info("CE emulator serving at %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving, wait for the thread, and remove the temporary data directory.

        Safe to call more than once, or on a server that failed to start.
        """
        if self._server is not None:
            self._server.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
        self._server = None
        self._tmp = None


def serve_emulator(host: str, port: int, config: EmulatorConfig | None = None) -> None:
    """Serve the emulator in the foreground until interrupted (``ce-bridge emulator``).

    Output files go to ``config.data_dir``, or to a temporary directory removed on exit.
    """
    config = config or EmulatorConfig()
    with tempfile.TemporaryDirectory(prefix="ce-emulator-") as tmp:
        if config.data_dir is None:
            config = config.model_copy(update={"data_dir": Path(tmp)})
        log.info("CE emulator base URL: http://%s:%d%s", host, port, API_PREFIX)
        uvicorn.run(create_emulator_app(config), host=host, port=port, log_level="info")
