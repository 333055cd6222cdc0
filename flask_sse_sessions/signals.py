"""Blinker signals for metrics and logging; the sender is always the Flask app.

Connect with ``signal.connect(receiver, sender=app)`` or for every app without
``sender``. Receivers run synchronously inside the stream or the broadcast, so
they must be quick and must never block.

``connection_opened(app, session_id=str, user_key=str | None)``
    A stream was accepted and registered.
``connection_closed(app, session_id=str, user_key=str | None)``
    A stream ended, for any reason.
``event_broadcast(app, session_id=str, event=Event)``
    An event reached this process's bus, after it was handed to the
    connections. ``event.id``, ``event.type`` and ``event.json`` (the JSON
    text) describe it. With the in-process bus that is every broadcast of the
    app; with Redis, every event of a session that has a stream in this
    process (each process receives only those). The bus itself is a private
    signal: a receiver of this one that raises is logged (logger
    ``flask_sse_sessions``) and fails neither the broadcast, which is stored
    and delivered already, nor the Redis listener.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

connection_opened = _signals.signal("connection-opened")
connection_closed = _signals.signal("connection-closed")
event_broadcast = _signals.signal("event-broadcast")

__all__ = ["connection_closed", "connection_opened", "event_broadcast"]
