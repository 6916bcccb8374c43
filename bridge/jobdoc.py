"""The CE job document: one codec for CE's ``job-create`` body, job files and on-chain specs.

CE's documented ``job-create`` body is ``{"authenticator", "app", "commandLine", "specs":
{"vcpus", "ram", "disk", "networkDownload", "networkUpload"}, "hours", "inputFiles":
[{"filename", "url"}]}`` (sizes in MB, ``hours`` the time limit). These pydantic models are the
only place that shape is spelt out; the CE client, the emulator and the CLI's
``submit --job-file`` all parse and produce it here.

Guarantees:

- Strict: a value of the wrong JSON type is an error (``"2"`` is not an integer, ``true`` is not
  a number), an unknown key is an error naming it, and the bounds are the contract's types
  (``vcpus`` and ``hours`` are ``uint16`` and at least 1, sizes are ``uint32``).
- Every problem is reported by :func:`describe` as one line per field, ``<path>: <what is
  expected>, got <value>`` (e.g. ``specs.vcpus: expected an integer, got 'two'``), in words, never
  Python's. The authenticator's value is never echoed.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bridge.chain.spec import InputFile, JobSpec, Resources

UINT8_MAX: Final = 2**8 - 1
UINT16_MAX: Final = 2**16 - 1
UINT32_MAX: Final = 2**32 - 1

Uint32 = Annotated[int, Field(ge=0, le=UINT32_MAX)]
PositiveUint16 = Annotated[int, Field(ge=1, le=UINT16_MAX)]
NonEmpty = Annotated[str, Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


class Specs(_Strict):
    """``specs``: the resources a job asks for, in CE's units (MB for every size)."""

    vcpus: PositiveUint16
    ram: Uint32
    disk: Uint32
    network_download: Uint32 = Field(default=0, alias="networkDownload")
    network_upload: Uint32 = Field(default=0, alias="networkUpload")


class InputFileDoc(_Strict):
    """An entry of ``inputFiles``: CE downloads ``url`` into the job directory as ``filename``."""

    filename: NonEmpty
    url: NonEmpty


class JobDocument(_Strict):
    """CE's ``job-create`` body without the authenticator: what a job is."""

    app: NonEmpty
    command_line: NonEmpty = Field(alias="commandLine")
    specs: Specs
    hours: PositiveUint16
    input_files: list[InputFileDoc] = Field(default_factory=list, alias="inputFiles")

    def to_body(self) -> dict[str, Any]:
        """The document as CE's JSON field names, every key present (``inputFiles`` may be [])."""
        return self.model_dump(by_alias=True, include=set(JobDocument.model_fields))

    def to_spec(self) -> JobSpec:
        """The on-chain ``JobSpec`` for this document (``hours`` becomes ``maxHours``)."""
        s = self.specs
        return JobSpec(
            app=self.app,
            command_line=self.command_line,
            specs=Resources(s.vcpus, s.ram, s.disk, s.network_download, s.network_upload),
            max_hours=self.hours,
            input_files=tuple(InputFile(f.filename, f.url) for f in self.input_files),
        )

    @classmethod
    def from_spec(cls, spec: JobSpec) -> JobDocument:
        """The document of an on-chain spec. Raises ``ValidationError`` if it breaks a bound."""
        return cls.model_validate(body_of(spec))


def body_of(spec: JobSpec) -> dict[str, Any]:
    """The job document of an on-chain spec as CE's JSON, without validating it (for storage:
    what the chain accepted is kept as it was). ``JobDocument.from_spec`` validates."""
    s = spec.specs
    return {
        "app": spec.app,
        "commandLine": spec.command_line,
        "specs": {
            "vcpus": s.vcpus,
            "ram": s.ram,
            "disk": s.disk,
            "networkDownload": s.network_download,
            "networkUpload": s.network_upload,
        },
        "hours": spec.max_hours,
        "inputFiles": [{"filename": f.filename, "url": f.url} for f in spec.input_files],
    }


def spec_of(body: Mapping[str, Any]) -> JobSpec:
    """The inverse of :func:`body_of`, without validation (a stored document is trusted)."""
    s = body["specs"]
    return JobSpec(
        app=body["app"],
        command_line=body["commandLine"],
        specs=Resources(
            s["vcpus"], s["ram"], s["disk"], s.get("networkDownload", 0), s.get("networkUpload", 0)
        ),
        max_hours=body["hours"],
        input_files=tuple(InputFile(f["filename"], f["url"]) for f in body.get("inputFiles", [])),
    )


class CreateBody(JobDocument):
    """A ``job-create`` request body as CE receives it: the document, the authenticator and CE's
    optional ``copies`` count (the bridge never sends it: one on-chain job is one remote job)."""

    authenticator: NonEmpty
    copies: PositiveUint16 | None = None


class JobFile(JobDocument):
    """A job file for ``ce-bridge submit --job-file``: a job-create body, plus the callback gas.

    ``authenticator`` may be present (a body copied from a CE script) and is ignored: nothing of
    it goes on-chain. ``callbackGasLimit`` (default 0: no callback) is the gas the escrow gives
    the requester's ``onJobFinished`` callback.
    """

    authenticator: str | None = None
    callback_gas_limit: Uint32 = Field(default=0, alias="callbackGasLimit")


def describe(exc: ValidationError, names: Mapping[str, str] | None = None) -> list[str]:
    """One line per problem in ``exc``: ``<field path>: <what is expected>, got <value>``.

    Args:
        exc: a validation error of one of this module's models (or any pydantic model).
        names: how to show a field path (e.g. ``{"specs.vcpus": "--vcpus"}`` for the CLI's
            flags); a path not in it is shown as itself.

    The values of fields named ``authenticator`` (or containing ``key``, ``password``,
    ``token`` or ``secret``) are never shown.
    """
    lines = []
    for error in exc.errors():
        path = _path(error["loc"])
        shown = (names or {}).get(path, path)
        message = explain(error, secret=_is_secret(path))
        lines.append(f"{shown}: {message}" if shown else message)
    return lines


def _path(loc: tuple[int | str, ...]) -> str:
    """``inputFiles[0].url`` for the location ``("inputFiles", 0, "url")``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _is_secret(path: str) -> bool:
    last = path.rsplit(".", 1)[-1].lower()
    return any(word in last for word in ("authenticator", "key", "password", "token", "secret"))


_EXPECTED: Final = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "float_parsing": "expected a number",
    "bool_parsing": "expected true or false",
    "int_from_float": "expected an integer",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "float_type": "expected a number",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "dict_type": "expected an object",
    "model_type": "expected an object",
    "model_attributes_type": "expected an object",
}


def explain(error: Mapping[str, Any], secret: bool) -> str:
    """What one pydantic error means, in words (``expected an integer, got 'two'``).

    Args:
        error: one item of ``ValidationError.errors()``.
        secret: never show the offending value.
    """
    kind = str(error["type"])
    ctx = error.get("ctx") or {}
    value = error.get("input")
    got = "" if secret else f", got {_show(value)}"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown key (not part of the job document)"
    if kind in _EXPECTED:
        return _EXPECTED[kind] + got
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"must be {_bounds(error)}{got}"
    if kind == "string_too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else f"too short{got}"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


def _bounds(error: Mapping[str, Any]) -> str:
    """``between 1 and 65535`` for a field with both bounds, else the one bound it breaks."""
    ctx = error.get("ctx") or {}
    low, high = _field_bounds(error)
    if low is not None and high is not None:
        return f"an integer between {low} and {high}"
    if "ge" in ctx:
        return f"at least {ctx['ge']}"
    if "le" in ctx:
        return f"at most {ctx['le']}"
    if "gt" in ctx:
        return f"greater than {ctx['gt']}"
    return f"less than {ctx.get('lt')}"


#: Bounds of this module's integer fields, by their last path element (for "between" messages).
_INT_BOUNDS: Final = {
    "vcpus": (1, UINT16_MAX),
    "hours": (1, UINT16_MAX),
    "ram": (0, UINT32_MAX),
    "disk": (0, UINT32_MAX),
    "networkDownload": (0, UINT32_MAX),
    "networkUpload": (0, UINT32_MAX),
    "callbackGasLimit": (0, UINT32_MAX),
}


def _field_bounds(error: Mapping[str, Any]) -> tuple[int | None, int | None]:
    loc = error.get("loc") or ()
    last = str(loc[-1]) if loc else ""
    return _INT_BOUNDS.get(last, (None, None))


def _show(value: object) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "…")
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def parse_job_file(data: object) -> JobFile:
    """A job file's JSON value, validated.

    Raises:
        ValueError: one line per problem (joined by ``"; "``), each naming the field.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"expected a JSON object (a CE job-create body), got {_show(data)}")
    try:
        return JobFile.model_validate(data)
    except ValidationError as exc:
        raise ValueError("; ".join(describe(exc))) from None
