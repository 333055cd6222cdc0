"""A TCP proxy in front of a server, able to make some of its connections half-open.

A half-open connection looks alive to both ends (no FIN, no RST) but carries
nothing: what a NAT or a failed load balancer leaves behind. :meth:`freeze`
turns the matching connections into that, by swallowing their bytes in both
directions while keeping their sockets open; new connections work normally.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable


class _Pair:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.sent = b""  # the first bytes the client sent, to recognise it by
        self.frozen = False


class TcpProxy:
    """Listens on 127.0.0.1 and a free port (:attr:`port`) and forwards to ``target``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                continue
            pair = _Pair(client, upstream)
            with self._lock:
                self._pairs.append(pair)
            threading.Thread(target=self._pump, args=(pair, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(pair, False), daemon=True).start()

    def _pump(self, pair: _Pair, outbound: bool) -> None:
        source, target = (pair.client, pair.upstream) if outbound else (pair.upstream, pair.client)
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if outbound and len(pair.sent) < 4096:
                    pair.sent += data
                if not pair.frozen:
                    target.sendall(data)
        except OSError:
            pass
        if not pair.frozen:
            for sock in (pair.client, pair.upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def freeze(self, matches: Callable[[bytes], bool]) -> int:
        """Make the open connections whose first bytes match half-open; returns how many."""
        with self._lock:
            pairs = [pair for pair in self._pairs if matches(pair.sent) and not pair.frozen]
        for pair in pairs:
            pair.frozen = True
        return len(pairs)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in (pair.client, pair.upstream):
                with contextlib.suppress(OSError):
                    sock.close()
