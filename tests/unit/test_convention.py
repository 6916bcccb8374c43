"""The CE API convention: CE's documented job-create body, the Idempotency-Key, strict parsing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import RemoteTransient, SpecError
from bridge.remote.convention import (
    DEFAULT_BASE_URL,
    CEJobRequest,
    CEStatus,
    OutputFile,
    RemoteJobStatus,
    error_message,
    idempotency_key,
    is_success,
    is_terminal,
    job_ref_body,
    parse_cancel_response,
    parse_create_response,
)

REFERENCE = Path("/work/shared/reference/charity-engine-remote-job-submission-api.txt")

# Verbatim from CE's documentation page (the example-job-create.json of its cURL example).
CE_EXAMPLE = """{
  "authenticator":"c503d86bc4e82d9415cb5912a0986c80",
  "app":"charityengine:wolframengine",
  "commandLine":"math 2+2 > output/out.txt",
  "specs": {
    "vcpus":2,
    "ram": 512,
    "disk": 512,
    "networkDownload": 0,
    "networkUpload": 0
  },
  "hours": 1,
  "inputFiles": [
    {
      "filename": "in.txt",
      "url": "http://work.charityengine.com/rytis/mathtest.m"
    }
  ]
}"""

EXAMPLE_REQUEST = CEJobRequest(
    app="charityengine:wolframengine",
    command_line="math 2+2 > output/out.txt",
    vcpus=2,
    ram=512,
    disk=512,
    network_download=0,
    network_upload=0,
    hours=1,
    input_files=(("in.txt", "http://work.charityengine.com/rytis/mathtest.m"),),
)


def _key_order(value: Any) -> Any:
    """The dict keys at every level, in order: equal shapes have equal key orders."""
    if isinstance(value, dict):
        return [(k, _key_order(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_key_order(v) for v in value]
    return type(value).__name__


def _example_from_reference() -> str:
    # The page was scraped from HTML: its indentation uses no-break spaces.
    text = REFERENCE.read_text(encoding="utf-8").replace("\u00a0", " ")
    start = text.index("{", text.index("Contents of the POST data"))
    depth = 0
    for end, ch in enumerate(text[start:], start):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0:
            return text[start : end + 1]
    raise AssertionError("unbalanced example in the reference page")


def test_job_create_body_is_exactly_ces_documented_example() -> None:
    expected = json.loads(CE_EXAMPLE)
    body = EXAMPLE_REQUEST.to_body("c503d86bc4e82d9415cb5912a0986c80")
    assert body == expected
    assert _key_order(body) == _key_order(expected)
    assert json.loads(json.dumps(body)) == expected


@pytest.mark.skipif(not REFERENCE.exists(), reason="CE reference page not present")
def test_embedded_example_is_the_reference_pages() -> None:
    assert json.loads(_example_from_reference()) == json.loads(CE_EXAMPLE)


def test_public_body_is_the_body_without_the_authenticator() -> None:
    body = EXAMPLE_REQUEST.to_body("secret")
    public = EXAMPLE_REQUEST.to_public_body()
    assert "authenticator" not in public
    assert body == {"authenticator": "secret", **public}
    assert "secret" not in repr(EXAMPLE_REQUEST)


def test_no_input_files_is_an_empty_list() -> None:
    request = CEJobRequest("app", "cmd", 1, 0, 0, 0, 0, 1)
    assert request.to_body("a")["inputFiles"] == []


@pytest.mark.parametrize(
    "changes",
    [
        {"app": ""},
        {"command_line": ""},
        {"vcpus": 0},
        {"hours": 0},
        {"ram": -1},
        {"disk": 1.5},
        {"network_upload": True},
        {"input_files": [("a", "b")]},
        {"input_files": (("a",),)},
        {"input_files": (("", "http://x"),)},
    ],
)
def test_job_request_refuses_what_ce_would_reject(changes: dict[str, Any]) -> None:
    fields: dict[str, Any] = {
        "app": "app",
        "command_line": "cmd",
        "vcpus": 1,
        "ram": 1,
        "disk": 1,
        "network_download": 0,
        "network_upload": 0,
        "hours": 1,
        "input_files": (),
    }
    with pytest.raises(SpecError):
        CEJobRequest(**(fields | changes))


def test_idempotency_key_format() -> None:
    key = idempotency_key(31337, "0x52908400098527886e0f7030069857d2e4169ee7", 42)
    assert key == "31337:0x52908400098527886E0F7030069857D2E4169EE7:42"
    assert re.fullmatch(r"[1-9][0-9]*:0x[0-9a-fA-F]{40}:[0-9]+", key)
    upper = "0x" + "52908400098527886e0f7030069857d2e4169ee7".upper()
    assert idempotency_key(31337, upper, 42) == key
    assert idempotency_key(1, "0x52908400098527886E0F7030069857D2E4169EE7", 0).endswith(":0")
    # A job id reused by another submission after a reorg: the generation is a fourth part.
    assert idempotency_key(31337, upper, 42, generation=0) == key
    assert idempotency_key(31337, upper, 42, generation=2) == key + ":2"
    with pytest.raises(ValueError):
        idempotency_key(31337, upper, 42, generation=-1)


@pytest.mark.parametrize(
    ("chain_id", "address", "job_id"),
    [
        (0, "0x52908400098527886e0f7030069857d2e4169ee7", 1),
        (1, "0x52908400098527886e0f7030069857d2e4169ee", 1),
        (1, "52908400098527886e0f7030069857d2e4169ee7x", 1),
        (1, "0x52908400098527886E0F7030069857D2E4169Ee7", 1),  # bad checksum
        (1, "0x52908400098527886e0f7030069857d2e4169ee7", -1),
        (True, "0x52908400098527886e0f7030069857d2e4169ee7", 1),
    ],
)
def test_idempotency_key_refuses_bad_parts(chain_id: int, address: str, job_id: int) -> None:
    with pytest.raises(ValueError):
        idempotency_key(chain_id, address, job_id)


def test_status_helpers() -> None:
    assert {s.value for s in CEStatus} == {
        "Provisioning",
        "Downloading",
        "Running",
        "Completed",
        "Failed",
        "Aborted",
    }
    assert [s for s in CEStatus if is_terminal(s)] == [
        CEStatus.COMPLETED,
        CEStatus.FAILED,
        CEStatus.ABORTED,
    ]
    assert [s for s in CEStatus if is_success(s)] == [CEStatus.COMPLETED]
    assert is_terminal("Completed") and not is_terminal("Unknown") and not is_success("Failed")


def test_default_base_url_and_ref_body() -> None:
    assert DEFAULT_BASE_URL == "https://api.charityengine.services/remotejobs/v2/"
    assert job_ref_body("a", "j") == {"authenticator": "a", "jobId": "j"}


def test_job_status_parses_a_completed_answer() -> None:
    body = {
        "jobId": "r1",
        "status": "Completed",
        "outputFiles": [{"filename": "meta/x.json", "url": "https://h/f/r1/meta/x.json"}],
        "error": None,
    }
    status = RemoteJobStatus.from_response(body)
    assert status == RemoteJobStatus(
        "r1", CEStatus.COMPLETED, (OutputFile("meta/x.json", "https://h/f/r1/meta/x.json"),)
    )
    assert status.is_terminal and status.is_success
    assert status.to_body() == body


def test_job_status_optional_fields_may_be_absent_or_null() -> None:
    assert RemoteJobStatus.from_response({"jobId": "r", "status": "Running"}) == RemoteJobStatus(
        "r", CEStatus.RUNNING
    )
    failed = RemoteJobStatus.from_response(
        {"jobId": "r", "status": "Failed", "outputFiles": None, "error": "boom"}
    )
    assert failed.error == "boom" and failed.is_terminal and not failed.is_success


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "Completed",
        {},
        {"jobId": "", "status": "Running"},
        {"jobId": 5, "status": "Running"},
        {"jobId": "r", "status": "running"},
        {"jobId": "r", "status": "Done"},
        {"jobId": "r"},
        {"jobId": "r", "status": "Completed", "outputFiles": {}},
        {"jobId": "r", "status": "Completed", "outputFiles": ["out.txt"]},
        {"jobId": "r", "status": "Completed", "outputFiles": [{"filename": "a"}]},
        {"jobId": "r", "status": "Completed", "outputFiles": [{"filename": "", "url": "u"}]},
        {"jobId": "r", "status": "Failed", "error": 3},
    ],
)
def test_job_status_refuses_malformed_answers(body: object) -> None:
    with pytest.raises(RemoteTransient):
        RemoteJobStatus.from_response(body)


def test_create_and_cancel_answers() -> None:
    assert parse_create_response({"jobId": "abc"}) == "abc"
    assert parse_cancel_response({"jobId": "abc", "status": "Aborted"}) == (
        "abc",
        CEStatus.ABORTED,
    )
    for bad in ({}, {"jobId": ""}, ["abc"], {"id": "abc"}):
        with pytest.raises(RemoteTransient):
            parse_create_response(bad)
    with pytest.raises(RemoteTransient):
        parse_cancel_response({"jobId": "abc", "status": "Cancelled"})


def test_error_message() -> None:
    assert error_message(b'{"error": "bad app"}') == "bad app"
    assert error_message(b'{"detail": "Not Found"}') is None
    assert error_message(b'{"error": 4}') is None
    assert error_message(b"<html>") is None
    assert error_message(b"\xff\xfe") is None
