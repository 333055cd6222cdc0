"""Notice clients that hang up, without a write and without a greenlet each.

An SSE client sends nothing after its request, so its socket becomes readable
when it closes (bytes it sends anyway are read and dropped, within a bound).
One selector thread per process (a greenlet under gunicorn's gevent worker,
whose monkey-patching makes ``selectors`` and ``threading`` cooperative)
watches every stream socket and ends the stream of a client that went away,
at once instead of at the next heartbeat.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import threading
from typing import Any

from ._registry import Connection

# New sockets join the watch at the next turn of the loop under gevent's
# selector; this bounds how long that can take.
_POLL_SECONDS = 0.5
# A client should send nothing after its request. What it sends anyway is read
# and dropped, so that its hang-up is still noticed, up to this many bytes.
_STRAY_BYTES = 4096


class HangupWatcher:
    """Watches stream sockets for EOF; one per process, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._selector: selectors.BaseSelector | None = None
        self._pid = 0
        self._stray: dict[Connection, int] = {}

    def watch(self, conn: Connection) -> None:
        """Hang ``conn`` up when its socket reads EOF or fails."""
        if conn.socket is None:
            return
        try:
            self._current().register(conn.socket, selectors.EVENT_READ, conn)
        except (ValueError, KeyError, OSError):
            conn.socket = None  # not watchable: heartbeats find the hang-up instead

    def unwatch(self, conn: Connection) -> None:
        """Stop watching; call before the server closes the socket."""
        selector = self._selector
        if conn.socket is None or selector is None or self._pid != os.getpid():
            return
        self._stray.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            selector.unregister(conn.socket)

    def watching(self) -> int:
        selector = self._selector
        return len(selector.get_map()) if selector is not None else 0

    def _current(self) -> selectors.BaseSelector:
        pid = os.getpid()
        if self._selector is None or self._pid != pid:
            with self._lock:
                if self._selector is None or self._pid != pid:
                    # After a fork the parent's thread is gone: start our own.
                    self._selector = selectors.DefaultSelector()
                    self._pid = pid
                    threading.Thread(
                        target=self._run,
                        args=(self._selector,),
                        name="flask-sse-sessions-hangups",
                        daemon=True,
                    ).start()
        return self._selector

    def _run(self, selector: selectors.BaseSelector) -> None:
        while selector is self._selector:
            for key, _ in selector.select(_POLL_SECONDS):
                conn: Connection = key.data
                received = _discard(key.fileobj)
                if received is None:
                    continue
                stray = self._stray.get(conn, 0) + received
                if received and stray <= _STRAY_BYTES:
                    self._stray[conn] = stray
                    continue
                # EOF, an error, or a client that keeps talking: end its stream.
                self._stray.pop(conn, None)
                with contextlib.suppress(KeyError, ValueError):
                    selector.unregister(key.fileobj)
                conn.hang_up()


def _discard(sock: Any) -> int | None:
    """Read and drop what a readable socket holds.

    :returns: how many bytes; 0 at EOF or on an error; None if there was nothing.
    """
    try:
        data: bytes = sock.recv(_STRAY_BYTES, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None
    except OSError:
        return 0
    return len(data)


WATCHER = HangupWatcher()
