"""Notice clients that hang up, without a write and without a greenlet each.

An SSE client sends nothing after its request, so its socket becomes readable
when it closes. The watcher only peeks (``MSG_PEEK``): it never consumes a
byte, because on a kept-alive connection what follows the stream is the next
request, which belongs to the server. A client that sends anything while its
stream is open is cut (its stream ends; the server then reads what it sent
as its next request), never read. The stream stops being watched before its
last chunk is written, so the next request never meets the watcher.
One selector thread per process (a greenlet under gunicorn's gevent worker,
whose monkey-patching makes ``selectors`` and ``threading`` cooperative)
watches every stream socket and ends the stream of a client that went away,
at once instead of at the next heartbeat.
"""

from __future__ import annotations

import _socket
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


class HangupWatcher:
    """Watches stream sockets for EOF; one per process, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._selector: selectors.BaseSelector | None = None
        self._pid = 0
        self._direct = 0

    def watch(self, conn: Connection) -> None:
        """Hang ``conn`` up when its socket reads EOF or fails."""
        if conn.socket is None:
            return
        if conn.out is not None:
            # A gevent socket of gunicorn's gevent worker: its own read watcher
            # is idle while the response is written, and costs nothing more.
            conn.out._read_event.start(self._readable_direct, conn)
            self._direct += 1
            return
        try:
            self._current().register(conn.socket, selectors.EVENT_READ, conn)
        except (ValueError, KeyError, OSError):
            conn.socket = None  # not watchable: heartbeats find the hang-up instead

    def unwatch(self, conn: Connection) -> None:
        """Stop watching; call before the server closes the socket."""
        if conn.out is not None:
            self._stop_direct(conn)
            return
        selector = self._selector
        if conn.socket is None or selector is None or self._pid != os.getpid():
            return
        with contextlib.suppress(KeyError, ValueError, OSError):
            selector.unregister(conn.socket)

    def watching(self) -> int:
        selector = self._selector
        return self._direct + (len(selector.get_map()) if selector is not None else 0)

    def _readable_direct(self, conn: Connection) -> None:
        """In gevent's hub: the socket of a direct-capable stream is readable."""
        if conn.out is not None and _readable(conn.out):
            self._stop_direct(conn)
            conn.hang_up()

    def _stop_direct(self, conn: Connection) -> None:
        event = conn.out._read_event
        if event.active:
            event.stop()
            self._direct -= 1

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
                if not _readable(key.fileobj):
                    continue
                # EOF, an error, or a client that talks while it should listen:
                # end its stream, and leave whatever it sent where it is.
                with contextlib.suppress(KeyError, ValueError):
                    selector.unregister(key.fileobj)
                conn: Connection = key.data
                conn.hang_up()


def _readable(sock: Any) -> bool:
    """Whether ``sock`` is at EOF, failed or holds bytes, without consuming any.

    It peeks at the operating system's socket under any wrapper: TLS sockets
    refuse ``recv`` flags, and gevent's would wait instead of answering.
    """
    try:
        raw = _socket.socket(fileno=sock.fileno())
    except (OSError, ValueError):
        return True  # closed already
    try:
        raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False  # woken for nothing
    except OSError:
        pass
    finally:
        raw.detach()  # the descriptor stays the server's
    return True


WATCHER = HangupWatcher()
