"""The job spec as Python sees it, and its exact ABI encoding.

``JobSpec`` mirrors the Solidity ``IJobEscrow.JobSpec``; ``spec_hash`` reproduces the contract's
``keccak256(abi.encode(spec))`` (with eth_abi: the reference the fast encoder of
``bridge.chain.submitted`` is tested against).
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_utils.crypto import keccak

#: The ABI type of ``JobSpec`` as a single tuple (app, commandLine, specs, maxHours, inputFiles).
JOB_SPEC_ABI_TYPE = "(string,string,(uint16,uint32,uint32,uint32,uint32),uint16,(string,string)[])"


class Status(IntEnum):
    """``IJobEscrow.Status``: values 0..7 are fixed by the contract."""

    NONE = 0
    SUBMITTED = 1
    ACCEPTED = 2
    RUNNING = 3
    COMPLETED = 4
    FAILED = 5
    CANCELLED = 6
    EXPIRED = 7

    @property
    def is_terminal(self) -> bool:
        """Completed, Failed, Cancelled or Expired: nothing can follow."""
        return self >= Status.COMPLETED


@dataclass(frozen=True)
class Resources:
    """Compute resources in CE's units (MB for ram, disk and network)."""

    vcpus: int
    ram: int
    disk: int
    network_download: int = 0
    network_upload: int = 0


@dataclass(frozen=True)
class InputFile:
    """A file CE downloads before the job starts."""

    filename: str
    url: str


@dataclass(frozen=True)
class JobSpec:
    """A job as the contract stores it in ``JobSubmitted`` and CE's job-create takes it."""

    app: str
    command_line: str
    specs: Resources
    max_hours: int
    input_files: tuple[InputFile, ...] = ()

    def to_abi(self) -> tuple[Any, ...]:
        """The spec as the tuple web3 and eth_abi encode for ``JobSpec``."""
        s = self.specs
        return (
            self.app,
            self.command_line,
            (s.vcpus, s.ram, s.disk, s.network_download, s.network_upload),
            self.max_hours,
            [(f.filename, f.url) for f in self.input_files],
        )

    @classmethod
    def from_abi(cls, value: Any) -> JobSpec:
        """Builds a spec from a decoded ABI value: a tuple, or web3's dict for a named struct."""
        if isinstance(value, Mapping):
            specs = value["specs"]
            return cls(
                app=value["app"],
                command_line=value["commandLine"],
                specs=Resources(
                    vcpus=specs["vcpus"],
                    ram=specs["ram"],
                    disk=specs["disk"],
                    network_download=specs["networkDownload"],
                    network_upload=specs["networkUpload"],
                ),
                max_hours=value["maxHours"],
                input_files=tuple(InputFile(f["filename"], f["url"]) for f in value["inputFiles"]),
            )
        app, command_line, specs, max_hours, files = value
        return cls(
            app=app,
            command_line=command_line,
            specs=Resources(*specs),
            max_hours=max_hours,
            input_files=tuple(InputFile(name, url) for name, url in files),
        )


def spec_hash(spec: JobSpec) -> bytes:
    """``keccak256(abi.encode(spec))`` exactly as ``JobEscrow.submitJob`` computes it."""
    from eth_abi.abi import encode  # here, not at import: the module stays light and pure

    return keccak(encode([JOB_SPEC_ABI_TYPE], [spec.to_abi()]))
