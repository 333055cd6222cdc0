"""Socket options of stream connections: a bounded send buffer and a dead-peer timeout.

Two things the kernel does for a stream and that no write in Python can:

- **A bounded send buffer** (``SO_SNDBUF``, ``SSE_SESSIONS_SEND_BUFFER_BYTES``).
  Left alone, Linux grows a socket's send buffer up to ``net.ipv4.tcp_wmem``'s
  maximum (4 MiB by default), so a client that stopped reading can absorb
  megabytes before its stream's write blocks and the registry notices it.
  Bounded, the write blocks after about that many bytes (Linux reserves twice
  the value for its own bookkeeping), the connection's queue fills, and
  the client is cut once it is about ``SSE_SESSIONS_QUEUE_SIZE`` events behind.
- **A dead-peer timeout** (``SSE_SESSIONS_CLIENT_TIMEOUT``): ``TCP_USER_TIMEOUT``
  makes the kernel abort the connection when data it sent stays unacknowledged
  that long (a phone that lost its network answers nothing), or when the
  client's window stays shut that long (a client that stopped reading);
  TCP keepalive probes an idle connection so that the same holds between
  heartbeats. The stream's write then fails, or the hang-up watcher sees the
  error, and the stream ends: a half-open client is gone within the timeout
  plus one heartbeat interval.

Options a platform lacks are skipped; nothing here raises.
"""

from __future__ import annotations

import functools
import socket
from typing import Any


def tune_stream_socket(
    sock: Any, send_buffer_bytes: int | None, client_timeout: float | None
) -> None:
    """Apply the stream settings to a client's socket (a socket object, or None)."""
    if sock is None or not hasattr(sock, "setsockopt"):
        return
    for level, option, value in _options(send_buffer_bytes, client_timeout):
        try:
            sock.setsockopt(level, option, value)
        except OSError:
            continue


@functools.lru_cache(maxsize=8)
def _options(
    send_buffer_bytes: int | None, client_timeout: float | None
) -> tuple[tuple[int, int, int], ...]:
    """The (level, option, value) triples the settings ask for, on this platform."""
    options: list[tuple[int, int, int]] = []
    if send_buffer_bytes is not None:
        options.append((socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes))
    if client_timeout is not None:
        # Keepalive starts probing after half the timeout of silence; the
        # user timeout then aborts once the probes go unanswered.
        idle = max(1, int(client_timeout / 2))
        options.append((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))
        for name, value in (
            ("TCP_KEEPIDLE", idle),
            ("TCP_KEEPINTVL", max(1, idle // 3)),
            ("TCP_KEEPCNT", 3),
            ("TCP_USER_TIMEOUT", max(1, int(client_timeout * 1000))),
        ):
            option = getattr(socket, name, None)
            if option is not None:
                options.append((socket.IPPROTO_TCP, option, value))
    return tuple(options)
