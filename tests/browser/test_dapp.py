"""The dapp in headless chromium against the real stack (Anvil, the CE emulator, the bridge).

Each test opens the page with a test wallet for a fresh funded account and acts as a user would:
through the ``data-testid`` hooks, which are a contract for outside browser tests.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import OpenDapp, Site, screenshot

SLOW = 60_000  # ms: a job's whole life on the 1 s block stack takes a few seconds


def connect(page: Any) -> None:
    page.get_by_test_id("connect").click()
    expect(page.get_by_test_id("account")).to_have_text(page.account)


def test_connect_shows_the_account(open_dapp: OpenDapp) -> None:
    page = open_dapp()
    connect(page)
    expect(page.get_by_test_id("chain-warning")).to_be_hidden()
    expect(page.get_by_test_id("credits")).to_have_attribute("data-wei", "0")
    screenshot(page, "connected")
