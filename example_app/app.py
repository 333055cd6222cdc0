"""Batchline, the example app: background jobs with live progress, and an
answer streamed token by token.

Every job is a session: a thread (a greenlet under gunicorn's gevent worker)
broadcasts its progress, log lines and completion, and every tab watching it
sees them. The stream replays a session's whole history to a new tab, so a
reload, a second tab or a tab opened after the job finished shows the same
state.

Run it from the repository root::

    gunicorn -c example_app/gunicorn.conf.py

With ``REDIS_URL`` set it runs four workers on the Redis backend, and keeps
its job list in Redis: any worker answers any tab, and a job whose worker died
(or a restarted gunicorn) is taken over by another one, which continues from
the job's last stored event::

    REDIS_URL=redis://127.0.0.1:6379/0 gunicorn -c example_app/gunicorn.conf.py
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from flask import Flask, abort, jsonify, render_template, request

from flask_sse_sessions import (
    BackendUnavailable,
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
        return {**asdict(self), "url": stream_url(self.id)}


# What a job broadcasts: (event type, fields, seconds to wait before it).
Action = tuple[str, dict[str, Any], float]


def plan(job: Job, step_seconds: float, token_seconds: float) -> list[Action]:
    """Everything a job will broadcast, decided from its id alone: a worker that
    takes over a job continues exactly where the last one stopped."""
    rng = random.Random(job.id)
    if job.kind == "answer":
        tokens = re.findall(r"\S+\s*", ANSWER)
        return [
            *(("token", {"text": t}, token_seconds * rng.uniform(0.5, 1.5)) for t in tokens),
            ("complete", {}, 0.0),
        ]
    kind = KINDS[job.kind]
    actions: list[Action] = [("progress", {"percent": 0, "status": "Starting…"}, 0.0)]
    for n in range(1, kind.steps + 1):
        wait = step_seconds * rng.uniform(0.5, 1.5)
        if n == kind.hiccup_at:
            message = f"Shard {n} answered slowly; retried it once"
            actions.append(("error", {"message": message}, wait))
            wait = 0.0
        rows, skipped = rng.randint(180, 260), rng.randint(0, 9)
        line = LOG_LINES[job.kind].format(n=n, steps=kind.steps, rows=rows, skipped=skipped)
        actions.append(("log", {"n": n, "text": line}, wait))
        status = f"{kind.unit.capitalize()} {n} of {kind.steps}"
        actions.append(("progress", {"percent": round(100 * n / kind.steps), "status": status}, 0))
    actions.append(("complete", {"percent": 100, "status": kind.done}, 0.0))
    return actions


def send(job_id: str, seq: int, kind: str, fields: dict[str, Any]) -> None:
    """Broadcast one action; ``seq`` (its place in the plan) goes with it."""
    if kind == "progress":
        broadcast_progress(job_id, fields, seq=seq)
    elif kind == "complete":
        broadcast_complete(job_id, fields, seq=seq)
    elif kind == "error":
        broadcast_error(job_id, fields["message"], seq=seq)
    else:
        broadcast(job_id, kind, fields, seq=seq)


class StoreDown(Exception):
    """The job store (Redis) did not answer."""


class LocalJobs:
    """The jobs of this process, for the in-process bus (one worker): a
    restarted server forgets them."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.jobs: dict[str, Job] = {}

    def all(self) -> list[Job]:
        return list(self.jobs.values())

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def add(self, job: Job) -> None:
        self.jobs[job.id] = job
        threading.Thread(target=run, args=(self.app, job, self, ""), daemon=True).start()

    def start_background(self) -> None:
        pass  # nothing to take over: the jobs die with the process

    # The runner's side.

    def position(self, job: Job) -> int:
        return 0

    def holds(self, job: Job, lease: str) -> bool:
        return True

    def finished(self, job: Job) -> None:
        pass


# Renews the lease only while it is still ours.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class RedisJobs:
    """Jobs kept in Redis, shared by every worker and every restart.

    ``batchline:jobs`` maps job ids to their JSON; ``batchline:running`` holds
    the ids of unfinished jobs; ``batchline:lease:<id>`` names the worker that
    runs a job (``<pid>:<token>``) and expires unless that worker renews it,
    before each event.
    Every worker looks for running jobs without a lease (their worker died,
    or gunicorn restarted) and takes them over: the job goes on after the last
    event Redis stored for it, so nothing is sent twice or skipped.
    """

    def __init__(self, app: Flask, url: str, lease_seconds: float) -> None:
        self.app = app
        self.url = url
        self.lease_ms = round(lease_seconds * 1000)
        self.events_key = app.config["SSE_SESSIONS_KEY_PREFIX"] + ":{{{}}}:events"
        self._pid = 0  # the connections and the background thread are per process
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        if self._pid != os.getpid():
            import redis

            with self._lock:
                if self._pid != os.getpid():
                    self._client = redis.Redis.from_url(
                        self.url, socket_timeout=2, socket_connect_timeout=2, decode_responses=True
                    )
                    self._pid = os.getpid()
                    threading.Thread(target=self._take_over, daemon=True).start()
        return self._client

    def _call(self, command: Callable[[Any], Any]) -> Any:
        import redis

        try:
            return command(self.client())
        except redis.RedisError as exc:
            raise StoreDown(str(exc)) from exc

    def all(self) -> list[Job]:
        jobs = [Job(**json.loads(raw)) for raw in self._call(lambda r: r.hvals("batchline:jobs"))]
        return sorted(jobs, key=lambda job: job.created)

    def get(self, job_id: str) -> Job | None:
        raw = self._call(lambda r: r.hget("batchline:jobs", job_id))
        return Job(**json.loads(raw)) if raw else None

    def add(self, job: Job) -> None:
        def store(r: Any) -> None:
            with r.pipeline() as pipe:
                pipe.hset("batchline:jobs", job.id, json.dumps(asdict(job)))
                pipe.sadd("batchline:running", job.id)
                pipe.execute()

        self._call(store)
        self._claim(job.id)

    def start_background(self) -> None:
        self.client()

    def _claim(self, job_id: str) -> bool:
        """Take the job if nobody holds its lease, and run it here."""
        # The lease names the runner: this process and a token of the run.
        key, lease = f"batchline:lease:{job_id}", f"{os.getpid()}:{secrets.token_hex(8)}"
        if not self._call(lambda r: r.set(key, lease, nx=True, px=self.lease_ms)):
            return False
        job = self.get(job_id)
        if job is None:
            self._call(lambda r: r.srem("batchline:running", job_id))
            return False
        threading.Thread(target=run, args=(self.app, job, self, lease), daemon=True).start()
        return True

    def _take_over(self) -> None:
        """Forever: claim the running jobs whose worker stopped renewing them."""
        while True:
            try:
                for job_id in self._call(lambda r: r.smembers("batchline:running")):
                    self._claim(job_id)
            except StoreDown:
                pass  # Redis is down: look again later
            time.sleep(self.lease_ms / 4000 * random.uniform(0.5, 1))

    # The runner's side.

    def position(self, job: Job) -> int:
        """The place in the job's plan after the last event Redis stored."""
        key = self.events_key.format(job.id)
        entries = self._call(lambda r: r.xrevrange(key, count=1))
        return int(json.loads(entries[0][1]["d"])["seq"]) + 1 if entries else 0

    def holds(self, job: Job, lease: str) -> bool:
        """Renew the job's lease; False when another runner has it now."""
        key = f"batchline:lease:{job.id}"
        return bool(self._call(lambda r: r.eval(_RENEW, 1, key, lease, self.lease_ms)))

    def finished(self, job: Job) -> None:
        self._call(lambda r: r.srem("batchline:running", job.id))


def run(app: Flask, job: Job, jobs: LocalJobs | RedisJobs, lease: str) -> None:
    """A job's life: its plan, broadcast step by step from where it stands,
    while this runner holds the job's ``lease``."""
    actions = plan(job, app.config["EXAMPLE_STEP_SECONDS"], app.config["EXAMPLE_TOKEN_SECONDS"])
    with app.app_context():
        while True:
            try:
                for seq in range(jobs.position(job), len(actions)):
                    kind, fields, wait = actions[seq]
                    time.sleep(wait)
                    if not jobs.holds(job, lease):
                        return  # another worker took it over
                    send(job.id, seq, kind, fields)
                jobs.finished(job)
                return
            except (BackendUnavailable, StoreDown):
                # Redis is down: wait, then go on from what it stored.
                time.sleep(1)


def create_app(**config: Any) -> Flask:
    """The app. Keyword arguments override its config, for example
    ``EXAMPLE_STEP_SECONDS`` (how long a job step takes) in tests.

    ``REDIS_URL`` (the config key, else the environment variable) puts the
    streams and the job list in Redis, for several workers.
    """
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="example-only: set a real secret in production",
        EXAMPLE_STEP_SECONDS=0.6,
        EXAMPLE_TOKEN_SECONDS=0.06,
        # How long a job whose worker died waits before another takes it over.
        EXAMPLE_LEASE_SECONDS=5.0,
        REDIS_URL=os.environ.get("REDIS_URL") or None,
        # A late tab gets every event of a job, not only the latest one, to
        # rebuild the log; the history must hold a whole job for that.
        SSE_SESSIONS_REPLAY_ON_CONNECT="all",
        SSE_SESSIONS_HISTORY_SIZE=500,
    )
    app.config.update(config)
    redis_url = app.config["REDIS_URL"]
    if redis_url:
        app.config["SSE_SESSIONS_REDIS_URL"] = redis_url
    app.register_blueprint(SSESessions(), url_prefix="/api")
    jobs: LocalJobs | RedisJobs
    if redis_url:
        jobs = RedisJobs(app, redis_url, app.config["EXAMPLE_LEASE_SECONDS"])
    else:
        jobs = LocalJobs(app)
    app.extensions["batchline"] = jobs

    def start(kind: str, title: str, question: str | None = None) -> Job:
        job = Job(new_session_id(), kind, title, time.time(), question)
        jobs.add(job)
        return job

    @app.before_request
    def take_over_orphans() -> None:
        jobs.start_background()  # once per worker process

    @app.errorhandler(StoreDown)
    def store_down(exc: StoreDown) -> Any:
        message = "The job list is unavailable; try again in a moment."
        return jsonify(error="unavailable", message=message), 503, {"Retry-After": "3"}

    @app.get("/")
    def index() -> str:
        return render_template("index.html", kinds=KINDS)

    @app.get("/jobs")
    def list_jobs() -> Any:
        return jsonify(jobs=[job.as_json() for job in jobs.all()])

    @app.get("/jobs/<job_id>")
    def get_job(job_id: str) -> Any:
        job = jobs.get(job_id)
        if job is None:
            abort(404)
        return jsonify(job.as_json())

    @app.post("/jobs")
    def start_job() -> Any:
        kind = (request.get_json(silent=True) or {}).get("kind")
        if kind not in KINDS:
            abort(400)
        return jsonify(start(kind, KINDS[kind].title).as_json()), 201

    @app.post("/answers")
    def ask() -> Any:
        question = str((request.get_json(silent=True) or {}).get("question", "")).strip()
        if not question:
            abort(400)
        return jsonify(start("answer", "Answer", question[:500]).as_json()), 201

    return app
