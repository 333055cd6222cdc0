"""Helpers for testing apps that stream with flask-sse-sessions."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from werkzeug.test import TestResponse

from ._wire import ServerSentEvent, parse

__all__ = ["ServerSentEvent", "iter_events"]


def iter_events(response: TestResponse | Iterable[bytes]) -> Iterator[ServerSentEvent]:
    """Parse the events of a streaming response as they arrive.

    Give it a response of Flask's test client made with ``buffered=False``
    (``client.get(url, buffered=False)``), or any iterable of byte chunks.
    Each event has ``.id``, ``.event``, ``.data`` and ``.json()``. A stream
    runs until the server ends it: stop iterating when you have what you need,
    and close the response.
    """
    chunks = response.response if isinstance(response, TestResponse) else response
    return parse(chunks)
