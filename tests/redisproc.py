"""Real ``redis-server`` processes for the tests: one per test, on a free port.

Tests that need Redis never touch a server they did not start: each gets its
own ``redis-server`` with its own directory, which it may kill, restart (with
append-only persistence, nothing acknowledged is lost), pause and resume.
Without ``redis-server`` on the PATH those tests fail; they never skip.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REDIS_SERVER = shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """One ``redis-server`` on 127.0.0.1 and a free port.

    :param appendonly: persist every write before it is acknowledged
        (``--appendonly yes --appendfsync always``), so a restart keeps it all.
    :param options: more ``redis-server`` options, such as
        ``("--client-output-buffer-limit", "pubsub 64kb 32kb 1")``.
    """

    def __init__(self, *, appendonly: bool = True, options: tuple[str, ...] = ()) -> None:
        if REDIS_SERVER is None:
            pytest.fail("redis-server is not installed: apt-get install -y redis-server")
        self.appendonly = appendonly
        self.options = options
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = Path(tempfile.mkdtemp(prefix=f"sse-test-redis-{self.port}-"))
        self.log = self.dir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> RedisProcess:
        """Start the server (again, on the same port and directory) and wait for PING.

        The port of a killed server can stay taken for a moment: this retries
        the bind until ``timeout``.
        """
        assert REDIS_SERVER is not None
        command = [
            REDIS_SERVER,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--logfile", str(self.log),
            *self.options,
        ]  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
            while time.monotonic() < deadline and self.process.poll() is None:
                if self._answers():
                    return self
                time.sleep(0.02)
            if self.process.poll() is None or time.monotonic() >= deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not start: {self.log_tail()}")
            # It exited, most likely because the port was not free yet: retry.
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def log_tail(self, size: int = 3000) -> str:
        return self.log.read_text()[-size:] if self.log.exists() else "(no log)"

    def stop(self) -> None:
        """Stop the server; a paused one is resumed first so that it can exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: what a crash looks like; with AOF every acknowledged write survives."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> RedisProcess:
        self.kill()
        return self.start()

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections open but answers nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def client(self, **options: Any) -> Any:
        """A redis-py client of this server, for inspection (``CLIENT LIST`` and so on)."""
        import redis

        return redis.Redis.from_url(self.url, **options)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    """A fresh ``redis-server`` with append-only persistence, for this test alone."""
    server = RedisProcess().start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_factory() -> Iterator[Any]:
    """``redis_factory(appendonly=..., options=...)``: servers this test alone uses."""
    servers: list[RedisProcess] = []

    def make(**kwargs: Any) -> RedisProcess:
        servers.append(RedisProcess(**kwargs).start())
        return servers[-1]

    yield make
    for server in servers:
        server.cleanup()
