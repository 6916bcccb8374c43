"""The specialised JobSubmitted decoder (bridge/chain/submitted.py) against eth_abi's answers:
the whole event's data (``decode_submitted``), the scanner's head-only read (``submitted_log``)
and the spec's stored encoding (``decode_spec``, ``bridge.engine.codec.stored_spec``).

Seeded random generators (reproducible; the seed is in each test's name): valid encodings of
random specs (empty, long and non-UTF-8 strings, many input files, every integer at its
extremes), the same encodings mutated (random bytes, words set to small or huge values, cut,
extended), and pure garbage. For every input the decoder either returns exactly eth_abi's
values or raises ``LogDecodingError`` where eth_abi raises too; the one documented difference
(strings adding up to more bytes than the data: aliased pointers) is checked where it occurs.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest
from eth_abi.abi import decode, encode
from eth_utils.crypto import keccak

from bridge.chain.spec import InputFile, JobSpec, Resources, spec_hash
from bridge.chain.submitted import (
    SUBMITTED_DATA_TYPES,
    LogDecodingError,
    RawSpec,
    decode_spec,
    decode_submitted,
    encode_raw_spec,
    spec_encoding,
    spec_from_raw,
    spec_matches_hash,
    submitted_log,
)
from bridge.engine.codec import SPEC_HASH_MISMATCH, request_for, stored_spec

TYPES = list(SUBMITTED_DATA_TYPES)
SPEC_TYPE = SUBMITTED_DATA_TYPES[3]
WORD = 32
GOOD_URL = "https://example.org/in.txt"


def _text(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.15:
        return b""
    if kind < 0.25:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))  # long, binary
    if kind < 0.35:
        return b"\xff\xfe" + b"x" * rng.randrange(40)  # not UTF-8
    n = rng.choice([1, 5, 31, 32, 33, 63, 64, 65, rng.randrange(200)])
    return bytes(rng.choice(b"abcdefghij /:.-\xc3\xa9") for _ in range(n))


def _uint(rng: random.Random, bits: int) -> int:
    top: int = 2**bits  # typeshed types int ** int as Any (a negative exponent gives a float)
    return rng.choice([0, 1, top - 1, rng.randrange(top)])


def random_spec(rng: random.Random) -> RawSpec:
    """A random spec with its strings as bytes."""
    files = tuple((_text(rng), _text(rng)) for _ in range(rng.choice([0, 1, 2, rng.randrange(40)])))
    resources = (_uint(rng, 16), _uint(rng, 32), _uint(rng, 32), _uint(rng, 32), _uint(rng, 32))
    return (_text(rng), _text(rng), resources, _uint(rng, 16), files)


def random_data(rng: random.Random) -> bytes:
    """A valid encoding of random JobSubmitted data (as Solidity's emit writes it)."""
    values = [
        bytes(rng.randrange(256) for _ in range(32)),
        _uint(rng, 256),
        _uint(rng, 64),
        random_spec(rng),
        _uint(rng, 32),
    ]
    return encode(TYPES, values)


def mutate(rng: random.Random, data: bytes) -> bytes:
    """``data`` with a few random changes: bytes, whole words, cuts and extensions."""
    out = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        kind = rng.randrange(6)
        if kind == 0 and out:
            out[rng.randrange(len(out))] = rng.randrange(256)
        elif kind in (1, 2) and len(out) >= WORD:
            at = rng.randrange(len(out) // WORD) * WORD
            size = len(out)
            value = rng.choice(
                [
                    0,
                    1,
                    31,
                    32,
                    64,
                    160,
                    288,
                    size,
                    size - 32,
                    2**64,
                    2**255,
                    rng.randrange(size + 64),
                ]
            )
            out[at : at + WORD] = value.to_bytes(WORD, "big")
        elif kind == 3:
            del out[rng.randrange(len(out) + 1) :]
        elif kind == 4:
            out += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 100)))
        else:
            out += bytes(rng.choice([0, 32]) for _ in range(rng.randrange(1, 70)))
    return bytes(out)


def eth_abi_answer(data: bytes) -> tuple[Any, ...] | None:
    """eth_abi's values for ``data``, or None when it refuses it (any exception)."""
    try:
        return decode(TYPES, data)
    except Exception:  # eth_abi raises several types (DecodingError, OverflowError, ...)
        return None


def string_bytes(values: tuple[Any, ...]) -> int:
    """How many bytes the strings of decoded data add up to."""
    app, command, _, _, files = values[3]
    return len(app) + len(command) + sum(len(n) + len(u) for n, u in files)


def _log_entry(data: bytes) -> dict[str, Any]:
    """A raw ``eth_getLogs`` entry of JobSubmitted carrying ``data``."""
    return {
        "topics": ["0x" + "00" * 32, "0x" + "00" * 31 + "07", "0x" + "00" * 12 + "11" * 20],
        "data": "0x" + data.hex(),
        "blockNumber": "0x5",
        "blockHash": "0x" + "ab" * 32,
        "transactionHash": "0x" + "cd" * 32,
        "logIndex": "0x0",
    }


def check_scan(data: bytes, expected: tuple[Any, ...] | None) -> None:
    """The scanner's read of ``data`` (``submitted_log``: the head, and the spec's encoding
    kept as bytes) against eth_abi's answer: what eth_abi decodes, the scanner reads with the
    same head and a stored encoding that decodes to eth_abi's spec; what it refuses, the
    scanner refuses, or keeps an encoding that is refused or shown not to be the one paid for
    when the worker comes to read it."""
    try:
        entry = submitted_log(_log_entry(data))
    except LogDecodingError:
        assert expected is None or string_bytes(expected) > len(data), data.hex()
        return
    head = (entry.spec_hash, entry.payment, entry.deadline, entry.callback_gas_limit)
    try:
        spec = decode_spec(entry.spec_abi)
    except LogDecodingError:
        spec = None
    if expected is not None:
        assert head == (expected[0], expected[1], expected[2], expected[4])
        assert spec == expected[3] or string_bytes(expected) > len(entry.spec_abi) - WORD
    elif spec is not None:
        # The head read, the spec decoded, eth_abi refused the whole: only bytes after the
        # spec's own encoding; such an encoding is not what a contract hashes (it ends early).
        assert entry.spec_abi != encode([SPEC_TYPE], [spec]), data.hex()


def check_spec(encoding: bytes) -> str:
    """``decode_spec`` against eth_abi's decoding of one spec; returns which case it was."""
    try:
        expected = decode([SPEC_TYPE], encoding)[0]
    except Exception:  # eth_abi raises several types
        expected = None
    try:
        got = decode_spec(encoding)
    except LogDecodingError:
        if expected is None:
            return "both refuse"
        assert string_bytes((0, 0, 0, expected)) > len(encoding), encoding.hex()
        return "aliased strings refused"
    assert expected is not None, f"decoded what eth_abi refuses: {encoding.hex()}"
    assert got == expected
    return "both decode"


def check(data: bytes) -> str:
    """Compares the decoder with eth_abi on ``data``; returns which case it was."""
    expected = eth_abi_answer(data)
    check_scan(data, expected)
    try:
        got, encoding = decode_submitted(data)
    except LogDecodingError:
        if expected is None:
            return "both refuse"
        # The decoder's one extra rule: no more string bytes than the data holds.
        assert string_bytes(expected) > len(data), f"refused what eth_abi decodes: {data.hex()}"
        return "aliased strings refused"
    assert expected is not None, f"decoded what eth_abi refuses: {data.hex()}"
    assert got == expected
    assert encoding == encode([SPEC_TYPE], [got[3]]), "the spec's encoding differs from eth_abi"
    assert decode_spec(encoding) == got[3]
    return "both decode"


@pytest.mark.parametrize("seed", range(4))
def test_valid_encodings_decode_as_eth_abi_decodes_them(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(150):
        data = random_data(rng)
        assert check(data) == "both decode"
        got, encoding = decode_submitted(data)
        assert keccak(encoding) == keccak(encode([SPEC_TYPE], [got[3]]))
        assert encoding == encode_raw_spec(got[3])


@pytest.mark.parametrize("seed", range(4))
def test_mutated_encodings_are_decoded_or_refused_as_eth_abi_does(seed: int) -> None:
    rng = random.Random(1000 + seed)
    cases: dict[str, int] = {}
    for _ in range(1500):
        case = check(mutate(rng, random_data(rng)))
        cases[case] = cases.get(case, 0) + 1
    # The generator reaches both sides: mutations that still decode and ones that do not.
    assert cases.get("both decode", 0) > 50 and cases.get("both refuse", 0) > 50, cases


@pytest.mark.parametrize("seed", range(2))
def test_garbage_is_refused_with_the_decoding_error(seed: int) -> None:
    rng = random.Random(2000 + seed)
    for _ in range(1500):
        size = rng.choice([0, 1, 31, 32, 159, 160, 161, rng.randrange(2000)])
        data = bytes(rng.randrange(256) for _ in range(size))
        assert check(data) == "both refuse"
        assert check_spec(data) == "both refuse"


@pytest.mark.parametrize("seed", range(3))
def test_stored_spec_encodings_decode_as_eth_abi_decodes_them(seed: int) -> None:
    # ``decode_spec`` reads what the scanner stored (``abi.encode(spec)``): valid encodings
    # decode to eth_abi's values, mutated ones are decoded or refused as eth_abi does.
    rng = random.Random(4000 + seed)
    cases: dict[str, int] = {}
    for _ in range(1000):
        spec = random_spec(rng)
        encoding = encode([SPEC_TYPE], [spec])
        assert encode_raw_spec(spec) == encoding
        assert check_spec(encoding) == "both decode"
        assert decode_spec(encoding) == spec
        case = check_spec(mutate(rng, encoding))
        cases[case] = cases.get(case, 0) + 1
    assert cases.get("both decode", 0) > 50 and cases.get("both refuse", 0) > 50, cases


def _word(value: int) -> bytes:
    return value.to_bytes(WORD, "big")


def _head(spec_at: int = 160) -> bytes:
    return bytes(WORD) + _word(1) + _word(2) + _word(spec_at) + _word(3)


def _spec_head(app: int, command: int, files: int) -> bytes:
    return _word(app) + _word(command) + _word(1) + _word(2) * 4 + _word(1) + _word(files)


@pytest.mark.parametrize(
    "data",
    [
        # a string that claims 2**255 bytes
        _head() + _spec_head(288, 320, 352) + _word(2**255) + _word(0) + _word(0),
        # 2**200 input files
        _head() + _spec_head(288, 320, 352) + _word(0) + _word(0) + _word(2**200),
        # the spec pointer past the end, and into the head
        _head(10**6) + _spec_head(288, 320, 352),
        _head(32) + _spec_head(288, 320, 352),
        # a uint16 with a bit above 16
        _head()
        + _word(288)
        + _word(320)
        + _word(2**16)
        + bytes(5 * WORD)
        + _word(352)
        + _word(0) * 3,
    ],
    ids=["huge-string", "huge-array", "pointer-past-end", "pointer-into-head", "wide-uint16"],
)
def test_hostile_lengths_and_pointers_are_refused(data: bytes) -> None:
    assert check(data) == "both refuse"
    with pytest.raises(LogDecodingError):
        decode_submitted(data)


def test_aliased_pointers_cannot_multiply_one_string() -> None:
    # 200 input files whose names and URLs all point at one 2,000-byte string: eth_abi would
    # return 400 copies of it (quadratic in the data's size); the decoder refuses.
    count = 200
    spec = 160
    app_at = 288  # relative to the spec
    files_at = app_at + WORD  # the app string is empty
    items = spec + files_at + WORD
    big = items + count * WORD  # absolute position of the shared item and its long string
    item_rel = big - items
    body = (
        _head()
        + _spec_head(app_at, app_at, files_at)
        + _word(0)
        + _word(count)
        + _word(item_rel) * count
        + _word(64)
        + _word(64)
        + _word(2000)
        + b"x" * 2000
        + bytes(16)  # padding to a whole word
    )
    assert check(body) == "aliased strings refused"
    expected = eth_abi_answer(body)
    assert expected is not None and len(expected[3][4]) == count


def test_a_canonical_event_is_hashed_from_its_own_bytes_and_a_rearranged_one_re_encoded() -> None:
    rng = random.Random(7)
    spec = random_spec(rng)
    data = encode(TYPES, [b"\x01" * 32, 5, 6, spec, 7])
    # The same values with 64 bytes of gap before the spec: valid, not canonical.
    rearranged = _head(224) + bytes(64) + data[160:]
    for one in (data, rearranged):
        assert check(one) == "both decode"
        got, encoding = decode_submitted(one)
        assert got[3] == spec
        assert encoding == encode([SPEC_TYPE], [spec])


@pytest.mark.parametrize("seed", range(2))
def test_a_read_spec_matches_its_hash_and_any_change_to_it_does_not(seed: int) -> None:
    # ``spec_matches_hash``: the check the worker makes before a job-create. A spec read from
    # the event (every string UTF-8) hashes to the contract's specHash (eth_abi's encoding);
    # a spec differing in any one field does not; one that cannot be encoded is refused.
    rng = random.Random(2000 + seed)
    checked = 0
    while checked < 150:
        raw = random_spec(rng)
        spec, unreadable = spec_from_raw(raw)
        if unreadable is not None:
            continue  # failed when the worker reads it: never reaches the check
        expected = keccak(encode([SPEC_TYPE], [raw]))
        assert spec_matches_hash(spec, expected)
        r = spec.specs
        changed = [
            replace(spec, app=spec.app + "x"),
            replace(spec, command_line="z" + spec.command_line),
            replace(spec, max_hours=(spec.max_hours + 1) % 2**16),
            replace(spec, specs=replace(r, network_upload=(r.network_upload + 1) % 2**32)),
            replace(spec, input_files=(*spec.input_files, InputFile("a", "b"))),
        ]
        if spec.input_files:
            first = spec.input_files[0]
            moved = replace(first, url=first.url + "#")
            changed.append(replace(spec, input_files=(moved, *spec.input_files[1:])))
        for other in changed:
            assert not spec_matches_hash(other, expected)
        checked += 1
    spec, _ = spec_from_raw(random_spec(rng))
    assert not spec_matches_hash(replace(spec, max_hours=2**16), bytes(32))  # not a uint16
    assert not spec_matches_hash(replace(spec, app="\ud800"), bytes(32))  # a lone surrogate


def _utf8_text(rng: random.Random) -> str:
    """Text of every UTF-8 width: ASCII, accents, CJK, astral, combining marks, controls."""
    pool = 'az /:.-"\\\n\x00é€中\U0001f600\u0301\u2028\ufeff'
    return "".join(rng.choice(pool) for _ in range(rng.choice([0, 1, 31, 32, 33, 70])))


def test_the_stored_spec_is_read_only_when_its_bytes_hash_to_the_event_spec_hash() -> None:
    # ``stored_spec`` is what the worker sends and what the cancel outbox re-sends: the
    # stored encoding must hash to the event's specHash (eth_abi's encoding) before it is read;
    # a row changed in any way, or bytes that hash but do not decode, give no spec.
    rng = random.Random(3000)
    for _ in range(200):
        spec = JobSpec(
            app=_utf8_text(rng),
            command_line=_utf8_text(rng),
            specs=Resources(*(_uint(rng, b) for b in (16, 32, 32, 32, 32))),
            max_hours=_uint(rng, 16),
            input_files=tuple(
                InputFile(_utf8_text(rng), _utf8_text(rng)) for _ in range(rng.choice([0, 1, 3]))
            ),
        )
        stored, hashed = spec_encoding(spec), "0x" + spec_hash(spec).hex()
        assert stored_spec(stored, hashed) == (spec, None)
        assert stored_spec(stored, "0x" + bytes(32).hex()) == (None, SPEC_HASH_MISMATCH)
        changed = bytearray(stored)
        changed[rng.randrange(len(changed))] ^= 1 << rng.randrange(8)
        assert stored_spec(bytes(changed), hashed) == (None, SPEC_HASH_MISMATCH)
    # The same spec in another layout (32 zero bytes after it, which eth_abi reads the same),
    # as a node that rewrites the event's data could send it: read, for it is the spec paid for.
    assert stored_spec(stored + bytes(32), hashed) == (spec, None)
    r = spec.specs
    raw: RawSpec = (
        spec.app.encode(),
        spec.command_line.encode(),
        (r.vcpus, r.ram, r.disk, r.network_download, r.network_upload),
        spec.max_hours,
        tuple((f.filename.encode(), f.url.encode()) for f in spec.input_files),
    )
    entry = submitted_log(_log_entry(encode(TYPES, [spec_hash(spec), 1, 2, raw, 3]) + bytes(32)))
    assert entry.spec_abi != stored and stored_spec(entry.spec_abi, hashed) == (spec, None)
    assert stored_spec(stored, "0xnot-hex") == (None, SPEC_HASH_MISMATCH)
    assert stored_spec(b"", hashed) == (None, SPEC_HASH_MISMATCH)
    # Hashing but not decoding (never from a contract's event): refused with the reason.
    garbage = b"\x01" * 40
    spec_out, reason = stored_spec(garbage, "0x" + keccak(garbage).hex())
    assert spec_out is None and reason is not None and reason.startswith("the spec does not")
    # Text that is not UTF-8: the spec is read (U+FFFD for each bad byte), the reason named.
    raw = (b"\xff", b"run", (1, 2, 3, 4, 5), 6, ())
    encoding = encode([SPEC_TYPE], [raw])
    spec_out, reason = stored_spec(encoding, "0x" + keccak(encoding).hex())
    assert spec_out is not None and spec_out.app == "\ufffd"
    assert reason == "app is not valid UTF-8"


def test_request_for_says_why_a_stored_spec_cannot_run() -> None:
    # What the worker sends and the API reports: the request when the spec can run, else the
    # reason (exactly one of them), for each way a stored spec can fail.
    spec = JobSpec("app", "run", Resources(1, 2, 3, 4, 5), 1, (InputFile("in.txt", GOOD_URL),))
    hashed = "0x" + spec_hash(spec).hex()
    got, request, problem = request_for(spec_encoding(spec), hashed)
    assert got == spec and request is not None and problem is None
    assert request.input_files == (("in.txt", GOOD_URL),)
    unsafe = replace(spec, input_files=(InputFile("../up.txt", GOOD_URL),))
    got, request, problem = request_for(spec_encoding(unsafe), "0x" + spec_hash(unsafe).hex())
    assert got == unsafe and request is None and problem is not None and "unsafe" in problem
    assert request_for(spec_encoding(spec), "0x" + bytes(32).hex()) == (
        None,
        None,
        SPEC_HASH_MISMATCH,
    )
