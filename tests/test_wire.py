"""The wire format, byte for byte, and the spec-conformant parser."""

from __future__ import annotations

import pytest

from flask_sse_sessions._wire import Parser, ServerSentEvent, encode, parse


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"data": "hello"}, b"data: hello\n\n"),
        ({"data": ""}, b"data: \n\n"),
        ({"data": "a\nb"}, b"data: a\ndata: b\n\n"),
        ({"data": "a\rb"}, b"data: a\ndata: b\n\n"),
        ({"data": "a\r\nb"}, b"data: a\ndata: b\n\n"),
        ({"data": "a\n\nb"}, b"data: a\ndata: \ndata: b\n\n"),
        ({"data": "a\n"}, b"data: a\ndata: \n\n"),
        ({"data": "line\u2028sep\x85nel"}, "data: line\u2028sep\x85nel\n\n".encode()),
        ({"data": "ü€😀"}, "data: ü€😀\n\n".encode()),
        ({"data": "x", "id": "1-0"}, b"id: 1-0\ndata: x\n\n"),
        ({"data": "x", "id": ""}, b"id: \ndata: x\n\n"),
        ({"data": "x", "event": "tick"}, b"event: tick\ndata: x\n\n"),
        ({"data": "x", "retry": 0}, b"retry: 0\ndata: x\n\n"),
        ({"retry": 3000}, b"retry: 3000\n\n"),
        ({"comment": "heartbeat"}, b": heartbeat\n\n"),
        ({"comment": ""}, b":\n\n"),
        ({"comment": "a\nb"}, b": a\n: b\n\n"),
        (
            {"data": "d", "id": "7-1", "event": "e", "retry": 5, "comment": "c"},
            b": c\nid: 7-1\nevent: e\nretry: 5\ndata: d\n\n",
        ),
    ],
)
def test_encode_exact_bytes(kwargs: dict[str, object], expected: bytes) -> None:
    assert encode(**kwargs) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["id", "event"])
@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x00b"])
def test_single_line_fields_refuse_line_breaks_and_nul(field: str, bad: str) -> None:
    with pytest.raises(ValueError, match=f"SSE {field} must not contain"):
        encode("x", **{field: bad})  # type: ignore[arg-type]


def test_retry_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        encode(retry=-1)


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        ("data: a\n\n", [ServerSentEvent("a")]),
        ("data:a\n\n", [ServerSentEvent("a")]),
        ("data:  a\n\n", [ServerSentEvent(" a")]),
        ("data: a\r\n\r\n", [ServerSentEvent("a")]),
        ("data: a\r\rdata: b\r\r", [ServerSentEvent("a"), ServerSentEvent("b")]),
        ("data: a\ndata: b\n\n", [ServerSentEvent("a\nb")]),
        ("data\n\n", [ServerSentEvent("")]),
        ("id: 1-0\ndata: a\n\n", [ServerSentEvent("a", id="1-0")]),
        (
            "id: 1-0\ndata: a\n\ndata: b\n\n",
            [ServerSentEvent("a", id="1-0"), ServerSentEvent("b", id="1-0")],
        ),
        ("id: a\x00b\ndata: x\n\n", [ServerSentEvent("x")]),
        ("event: tick\ndata: a\n\n", [ServerSentEvent("a", event="tick")]),
        ("retry: 10\ndata: a\n\n", [ServerSentEvent("a", retry=10)]),
        ("retry: 1x\ndata: a\n\n", [ServerSentEvent("a")]),
        ("retry: 3000\n\n", []),
        (": comment\n\n", []),
        ("unknown: x\ndata: a\n\n", [ServerSentEvent("a")]),
        ("data: never dispatched", []),
        ("data: a\u2028b\n\n", [ServerSentEvent("a\u2028b")]),
    ],
)
def test_parser_follows_the_spec(stream: str, expected: list[ServerSentEvent]) -> None:
    assert list(parse([stream])) == expected


def test_parser_waits_when_a_chunk_ends_in_cr() -> None:
    parser = Parser()
    assert list(parser.feed("data: a\r")) == []
    # The "\n" completes the "\r\n" of the same line: one line break, not two.
    assert list(parser.feed("\ndata: b\r")) == []
    assert list(parser.feed("\n\r\n")) == [ServerSentEvent("a\nb")]


def test_parse_decodes_utf8_split_across_chunks() -> None:
    encoded = "data: 😀\n\n".encode()
    chunks = [encoded[i : i + 1] for i in range(len(encoded))]
    assert list(parse(chunks)) == [ServerSentEvent("😀")]


def test_event_json() -> None:
    assert ServerSentEvent('{"a": [1]}').json() == {"a": [1]}
