"""Batchline, the example app: background jobs with live progress, and an
answer streamed token by token.

Every job is a session: a thread (a greenlet under gunicorn's gevent worker)
broadcasts its progress, log lines and completion, and every tab watching it
sees them. The stream replays a session's whole history to a new tab, so a
reload, a second tab or a tab opened after the job finished shows the same
state.

Each browser sees and streams only its own jobs: Flask's session cookie lists
them and the ``authorize`` hook checks it. Jobs are capped per browser and in
all, and are forgotten ``EXAMPLE_JOB_SECONDS`` after they start.

Run it from the repository root, with a secret key of your own::

    SECRET_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))') \
        gunicorn -c example_app/gunicorn.conf.py
"""

from __future__ import annotations

import os
import random
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from flask import Flask, abort, jsonify, render_template, request, session
from werkzeug.exceptions import HTTPException

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
    finished: bool = False

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
        SECRET_KEY=os.environ.get("SECRET_KEY"),
        EXAMPLE_STEP_SECONDS=0.6,
        EXAMPLE_TOKEN_SECONDS=0.06,
        # Jobs a browser keeps (finished ones give way to new ones), jobs the
        # server keeps in all, and how long a job is kept after it started.
        EXAMPLE_JOBS_PER_BROWSER=20,
        EXAMPLE_MAX_JOBS=1000,
        EXAMPLE_JOB_SECONDS=3600,
        # A late tab gets every event of a job, not only the latest one, to
        # rebuild the log; the history must hold a whole job for that.
        SSE_SESSIONS_REPLAY_ON_CONNECT="all",
        SSE_SESSIONS_HISTORY_SIZE=500,
    )
    app.config.update(config)
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = secrets.token_hex(32)
        app.logger.warning(
            "SECRET_KEY is not set in the environment: using a random key, so every"
            " browser's jobs are forgotten when the server restarts. Set SECRET_KEY"
            " to a long random value."
        )
    sse = SSESessions()

    @sse.authorize
    def may_watch(session_id: str) -> bool:
        """A browser watches the jobs it started, as its session cookie lists them."""
        return session_id in session.get("jobs", [])

    app.register_blueprint(sse, url_prefix="/api")
    jobs: dict[str, Job] = {}
    lock = threading.Lock()

    def own_jobs() -> list[Job]:
        """This browser's jobs that the server still keeps, oldest first."""
        expired = time.time() - app.config["EXAMPLE_JOB_SECONDS"]
        with lock:
            for job in [job for job in jobs.values() if job.finished and job.created < expired]:
                del jobs[job.id]
            kept = [jobs[job_id] for job_id in session.get("jobs", []) if job_id in jobs]
        return kept

    def start(kind: str, title: str, target: Any, *args: Any, question: str | None = None) -> Any:
        mine = own_jobs()
        if len(mine) >= app.config["EXAMPLE_JOBS_PER_BROWSER"]:
            finished = [job for job in mine if job.finished]
            if not finished:
                return error(429, "too_many_jobs", "Wait for one of your jobs to finish.")
            mine.remove(finished[0])
        job = Job(new_session_id(), kind, title, time.time(), question)
        with lock:
            if len(jobs) >= app.config["EXAMPLE_MAX_JOBS"]:
                return error(503, "busy", "The server runs too many jobs; try again later.")
            jobs[job.id] = job
        session["jobs"] = [*(kept.id for kept in mine), job.id]

        def run() -> None:
            try:
                target(app, job.id, *args)
            finally:
                job.finished = True

        threading.Thread(target=run, daemon=True).start()
        return jsonify(job.as_json()), 201

    def json_object() -> dict[str, Any]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            abort(400, "The request body must be a JSON object.")
        return body

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        code = (exc.name or "error").lower().replace(" ", "_")
        return error(exc.code or 500, code, exc.description or "")

    @app.get("/")
    def index() -> str:
        return render_template("index.html", kinds=KINDS)

    @app.get("/jobs")
    def list_jobs() -> Any:
        return jsonify(jobs=[job.as_json() for job in own_jobs()])

    @app.get("/jobs/<job_id>")
    def get_job(job_id: str) -> Any:
        for job in own_jobs():
            if job.id == job_id:
                return jsonify(job.as_json())
        abort(404, "No such job among yours.")

    @app.post("/jobs")
    def start_job() -> Any:
        kind = json_object().get("kind")
        if not isinstance(kind, str) or kind not in KINDS:
            abort(400, f"kind must be one of {', '.join(map(repr, KINDS))}.")
        return start(kind, KINDS[kind].title, run_job, kind, app.config["EXAMPLE_STEP_SECONDS"])

    @app.post("/answers")
    def ask() -> Any:
        question = json_object().get("question")
        if not isinstance(question, str) or not question.strip():
            abort(400, "question must be a string that is not empty.")
        return start(
            "answer",
            "Answer",
            stream_answer,
            app.config["EXAMPLE_TOKEN_SECONDS"],
            question=question.strip()[:500],
        )

    return app


def error(status: int, code: str, message: str) -> Any:
    """A JSON error answer, as every route but the page gives."""
    return jsonify(error=code, message=message), status


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
