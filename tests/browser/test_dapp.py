"""The dapp in headless chromium against the real stack (Anvil, the CE emulator, the bridge).

Each test opens the page with a test wallet for a fresh funded account and acts as a user would:
through the ``data-testid`` hooks, which are a contract for outside browser tests.
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import expect
from web3.types import TxParams

from bridge.chain.spec import InputFile, JobSpec, Resources, Status
from bridge.devchain import free_port
from tests.browser.conftest import OpenDapp, Site, build_static_site, screenshot

SLOW = 60_000  # ms: a job's whole life on the 1 s block stack takes a few seconds


def _mined(site: Site, tx: Any) -> None:
    assert site.stack.w3.eth.wait_for_transaction_receipt(tx)["status"] == 1


def _onchain(site: Site, job_id: int) -> tuple[Status, bytes]:
    job = site.stack.escrow.functions.getJob(job_id).call()
    return Status(job[1]), bytes(job[6])


def _wait_onchain(site: Site, job_id: int, status: Status, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _onchain(site, job_id)[0] is not status:
        assert time.monotonic() < deadline, f"job {job_id} never became {status.name}"
        time.sleep(0.2)


def _submit_directly(site: Site, account: str, command: str) -> int:
    """Submits a job from ``account`` without the page (web3 through Anvil's impersonation)."""
    spec = JobSpec(
        app="charityengine:wolframengine",
        command_line=command,
        specs=Resources(vcpus=1, ram=256, disk=256),
        max_hours=1,
    )
    escrow = site.stack.escrow
    price = escrow.functions.quote(spec.to_abi(), 0).call()
    fn = escrow.functions.submitJob(spec.to_abi(), 0)
    job_id = int(fn.call({"from": account, "value": price}))
    _mined(site, fn.transact({"from": account, "value": price}))
    return job_id


def connect(page: Any) -> None:
    page.get_by_test_id("connect").click()
    expect(page.get_by_test_id("account")).to_have_text(page.account)


def test_connect_shows_the_account(open_dapp: OpenDapp) -> None:
    page = open_dapp()
    connect(page)
    # Found through EIP-6963 (the announced name), not window.ethereum.
    expect(page.get_by_test_id("message")).to_have_text(f"Connected Test Wallet: {page.account}.")
    expect(page.get_by_test_id("chain-warning")).to_be_hidden()
    expect(page.get_by_test_id("credits")).to_have_attribute("data-wei", "0")
    screenshot(page, "connected")


def _job_id(page: Any) -> int:
    """The id of the only job row on the page (each test's account is fresh)."""
    row = page.locator("[data-testid^='job-row-']")
    expect(row).to_have_count(1, timeout=SLOW)
    return int(str(row.get_attribute("data-testid")).removeprefix("job-row-"))


def _submit_from_page(page: Any, command: str) -> int:
    page.get_by_test_id("command-line").fill(command)
    expect(page.get_by_test_id("quote")).to_have_attribute("data-wei", re.compile(r"^\d+$"))
    page.get_by_test_id("submit").click()
    expect(page.get_by_test_id("message")).to_contain_text("submitted", timeout=SLOW)
    return _job_id(page)


def test_a_wallet_without_eip6963_is_found_through_window_ethereum(open_dapp: OpenDapp) -> None:
    page = open_dapp(legacy_wallet=True)
    connect(page)
    expect(page.get_by_test_id("message")).to_have_text(
        f"Connected Browser wallet: {page.account}."
    )


def test_with_two_wallets_the_user_chooses(open_dapp: OpenDapp) -> None:
    page = open_dapp(two_wallets=True)
    page.get_by_test_id("connect").click()
    other = page.get_by_test_id("wallet-org.example.other")
    mine = page.get_by_test_id("wallet-org.ce-bridge.test-wallet")
    expect(other).to_have_text("Other Wallet")
    expect(mine).to_be_visible()
    other.click()
    expect(page.get_by_test_id("message")).to_have_text(
        "You rejected the request in your wallet; nothing was sent."
    )
    page.get_by_test_id("connect").click()
    page.get_by_test_id("wallet-org.ce-bridge.test-wallet").click()
    expect(page.get_by_test_id("account")).to_have_text(page.account)


def test_every_field_has_a_label_and_the_page_works_by_keyboard(open_dapp: OpenDapp) -> None:
    page = open_dapp()
    page.keyboard.press("Tab")
    expect(page.get_by_test_id("connect")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("account")).to_have_text(page.account)
    page.get_by_test_id("add-input").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("input-filename-0")).to_be_focused()
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, textarea, select')]
              .filter(e => e.labels === null || e.labels.length === 0)
              .map(e => e.id)"""
    )
    assert unlabelled == []
    nameless = page.evaluate(
        """() => [...document.querySelectorAll('button')]
              .filter(b => !b.hidden && !(b.getAttribute('aria-label') || b.textContent.trim()))
              .length"""
    )
    assert nameless == 0


def test_bad_fields_get_messages_as_they_are_typed(open_dapp: OpenDapp, site: Site) -> None:
    page = open_dapp()
    connect(page)
    limits = site.stack.escrow.functions.limits().call()
    max_vcpus, max_hours = limits[0], limits[5]
    page.get_by_test_id("vcpus").fill(str(max_vcpus + 1))
    expect(page.get_by_test_id("vcpus-error")).to_have_text(
        f"vCPUs must be at most {max_vcpus} (the contract's maxVcpus)."
    )
    page.get_by_test_id("hours").fill("0")
    expect(page.get_by_test_id("hours-error")).to_have_text("Hours must be at least 1.")
    page.get_by_test_id("ram").fill("lots")
    expect(page.get_by_test_id("ram-error")).to_have_text("RAM must be a whole number.")
    page.get_by_test_id("app").fill("")
    expect(page.get_by_test_id("app-error")).to_have_text("The app is required.")
    page.get_by_test_id("add-input").click()
    page.get_by_test_id("input-filename-0").fill("../data.csv")
    page.get_by_test_id("input-url-0").fill("ftp:/nowhere")
    expect(page.get_by_test_id("input-url-0-error")).to_have_text(
        "Input file 1: not an http(s) URL."
    )
    expect(page.get_by_test_id("input-filename-0-error")).to_contain_text("a relative path")
    form_error = page.get_by_test_id("form-error")
    expect(form_error).to_contain_text("Fix these fields: App, vCPUs, RAM (MB), Hours (at most)")
    expect(page.get_by_test_id("quote")).not_to_have_attribute("data-wei", re.compile(".*"))
    assert page.get_by_test_id("vcpus").get_attribute("aria-invalid") == "true"
    screenshot(page, "validation")

    page.get_by_test_id("vcpus").fill(str(max_vcpus))
    page.get_by_test_id("hours").fill(str(max_hours))
    page.get_by_test_id("ram").fill("1024")
    page.get_by_test_id("app").fill("charityengine:wolframengine")
    page.get_by_test_id("input-url-0").fill("https://example.org/data.csv")
    page.get_by_test_id("input-filename-0").fill("in/data.csv")
    expect(form_error).to_be_empty()
    expect(page.get_by_test_id("quote")).to_have_attribute("data-wei", re.compile(r"^\d+$"))
    page.get_by_test_id("hours").fill(str(max_hours + 1))
    page.get_by_test_id("submit").click()
    expect(page.get_by_test_id("hours")).to_be_focused()
    expect(page.locator("[data-testid^='job-row-']")).to_have_count(0)


def test_the_quote_is_the_contracts(open_dapp: OpenDapp, site: Site) -> None:
    page = open_dapp()
    connect(page)
    page.get_by_test_id("vcpus").fill("3")
    page.get_by_test_id("hours").fill("2")
    page.get_by_test_id("callback-gas").fill("50000")
    page.get_by_test_id("add-input").click()
    page.get_by_test_id("input-filename-0").fill("in.txt")
    page.get_by_test_id("input-url-0").fill("https://example.org/in.txt")
    page.get_by_test_id("add-input").click()
    page.get_by_test_id("input-filename-1").fill("more.txt")
    page.get_by_test_id("input-url-1").fill("https://example.org/more.txt")
    spec = JobSpec(
        app="charityengine:wolframengine",
        command_line=page.get_by_test_id("command-line").input_value(),
        specs=Resources(vcpus=3, ram=512, disk=512),
        max_hours=2,
        input_files=(
            InputFile("in.txt", "https://example.org/in.txt"),
            InputFile("more.txt", "https://example.org/more.txt"),
        ),
    )
    expected = site.stack.escrow.functions.quote(spec.to_abi(), 50_000).call()
    expect(page.get_by_test_id("quote")).to_have_attribute("data-wei", str(expected))
    cheaper = site.stack.escrow.functions.quote(spec.to_abi(), 0).call()
    page.get_by_test_id("callback-gas").fill("0")
    expect(page.get_by_test_id("quote")).to_have_attribute("data-wei", str(cheaper))
    assert cheaper < expected


def test_a_job_submitted_from_the_page_completes_verifies_and_downloads(
    open_dapp: OpenDapp, site: Site
) -> None:
    page = open_dapp()
    connect(page)
    job_id = _submit_from_page(page, 'math -run "Print[6*7]" > output/answer.txt')
    row = page.get_by_test_id(f"job-row-{job_id}")
    expect(row).to_have_attribute("data-status", "Completed", timeout=SLOW)
    verify = page.get_by_test_id(f"verify-{job_id}")
    expect(verify).to_have_attribute("data-verified", "true", timeout=SLOW)
    expect(verify).to_contain_text("Verified")
    status, result_hash = _onchain(site, job_id)
    assert status is Status.COMPLETED
    expect(verify).to_contain_text("0x" + result_hash.hex())
    page.locator(f"[data-testid='job-row-{job_id}'] summary").click()
    expect(row.locator(".timeline li")).to_have_count(4)  # submitted, accepted, running, completed
    expect(row.locator(".timeline")).to_contain_text("JobCompleted")

    links = page.get_by_test_id(f"outputs-{job_id}").locator("a")
    expect(links.first).to_be_visible()
    manifest = httpx.get(f"{site.stack.api_url}/jobs/{job_id}/outputs/", timeout=10).json()
    by_path = {f["path"]: f["sha256"] for f in manifest["files"]}
    assert links.count() == len(by_path)
    expect(page.get_by_test_id(f"outputs-{job_id}")).not_to_contain_text("differs")
    with page.expect_download() as download_info:
        links.first.click()
    download = download_info.value
    content = Path(download.path()).read_bytes()
    assert hashlib.sha256(content).hexdigest() == by_path[links.first.inner_text()]
    screenshot(page, "dapp-desktop", readme=True)

    phone = open_dapp(account=page.account, width=375, height=812)
    connect(phone)
    expect(phone.get_by_test_id(f"verify-{job_id}")).to_have_attribute(
        "data-verified", "true", timeout=SLOW
    )
    overflow = phone.evaluate("document.documentElement.scrollWidth")
    phone.get_by_test_id(f"job-row-{job_id}").scroll_into_view_if_needed()
    screenshot(phone, "dapp-phone", readme=True, full_page=False)
    wide = phone.evaluate(
        """() => [...document.querySelectorAll('body *')]
              .filter(e => e.getBoundingClientRect().right > 376)
              .map(e => e.tagName + '#' + e.id + '.' + e.className).slice(0, 8)"""
    )
    assert overflow <= 375, f"the page is {overflow} px wide at 375 px: {wide}"


def test_a_tampered_file_fails_verification(
    open_dapp: OpenDapp,
    site: Site,
    tmp_path: Path,
    serve_static: Any,
    tampering_proxy: str,
) -> None:
    account = site.fresh_account()
    job_id = _submit_directly(site, account, "echo tamper-me > output/out.txt")
    _wait_onchain(site, job_id, Status.COMPLETED)
    config = {
        "chainId": site.chain_id,
        "rpcUrl": site.stack.anvil.url if site.stack.anvil else None,
        "contract": site.stack.escrow.address,
        "apiUrl": tampering_proxy,
    }
    out = build_static_site(tmp_path / "site", config)
    assert "gzipped" in out
    url = serve_static(tmp_path / "site", site.static_port)
    page = open_dapp(url + "/", account=account)
    connect(page)
    verify = page.get_by_test_id(f"verify-{job_id}")
    expect(verify).to_have_attribute("data-verified", "false", timeout=SLOW)
    expect(verify).to_contain_text("Verification failed")
    outputs = page.get_by_test_id(f"outputs-{job_id}")
    expect(outputs.locator("li", has_text="out.txt")).to_contain_text(
        "differs from the hash the bridge lists for it"
    )
    screenshot(page, "tampered")


def test_the_static_site_reads_the_bridge_across_origins(
    open_dapp: OpenDapp, site: Site, tmp_path: Path, serve_static: Any
) -> None:
    account = site.fresh_account()
    job_id = _submit_directly(site, account, "echo static > output/out.txt")
    _wait_onchain(site, job_id, Status.COMPLETED)
    config = {
        "chainId": site.chain_id,
        "rpcUrl": site.stack.anvil.url if site.stack.anvil else None,
        "contract": site.stack.escrow.address,
        "apiUrl": site.stack.api_url,
    }
    build_static_site(tmp_path / "site", config)
    url = serve_static(tmp_path / "site", site.static_port)
    assert url == site.static_origin
    page = open_dapp(url + "/", account=account)
    connect(page)
    expect(page.get_by_test_id(f"verify-{job_id}")).to_have_attribute(
        "data-verified", "true", timeout=SLOW
    )


def test_cancel_before_acceptance_then_withdraw_the_refund(open_dapp: OpenDapp, site: Site) -> None:
    site.admin("pause")  # the bridge takes no new job, so it stays Submitted
    try:
        page = open_dapp()
        connect(page)
        job_id = _submit_from_page(page, "echo never-runs > output/out.txt")
        paid = site.stack.escrow.functions.getJob(job_id).call()[5]
        row = page.get_by_test_id(f"job-row-{job_id}")
        expect(row).to_have_attribute("data-status", "Submitted")
        page.get_by_test_id(f"cancel-{job_id}").click()
        expect(row).to_have_attribute("data-status", "Cancelled", timeout=SLOW)
        credits = page.get_by_test_id("credits")
        expect(credits).to_have_attribute("data-wei", str(paid), timeout=SLOW)
        expect(page.get_by_test_id(f"cancel-{job_id}")).to_be_hidden()
        balance = site.stack.w3.eth.get_balance(page.account)
        page.get_by_test_id("withdraw").click()
        expect(credits).to_have_attribute("data-wei", "0", timeout=SLOW)
        expect(page.get_by_test_id("message")).to_contain_text("Withdrawn")
        assert site.stack.escrow.functions.creditOf(page.account).call() == 0
        assert site.stack.w3.eth.get_balance(page.account) > balance  # refund minus gas
    finally:
        site.admin("resume")


def test_a_rejected_signature_is_shown_in_words(open_dapp: OpenDapp, site: Site) -> None:
    page = open_dapp()
    connect(page)
    page.evaluate("window.__testWallet.refuse('eth_sendTransaction')")
    expect(page.get_by_test_id("quote")).to_have_attribute("data-wei", re.compile(r"^\d+$"))
    page.get_by_test_id("submit").click()
    expect(page.get_by_test_id("message")).to_have_text(
        "You rejected the request in your wallet; nothing was sent."
    )
    assert page.get_by_test_id("message").get_attribute("data-kind") == "error"
    expect(page.locator("[data-testid^='job-row-']")).to_have_count(0)


def test_a_revert_is_shown_by_its_custom_error_and_arguments(
    open_dapp: OpenDapp, site: Site
) -> None:
    page = open_dapp()
    connect(page)
    expect(page.get_by_test_id("quote")).to_have_attribute("data-wei", re.compile(r"^\d+$"))
    escrow = site.stack.escrow
    admin: TxParams = {"from": site.stack.roles.admin}
    limits = escrow.functions.limits().call()
    grace = escrow.functions.deadlineGrace().call()
    lowered = list(limits)
    lowered[0] = 2  # maxVcpus, lowered after the page read the limits
    _mined(site, escrow.functions.setLimits(tuple(lowered), grace).transact(admin))
    try:
        page.get_by_test_id("vcpus").fill("3")
        expected = (
            "The contract refused: VcpusOverLimit(3, 2): more vCPUs than the contract allows."
        )
        expect(page.get_by_test_id("form-error")).to_have_text(expected)
        page.get_by_test_id("submit").click()
        expect(page.get_by_test_id("message")).to_have_text(expected)
    finally:
        _mined(site, escrow.functions.setLimits(tuple(limits), grace).transact(admin))


def test_insufficient_funds_are_shown_in_words(open_dapp: OpenDapp, site: Site) -> None:
    page = open_dapp(account=site.fresh_account(ether=0))
    connect(page)
    expect(page.get_by_test_id("quote")).to_have_attribute("data-wei", re.compile(r"^\d+$"))
    page.get_by_test_id("submit").click()
    expect(page.get_by_test_id("message")).to_have_text(
        "Insufficient funds: your account cannot pay the price plus gas."
    )


def test_an_unreachable_bridge_is_shown_in_words(
    open_dapp: OpenDapp, site: Site, tmp_path: Path, serve_static: Any
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    account = site.fresh_account()
    job_id = _submit_directly(site, account, "echo unreachable > output/out.txt")
    config = {
        "chainId": site.chain_id,
        "rpcUrl": site.stack.anvil.url if site.stack.anvil else None,
        "contract": site.stack.escrow.address,
        "apiUrl": dead,
    }
    build_static_site(tmp_path / "site", config)
    page = open_dapp(serve_static(tmp_path / "site", site.static_port) + "/", account=account)
    connect(page)
    expect(page.get_by_test_id(f"job-row-{job_id}")).to_be_visible()
    expect(page.get_by_test_id("message")).to_contain_text(f"The bridge at {dead} is unreachable")


def test_a_wrong_chain_is_flagged_and_switched(open_dapp: OpenDapp, site: Site) -> None:
    page = open_dapp(chain_id=1)
    connect(page)
    warning = page.get_by_test_id("chain-warning")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text(
        f"Your wallet is on chain 1; this dapp's contract is on chain {site.chain_id}."
    )
    screenshot(page, "wrong-chain")
    page.get_by_test_id("submit").click()
    expect(page.get_by_test_id("message")).to_have_text(
        f"Switch your wallet to chain {site.chain_id} first."
    )
    page.get_by_test_id("switch-chain").click()
    expect(warning).to_be_hidden()
    expect(page.get_by_test_id("message")).to_have_text(f"Switched to chain {site.chain_id}.")
    assert page.evaluate("window.__testWallet.chainId") == hex(site.chain_id)


def test_without_a_public_rpc_url_the_page_reads_through_the_wallet(
    open_dapp: OpenDapp, site: Site, tmp_path: Path, serve_static: Any
) -> None:
    config = {
        "chainId": site.chain_id,
        "rpcUrl": None,
        "contract": site.stack.escrow.address,
        "apiUrl": site.stack.api_url,
    }
    build_static_site(tmp_path / "site", config)
    url = serve_static(tmp_path / "site", site.static_port)
    page = open_dapp(url + "/", chain_id=5)
    expect(page.get_by_test_id("quote")).to_have_text("—")  # nothing to read with yet
    connect(page)
    expect(page.get_by_test_id("chain-warning")).to_be_visible()
    expect(page.get_by_test_id("quote")).not_to_have_attribute("data-wei", re.compile(".*"))
    page.get_by_test_id("switch-chain").click()
    spec = JobSpec(
        app="charityengine:wolframengine",
        command_line=page.get_by_test_id("command-line").input_value(),
        specs=Resources(vcpus=1, ram=512, disk=512),
        max_hours=1,
    )
    expected = site.stack.escrow.functions.quote(spec.to_abi(), 0).call()
    expect(page.get_by_test_id("quote")).to_have_attribute("data-wei", str(expected))
    expect(page.get_by_test_id("credits")).to_have_attribute("data-wei", "0")
