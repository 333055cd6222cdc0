"""Events: their ids, their validated JSON, and the frames written to streams.

An event is validated and encoded once, when it is published; every connection
then writes the same :attr:`Event.frame` bytes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from . import _wire

EventKey = tuple[int, int]
"""An id as ``(milliseconds, sequence)``: the order of events within a session."""

EventRecord = tuple[EventKey, str, str, "EventKey | None", bytes]
"""An event as history keeps it and connections queue it: ``(key, type, json,
prev, frame)``, the arguments of :class:`Event`.

Only tuples, ints, strings and bytes: Python's garbage collector stops
tracking such a tuple in its young generations (the inner ones at their first
pass, the record at its first or second), so neither a burst's queued events
nor a whole history ever reach the old generation, whose full collections
would have to walk them all, as they would walk as many :class:`Event` objects.
"""

# The fields of a record that are read by position.
KEY: Final = 0
PREV: Final = 3
FRAME: Final = 4

TERMINAL = "complete"
RESERVED_TYPES = frozenset({"connected", "heartbeat", "reset"})
"""Types the stream itself sends; publishing them would confuse clients."""
_PUBLISHED_TYPES = frozenset({"progress", TERMINAL, "error"})

_EVENT_ID = re.compile(r"([0-9]{1,15})-([0-9]{1,15})")
_BAD_TYPE = re.compile(r"[\r\n\x00]")


def parse_event_id(text: str) -> EventKey | None:
    """``"1732000000000-3"`` -> ``(1732000000000, 3)``; None for anything else."""
    match = _EVENT_ID.fullmatch(text)
    return (int(match[1]), int(match[2])) if match else None


def format_event_id(key: EventKey) -> str:
    return f"{key[0]}-{key[1]}"


def next_event_id(last: EventKey | None, now_ms: int | None = None) -> EventKey:
    """The id after ``last``, shaped like a Redis stream entry id.

    The clock gives the first half, so ids also grow across restarts; within one
    millisecond (or if the clock steps back) the sequence counts up instead.
    """
    if now_ms is None:
        now_ms = time.time_ns() // 1_000_000
    if last is None or now_ms > last[0]:
        return (now_ms, 0)
    return (last[0], last[1] + 1)


_second: tuple[int, str] = (0, "")
_millisecond: tuple[int, str] = (0, "")


def utc_timestamp() -> str:
    """Now, as ISO 8601 in UTC with milliseconds: ``2026-11-24T01:24:47.123Z``.

    Every event has one. A burst publishes many in one millisecond, which
    share one string; the part up to the second is formatted once a second.
    """
    global _second, _millisecond
    now_ms = time.time_ns() // 1_000_000
    last = _millisecond
    if last[0] == now_ms:
        return last[1]
    seconds, milliseconds = divmod(now_ms, 1000)
    second = _second
    if second[0] != seconds:
        second = _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    text = f"{second[1]}.{milliseconds:03d}Z"
    _millisecond = (now_ms, text)
    return text


def _compact_encoder() -> Callable[[object], str]:
    """Compact JSON that keeps non-ASCII text as it is (the stream is UTF-8).

    One encoder for every event: ``json.dumps`` with options builds a new one
    at each call, which costs as much as encoding a small event. The
    standard library's C encoder is made once, without a table of the
    containers being encoded (shared, it could not serve two threads at
    once): a container that holds itself exhausts the recursion limit
    instead, which is reported as a ValueError, as ``json`` reports it.
    """
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return encoder.encode
    # The arguments JSONEncoder.iterencode passes it, without the markers.
    encode = make(
        None, encoder.default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )

    def dumps(value: object) -> str:
        try:
            return "".join(encode(value, 0))
        except RecursionError:
            raise ValueError(
                "a container holds itself, or nests deeper than the recursion limit"
            ) from None

    return dumps


dumps = _compact_encoder()


def check_type(type: object) -> str:
    """Validate an event type name.

    :raises TypeError: not a string.
    :raises ValueError: empty, with CR, LF or NUL, or one the stream reserves.
    """
    if type.__class__ is str and type in _PUBLISHED_TYPES:
        return type  # the common case, known good
    if not isinstance(type, str):
        raise TypeError(f"an event type must be a string, not {type!r}")
    if not type or _BAD_TYPE.search(type):
        raise ValueError(f"an event type must be non-empty without CR, LF or NUL: {type!r}")
    if type in RESERVED_TYPES:
        raise ValueError(f"the event type {type!r} is reserved for the stream itself")
    return type


def encode_payload(
    type: str,
    data: Mapping[str, Any] | None,
    fields: Mapping[str, Any],
    max_bytes: int,
    *,
    type_from_data: bool = False,
) -> tuple[str, str]:
    """Build and encode ``{"type": type, **data, **fields, "timestamp": now}``.

    With ``type_from_data`` a ``"type"`` key of ``data`` or ``fields`` names the
    type; otherwise ``type`` wins. Returns ``(type, json_text)``.

    :raises TypeError: ``data`` is not a mapping, or a value is not JSON serialisable.
    :raises ValueError: a bad type name, NaN or infinity, text that is not valid
        Unicode, or an event longer than ``max_bytes`` once encoded.
    """
    if data is not None and data.__class__ is not dict and not isinstance(data, Mapping):
        raise TypeError(f"event data must be a dict (or None), not {data.__class__.__name__}")
    payload: dict[str, Any] = {"type": type}
    if data:
        payload.update(data)
    payload.update(fields)
    if not type_from_data:
        payload["type"] = type
    payload.pop("timestamp", None)
    payload["timestamp"] = utc_timestamp()
    type = check_type(payload["type"])
    try:
        text = dumps(payload)
    except TypeError as exc:
        raise TypeError(f"event data is not JSON serialisable: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"event data is not valid JSON: {exc}") from None
    if text.isascii():
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError("event data contains text that is not valid Unicode") from None
    if size > max_bytes:
        raise ValueError(
            f"the event is {size} bytes of JSON, more than SSE_SESSIONS_MAX_EVENT_BYTES"
            f" ({max_bytes}): send a reference to large data instead of the data itself"
        )
    return type, text


class Event:
    """One published event: its id, type, JSON text and ready-made frame.

    :attr:`prev` is the id of the session's event before it, when the backend
    knows it: a stream that holds another id than that has missed something.
    """

    __slots__ = ("frame", "id", "json", "key", "prev", "record", "type")

    def __init__(
        self,
        key: EventKey,
        type: str,
        json_text: str,
        prev: EventKey | None = None,
        frame: bytes | None = None,
    ) -> None:
        self.key = key
        self.id = id = f"{key[0]}-{key[1]}"
        self.type = type
        self.json = json_text
        self.prev = prev
        if frame is None:
            if "\n" in json_text or "\r" in json_text:
                frame = _wire.encode(json_text, id=id)
            else:  # one data line, as compact JSON always is
                frame = f"id: {id}\ndata: {json_text}\n\n".encode()
        self.frame = frame
        # The event as a tuple the garbage collector stops tracking (see
        # EventRecord): what histories keep and connections queue.
        self.record: EventRecord = (key, type, json_text, prev, frame)

    @classmethod
    def from_record(cls, record: EventRecord) -> Event:
        return cls(*record)

    def __eq__(self, other: object) -> bool:
        """Events are values: one read back from history equals the one published."""
        if not isinstance(other, Event):
            return NotImplemented
        return self is other or self.record == other.record

    def __hash__(self) -> int:
        return hash(self.key)

    @property
    def terminal(self) -> bool:
        """Whether the event ends its session's streams (a ``complete`` event)."""
        return self.type == TERMINAL

    def __repr__(self) -> str:
        return f"<Event {self.id} {self.type}>"


def connected_frame(session_id: str, retry_ms: int) -> bytes:
    """The first block of a stream: the reconnection delay and the connected event.

    One block, so that no client sees an event without data.
    """
    payload = {"type": "connected", "sessionId": session_id, "timestamp": utc_timestamp()}
    # Compact JSON is one line: no need for the general encoder.
    return b"retry: %d\ndata: %s\n\n" % (retry_ms, dumps(payload).encode())


def heartbeat_frame(format: str) -> bytes:
    if format == "comment":
        return _wire.encode(comment="heartbeat")
    return _wire.encode(dumps({"type": "heartbeat", "timestamp": utc_timestamp()}))


RESET_FRAME = _wire.encode(dumps({"type": "reset"}))
