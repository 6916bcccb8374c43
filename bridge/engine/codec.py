"""The on-chain spec as the bridge stores it and as it asks CE to run it (pure).

``spec_to_json`` / ``spec_from_json`` are the stored form of a job's spec (``Job.spec_json``,
CE's field names); ``spec_to_request`` is the CE job-create request, refusing a spec CE must
not run (an unsafe filename, a malformed URL).
"""

from __future__ import annotations

import json

from bridge.chain.spec import JobSpec
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
