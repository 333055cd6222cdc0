"""Server-Sent Events for Flask: sessions, resume, heartbeats, many connections.

The whole public surface is here; the private modules behind it are not API.
"""

from ._auth import stream_url
from ._backend import BackendUnavailable
from ._blueprint import SSESessions
from ._config import ConfigError
from ._publish import (
    broadcast,
    broadcast_complete,
    broadcast_error,
    broadcast_progress,
    new_session_id,
    stats,
)
from ._publisher import Publisher

__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "Publisher",
    "SSESessions",
    "broadcast",
    "broadcast_complete",
    "broadcast_error",
    "broadcast_progress",
    "new_session_id",
    "stats",
    "stream_url",
]
