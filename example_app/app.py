"""Batchline, the example app: background jobs with live progress, and an
answer streamed token by token.

Every job is a session: a thread (a greenlet under gunicorn's gevent worker)
broadcasts its progress, log lines and completion, and every tab watching it
sees them. The stream replays a session's whole history to a new tab, so a
reload, a second tab or a tab opened after the job finished shows the same
state.

Run it from the repository root::

    gunicorn -c example_app/gunicorn.conf.py
"""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from flask import Flask, abort, jsonify, render_template, request

from flask_sse_sessions import (
    SSESessions,
    broadcast,
    broadcast_complete,
    broadcast_error,
    broadcast_progress,
    new_session_id,
    stream_url,
)


@dataclass(frozen=True)
class Kind:
    """A kind of job the page can start."""

    title: str
    steps: int
    unit: str
    done: str
    hiccup_at: int | None = None


KINDS = {
    "import": Kind("Import customers", 16, "batch", "Imported 3,942 customers"),
    "reindex": Kind("Rebuild search index", 12, "shard", "Search index rebuilt", hiccup_at=7),
    "report": Kind("Render monthly report", 10, "section", "Report ready: november.pdf"),
}

LOG_LINES = {
    "import": "Imported batch {n} of {steps}: {rows} rows ({skipped} skipped as duplicates)",
    "reindex": "Shard {n} of {steps} indexed: {rows} documents",
    "report": "Rendered section {n} of {steps} ({rows} rows summarised)",
}

ANSWER = (
    "Each job on this page is a session with its own id. The job runs in a"
    " background greenlet and broadcasts progress, log lines and a final complete"
    " event; the browser client receives them over Server-Sent Events, and every"
    " tab watching the same session sees the same updates. When a connection"
    " drops, the client reconnects by itself and resumes from the last event id,"
    " so nothing is lost and nothing arrives twice. Because the server replays a"
    " session's history to new tabs, a reload shows the whole log again. This"
    " answer arrived the same way, one token at a time."
)


@dataclass
class Job:
    id: str
    kind: str
    title: str
    created: float
    question: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "question": self.question,
            "created": self.created,
            "url": stream_url(self.id),
        }


def create_app(**config: Any) -> Flask:
    """The app. Keyword arguments override its config, for example
    ``EXAMPLE_STEP_SECONDS`` (how long a job step takes) in tests."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="example-only: set a real secret in production",
        EXAMPLE_STEP_SECONDS=0.6,
        EXAMPLE_TOKEN_SECONDS=0.06,
        # A late tab gets every event of a job, not only the latest one, to
        # rebuild the log; the history must hold a whole job for that.
        SSE_SESSIONS_REPLAY_ON_CONNECT="all",
        SSE_SESSIONS_HISTORY_SIZE=500,
    )
    app.config.update(config)
    app.register_blueprint(SSESessions(), url_prefix="/api")
    jobs: dict[str, Job] = {}

    def start(kind: str, title: str, target: Any, *args: Any, question: str | None = None) -> Job:
        job = Job(new_session_id(), kind, title, time.time(), question)
        jobs[job.id] = job
        threading.Thread(target=target, args=(app, job.id, *args), daemon=True).start()
        return job

    @app.get("/")
    def index() -> str:
        return render_template("index.html", kinds=KINDS)

    @app.get("/jobs")
    def list_jobs() -> Any:
        return jsonify(jobs=[job.as_json() for job in jobs.values()])

    @app.get("/jobs/<job_id>")
    def get_job(job_id: str) -> Any:
        if job_id not in jobs:
            abort(404)
        return jsonify(jobs[job_id].as_json())

    @app.post("/jobs")
    def start_job() -> Any:
        kind = (request.get_json(silent=True) or {}).get("kind")
        if kind not in KINDS:
            abort(400)
        job = start(kind, KINDS[kind].title, run_job, kind, app.config["EXAMPLE_STEP_SECONDS"])
        return jsonify(job.as_json()), 201

    @app.post("/answers")
    def ask() -> Any:
        question = str((request.get_json(silent=True) or {}).get("question", "")).strip()
        if not question:
            abort(400)
        job = start(
            "answer",
            "Answer",
            stream_answer,
            app.config["EXAMPLE_TOKEN_SECONDS"],
            question=question[:500],
        )
        return jsonify(job.as_json()), 201

    return app


def run_job(app: Flask, job_id: str, kind_name: str, step_seconds: float) -> None:
    """A job's life: progress, one numbered log line per step, then complete."""
    kind = KINDS[kind_name]
    with app.app_context():
        broadcast_progress(job_id, percent=0, status="Starting…")
        for n in range(1, kind.steps + 1):
            time.sleep(step_seconds * random.uniform(0.5, 1.5))
            if n == kind.hiccup_at:
                broadcast_error(job_id, f"Shard {n} answered slowly; retried it once")
            line = LOG_LINES[kind_name].format(
                n=n, steps=kind.steps, rows=random.randint(180, 260), skipped=random.randint(0, 9)
            )
            broadcast(job_id, "log", n=n, text=line)
            broadcast_progress(
                job_id,
                percent=round(100 * n / kind.steps),
                status=f"{kind.unit.capitalize()} {n} of {kind.steps}",
            )
        broadcast_complete(job_id, percent=100, status=kind.done)


def stream_answer(app: Flask, job_id: str, token_seconds: float) -> None:
    """The streamed-answer demo: a canned answer, one word at a time."""
    with app.app_context():
        for token in re.findall(r"\S+\s*", ANSWER):
            time.sleep(token_seconds * random.uniform(0.5, 1.5))
            broadcast(job_id, "token", text=token)
        broadcast_complete(job_id)
