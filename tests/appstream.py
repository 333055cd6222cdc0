"""Apps in the test process, and their streams read through Flask's test client.

Two apps on one Redis server stand for two worker processes: each has its own
registry, backend and listener, as each gunicorn worker would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from flask_sse_sessions import SSESessions
from flask_sse_sessions.testing import ServerSentEvent, iter_events
from tests import harness

HEARTBEAT = 0.2


def make_app(**config: Any) -> Flask:
    """An app with the blueprint at ``/api``, public streams and a short heartbeat."""
    app = Flask(__name__)
    app.config.update(SSE_SESSIONS_HEARTBEAT_INTERVAL=HEARTBEAT, SSE_SESSIONS_REQUIRE_TOKEN=False)
    app.config.update(config)
    app.register_blueprint(SSESessions(), url_prefix="/api")
    return app


def close_app(app: Flask) -> None:
    app.extensions["sse_sessions"].backend.close()


@pytest.fixture
def apps() -> Iterator[Callable[..., Flask]]:
    """``apps(**config)``: apps whose backends are closed at the end of the test."""
    made: list[Flask] = []

    def make(**config: Any) -> Flask:
        made.append(make_app(**config))
        return made[-1]

    yield make
    for app in made:
        close_app(app)


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """:func:`tests.harness.wait_until`, saying ``what`` was waited for."""
    return harness.wait_until(condition, timeout, f"waiting for {what or condition}", 0.02)


class StreamReader:
    """Reads one stream of an app in a thread, keeping every event in order.

    The stream ends when the server ends it or after :meth:`close` (at the
    next event or heartbeat, since only the reading thread may close it).
    """

    def __init__(self, app: Flask, session_id: str, headers: dict[str, str] | None = None):
        self.app = app
        self.session_id = session_id
        self.headers = headers or {}
        self.events: list[ServerSentEvent] = []
        self.status: int | None = None
        self.response_headers: dict[str, str] = {}
        self.body = b""
        self.error: BaseException | None = None
        self.done = False
        self._stop = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        wait_until(lambda: self.status is not None or self.done, what="the response status")

    def _run(self) -> None:
        response = None
        try:
            response = self.app.test_client().get(
                f"/api/stream/{self.session_id}", headers=self.headers, buffered=False
            )
            self.response_headers = dict(response.headers)
            self.status = response.status_code
            if self.status != 200:
                self.body = response.get_data()
                return
            for event in iter_events(response):
                with self._changed:
                    self.events.append(event)
                    self._changed.notify_all()
                if self._stop:
                    break
        except BaseException as exc:
            self.error = exc
        finally:
            if response is not None:
                response.close()
            with self._changed:
                self.done = True
                self._changed.notify_all()

    def broadcasts(self) -> list[ServerSentEvent]:
        """What was broadcast, in the order received: the events but those the
        stream itself sends (their ``.id`` is the last id seen, as in a browser)."""
        own = ("connected", "heartbeat", "reset")
        return [event for event in list(self.events) if event.json()["type"] not in own]

    def types(self) -> list[str]:
        return [event.json()["type"] for event in list(self.events)]

    def wait_for(
        self, condition: Callable[[StreamReader], Any], timeout: float = 15.0, what: str = ""
    ) -> Any:
        """Wait until ``condition(self)`` is true while events arrive."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = condition(self)
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0 or self.done:
                    break
                self._changed.wait(min(left, 0.1))
        value = condition(self)
        if value:
            return value
        pytest.fail(
            f"timed out waiting for {what or condition} on {self.session_id}: status"
            f" {self.status}, done {self.done}, error {self.error!r}, events {self.types()}"
        )

    def wait_broadcasts(self, count: int, timeout: float = 15.0) -> list[ServerSentEvent]:
        return self.wait_for(
            lambda r: len(r.broadcasts()) >= count and r.broadcasts(),
            timeout,
            f"{count} broadcast events",
        )

    def close(self) -> None:
        self._stop = True
        self._thread.join(10)
        assert self.done, "the stream did not end"
        assert self.error is None, self.error
