"""The on-chain spec as the bridge stores it and as it asks CE to run it (pure).

``spec_to_json`` / ``spec_from_json`` are the stored form of a job's spec (``Job.spec_json``,
CE's field names); ``verified_spec`` reads it back only if it is still the spec the requester
paid for (its ``specHash``); ``spec_to_request`` is the CE job-create request, refusing a spec
CE must not run (an unsafe filename, a malformed URL).
"""

from __future__ import annotations

import json

from bridge.chain.spec import JobSpec
from bridge.chain.submitted import spec_matches_hash
from bridge.jobdoc import body_of, spec_of
from bridge.remote.convention import CEJobRequest
from bridge.results import safe_input_url, safe_relative_path


def spec_to_request(spec: JobSpec) -> CEJobRequest:
    """The CE job-create request for an on-chain spec.

    Raises:
        SpecError: the spec cannot run on CE (e.g. an input filename that escapes the job's
            directory); the job is failed on-chain with this message.
    """
    for f in spec.input_files:
        safe_relative_path(f.filename)
        safe_input_url(f.url, f.filename)
    s = spec.specs
    return CEJobRequest(
        app=spec.app,
        command_line=spec.command_line,
        vcpus=s.vcpus,
        ram=s.ram,
        disk=s.disk,
        network_download=s.network_download,
        network_upload=s.network_upload,
        hours=spec.max_hours,
        input_files=tuple((f.filename, f.url) for f in spec.input_files),
    )


def spec_to_json(spec: JobSpec) -> str:
    """The spec as stored in the database: CE's job document (``bridge.jobdoc.body_of``)."""
    return json.dumps(body_of(spec))


def spec_from_json(text: str) -> JobSpec:
    """Inverse of ``spec_to_json``."""
    return spec_of(json.loads(text))


def verified_spec(spec_json: str, spec_hash: str) -> JobSpec | None:
    """The stored spec (``Job.spec_json``) if, re-encoded, it hashes to the event's
    ``specHash`` (``Job.spec_hash``, 0x-hex): field for field what the requester submitted and
    paid for. None for any other, and for a row that does not read as a spec at all (a decoder
    or storage fault): such a spec is never sent to CE. Never raises."""
    try:
        spec = spec_from_json(spec_json)
        expected = bytes.fromhex(spec_hash.removeprefix("0x"))
        r = spec.specs
        numbers = (r.vcpus, r.ram, r.disk, r.network_download, r.network_upload, spec.max_hours)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None
    if not all(type(n) is int for n in numbers):  # JSON's true or 1.0 encodes as 1: no uint
        return None
    return spec if spec_matches_hash(spec, expected) else None
