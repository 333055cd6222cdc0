"""The Server-Sent Events wire format, both ways, with no framework import.

Encoding follows the WHATWG HTML "Server-sent events" section: a field is
``name: value`` on one line, an event ends with a blank line, and a line may end
in CRLF, CR or LF. Data is therefore split on exactly those three, never with
:meth:`str.splitlines`, which also splits on U+2028, U+0085 and friends.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FORBIDDEN_IN_FIELD = re.compile(r"[\r\n\x00]")


def _single_line(name: str, value: str) -> str:
    if _FORBIDDEN_IN_FIELD.search(value):
        raise ValueError(f"an SSE {name} must not contain CR, LF or NUL: {value!r}")
    return value


def encode(
    data: str | None = None,
    *,
    id: str | None = None,
    event: str | None = None,
    retry: int | None = None,
    comment: str | None = None,
) -> bytes:
    """Encode one SSE block as UTF-8 bytes ending in a blank line.

    Every argument is optional; ``None`` leaves the field out, while ``""``
    writes it empty (``data=""`` is an event with empty data). ``data`` and
    ``comment`` may span several lines; ``id`` and ``event`` may not.

    :raises ValueError: ``id`` or ``event`` contains CR, LF or NUL, or
        ``retry`` is negative.
    """
    lines: list[str] = []
    if comment is not None:
        lines.extend(": " + line if line else ":" for line in _LINE_BREAK.split(comment))
    if id is not None:
        lines.append("id: " + _single_line("id", id))
    if event is not None:
        lines.append("event: " + _single_line("event", event))
    if retry is not None:
        if retry < 0:
            raise ValueError(f"an SSE retry must be a non-negative integer, not {retry!r}")
        lines.append(f"retry: {int(retry)}")
    if data is not None:
        lines.extend("data: " + line for line in _LINE_BREAK.split(data))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched event as a spec-conformant client sees it."""

    data: str
    event: str = "message"
    id: str = ""
    retry: int | None = None

    def json(self) -> object:
        """Parse :attr:`data` as JSON."""
        import json

        return json.loads(self.data)


class Parser:
    """An incremental parser: feed text chunks, get dispatched events.

    It keeps the state the spec keeps between events (the last event id) and
    waits for more input when a chunk ends in CR, which may be half of a CRLF.
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._data: list[str] = []
        self._event = ""
        self._retry: int | None = None
        self.last_event_id = ""

    def feed(self, text: str) -> Iterator[ServerSentEvent]:
        """Add ``text`` and yield every event it completes."""
        self._buffer += text
        lines = _LINE_BREAK.split(self._buffer)
        self._buffer = lines.pop()
        if self._buffer == "" and text.endswith("\r"):
            # "\r" at the very end may be the start of "\r\n": keep it undecided.
            last = lines.pop()
            self._buffer = last + "\r"
        for line in lines:
            event = self._line(line)
            if event is not None:
                yield event

    def _line(self, line: str) -> ServerSentEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event, retry = self._data, self._event, self._retry
        self._data, self._event, self._retry = [], "", None
        if not data:
            return None
        return ServerSentEvent(
            data="\n".join(data),
            event=event or "message",
            id=self.last_event_id,
            retry=retry,
        )


def parse(chunks: Iterable[str | bytes]) -> Iterator[ServerSentEvent]:
    """Parse a whole stream given as text or UTF-8 byte chunks."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    parser = Parser()
    for chunk in chunks:
        text = decoder.decode(chunk) if isinstance(chunk, bytes) else chunk
        yield from parser.feed(text)
    yield from parser.feed(decoder.decode(b"", final=True))
