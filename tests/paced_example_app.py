"""The example app with jobs that move only when the test says so.

A job's steps (and an answer's tokens) wait in the example's ``time.sleep``;
here that wait lasts until the test lets the job take more steps with
``POST /test/jobs/<job_id>/steps`` and ``{"count": n}`` (``{"count": "all"}``:
run to the end). So a test sees a job ``running`` for as long as it needs,
instead of racing a short state on a busy machine.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, jsonify, request

import example_app.app as example

_local = threading.local()


class _Pace:
    """Stands in for the example module's ``time``: ``sleep`` in a job's thread
    waits until the job may take another step."""

    time = staticmethod(time.time)

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._allowed: dict[str, float] = {}

    def sleep(self, seconds: float) -> None:
        job_id = getattr(_local, "job_id", None)
        if job_id is None:
            time.sleep(seconds)
            return
        with self._changed:
            self._changed.wait_for(lambda: self._allowed.get(job_id, 0) > 0)
            self._allowed[job_id] -= 1

    def allow(self, job_id: str, count: float) -> None:
        with self._changed:
            self._allowed[job_id] = self._allowed.get(job_id, 0) + count
            self._changed.notify_all()


def _paced(target: Callable[..., None]) -> Callable[..., None]:
    def run(app: Flask, job: Any, *args: Any) -> None:
        # The job, or its id: the runners of the example take either.
        _local.job_id = job if isinstance(job, str) else job.id
        target(app, job, *args)

    return run


PACE = _Pace()
if not isinstance(example.time, _Pace):
    example.time = PACE  # type: ignore[assignment]
    example.run_job = _paced(example.run_job)  # type: ignore[assignment]
    example.stream_answer = _paced(example.stream_answer)  # type: ignore[assignment]


def create_app(**config: Any) -> Flask:
    app = example.create_app(**config)

    @app.post("/test/jobs/<job_id>/steps")
    def allow_steps(job_id: str) -> Any:
        count = (request.get_json(silent=True) or {}).get("count")
        if count != "all" and not (isinstance(count, int) and count > 0):
            return jsonify(error='"count" must be a positive integer or "all"'), 400
        PACE.allow(job_id, math.inf if count == "all" else count)
        return jsonify(ok=True)

    return app
