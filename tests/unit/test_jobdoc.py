"""The CE job document codec: strict types, the contract's bounds, errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bridge.chain.spec import InputFile, JobSpec, Resources
from bridge.jobdoc import CreateBody, JobDocument, JobFile, describe, parse_job_file
from bridge.remote.convention import CEJobRequest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

DOC: dict[str, Any] = {
    "app": "charityengine:wolframengine",
    "commandLine": "math 2+2 > output/out.txt",
    "specs": {"vcpus": 2, "ram": 512, "disk": 1024, "networkDownload": 10, "networkUpload": 5},
    "hours": 3,
    "inputFiles": [{"filename": "in.m", "url": "https://example.org/in.m"}],
}


def specs(**changes: object) -> dict[str, Any]:
    return {"specs": {**DOC["specs"], **changes}}


BETWEEN_1_AND_UINT16 = "must be an integer between 1 and 65535"


def problems(data: object) -> str:
    with pytest.raises(ValueError) as err:
        parse_job_file(data)
    return str(err.value)


def test_a_document_round_trips_through_the_on_chain_spec() -> None:
    document = JobDocument.model_validate(DOC)
    spec = document.to_spec()
    assert spec == JobSpec(
        app=DOC["app"],
        command_line=DOC["commandLine"],
        specs=Resources(2, 512, 1024, 10, 5),
        max_hours=3,
        input_files=(InputFile("in.m", "https://example.org/in.m"),),
    )
    assert JobDocument.from_spec(spec) == document
    assert document.to_body() == DOC


def test_the_client_body_is_the_codec_body() -> None:
    request = CEJobRequest("charityengine:x", "echo", 1, 2, 3, 4, 5, 6, (("a", "http://b"),))
    body = request.to_body("secret")
    assert CreateBody.model_validate(body).to_body() == request.to_public_body()
    assert body["authenticator"] == "secret"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (specs(vcpus="two"), "specs.vcpus: expected an integer, got 'two'"),
        (specs(vcpus=70000), f"specs.vcpus: {BETWEEN_1_AND_UINT16}, got 70000"),
        (specs(vcpus=0), f"specs.vcpus: {BETWEEN_1_AND_UINT16}, got 0"),
        (specs(ram=2**32), "specs.ram: must be an integer between 0 and 4294967295"),
        (specs(disk=1.5), "specs.disk: expected an integer, got 1.5"),
        (specs(gpus=1), "specs.gpus: unknown key"),
        ({"hours": True}, "hours: expected an integer, got true"),
        ({"hours": "1"}, "hours: expected an integer, got '1'"),
        ({"hours": 65536}, "hours: must be an integer between 1 and 65535"),
        ({"app": ""}, "app: must not be empty"),
        ({"app": None}, "app: expected a string, got null"),
        ({"commandLine": 5}, "commandLine: expected a string, got 5"),
        ({"specs": [1]}, "specs: expected an object, got a list"),
        ({"inputFiles": {}}, "inputFiles: expected a list, got an object"),
        ({"inputFiles": [{"filename": "a"}]}, "inputFiles[0].url: is required"),
        ({"inputFiles": [{"filename": "a", "url": "u", "sha": 1}]}, "inputFiles[0].sha: unknown"),
        ({"priority": 5}, "priority: unknown key"),
        ({"callbackGasLimit": -1}, "callbackGasLimit: must be an integer between 0 and 4294967295"),
        ({"copies": 2}, "copies: unknown key"),
    ],
)
def test_each_problem_names_its_field(change: dict[str, Any], expected: str) -> None:
    message = problems({**DOC, **change})
    assert expected in message
    assert "Input should" not in message and "Value error" not in message


def test_missing_fields_and_not_an_object() -> None:
    message = problems({"app": "x"})
    for field in ("commandLine: is required", "specs: is required", "hours: is required"):
        assert field in message
    assert "\n" not in message
    assert problems([DOC]) == "expected a JSON object (a CE job-create body), got a list"


def test_the_authenticator_is_never_shown() -> None:
    with pytest.raises(ValidationError) as err:
        CreateBody.model_validate({**DOC, "authenticator": 12345678})
    assert describe(err.value) == ["authenticator: expected a string"]


def test_a_job_file_may_carry_callback_gas_and_a_copied_authenticator() -> None:
    job = parse_job_file({**DOC, "authenticator": "copied", "callbackGasLimit": 200_000})
    assert job.callback_gas_limit == 200_000
    assert job.to_spec() == JobDocument.model_validate(DOC).to_spec()


def test_flag_names_replace_paths() -> None:
    with pytest.raises(ValidationError) as err:
        JobFile.model_validate({**DOC, "hours": 0})
    assert describe(err.value, {"hours": "--hours"}) == [
        "--hours: must be an integer between 1 and 65535, got 0"
    ]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_the_example_job_files_are_valid(path: Path) -> None:
    job = parse_job_file(json.loads(path.read_text()))
    assert job.app.startswith(("charityengine:", "docker:")) or "/" in job.app


def test_storage_round_trip_is_the_codec_shape() -> None:
    """The engine stores a spec as the job document; reading it back gives the same spec."""
    from bridge.engine.service import spec_from_json, spec_to_json
    from bridge.jobdoc import body_of, spec_of

    spec = JobDocument.model_validate(DOC).to_spec()
    assert json.loads(spec_to_json(spec)) == DOC == body_of(spec)
    assert spec_from_json(spec_to_json(spec)) == spec == spec_of(DOC)
