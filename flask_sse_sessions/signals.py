"""Blinker signals for metrics and logging; the sender is always the Flask app.

Connect with ``signal.connect(receiver, sender=app)`` or for every app without
``sender``. Receivers run synchronously inside the stream or the broadcast, so
they must be quick and must never block.

``connection_opened(app, session_id=str, user_key=str | None)``
    A stream was accepted and registered.
``connection_closed(app, session_id=str, user_key=str | None)``
    A stream ended, for any reason.
``event_broadcast(app, session_id=str, event=Event)``
    An event reached this process's bus. ``event.id``, ``event.type`` and
    ``event.json`` (the JSON text) describe it. This signal is the bus itself:
    the extension's own fan-out to the connections is one of its receivers.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

connection_opened = _signals.signal("connection-opened")
connection_closed = _signals.signal("connection-closed")
event_broadcast = _signals.signal("event-broadcast")

__all__ = ["connection_closed", "connection_opened", "event_broadcast"]
