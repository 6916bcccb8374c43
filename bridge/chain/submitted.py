"""A decoder specialised for ``JobSubmitted``'s data, and the spec's encoder, by byte offsets.

``JobSubmitted(uint256 indexed jobId, address indexed requester, bytes32 specHash,
uint256 payment, uint64 deadline, JobSpec spec, uint32 callbackGasLimit)`` carries most of what
the scanner reads, and eth_abi's general decoder spends ~100 µs an event on it (streams, frames,
pointer validation, a generator per tuple). Two steps, each by offsets:

- the scanner's, ``submitted_log``: the event's head and the spec's encoding
  (``abi.encode(spec)``, the bytes the contract hashed into ``specHash``) as a slice of the
  data, which the scanner stores as it is (``Job.spec_abi``);
- the worker's, ``decode_spec`` / ``read_spec``: that encoding decoded where the spec is acted
  on, once its keccak is checked against ``specHash``.

``decode_submitted`` (the whole event) and ``decode_spec`` return exactly what eth_abi's
``decode`` of ``SUBMITTED_DATA_TYPES`` (and of the spec's type) returns
(``tests/unit/test_submitted_decoder.py`` fuzzes them against each other):

- every string as raw ``bytes`` (the scanner decides what to do with text that is not UTF-8);
- the same strictness: every word read is inside ``data``; each pointer lands at or past its
  head (as eth_abi counts it: the static ``Resources`` tuple as one slot, see below) and before
  the end of ``data``; each string's padded length fits in ``data``; padding bytes are zero;
  ``uint16``/``uint32``/``uint64`` words have no bits above their width;
- one difference: the strings decoded from one log may together be at most ``len(data)`` bytes.
  A canonical encoding (what Solidity's ``emit`` writes) always is; only pointers aliasing one
  long string many times exceed it, which eth_abi would expand into copies (quadratic memory).

Anything else raises ``LogDecodingError`` (a ``ValueError``), never another exception, whatever
the bytes. Pure: no I/O, no eth_abi at import.
"""

from __future__ import annotations

import binascii
import struct
from typing import Any, Final, TypeAlias

from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from sha3 import keccak_256

from bridge.chain.logs import LogPosition, SubmittedLog
from bridge.chain.spec import InputFile, JobSpec, Resources

#: The event's non-indexed types, strings read as bytes (the order of ``decode_submitted``).
SUBMITTED_DATA_TYPES = (
    "bytes32",
    "uint256",
    "uint64",
    "(bytes,bytes,(uint16,uint32,uint32,uint32,uint32),uint16,(bytes,bytes)[])",
    "uint32",
)

#: A spec as decoded from the event: (app, commandLine, (vcpus, ram, disk, networkDownload,
#: networkUpload), maxHours, ((filename, url), ...)), every string as raw bytes.
RawSpec: TypeAlias = tuple[
    bytes, bytes, tuple[int, int, int, int, int], int, tuple[tuple[bytes, bytes], ...]
]
#: (specHash, payment, deadline, spec, callbackGasLimit).
SubmittedData: TypeAlias = tuple[bytes, int, int, RawSpec, int]

_WORD: Final = 32
_U16: Final = 1 << 16
_U32: Final = 1 << 32
_U64: Final = 1 << 64
_ONE_OFFSET: Final = _WORD.to_bytes(_WORD, "big")  # abi.encode of one dynamic value starts so
_from_bytes: Final = int.from_bytes
#: Hex text to bytes: ~25% faster than ``bytes.fromhex``, which also skips whitespace between
#: bytes (a node never sends any). Raises ``binascii.Error`` (a ``ValueError``) on anything that
#: is not an even number of hex digits, ``ValueError`` on non-ASCII text, ``TypeError`` on a
#: value that is not text.
_hex_bytes: Final = binascii.a2b_hex


class LogDecodingError(ValueError):
    """A log's data does not decode as its event's ABI layout."""


def _word(data: bytes, pos: int, size: int) -> int:
    """The 32-byte big-endian word at ``pos``; raises when it does not fit in ``data``."""
    end = pos + _WORD
    if end > size:
        raise LogDecodingError(f"a word at byte {pos} runs past the data's {size} bytes")
    return _from_bytes(data[pos:end], "big")


def _uint(value: int, limit: int, pos: int) -> int:
    if value >= limit:
        raise LogDecodingError(f"the integer at byte {pos} has bits above its type's width")
    return value


#: The top 24 bytes of a word whose value fits in 64 bits.
_HIGH_ZEROS: Final = bytes(_WORD - 8)
#: The low 8 bytes of each of the spec's 9 head words, as unsigned integers.
_SPEC_LOW: Final = struct.Struct(">" + "24xQ" * 9)
#: The low 8 bytes of the event's words 2-4 (deadline, the spec's pointer, callbackGasLimit).
_EVENT_LOW: Final = struct.Struct(">" + "24xQ" * 3)
#: Zero bytes by count: the padding a string of each length modulo 32 needs, never allocated.
_PADS: Final = tuple(bytes(k) for k in range(_WORD))
_W64: Final = (2 * _WORD).to_bytes(_WORD, "big")  # an input file's name pointer, canonical
_SPEC_AT: Final = 5 * _WORD  # where the spec starts in the event's data, canonically


def _canonical_head(data: bytes) -> tuple[int, int] | None:
    """(deadline, callbackGasLimit) when the event's head is laid out as Solidity's ``emit``
    writes it (the spec's pointer at byte 160, every integer within its type), else None."""
    if len(data) < _SPEC_AT:
        return None
    if data[64:88] != _HIGH_ZEROS or data[96:120] != _HIGH_ZEROS or data[128:152] != _HIGH_ZEROS:
        return None
    deadline, spec_at, callback_gas = _EVENT_LOW.unpack_from(data, 64)
    if spec_at != _SPEC_AT or callback_gas >= _U32:
        return None
    return deadline, callback_gas


def _canonical(data: bytes) -> SubmittedData | None:
    """``decode_submitted(data)``'s values when ``data`` is laid out exactly as Solidity's
    ``emit`` writes it (every pointer where the encoder puts it, nothing after the last
    string), else None (the general path then decides, and raises for what is invalid)."""
    head = _canonical_head(data)
    if head is None:
        return None
    raw_spec = _canonical_spec(data, _SPEC_AT)
    if raw_spec is None:
        return None
    return (data[0:32], _from_bytes(data[32:64], "big"), head[0], raw_spec, head[1])


def _canonical_spec(data: bytes, base: int) -> RawSpec | None:
    """The spec encoded at ``base`` in ``data``, running to the end of ``data``, when it is laid
    out exactly as the canonical encoder writes it, else None (the general path then decides).

    The same checks as the general path, fewer steps: with every pointer equal to the position
    the canonical encoder gives it, each lands inside the data once the lengths before it fit,
    and the strings cannot overlap (so they add up to less than the data). ~2 times faster on
    the typical spec (``bench/ingest.py``).
    """
    size = len(data)
    # The spec's 9 head words: each word's top 24 bytes zero, then each word's low 8 bytes;
    # a value of 2^64 or more is never canonical (the general path decides). Nine 24-byte
    # compares cost half of one test on the bytes as an integer.
    if size < base + 10 * _WORD:
        return None
    for high in range(base, base + 9 * _WORD, _WORD):
        if data[high : high + 24] != _HIGH_ZEROS:
            return None
    head = _SPEC_LOW.unpack_from(data, base)
    command_off: int = head[1]
    vcpus: int = head[2]
    ram: int = head[3]
    disk: int = head[4]
    download: int = head[5]
    upload: int = head[6]
    hours: int = head[7]
    files_off: int = head[8]
    if head[0] != 9 * _WORD:  # the app's pointer
        return None
    if vcpus >= _U16 or hours >= _U16:
        return None
    if ram >= _U32 or disk >= _U32 or download >= _U32 or upload >= _U32:
        return None
    fb = _from_bytes
    # app right after the head, then commandLine, then the files' array: each right after the
    # one before.
    app_at = base + 9 * _WORD
    app_stop, app_end = _padded(data, app_at, size - _WORD)
    if app_end < 0 or command_off != app_end - base:
        return None
    command_stop, end = _padded(data, app_end, size - _WORD)
    if end < 0 or files_off != end - base:
        return None
    count = fb(data[end : end + _WORD], "big")
    items = end + _WORD
    if count > (size - items) // (5 * _WORD):  # an item is 5 words at least
        return None
    at = items + count * _WORD  # the first item, right after the offsets
    files: list[tuple[bytes, bytes]] = []
    for slot in range(items, items + count * _WORD, _WORD):
        if fb(data[slot : slot + _WORD], "big") != at - items or data[at : at + _WORD] != _W64:
            return None
        name_stop, name_end = _padded(data, at + 2 * _WORD, size)
        if name_end < 0 or fb(data[at + _WORD : at + 2 * _WORD], "big") != name_end - at:
            return None
        url_stop, url_end = _padded(data, name_end, size)
        if url_end < 0:
            return None
        files.append((data[at + 3 * _WORD : name_stop], data[name_end + _WORD : url_stop]))
        at = url_end
    if at != size:
        return None
    resources = (vcpus, ram, disk, download, upload)
    app = data[app_at + _WORD : app_stop]
    command = data[app_end + _WORD : command_stop]
    return (app, command, resources, hours, tuple(files))


def _padded(data: bytes, at: int, limit: int) -> tuple[int, int]:
    """Where the string whose length word is at ``at`` stops and where its padded encoding
    ends (the string is ``data[at + 32 : stop]``), or ``(-1, -1)`` when that end passes
    ``limit`` or its padding is not zero. Two integers, not the string and an Optional: mypyc
    returns a fixed tuple of integers unboxed, so nothing is allocated for it."""
    if at + _WORD > limit:
        return -1, -1
    length = _from_bytes(data[at : at + _WORD], "big")
    stop = at + _WORD + length
    end = at + _WORD + (length + 31) // 32 * 32
    if end > limit or data[stop:end] != _PADS[end - stop]:
        return -1, -1
    return stop, end


def decode_submitted(data: bytes) -> tuple[SubmittedData, bytes]:
    """``JobSubmitted``'s data decoded, the same values as eth_abi's ``decode`` of
    ``SUBMITTED_DATA_TYPES`` (strings as bytes, arrays and structs as tuples), and
    ``encode_raw_spec`` of its spec (the bytes whose keccak is the contract's ``specHash``).

    When the spec is encoded canonically in ``data`` (as Solidity's ``emit`` writes it: every
    pointer where the encoder puts it, the spec last), its encoding is the spec's bytes of
    ``data`` behind one offset word, and nothing is re-encoded.

    Raises:
        LogDecodingError: ``data`` is not a valid encoding (any offset, length or padding out of
            bounds), or its strings add up to more bytes than ``data`` holds.
    """
    fast = _canonical(data)
    if fast is not None:
        return fast, _ONE_OFFSET + data[5 * _WORD :]
    decoded, spec, canonical = _decode_general(data)
    if canonical:
        return decoded, _ONE_OFFSET + data[spec:]
    return decoded, encode_raw_spec(decoded[3])


def _decode_general(data: bytes) -> tuple[SubmittedData, int, bool]:
    """``decode_submitted(data)``'s values by the general path, where the spec starts in
    ``data``, and whether it is laid out canonically up to the end of ``data`` (its encoding
    is then the rest of ``data`` behind one offset word)."""
    size = len(data)
    if size < 5 * _WORD:
        raise LogDecodingError(f"{size} bytes of data: the event's head alone is 160")
    spec_hash = data[0:32]
    payment = _from_bytes(data[32:64], "big")
    deadline = _uint(_from_bytes(data[64:96], "big"), _U64, 64)
    # The top-level head has 5 slots, so a pointer must land at or after byte 160.
    spec = _from_bytes(data[96:128], "big")
    if spec < 5 * _WORD or spec >= size:
        raise LogDecodingError("the spec's pointer points outside the data")
    callback_gas = _uint(_from_bytes(data[128:160], "big"), _U32, 128)
    raw_spec, canonical = _general_spec(data, spec)
    decoded: SubmittedData = (spec_hash, payment, deadline, raw_spec, callback_gas)
    return decoded, spec, canonical and spec == _SPEC_AT


def _general_spec(data: bytes, spec: int) -> tuple[RawSpec, bool]:
    """The spec whose tuple starts at byte ``spec`` of ``data`` (its pointer already checked to
    land inside ``data``), read by eth_abi's rules, and whether it is laid out canonically up
    to the end of ``data``.

    Raises:
        LogDecodingError: an offset, length or padding out of bounds, or strings adding up to
            more bytes than ``data`` holds.
    """
    size = len(data)
    # The spec tuple's head: 9 words. eth_abi counts it as 5 slots (the static Resources tuple
    # counts as one), so its pointers must land at or after spec + 160 (not + 288).
    if spec + 9 * _WORD > size:
        raise LogDecodingError("the spec's head runs past the data")
    head_end = spec + 5 * _WORD
    w = [_from_bytes(data[p : p + _WORD], "big") for p in range(spec, spec + 9 * _WORD, _WORD)]
    app_at, command_at, files_at = spec + w[0], spec + w[1], spec + w[8]
    if not (head_end <= app_at < size and head_end <= command_at < size):
        raise LogDecodingError("a string's pointer in the spec points outside the data")
    if not head_end <= files_at < size:
        raise LogDecodingError("the input files' pointer points outside the data")
    if w[2] >= _U16 or w[7] >= _U16 or max(w[3:7]) >= _U32:
        raise LogDecodingError("an integer of the spec has bits above its type's width")
    resources = (w[2], w[3], w[4], w[5], w[6])

    count = _word(data, files_at, size)
    items = files_at + _WORD  # the array's frame: offsets are relative to after its length
    if count > (size - items) // _WORD:
        raise LogDecodingError(f"an array of {count} input files does not fit in the data")
    items_end = items + count * _WORD
    # Where every string is: app, commandLine, then each file's name and URL.
    where = [app_at, command_at]
    for p in range(items, items_end, _WORD):
        item = items + _from_bytes(data[p : p + _WORD], "big")
        if item < items_end or item >= size:
            raise LogDecodingError(f"the pointer at byte {p} points outside the data")
        if item + 2 * _WORD > size:
            raise LogDecodingError(f"the input file at byte {item} runs past the data")
        name_at = item + _from_bytes(data[item : item + _WORD], "big")
        url_at = item + _from_bytes(data[item + _WORD : item + 2 * _WORD], "big")
        if not (item + 2 * _WORD <= name_at < size and item + 2 * _WORD <= url_at < size):
            raise LogDecodingError(f"a pointer of the input file at byte {item} points outside")
        where += (item, name_at, url_at)

    # The strings, and whether each part is where a canonical encoding puts it (then the spec's
    # encoding is a slice of the data; else it is re-encoded).
    strings: list[bytes] = []
    budget = size
    canonical = app_at == spec + 9 * _WORD
    expected = app_at
    for i, at in enumerate(where):
        if i >= 2 and i % 3 == 2:  # an input file's start: its two pointers come first
            canonical = canonical and at == expected
            expected = at + 2 * _WORD
            continue
        if at + _WORD > size:
            raise LogDecodingError(f"a string's length at byte {at} runs past the data")
        length = _from_bytes(data[at : at + _WORD], "big")
        start = at + _WORD
        padded = (length + 31) // 32 * 32
        end = start + padded
        if end > size:
            raise LogDecodingError(f"a string of {length} bytes at byte {at} runs past the data")
        stop = start + length
        if padded != length and data[stop:end] != _PADS[end - stop]:
            raise LogDecodingError(f"the string at byte {at} has non-zero padding")
        budget -= length
        if budget < 0:
            raise LogDecodingError("the strings add up to more bytes than the data holds")
        strings.append(data[start:stop])
        canonical = canonical and at == expected
        expected = end
        if i == 1:  # after commandLine: the input files' length word, then their pointers
            canonical = canonical and files_at == expected
            expected = items_end
    app, command = strings[0], strings[1]
    files = tuple(zip(strings[2::2], strings[3::2], strict=True))
    raw_spec: RawSpec = (app, command, resources, w[7], files)
    return raw_spec, canonical and expected == size


def decode_spec(encoding: bytes) -> RawSpec:
    """``abi.encode(spec)`` decoded: the same values as eth_abi's ``decode`` of
    ``(SUBMITTED_DATA_TYPES[3],)`` (strings as bytes, arrays and structs as tuples), with the
    same strictness as ``decode_submitted``. The inverse of ``encode_raw_spec``; what the
    worker reads a job's stored encoding (``Job.spec_abi``) with.

    Raises:
        LogDecodingError: ``encoding`` is not a valid encoding of a spec, or its strings add up
            to more bytes than it holds.
    """
    if encoding[:_WORD] == _ONE_OFFSET:
        fast = _canonical_spec(encoding, _WORD)
        if fast is not None:
            return fast
    size = len(encoding)
    if size < _WORD:
        raise LogDecodingError(f"{size} bytes: a spec's encoding starts with its 32-byte pointer")
    # One head slot: the pointer must land at or after byte 32.
    spec = _from_bytes(encoding[0:_WORD], "big")
    if spec < _WORD or spec >= size:
        raise LogDecodingError("the spec's pointer points outside the data")
    return _general_spec(encoding, spec)[0]


def _encode_bytes(value: bytes) -> bytes:
    length = len(value)
    return length.to_bytes(_WORD, "big") + value + _PADS[-length % _WORD]


def encode_raw_spec(spec: RawSpec) -> bytes:
    """``abi.encode(spec)`` for a spec with its strings as bytes: byte for byte what eth_abi's
    ``encode([JobSpec type], [spec])`` gives (so ``keccak`` of it is the contract's ``specHash``).

    Raises:
        LogDecodingError: an integer does not fit its type (never for a decoded spec).
    """
    app, command, resources, max_hours, files = spec
    limits = (_U16, _U32, _U32, _U32, _U32)
    if len(resources) != 5 or not all(
        0 <= v < lim for v, lim in zip(resources, limits, strict=True)
    ):
        raise LogDecodingError("the spec's resources do not fit their types")
    if not 0 <= max_hours < _U16:
        raise LogDecodingError("the spec's maxHours does not fit uint16")
    app_enc = _encode_bytes(app)
    command_enc = _encode_bytes(command)
    items = [_encode_bytes(name) + _encode_bytes(url) for name, url in files]
    # Each item: two pointers (64, 64 + len(name's encoding)), then the two encodings.
    item_encs = [
        (64).to_bytes(_WORD, "big")
        + (64 + _WORD + (len(name) + 31) // 32 * 32).to_bytes(_WORD, "big")
        + enc
        for (name, _), enc in zip(files, items, strict=True)
    ]
    offsets = []
    at = len(item_encs) * _WORD
    for enc in item_encs:
        offsets.append(at.to_bytes(_WORD, "big"))
        at += len(enc)
    files_enc = len(files).to_bytes(_WORD, "big") + b"".join(offsets) + b"".join(item_encs)
    head = 9 * _WORD
    app_at = head
    command_at = app_at + len(app_enc)
    files_at = command_at + len(command_enc)
    words = (app_at, command_at, *resources, max_hours, files_at)
    return b"".join(
        (
            _WORD.to_bytes(_WORD, "big"),  # abi.encode of one dynamic value: its offset first
            *[w.to_bytes(_WORD, "big") for w in words],
            app_enc,
            command_enc,
            files_enc,
        )
    )


def spec_encoding(spec: JobSpec) -> bytes:
    """``abi.encode(spec)``, byte for byte as ``JobEscrow.submitJob`` encodes it (its keccak is
    the contract's ``specHash``): ``encode_raw_spec`` of the spec with its strings as UTF-8.

    Raises:
        LogDecodingError: an integer does not fit its type.
        UnicodeEncodeError: a string holds a lone surrogate (never one read from an event).
        TypeError, AttributeError: a field of another type (never in a spec read from an event;
            a ``bool`` passes as an ``int``).
    """
    r = spec.specs
    return encode_raw_spec(
        (
            spec.app.encode("utf-8"),
            spec.command_line.encode("utf-8"),
            (r.vcpus, r.ram, r.disk, r.network_download, r.network_upload),
            spec.max_hours,
            tuple((f.filename.encode("utf-8"), f.url.encode("utf-8")) for f in spec.input_files),
        )
    )


def spec_matches_hash(spec: JobSpec, spec_hash: bytes) -> bool:
    """Whether ``keccak256(abi.encode(spec))`` is ``spec_hash``: the spec the bridge is about
    to act on is, field for field, the one the requester submitted and paid for (what the
    contract hashed). False, never an exception, for a spec that cannot be encoded (a field
    of the wrong type included)."""
    try:
        encoding = spec_encoding(spec)
    except (LogDecodingError, UnicodeEncodeError, TypeError, AttributeError, ValueError):
        return False
    return encoding_matches_hash(encoding, spec_hash)


def _text(raw: bytes, what: str, problems: list[str]) -> str:
    """``raw`` as UTF-8; an invalid one is noted in ``problems`` and decoded with U+FFFD."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(f"{what} is not valid UTF-8")
        return raw.decode("utf-8", "replace")


def spec_from_raw(raw: Any) -> tuple[JobSpec, str | None]:
    """The spec from the event's raw ABI tuple (strings as bytes), and why it cannot be read
    (the first field that is not valid UTF-8), or None. Pure; never raises on text."""
    app, command_line, specs, max_hours, files = raw
    problems: list[str] = []
    inputs = tuple(
        InputFile(
            _text(bytes(name), f"input file {i} name", problems),
            _text(bytes(url), f"input file {i} URL", problems),
        )
        for i, (name, url) in enumerate(files)
    )
    spec = JobSpec(
        app=_text(bytes(app), "app", problems),
        command_line=_text(bytes(command_line), "commandLine", problems),
        specs=Resources(*specs),
        max_hours=int(max_hours),
        input_files=inputs,
    )
    return spec, (problems[0] if problems else None)


# The hot path builds its frozen dataclasses without their generated ``__init__``, which sets
# each field through ``object.__setattr__`` (~0.1 µs a field, five dataclasses an event): a
# bare instance, then its own ``__dict__`` filled in field order. Equal to the constructed ones
# in every way (tests/unit/test_reader.py); these classes have no ``__post_init__``.
_new: Final = object.__new__


def _read_spec(raw: RawSpec) -> tuple[JobSpec, str | None]:
    """``spec_from_raw(raw)``, built directly when every string is UTF-8 (the usual case)."""
    app, command_line, specs, max_hours, files = raw
    try:
        inputs: list[InputFile] = []
        for name, url in files:
            item = _new(InputFile)
            fields = item.__dict__
            fields["filename"] = name.decode("utf-8")
            fields["url"] = url.decode("utf-8")
            inputs.append(item)
        app_text = app.decode("utf-8")
        command_text = command_line.decode("utf-8")
    except UnicodeDecodeError:
        return spec_from_raw(raw)  # names the first field that is not UTF-8
    resources = _new(Resources)
    fields = resources.__dict__
    fields["vcpus"] = specs[0]
    fields["ram"] = specs[1]
    fields["disk"] = specs[2]
    fields["network_download"] = specs[3]
    fields["network_upload"] = specs[4]
    spec = _new(JobSpec)
    fields = spec.__dict__
    fields["app"] = app_text
    fields["command_line"] = command_text
    fields["specs"] = resources
    fields["max_hours"] = max_hours
    fields["input_files"] = tuple(inputs)
    return spec, None


_ADDRESS_PADDING: Final = bytes(12)
#: Requesters repeat: the checksummed address by the topic's hex text (bounded: cleared when
#: full, so a chain of one-off requesters costs one checksum each, as without the cache).
_REQUESTERS: dict[str, ChecksumAddress] = {}
_REQUESTERS_MAX: Final = 4096


def _requester(topic: str) -> ChecksumAddress:
    """The requester's checksummed address from its indexed topic (hex text).

    Raises:
        LogDecodingError: the topic is not a 32-byte left-padded address.
    """
    known = _REQUESTERS.get(topic)
    if known is not None:
        return known
    raw = _hex_bytes(topic[2:])
    if len(raw) != 32 or raw[:12] != _ADDRESS_PADDING:
        raise LogDecodingError("JobSubmitted: the requester topic is not an address")
    address = to_checksum_address(raw[12:])
    if len(_REQUESTERS) >= _REQUESTERS_MAX:
        _REQUESTERS.clear()
    _REQUESTERS[topic] = address
    return address


def submitted_log(entry: dict[str, Any]) -> SubmittedLog:
    """The ``JobSubmitted`` log of one raw ``eth_getLogs`` entry (hex strings, as the node sends
    it) whose first topic is the event's: its position, the indexed job id and requester, the
    event's head (specHash, payment, deadline, callbackGasLimit) and the spec's encoding,
    ``abi.encode(spec)``, as bytes.

    The spec itself is not decoded here: the scanner stores its encoding, and the worker decodes
    it where it acts on it (``bridge.engine.codec.stored_spec``: only an encoding that hashes to
    the event's ``specHash`` is read, and one that does not decode or holds text that is not
    UTF-8 fails its job on-chain with the reason, refunded). With the head laid out as
    Solidity's ``emit`` writes it, the encoding is the data's bytes from the spec on behind one
    offset word, so reading a log costs its hex text and five words; any other layout is decoded
    whole (``decode_submitted``) and its spec re-encoded.

    Raises:
        LogDecodingError: the topics or the head do not decode as ``JobSubmitted`` (or, for a
            head not laid out canonically, the data as a whole does not).
        ValueError, KeyError, TypeError, IndexError: a field is missing or not hex text.
    """
    topics = entry["topics"]
    if len(topics) != 3:
        raise LogDecodingError(f"JobSubmitted: {len(topics) - 1} indexed topics, expected 2")
    job_topic = _hex_bytes(topics[1][2:])
    if len(job_topic) != 32:
        raise LogDecodingError("JobSubmitted: the job id topic is not 32 bytes")
    requester = _requester(topics[2])
    data = _hex_bytes(entry["data"][2:])
    head = _canonical_head(data)
    if head is not None:
        deadline, gas_limit = head
        encoding = _ONE_OFFSET + data[_SPEC_AT:]
    else:
        (_, _, deadline, _, gas_limit), encoding = decode_submitted(data)
    at = _new(LogPosition)
    fields = at.__dict__
    fields["block_number"] = int(entry["blockNumber"], 16)
    fields["block_hash"] = str(entry["blockHash"]).lower()
    fields["tx_hash"] = str(entry["transactionHash"]).lower()
    fields["log_index"] = int(entry["logIndex"], 16)
    log = _new(SubmittedLog)
    fields = log.__dict__
    fields["at"] = at
    fields["job_id"] = _from_bytes(job_topic, "big")
    fields["requester"] = requester
    fields["spec_hash"] = data[0:32]
    fields["payment"] = _from_bytes(data[32:64], "big")
    fields["deadline"] = deadline
    fields["spec_abi"] = encoding
    fields["callback_gas_limit"] = gas_limit
    return log


def read_spec(encoding: bytes) -> tuple[JobSpec, str | None]:
    """The spec of its encoding (``decode_spec``) as ``spec_from_raw`` reads it: the spec, and
    why it cannot be read (the first field that is not valid UTF-8; that field then holds
    U+FFFD in place of each bad byte), or None.

    Raises:
        LogDecodingError: as ``decode_spec``.
    """
    return _read_spec(decode_spec(encoding))


def encoding_matches_hash(encoding: bytes, spec_hash: bytes) -> bool:
    """Whether ``keccak256(encoding)`` is ``spec_hash``: these bytes are exactly what the
    contract hashed when the requester submitted and paid (``abi.encode(spec)``)."""
    digest: bytes = keccak_256(encoding).digest()
    return digest == spec_hash


def json_has_float(tree: Any) -> bool:
    """Whether a parsed JSON value holds a float anywhere (in any object or array, at any
    depth). ``bridge.chain.rpc`` asks it of every answer orjson parses: orjson reads an integer
    beyond 64 bits as a float, silently, where ``json.loads`` keeps it exact, so an answer with a
    float is parsed again with ``json.loads``. It lives here because this module is compiled:
    walking the 10,000 logs of the ingest benchmark's ``eth_getLogs`` answer takes ~0.25 µs a
    log compiled, ~0.9 as Python. Iterative (a stack of the containers still to read), so it
    walks any depth orjson accepts."""
    if type(tree) is float:
        return True
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is dict:
            values = node.values()
        elif kind is list:
            values = node
        else:
            continue
        for value in values:
            kind = type(value)
            if kind is float:
                return True
            if kind is dict or kind is list:
                stack.append(value)
    return False
