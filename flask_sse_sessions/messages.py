"""The JSON messages a stream carries, as types for type checkers.

Each is the ``data:`` of one SSE event; ``type`` tells them apart. The browser
client's ``sse-sessions.d.ts`` declares the same shapes for TypeScript.
Events that apps publish may carry any further keys beside those listed.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict


class ConnectedMessage(TypedDict):
    """First event of every stream; it has no id."""

    type: Literal["connected"]
    sessionId: str
    timestamp: str


class HeartbeatMessage(TypedDict):
    """Sent after ``SSE_SESSIONS_HEARTBEAT_INTERVAL`` seconds of silence; no id."""

    type: Literal["heartbeat"]
    timestamp: str


class ResetMessage(TypedDict):
    """The client's Last-Event-ID is no longer stored: it missed events, and the
    session's latest event follows."""

    type: Literal["reset"]


class ProgressMessage(TypedDict):
    """What ``broadcast_progress`` sends, plus the app's own keys."""

    type: Literal["progress"]
    timestamp: str
    percent: NotRequired[float]
    message: NotRequired[str]


class CompleteMessage(TypedDict):
    """What ``broadcast_complete`` sends; the stream ends after it."""

    type: Literal["complete"]
    timestamp: str


class ErrorMessage(TypedDict):
    """What ``broadcast_error`` sends."""

    type: Literal["error"]
    message: str
    timestamp: str


Message = (
    ConnectedMessage
    | HeartbeatMessage
    | ResetMessage
    | ProgressMessage
    | CompleteMessage
    | ErrorMessage
)

__all__ = [
    "CompleteMessage",
    "ConnectedMessage",
    "ErrorMessage",
    "HeartbeatMessage",
    "Message",
    "ProgressMessage",
    "ResetMessage",
]
