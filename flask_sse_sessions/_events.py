"""Events: their ids, their validated JSON, and the frames written to streams.

An event is validated and encoded once, when it is published; every connection
then writes the same :attr:`Event.frame` bytes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any

from . import _wire

EventKey = tuple[int, int]
"""An id as ``(milliseconds, sequence)``: the order of events within a session."""

EventRecord = tuple[int, int, str, str, "int | None", "int | None", bytes]
"""An event as history keeps it: ``(*key, type, json, *prev, frame)``, with
``(None, None)`` for no ``prev``."""

TERMINAL = "complete"
RESERVED_TYPES = frozenset({"connected", "heartbeat", "reset"})
"""Types the stream itself sends; publishing them would confuse clients."""

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


def utc_timestamp() -> str:
    """Now, as ISO 8601 in UTC with milliseconds: ``2026-11-24T01:24:47.123Z``.

    Every event has one: the part up to the second is formatted once a second.
    """
    global _second
    now = time.time()
    seconds = int(now)
    second = _second
    if second[0] != seconds:
        second = _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{second[1]}.{int((now - seconds) * 1000):03d}Z"


def dumps(value: object) -> str:
    """Compact JSON that keeps non-ASCII text as it is (the stream is UTF-8)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def check_type(type: object) -> str:
    """Validate an event type name.

    :raises TypeError: not a string.
    :raises ValueError: empty, with CR, LF or NUL, or one the stream reserves.
    """
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
    if data is not None and not isinstance(data, Mapping):
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

    __slots__ = ("frame", "id", "json", "key", "prev", "type")

    def __init__(
        self,
        key: EventKey,
        type: str,
        json_text: str,
        prev: EventKey | None = None,
        frame: bytes | None = None,
    ) -> None:
        self.key = key
        self.id = format_event_id(key)
        self.type = type
        self.json = json_text
        self.prev = prev
        if frame is None:
            if "\n" in json_text or "\r" in json_text:
                frame = _wire.encode(json_text, id=self.id)
            else:  # one data line, as compact JSON always is
                frame = f"id: {self.id}\ndata: {json_text}\n\n".encode()
        self.frame = frame

    @property
    def record(self) -> EventRecord:
        """The event as a flat tuple of atoms, which the garbage collector
        stops tracking at its first pass: what a history keeps."""
        prev = self.prev or (None, None)
        return (*self.key, self.type, self.json, *prev, self.frame)

    @classmethod
    def from_record(cls, record: EventRecord) -> Event:
        milliseconds, sequence, type, json_text, prev_ms, prev_sequence, frame = record
        prev = None if prev_ms is None or prev_sequence is None else (prev_ms, prev_sequence)
        return cls((milliseconds, sequence), type, json_text, prev, frame)

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
    return _wire.encode(dumps(payload), retry=retry_ms)


def heartbeat_frame(format: str) -> bytes:
    if format == "comment":
        return _wire.encode(comment="heartbeat")
    return _wire.encode(dumps({"type": "heartbeat", "timestamp": utc_timestamp()}))


RESET_FRAME = _wire.encode(dumps({"type": "reset"}))
