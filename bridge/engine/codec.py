"""The on-chain spec as the bridge stores it and as it asks CE to run it (pure).

A job's spec is stored as the event carried it, ``abi.encode(spec)`` (``Job.spec_abi``);
``stored_spec`` reads it back only if it is still the spec the requester paid for (its keccak
is the event's ``specHash``) and says why it cannot run if so; ``spec_to_request`` is the CE
job-create request, refusing a spec CE must not run (an unsafe filename, a malformed URL).
``spec_to_json`` / ``spec_from_json`` are CE's job document (CE's field names), the form a
queued re-create (``RemoteCancel.request_json``) keeps.
"""

from __future__ import annotations

import json

from bridge.chain.spec import JobSpec
from bridge.chain.submitted import (
    LogDecodingError,
    decode_spec,
    encode_raw_spec,
    encoding_matches_hash,
    read_spec,
    spec_from_raw,
)
from bridge.errors import SpecError
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


#: Why a job whose stored spec is not the one its requester paid for is failed.
SPEC_HASH_MISMATCH = "the event's spec does not match its specHash"


def stored_spec(spec_abi: bytes, spec_hash: str) -> tuple[JobSpec | None, str | None]:
    """A job's spec from its stored encoding (``Job.spec_abi``), and why it cannot run.

    - ``(spec, None)``: the encoding hashes to the event's ``specHash`` (``Job.spec_hash``,
      0x-hex), so it is byte for byte what the requester submitted and paid for, and it reads
      as a spec with every string UTF-8. An encoding that decodes but is not laid out as the
      contract's (only a node that rewrites the event's data sends one) passes when the spec
      it decodes to, encoded again, hashes to ``specHash``.
    - ``(spec, reason)``: it hashes and decodes, but a string is not UTF-8 (the first such
      field is named; it holds U+FFFD in place of each bad byte): shown, never run.
    - ``(None, reason)``: it does not hash to ``specHash`` (``SPEC_HASH_MISMATCH``: a storage
      fault) or does not decode. Such a spec is never sent to CE.

    Never raises."""
    try:
        expected = bytes.fromhex(spec_hash.removeprefix("0x"))
    except ValueError:
        return None, SPEC_HASH_MISMATCH
    encoding = bytes(spec_abi)
    if encoding_matches_hash(encoding, expected):
        try:
            return read_spec(encoding)
        except LogDecodingError as exc:
            return None, f"the spec does not decode: {exc}"
    try:
        raw = decode_spec(encoding)  # another layout of the spec paid for?
        if not encoding_matches_hash(encode_raw_spec(raw), expected):
            return None, SPEC_HASH_MISMATCH
    except LogDecodingError:
        return None, SPEC_HASH_MISMATCH
    return spec_from_raw(raw)


def request_for(
    spec_abi: bytes, spec_hash: str
) -> tuple[JobSpec | None, CEJobRequest | None, str | None]:
    """A job's stored spec (``stored_spec``), its CE job-create request when it can run, and
    why it cannot otherwise (exactly one of the request and the reason is set): what the worker
    sends, what the cancel outbox re-sends and what the API says of a job. Never raises."""
    spec, problem = stored_spec(spec_abi, spec_hash)
    if spec is None or problem is not None:
        return spec, None, problem
    try:
        return spec, spec_to_request(spec), None
    except SpecError as exc:
        return spec, None, str(exc)
