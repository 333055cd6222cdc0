"""Jobs that a real RQ worker runs in the end-to-end tests: they publish
through :class:`flask_sse_sessions.Publisher`, as an app's task queue would."""

from __future__ import annotations

from flask_sse_sessions import Publisher

_publishers: dict[str, Publisher] = {}


def publish_events(redis_url: str, session_ids: list[str], source: str, count: int) -> int:
    """Publish ``count`` progress events to each session; returns how many were sent.

    One publisher per URL and process, made on first use, as a module-level
    ``Publisher`` would be in a real project.
    """
    publisher = _publishers.get(redis_url)
    if publisher is None:
        publisher = _publishers[redis_url] = Publisher(redis_url, history_size=10_000)
    sent = 0
    for n in range(count):
        for session_id in session_ids:
            publisher.broadcast_progress(session_id, src=source, n=n)
            sent += 1
    return sent
