"""The example app as the browser test on Redis runs it: each response names
the worker that answered it (``X-Worker-Pid``), so the test knows whom to kill."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, Response

from example_app.app import create_app as create_example


def create_app(**config: Any) -> Flask:
    app = create_example(**config)

    @app.after_request
    def worker_pid(response: Response) -> Response:
        response.headers["X-Worker-Pid"] = str(os.getpid())
        return response

    return app
