"""Every assumption ce-bridge makes about Charity Engine's Remote API, in one place.

Public in CE's documentation: the ``job-create`` endpoint under ``.../remotejobs/v2/``, its JSON
body (its one codec is :mod:`bridge.jobdoc`; :meth:`CEJobRequest.to_body` produces it) and the
job state names used by CE's clients. **Not public, and assumed here** following the same
convention as ``job-create``:

- the ``job-status`` and ``job-cancel`` endpoints, JSON POST bodies carrying ``authenticator`` and
  ``jobId``;
- every response body: ``{"jobId"}`` from ``job-create``, ``{"jobId", "status", "outputFiles":
  [{"filename", "url"}], "error"}`` from ``job-status``, ``{"jobId", "status"}`` from
  ``job-cancel``, and ``{"error": "<message>"}`` with any non-2xx status;
- the ``Idempotency-Key`` request header, ``<chainId>:<EIP-55 contract address>:<jobId>``.

Both :mod:`bridge.remote.client` and :mod:`bridge.remote.emulator` import these names, so if
CE's real API differs, this module (and nothing else) changes. Parsers here are strict: a
response that does not have the assumed shape raises :class:`~bridge.errors.RemoteTransient`
(a malformed body is treated like any other transient server fault).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from eth_utils.address import to_checksum_address
from pydantic import ValidationError

from bridge.errors import RemoteTransient, SpecError
from bridge.jobdoc import JobDocument, describe

DEFAULT_BASE_URL: Final = "https://api.charityengine.services/remotejobs/v2/"
"""CE's production base URL; endpoint paths below are relative to it."""

JOB_CREATE_PATH: Final = "job-create"
JOB_STATUS_PATH: Final = "job-status"
JOB_CANCEL_PATH: Final = "job-cancel"

IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
_HEX_ADDRESS: Final = re.compile(r"0x[0-9a-fA-F]{40}")

# Request and response field names.
F_AUTHENTICATOR: Final = "authenticator"
F_APP: Final = "app"
F_COMMAND_LINE: Final = "commandLine"
F_SPECS: Final = "specs"
F_VCPUS: Final = "vcpus"
F_RAM: Final = "ram"
F_DISK: Final = "disk"
F_NETWORK_DOWNLOAD: Final = "networkDownload"
F_NETWORK_UPLOAD: Final = "networkUpload"
F_HOURS: Final = "hours"
F_INPUT_FILES: Final = "inputFiles"
F_FILENAME: Final = "filename"
F_URL: Final = "url"
F_JOB_ID: Final = "jobId"
F_STATUS: Final = "status"
F_OUTPUT_FILES: Final = "outputFiles"
F_ERROR: Final = "error"

SPEC_FIELDS: Final = (F_VCPUS, F_RAM, F_DISK, F_NETWORK_DOWNLOAD, F_NETWORK_UPLOAD)
"""The keys of ``specs``, in CE's documented order (sizes in MB)."""


class CEStatus(StrEnum):
    """A remote job's state, as CE's clients name it."""

    PROVISIONING = "Provisioning"
    DOWNLOADING = "Downloading"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    ABORTED = "Aborted"


TERMINAL_STATUSES: Final = frozenset({CEStatus.COMPLETED, CEStatus.FAILED, CEStatus.ABORTED})


def is_terminal(status: str) -> bool:
    """Return whether ``status`` is final (Completed, Failed or Aborted).

    Args:
        status: A CE status name; an unknown name is not terminal.
    """
    return status in TERMINAL_STATUSES


def is_success(status: str) -> bool:
    """Return whether ``status`` is Completed: the only state whose outputs are a result."""
    return status == CEStatus.COMPLETED


#: The EIP-55 form of an address: a keccak each time, and a process names one contract, so the
#: few addresses seen are remembered (every job-create builds a key).
_checksummed = functools.lru_cache(maxsize=16)(to_checksum_address)


def idempotency_key(chain_id: int, contract_address: str, job_id: int, generation: int = 0) -> str:
    """Build the ``Idempotency-Key`` header value naming one on-chain job.

    Args:
        chain_id: The EIP-155 chain id (positive).
        contract_address: The JobEscrow address, in any case; it is written in EIP-55 form.
        job_id: The on-chain job id (non-negative).
        generation: 0, except for a job id that a chain reorganisation gave to a different
            submission after a remote job was created for the first one: 1 for the first such
            reuse, and so on (the bridge's ``Job.generation``).

    Returns:
        ``"<chainId>:<EIP-55 address>:<jobId>"``, e.g. ``"1:0x5290...9EE7:42"``: the same job on
        the same deployment always yields the same key, and no two deployments share one. A
        reused id's key carries the generation as a fourth part, ``"1:0x5290...9EE7:42:1"``, so
        the new submission gets its own remote job instead of the old one's.

    Raises:
        ValueError: ``chain_id`` is not positive, ``job_id`` or ``generation`` is negative, or
            the address is not a ``0x``-prefixed 20-byte hex string (mixed case must be a valid
            EIP-55 checksum).
    """
    if isinstance(chain_id, bool) or not isinstance(chain_id, int) or chain_id <= 0:
        raise ValueError(f"chain id must be a positive integer, got {chain_id!r}")
    if isinstance(job_id, bool) or not isinstance(job_id, int) or job_id < 0:
        raise ValueError(f"job id must be a non-negative integer, got {job_id!r}")
    if not isinstance(contract_address, str) or not _HEX_ADDRESS.fullmatch(contract_address):
        raise ValueError(f"not a 0x-prefixed 20-byte hex address: {contract_address!r}")
    checksummed = _checksummed(contract_address)
    digits = contract_address[2:]
    if digits not in (digits.lower(), digits.upper()) and contract_address != checksummed:
        raise ValueError(f"address fails its EIP-55 checksum: {contract_address!r}")
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
        raise ValueError(f"generation must be a non-negative integer, got {generation!r}")
    key = f"{chain_id}:{checksummed}:{job_id}"
    return key if generation == 0 else f"{key}:{generation}"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class CEJobRequest:
    """One job to create on CE, in CE's own terms (sizes in MB, ``hours`` the time limit).

    Construction validates what CE would reject for sure, so a bad spec fails fast with a
    :class:`~bridge.errors.SpecError` instead of a round trip.
    """

    app: str
    command_line: str
    vcpus: int
    ram: int
    disk: int
    network_download: int
    network_upload: int
    hours: int
    input_files: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.input_files, tuple) or not all(
            isinstance(item, tuple) and len(item) == 2 for item in self.input_files
        ):
            raise SpecError("input files must be a tuple of (filename, url) pairs")
        self.document()

    def document(self) -> JobDocument:
        """This job as the CE job document (:mod:`bridge.jobdoc`), the one codec of its shape.

        Raises:
            SpecError: a field CE would reject, named (e.g. ``specs.vcpus: must be ...``).
        """
        try:
            return JobDocument.model_validate(
                {
                    F_APP: self.app,
                    F_COMMAND_LINE: self.command_line,
                    F_SPECS: {
                        F_VCPUS: self.vcpus,
                        F_RAM: self.ram,
                        F_DISK: self.disk,
                        F_NETWORK_DOWNLOAD: self.network_download,
                        F_NETWORK_UPLOAD: self.network_upload,
                    },
                    F_HOURS: self.hours,
                    F_INPUT_FILES: [{F_FILENAME: n, F_URL: u} for n, u in self.input_files],
                }
            )
        except ValidationError as exc:
            raise SpecError("; ".join(describe(exc))) from None

    def to_body(self, authenticator: str) -> dict[str, Any]:
        """Return CE's documented ``job-create`` JSON body for this job.

        Args:
            authenticator: The CE account's authenticator. The returned dict contains it: it
                is the request body, to be sent and never logged or put in an error.

        Returns:
            ``{"authenticator", "app", "commandLine", "specs": {"vcpus", "ram", "disk",
            "networkDownload", "networkUpload"}, "hours", "inputFiles": [{"filename", "url"}]}``
            and nothing else.
        """
        return {F_AUTHENTICATOR: authenticator, **self.to_public_body()}

    def to_public_body(self) -> dict[str, Any]:
        """Return the ``job-create`` body without the authenticator (safe to log or store)."""
        return self.document().to_body()


def job_ref_body(authenticator: str, remote_job_id: str) -> dict[str, Any]:
    """Return the body of ``job-status`` and ``job-cancel``: ``{"authenticator", "jobId"}``."""
    return {F_AUTHENTICATOR: authenticator, F_JOB_ID: remote_job_id}


@dataclass(frozen=True, slots=True)
class OutputFile:
    """One output file of a completed job: ``filename`` relative to ``output/``, absolute URL."""

    filename: str
    url: str


@dataclass(frozen=True, slots=True)
class RemoteJobStatus:
    """A parsed ``job-status`` response."""

    remote_job_id: str
    status: CEStatus
    output_files: tuple[OutputFile, ...] = ()
    error: str | None = None

    @property
    def is_terminal(self) -> bool:
        """Whether the job is Completed, Failed or Aborted."""
        return is_terminal(self.status)

    @property
    def is_success(self) -> bool:
        """Whether the job is Completed."""
        return is_success(self.status)

    @classmethod
    def from_response(cls, body: object) -> RemoteJobStatus:
        """Parse a ``job-status`` response body strictly.

        ``jobId`` (non-empty string) and ``status`` (a :class:`CEStatus` name) are required;
        ``outputFiles`` (a list of ``{"filename", "url"}`` strings) and ``error`` (a string) may
        be absent or null.

        Raises:
            RemoteTransient: The body does not have that shape.
        """
        data = _require_object(body, "job-status")
        job_id = _require_job_id(data, "job-status")
        status = parse_status(data.get(F_STATUS), "job-status")
        raw_files = data.get(F_OUTPUT_FILES)
        if raw_files is None:
            raw_files = []
        if not isinstance(raw_files, list):
            raise RemoteTransient(f"job-status: {F_OUTPUT_FILES} is not a list")
        files: list[OutputFile] = []
        for item in raw_files:
            if not isinstance(item, dict):
                raise RemoteTransient(f"job-status: an entry of {F_OUTPUT_FILES} is not an object")
            name, url = item.get(F_FILENAME), item.get(F_URL)
            if not isinstance(name, str) or not name or not isinstance(url, str) or not url:
                raise RemoteTransient(
                    f"job-status: an output file lacks a string {F_FILENAME} or {F_URL}"
                )
            files.append(OutputFile(filename=name, url=url))
        error = data.get(F_ERROR)
        if error is not None and not isinstance(error, str):
            raise RemoteTransient(f"job-status: {F_ERROR} is not a string")
        return cls(remote_job_id=job_id, status=status, output_files=tuple(files), error=error)

    def to_body(self) -> dict[str, Any]:
        """Return this status as a ``job-status`` response body (the emulator's answer)."""
        return {
            F_JOB_ID: self.remote_job_id,
            F_STATUS: self.status.value,
            F_OUTPUT_FILES: [{F_FILENAME: f.filename, F_URL: f.url} for f in self.output_files],
            F_ERROR: self.error,
        }


def parse_status(value: object, where: str) -> CEStatus:
    """Return ``value`` as a :class:`CEStatus`.

    Raises:
        RemoteTransient: ``value`` is not one of CE's status names.
    """
    if isinstance(value, str):
        try:
            return CEStatus(value)
        except ValueError:
            pass
    # The value is not echoed: it could be anything, including text the server should not send.
    raise RemoteTransient(f"{where}: missing or unknown job status")


def parse_create_response(body: object) -> str:
    """Return the remote job id of a ``job-create`` response ``{"jobId": "<id>"}``.

    Raises:
        RemoteTransient: The body does not have that shape.
    """
    return _require_job_id(_require_object(body, "job-create"), "job-create")


def parse_cancel_response(body: object) -> tuple[str, CEStatus]:
    """Return ``(jobId, status)`` of a ``job-cancel`` response.

    Raises:
        RemoteTransient: The body does not have that shape.
    """
    data = _require_object(body, "job-cancel")
    return _require_job_id(data, "job-cancel"), parse_status(data.get(F_STATUS), "job-cancel")


def error_message(body: bytes) -> str | None:
    """Return the message of a CE error body ``{"error": "<message>"}``, or None if it is not one.

    Never raises: any body that is not JSON with a string ``error`` yields None.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(data, Mapping):
        message = data.get(F_ERROR)
        if isinstance(message, str):
            return message
    return None


def _require_object(body: object, where: str) -> Mapping[str, object]:
    if not isinstance(body, dict):
        raise RemoteTransient(f"{where}: response body is not a JSON object")
    return body


def _require_job_id(data: Mapping[str, object], where: str) -> str:
    job_id = data.get(F_JOB_ID)
    if not isinstance(job_id, str) or not job_id:
        raise RemoteTransient(f"{where}: response has no string {F_JOB_ID}")
    return job_id
