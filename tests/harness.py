"""The one way the tests run a server: ``gunicorn -k gevent`` in a subprocess.

:class:`Server` starts gunicorn with a given app, config, hooks and number of
workers on a free port, waits until it serves, reads its log and stops it.
:func:`wait_until` waits for an observable condition with a generous deadline,
in place of sleeping for a guessed time.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.rawhttp import RawStream

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 30.0
SERVER_APP = "tests.server_app:create_app()"

T = TypeVar("T")


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether a server could bind ``port`` now (as gunicorn does, with SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return False
            raise
        return True


def wait_until(
    condition: Callable[[], T | None],
    timeout: float = DEADLINE,
    message: str | Callable[[], object] = "the condition did not hold",
    interval: float = 0.05,
) -> T:
    """Call ``condition`` until it returns something true, and return that.

    After ``timeout`` seconds fail with ``message`` (a callable is called then,
    so the message can show the state that was last seen).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"after {timeout:g} s: {text}")
        time.sleep(interval)


class ServerLog(type(Path())):  # type: ignore[misc]
    """A server's log file, a :class:`~pathlib.Path`; calling it gives its tail."""

    def __call__(self, size: int = 5000) -> str:
        """The last ``size`` characters (all of them with 0)."""
        text = self.read_text(errors="replace") if self.exists() else ""
        return text[-size:] if size else text


class ServerError(RuntimeError):
    """gunicorn exited or did not serve; the message holds its log's tail."""


class Server:
    """``gunicorn -k gevent`` serving ``app`` (by default ``tests/server_app.py``).

    ``config`` goes to the app as JSON in ``SSE_TEST_CONFIG`` (both test apps
    read it), ``hooks`` in ``SSE_TEST_HOOKS``. The server runs in its own process
    group, so :meth:`kill` takes the master and its workers at once. Use it as a
    context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        hooks: dict[str, Any] | None = None,
        *,
        app: str | None = SERVER_APP,
        workers: int | None = 1,
        worker_connections: int | None = 2000,
        extra_args: tuple[str, ...] | list[str] = (),
        env: dict[str, str] | None = None,
        ready_path: str = "/health",
        graceful_timeout: float | None = 2,
        port: int | None = None,
        gunicorn: tuple[str, ...] | list[str] = (sys.executable, "-m", "gunicorn"),
        base_env: dict[str, str] | None = None,
    ) -> None:
        """``app``: None when ``extra_args`` name a config file that names it;
        ``workers``, ``worker_connections``, ``graceful_timeout``: None leaves
        them to such a file.
        ``gunicorn``: the command that runs gunicorn (another environment's).
        ``base_env``: the environment to start from instead of this process's
        with ``PYTHONPATH`` pointing at the repository."""
        self.config = config or {}
        self.hooks = hooks or {}
        self.app = app
        self.workers = workers
        self.worker_connections = worker_connections
        self.extra_args = tuple(extra_args)
        self.extra_env = env or {}
        self.gunicorn = tuple(gunicorn)
        self.base_env = base_env
        self.ready_path = ready_path
        self.graceful_timeout = graceful_timeout
        self._pinned = port is not None
        self.port = port if port is not None else free_port()
        self.process: subprocess.Popen[bytes] | None = None
        fd, name = tempfile.mkstemp(prefix="sse-test-gunicorn-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        self.log = ServerLog(self.log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # Running

    def command(self) -> list[str]:
        options = [
            ("-w", self.workers),
            ("--worker-connections", self.worker_connections),
            ("--graceful-timeout", self.graceful_timeout),
        ]
        return [
            *self.gunicorn,
            "-k", "gevent",
            "-b", f"127.0.0.1:{self.port}",
            *[part for name, value in options if value is not None for part in (name, str(value))],
            *self.extra_args,
            *([self.app] if self.app else []),
        ]  # fmt: skip

    def start(self, timeout: float = DEADLINE) -> Server:
        """Start and wait until ``ready_path`` answers 200.

        A port still held (by a server just killed on it, or by another
        process) is retried until the deadline: on the same port once the
        server has run (clients expect it there), on a new free port before.
        """
        assert self.process is None or self.process.poll() is not None, "already running"
        deadline = time.monotonic() + timeout
        while True:
            if self._pinned:
                wait_until(
                    lambda: port_is_free(self.port),
                    max(deadline - time.monotonic(), 0.1),
                    lambda: f"port {self.port} stays in use",
                )
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._spawn()
            try:
                self._wait_ready(deadline)
                self._pinned = True
                return self
            except ServerError:
                log = self.log_path.read_bytes()[offset:].decode(errors="replace")
                in_use = "Connection in use" in log or "Address already in use" in log
                if not in_use or time.monotonic() >= deadline:
                    raise
                self._reap()
                if not self._pinned:
                    self.port = free_port()

    def _spawn(self) -> None:
        if self.base_env is None:
            env = dict(os.environ, PYTHONPATH=str(ROOT))
        else:
            env = dict(self.base_env)
        env.update(
            SSE_TEST_CONFIG=json.dumps(self.config),
            SSE_TEST_HOOKS=json.dumps(self.hooks),
            **self.extra_env,
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True
            )

    def _wait_ready(self, deadline: float) -> None:
        assert self.process is not None
        process = self.process
        while True:
            if process.poll() is not None:
                raise ServerError(f"gunicorn exited ({process.returncode}):\n{self.log()}")
            try:
                response = httpx.get(self.url + self.ready_path, timeout=2)
                if response.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() >= deadline:
                self._reap()
                raise ServerError(f"gunicorn did not serve {self.ready_path}:\n{self.log()}")
            time.sleep(0.05)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        """Send ``sig`` to the master and wait for it to exit; kill it and its
        workers if it takes longer than ``timeout``."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        self._reap()

    def kill(self) -> None:
        """``kill -9`` the master and its workers at once."""
        self._reap()

    def restart(self, timeout: float = DEADLINE) -> Server:
        """Start again on the same port (after :meth:`stop` or :meth:`kill`)."""
        self._reap()
        self._pinned = True
        return self.start(timeout)

    def _reap(self) -> None:
        """SIGKILL whatever is left of the process group, and wait for the master."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def __enter__(self) -> Server:
        if not self.running():
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Talking to the test app (tests/server_app.py)

    def stream(
        self, path: str, headers: dict[str, str] | None = None, timeout: float = 10.0
    ) -> RawStream:
        """Open ``/api/stream/<path>`` with the raw socket client."""
        return RawStream(self.port, "/api/stream/" + path, headers, timeout=timeout)

    def publish(self, session_id: str, data: Any = None, **body: Any) -> list[int]:
        """Publish from a request to the server (so from inside the worker)."""
        response = httpx.post(
            f"{self.url}/publish/{session_id}", json={"data": data, **body}, timeout=30
        )
        response.raise_for_status()
        return list(response.json()["reached"])

    def stats(self) -> dict[str, int]:
        return dict(httpx.get(self.url + "/debug/stats", timeout=10).json())

    def wait_for(self, key: str, value: int, timeout: float = DEADLINE) -> dict[str, int]:
        """Poll the worker's stats until ``stats[key] == value``; fail otherwise."""
        seen: dict[str, int] = {}

        def reached() -> dict[str, int] | None:
            seen.update(self.stats())
            return dict(seen) if seen[key] == value else None

        return wait_until(reached, timeout, lambda: f"{key} != {value}: {seen}")

    def get(self, path: str) -> Any:
        """GET ``path``; its JSON body."""
        response = httpx.get(self.url + path, timeout=10)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: Any = None) -> Any:
        """POST ``body`` as JSON to ``path``; its JSON body."""
        response = httpx.post(self.url + path, json=body, timeout=10)
        response.raise_for_status()
        return response.json()


class FlaskDevServer(Server):
    """The same app under ``flask run --with-threads`` instead of gunicorn."""

    def command(self) -> list[str]:
        assert self.app is not None
        return [
            sys.executable, "-m", "flask", "--app", self.app,
            "run", "--with-threads", "--port", str(self.port),
        ]  # fmt: skip
