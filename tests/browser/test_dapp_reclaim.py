"""Reclaiming a job after its deadline from the page (its own stack: it moves Anvil's clock)."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import OpenDapp, Site
from tests.browser.test_dapp import SLOW, connect


def test_a_job_past_its_deadline_is_reclaimed_from_the_page(
    open_dapp: OpenDapp, site: Site
) -> None:
    site.admin("pause")  # nothing runs it: it stays Submitted until its deadline
    page: Any = open_dapp()
    connect(page)
    page.get_by_test_id("command-line").fill("echo late > output/out.txt")
    page.get_by_test_id("submit").click()
    expect(page.get_by_test_id("message")).to_contain_text("submitted", timeout=SLOW)
    row = page.locator("[data-testid^='job-row-']")
    expect(row).to_have_count(1)
    job_id = int(str(row.get_attribute("data-testid")).removeprefix("job-row-"))
    reclaim = page.get_by_test_id(f"reclaim-{job_id}")
    expect(reclaim).to_be_hidden()
    paid = site.stack.escrow.functions.getJob(job_id).call()[5]
    deadline = site.stack.escrow.functions.getJob(job_id).call()[3]
    w3 = site.stack.w3
    now = w3.eth.get_block("latest")["timestamp"]
    w3.provider.make_request("evm_increaseTime", [deadline - now + 1])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    expect(reclaim).to_be_visible(timeout=SLOW)
    reclaim.click()
    expect(page.get_by_test_id(f"job-row-{job_id}")).to_have_attribute(
        "data-status", "Expired", timeout=SLOW
    )
    expect(page.get_by_test_id("credits")).to_have_attribute("data-wei", str(paid))
