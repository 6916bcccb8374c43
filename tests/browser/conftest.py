"""Fixtures of the browser tests: the real stack, Debian's chromium and an injected test wallet.

- ``stack`` (module): Anvil (1 s blocks), the CE emulator and the bridge with its API and the
  dapp at ``/app/``; CORS allowed for the static site's origin; an admin token to pause dispatch.
- ``browser`` (session): headless chromium from Debian (``/usr/bin/chromium``) driven by
  Playwright through ``executable_path``; Playwright's own browser download is never used.
- ``open_dapp``: a new page with the test wallet (``test_wallet.js``) for a fresh funded account
  (Anvil impersonation), optionally on a wrong chain, at the given URL.
- ``static_site``: the dapp built as a static site (``node dapp/build.mjs --out --config``)
  served from another origin, and ``TamperingProxy``: the bridge's API with output files altered.

The tests skip (with the reason) only when chromium or the dapp's build is missing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account

from bridge.api.dapp import DAPP_DIST
from bridge.chain.artifacts import REPO_ROOT
from bridge.devchain import free_port
from bridge.devstack import LocalStack
from bridge.remote.emulator import EmulatorConfig

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ADMIN_TOKEN = "browser-tests-admin-token-41d7"
HERE = Path(__file__).parent
SCREENSHOTS = HERE / "screenshots"
#: Set to write the README's two screenshots to docs/img/ as well.
README_SHOTS = os.environ.get("CE_README_SCREENSHOTS") == "1"
WALLET_JS = (HERE / "test_wallet.js").read_text()


@dataclass
class Site:
    """The stack as the browser tests see it."""

    stack: LocalStack
    static_origin: str
    static_port: int

    @property
    def app_url(self) -> str:
        return self.stack.api_url + "/app/"

    @property
    def chain_id(self) -> int:
        return int(self.stack.w3.eth.chain_id)

    def admin(self, action: str) -> None:
        response = httpx.post(
            f"{self.stack.api_url}/admin/{action}",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=10,
        )
        response.raise_for_status()

    def fresh_account(self, ether: int = 10) -> str:
        """A new funded account whose transactions Anvil signs (impersonation)."""
        address = str(Account.create(secrets.token_hex(16)).address)
        w3 = self.stack.w3
        w3.provider.make_request("anvil_setBalance", [address, hex(ether * 10**18)])  # type: ignore[arg-type]
        w3.provider.make_request("anvil_impersonateAccount", [address])  # type: ignore[arg-type]
        return address


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if not (DAPP_DIST / "app.js").is_file():
        pytest.skip("the dapp is not built: run scripts/setup")
    static_port = free_port()
    static_origin = f"http://127.0.0.1:{static_port}"
    config = EmulatorConfig(provisioning_seconds=0.3, downloading_seconds=0.3, running_seconds=1.0)
    with LocalStack(
        tmp_path_factory.mktemp("browser-stack"),
        block_time=1.0,
        confirmations=1,
        emulator_config=config,
        settings={"admin_token": ADMIN_TOKEN, "cors_origins": static_origin},
    ) as stack:
        yield Site(stack, static_origin, static_port)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).is_file():
        pytest.skip("chromium is not installed (scripts/setup installs Debian's as root)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


OpenDapp = Callable[..., Any]


@pytest.fixture
def open_dapp(browser: Any, site: Site) -> Iterator[OpenDapp]:
    contexts: list[Any] = []
    logs: list[str] = []

    def open_page(
        url: str | None = None,
        *,
        account: str | None = None,
        chain_id: int | None = None,
        width: int = 1280,
        height: int = 900,
        legacy_wallet: bool = False,
        two_wallets: bool = False,
    ) -> Any:
        context = browser.new_context(
            viewport={"width": width, "height": height}, accept_downloads=True
        )
        contexts.append(context)
        wallet = {
            "rpcUrl": site.stack.anvil.url if site.stack.anvil else "",
            "account": account or site.fresh_account(),
            "chainId": hex(site.chain_id),
            "startChainId": hex(chain_id if chain_id is not None else site.chain_id),
            "legacy": legacy_wallet,
            "second": two_wallets,
        }
        context.add_init_script(f"window.__testWalletSettings = {json.dumps(wallet)};")
        context.add_init_script(WALLET_JS)
        page = context.new_page()
        page.on("console", lambda m: logs.append(f"console.{m.type}: {m.text}"))
        page.on("pageerror", lambda e: logs.append(f"pageerror: {e}"))
        page.goto(url or site.app_url)
        page.account = wallet["account"]
        return page

    yield open_page
    print("\n".join(logs))  # the page's console, shown by pytest when the test failed
    for context in contexts:
        context.close()


def screenshot(page: Any, name: str, *, readme: bool = False, full_page: bool = True) -> Path:
    """Writes ``screenshots/<name>.png`` (and ``docs/img/<name>.png`` when asked for the README)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    if readme and README_SHOTS:
        shutil.copyfile(path, REPO_ROOT / "docs" / "img" / f"{name}.png")
    return path


# ---------------------------------------------------------------------------- static site


class _Server:
    """A ThreadingHTTPServer on a daemon thread."""

    def __init__(self, handler: Any, port: int) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def build_static_site(out: Path, config: dict[str, Any]) -> str:
    """Builds the dapp into ``out`` with ``config`` as its config.json; returns what it printed."""
    config_file = out.parent / f"{out.name}-config.json"
    config_file.write_text(json.dumps(config))
    done = subprocess.run(
        [
            "node",
            str(REPO_ROOT / "dapp" / "build.mjs"),
            "--out",
            str(out),
            "--config",
            str(config_file),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout


@pytest.fixture
def serve_static() -> Iterator[Callable[[Path, int], str]]:
    servers: list[_Server] = []

    def serve(directory: Path, port: int) -> str:
        server = _Server(partial(_Quiet, directory=str(directory)), port)
        servers.append(server)
        return server.url

    yield serve
    for server in servers:
        server.stop()


_OUTPUT_FILE = re.compile(r"^/jobs/\d+/outputs/.+")
_PASSED_HEADERS = (
    "content-type",
    "access-control-allow-origin",
    "access-control-expose-headers",
    "vary",
)


def tampering_proxy_handler(upstream: str) -> type[SimpleHTTPRequestHandler]:
    """A handler forwarding GETs to ``upstream`` (with the browser's Origin, so CORS is the
    bridge's own) and appending bytes to every output file it passes on."""

    class Handler(_Quiet):
        def do_GET(self) -> None:
            headers = {"Origin": self.headers["Origin"]} if self.headers["Origin"] else {}
            answer = httpx.get(upstream + self.path, headers=headers, timeout=10)
            body = answer.content
            if answer.status_code == 200 and _OUTPUT_FILE.match(self.path.split("?")[0]):
                body += b"tampered\n"
            self.send_response(answer.status_code)
            for name in _PASSED_HEADERS:
                if name in answer.headers:
                    self.send_header(name, answer.headers[name])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture
def tampering_proxy(site: Site) -> Iterator[str]:
    server = _Server(tampering_proxy_handler(site.stack.api_url), free_port())
    yield server.url
    server.stop()
