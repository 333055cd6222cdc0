"""Properties of the wire format: whatever is published arrives unchanged.

Every case is parsed twice: by our spec-conformant parser and by httpx-sse's,
an independent implementation, run through httpx the way a Python client reads
a real response (text decoding, line splitting, chunk boundaries anywhere).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import EventSource
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_sse_sessions._events import dumps
from flask_sse_sessions._wire import ServerSentEvent, encode, parse

# Characters that break naive SSE code, on top of everything else.
TRICKY = '\r\n\x00\u2028\u2029\x85\x0b\x0c\x1c\ufeff"\\: '
TEXT = st.text(st.characters(codec="utf-8") | st.sampled_from(TRICKY))
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=16,
)
SINGLE_LINE = re.compile(r"[\r\n\x00]")

# No deadline: the first examples pay for imports and a cold httpx.
PROPERTY = settings(deadline=None, max_examples=150)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (in the middle of UTF-8 sequences, of
    CRLF, anywhere)."""
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if b > a]


def ours(chunks: list[bytes]) -> list[ServerSentEvent]:
    return list(parse(chunks))


def httpx_sse(chunks: list[bytes]) -> list[tuple[str, str, str]]:
    """(data, event, id) of each event httpx-sse reads from these body chunks."""

    def body() -> Iterator[bytes]:
        yield from chunks

    response = httpx.Response(
        200, headers={"Content-Type": "text/event-stream; charset=utf-8"}, content=body()
    )
    return [(sse.data, sse.event, sse.id) for sse in EventSource(response).iter_sse()]


@PROPERTY
@given(st.lists(JSON_VALUES, min_size=1, max_size=4), st.lists(st.integers(0, 10**6)))
def test_any_json_value_round_trips(values: list[Any], cuts: list[int]) -> None:
    texts = [dumps(value) for value in values]
    ids = [f"1732000000000-{n}" for n in range(len(values))]
    wire = b"".join(encode(text, id=id) for text, id in zip(texts, ids, strict=True))
    chunks = chunked(wire, cuts)

    events = ours(chunks)
    assert [json.loads(event.data) for event in events] == values
    assert [event.data for event in events] == texts
    assert [event.id for event in events] == ids

    assert httpx_sse(chunks) == [(text, "message", id) for text, id in zip(texts, ids, strict=True)]


@PROPERTY
@given(TEXT, st.lists(st.integers(0, 10**6)))
def test_any_string_as_data_keeps_its_line_structure(data: str, cuts: list[int]) -> None:
    wire = encode(data)
    # Every line is a data line: nothing in the data can become another field.
    lines = re.split(r"\r\n|\r|\n", wire.decode("utf-8"))
    assert lines[-2:] == ["", ""]
    assert all(line.startswith("data: ") for line in lines[:-2])
    assert len(lines) - 2 == len(re.split(r"\r\n|\r|\n", data))

    # A line break is a line break, whichever of the three it was.
    expected = re.sub(r"\r\n|\r", "\n", data)
    chunks = chunked(wire, cuts)
    assert ours(chunks) == [ServerSentEvent(data=expected)]
    assert httpx_sse(chunks) == [(expected, "message", "")]


@PROPERTY
@given(TEXT, TEXT.filter(bool))
def test_id_and_event_round_trip_or_are_refused(id: str, event: str) -> None:
    if SINGLE_LINE.search(id) or SINGLE_LINE.search(event):
        with pytest.raises(ValueError, match="must not contain CR, LF or NUL"):
            encode("x", id=id, event=event)
        return
    wire = encode("x", id=id, event=event)
    assert ours([wire]) == [ServerSentEvent(data="x", event=event, id=id)]
    assert httpx_sse([wire]) == [("x", event, id)]


@PROPERTY
@given(TEXT)
def test_a_comment_never_makes_an_event(comment: str) -> None:
    wire = encode(comment=comment) + encode("after")
    assert ours([wire]) == [ServerSentEvent(data="after")]
    assert httpx_sse([wire]) == [("after", "message", "")]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("", ""),
        ("a\r\nb\rc\nd", "a\nb\nc\nd"),
        ("\r\n", "\n"),
        ("line\u2028same line\x85\x00", "line\u2028same line\x85\x00"),
        ("x\nid: 9\nevent: admin\nretry: 1", "x\nid: 9\nevent: admin\nretry: 1"),
    ],
)
def test_data_examples(data: str, expected: str) -> None:
    wire = encode(data, id="7-0")
    assert ours([wire]) == [ServerSentEvent(data=expected, id="7-0")]
    assert httpx_sse([wire]) == [(expected, "message", "7-0")]
