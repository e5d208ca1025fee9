"""The JSON.stringify canonicaliser and the verifier, as pure functions."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from service.signature import (
    InvalidJSON,
    js_stringify,
    parse_json,
    sign,
    verify,
    verify_raw,
    verify_reformatted,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.0", "1"),
        ("1e21", "1e+21"),
        ("1e20", "100000000000000000000"),
        ("-0", "0"),
        ("-0.0", "0"),
        ("9007199254740993", "9007199254740992"),
        ("1.5e-7", "1.5e-7"),
        ("0.000001", "0.000001"),
        ("123.4560", "123.456"),
        ("1E400", "null"),
        ("1" + "0" * 400, "null"),
        ("5e-324", "5e-324"),
        ("-1.25e+30", "-1.25e+30"),
    ],
)
def test_numbers_are_formatted_as_javascript_does(text: str, expected: str) -> None:
    assert js_stringify(parse_json(text.encode())).decode() == expected


def test_integer_like_keys_come_first_in_ascending_order() -> None:
    parsed = parse_json(b'{"b":1,"10":2,"a":3,"2":4,"01":5,"-1":6,"4294967294":7,"4294967295":8}')

    assert js_stringify(parsed) == (
        b'{"2":4,"10":2,"4294967294":7,"b":1,"a":3,"01":5,"-1":6,"4294967295":8}'
    )


def test_strings_are_escaped_as_javascript_does() -> None:
    parsed = parse_json('"é\\u0001\\n\\"\\\\\\ud800 \\ud83d\\ude00 \u2028\x7f"'.encode())

    assert js_stringify(parsed) == '"é\\u0001\\n\\"\\\\\\ud800 😀 \u2028\x7f"'.encode()


def test_duplicate_keys_keep_the_first_position_and_the_last_value() -> None:
    assert js_stringify(parse_json(b'{"a":1,"b":2,"a":3}')) == b'{"a":3,"b":2}'


@pytest.mark.parametrize("body", [b"NaN", b'{"a": Infinity}', b"\xff\xfe", b"{", b""])
def test_what_javascript_cannot_parse_is_invalid(body: bytes) -> None:
    with pytest.raises(InvalidJSON):
        parse_json(body)


def test_verify_accepts_raw_bytes_reformatted_bodies_and_any_rotation_secret() -> None:
    envelope = {"event": "message", "data": {"n": 1.0, "text": "ça 👍"}}
    compact = js_stringify(envelope)
    signature = sign(compact, "old")
    pretty = json.dumps(envelope, indent=2).encode()

    assert verify(compact, signature, ["new", "old"])
    assert verify(pretty, signature, ["old"])
    assert verify(compact, signature.upper(), ["old"])
    assert not verify(compact, signature, ["new"])
    assert not verify(pretty.replace(b"1.0", b"2.0"), signature, ["old"])
    assert not verify(compact, None, ["old"])
    assert not verify(compact, "zz" * 32, ["old"])
    assert not verify(b"not json", sign(b"other", "old"), ["old"])


# --- parity with Node's JSON.stringify over generated documents -------------------------------

_NUMBERS = [
    "0",
    "-0",
    "1.0",
    "1e21",
    "1E21",
    "1e-7",
    "123e-20",
    "0.1",
    "-5.5e+300",
    "9007199254740993",
    "18446744073709551616",
    "1e400",
    "0.000001",
    "100",
    "2.5E3",
    "4.35",
    "1.7976931348623157e308",
]
_STRINGS = [
    "",
    "plain",
    "ça va",
    "😀",
    "\\ud800",
    "\\udc00x",
    "\\u0000\\u001f",
    "\\n\\t\\r\\b\\f",
    '\\"',
    "\\\\",
    "\\u2028\\u2029",
    "\u007f",
    "नमस्ते",
    "\\u00e9",
    "\\ud83d\\ude00",
    "/",
    "\\/",
]
_KEYS = ["a", "b", "0", "1", "10", "01", "-1", "4294967294", "4294967295", "__proto__", "é", "z"]


def _document(rng: random.Random, depth: int = 0) -> str:
    """A JSON text in arbitrary formatting: what a re-serialising proxy might send."""
    space = rng.choice(["", " ", "\n  "])
    roll = rng.random()
    if depth > 3 or roll < 0.35:
        leaf = rng.random()
        if leaf < 0.4:
            return rng.choice(_NUMBERS) if rng.random() < 0.6 else repr(rng.uniform(-1e6, 1e6))
        if leaf < 0.8:
            return '"' + "".join(rng.choice(_STRINGS) for _ in range(rng.randint(0, 3))) + '"'
        return rng.choice(["true", "false", "null"])
    if roll < 0.6:
        items = [_document(rng, depth + 1) for _ in range(rng.randint(0, 4))]
        return "[" + ("," + space).join(items) + "]"
    pairs = [
        f'"{rng.choice(_KEYS)}"{space}:{space}{_document(rng, depth + 1)}'
        for _ in range(rng.randint(0, 6))
    ]
    return "{" + space + ("," + space).join(pairs) + space + "}"


_NODE_STRINGIFY = """
const lines = require('fs').readFileSync(0, 'utf8').split('\\n').filter(l => l.length);
process.stdout.write(lines.map(l => JSON.stringify(JSON.stringify(JSON.parse(l)))).join('\\n'));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not on PATH: parity not checked")
def test_parity_with_node_json_stringify(tmp_path: Path) -> None:
    rng = random.Random(20261124)
    documents = [_document(rng).replace("\n", " ") for _ in range(3000)]
    documents = [d for d in documents if "\n" not in d]

    completed = subprocess.run(
        ["node", "-e", _NODE_STRINGIFY],
        input="\n".join(documents).encode(),
        capture_output=True,
        check=True,
    )
    # Node's output is wrapped in one more JSON.stringify so lone surrogates survive the pipe.
    expected = [json.loads(line) for line in completed.stdout.decode().split("\n")]

    assert len(expected) == len(documents)
    mismatches = [
        (doc, want)
        for doc, want in zip(documents, expected, strict=True)
        if js_stringify(parse_json(doc.encode())).decode("utf-8", "surrogatepass") != want
    ]
    assert mismatches == []


def test_the_slow_path_is_only_the_fallback() -> None:
    envelope = {"event": "test", "data": {"n": 1.0}}
    compact = js_stringify(envelope)
    pretty = json.dumps(envelope, indent=2).encode()
    signature = sign(compact, "s")

    assert verify_raw(compact, signature, ["s"]) and not verify_raw(pretty, signature, ["s"])
    assert verify_reformatted(pretty, signature, ["s"])
    assert not verify_reformatted(compact, signature, ["s"])  # same bytes: raw decides
    assert verify(pretty, signature, ["s"], canonical_max=len(pretty))
    assert not verify(pretty, signature, ["s"], canonical_max=len(pretty) - 1)
