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

With ``REDIS_URL`` set it runs four workers on the Redis backend and keeps its
job list in Redis: any worker answers any tab, and a job whose worker died (or
a restarted gunicorn) is taken over by another one, which goes on after the
job's last stored event::

    REDIS_URL=redis://127.0.0.1:6379/0 SECRET_KEY=... gunicorn -c example_app/gunicorn.conf.py
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from flask import Flask, abort, jsonify, render_template, request, session
from werkzeug.exceptions import HTTPException

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
    ``EXAMPLE_STEP_SECONDS`` (how long a job step takes) in tests.

    ``REDIS_URL`` (the config key, else the environment variable) puts the
    streams and the job list in Redis, for several workers.
    """
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=os.environ.get("SECRET_KEY"),
        REDIS_URL=os.environ.get("REDIS_URL") or None,
        EXAMPLE_STEP_SECONDS=0.6,
        EXAMPLE_TOKEN_SECONDS=0.06,
        # Jobs a browser keeps (finished ones give way to new ones), jobs the
        # server keeps in all, and how long a job is kept after it started.
        EXAMPLE_JOBS_PER_BROWSER=20,
        EXAMPLE_MAX_JOBS=1000,
        EXAMPLE_JOB_SECONDS=3600,
        # With Redis: how long a job whose worker died waits for another.
        EXAMPLE_LEASE_SECONDS=5.0,
        # A late tab gets every event of a job, not only the latest one, to
        # rebuild the log; the history must hold a whole job for that.
        SSE_SESSIONS_REPLAY_ON_CONNECT="all",
        SSE_SESSIONS_HISTORY_SIZE=500,
    )
    app.config.update(config)
    if not app.config["SECRET_KEY"]:
        # Several workers share the one that gunicorn.conf.py made in the master.
        shared = os.environ.get("EXAMPLE_SHARED_RANDOM_KEY")
        app.config["SECRET_KEY"] = shared or secrets.token_hex(32)
        app.logger.warning(
            "SECRET_KEY is not set in the environment: using a random key, so every"
            " browser's jobs are forgotten when the server restarts. Set SECRET_KEY"
            " to a long random value."
        )
    redis_url = app.config["REDIS_URL"]
    if redis_url:
        app.config["SSE_SESSIONS_REDIS_URL"] = redis_url
    sse = SSESessions()

    @sse.authorize
    def may_watch(session_id: str) -> bool:
        """A browser watches the jobs it started, as its session cookie lists them."""
        return session_id in session.get("jobs", [])

    app.register_blueprint(sse, url_prefix="/api")
    jobs: LocalJobs | RedisJobs
    jobs = RedisJobs(app, redis_url) if redis_url else LocalJobs(app)
    app.extensions["batchline"] = jobs

    def own_jobs() -> list[Job]:
        """This browser's jobs that the server still keeps, oldest first."""
        return jobs.own(session.get("jobs", []))

    def start(kind: str, title: str, question: str | None = None) -> Any:
        mine = own_jobs()
        if len(mine) >= app.config["EXAMPLE_JOBS_PER_BROWSER"]:
            finished = [job for job in mine if job.finished]
            if not finished:
                return error(429, "too_many_jobs", "Wait for one of your jobs to finish.")
            mine.remove(finished[0])
        job = Job(new_session_id(), kind, title, time.time(), question)
        if not jobs.add(job):
            return error(503, "busy", "The server runs too many jobs; try again later.")
        session["jobs"] = [*(kept.id for kept in mine), job.id]
        return jsonify(job.as_json()), 201

    def json_object() -> dict[str, Any]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            abort(400, "The request body must be a JSON object.")
        return body

    @app.before_request
    def take_over_orphans() -> None:
        jobs.start_background()  # once per worker process (Redis only)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        code = (exc.name or "error").lower().replace(" ", "_")
        return error(exc.code or 500, code, exc.description or "")

    @app.errorhandler(StoreDown)
    def store_down(exc: StoreDown) -> Any:
        app.logger.warning("the job list in Redis is unavailable: %s", exc)
        answer = error(503, "unavailable", "The job list is unavailable; try again shortly.")
        return (*answer, {"Retry-After": "3"})

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
        return start(kind, KINDS[kind].title)

    @app.post("/answers")
    def ask() -> Any:
        question = json_object().get("question")
        if not isinstance(question, str) or not question.strip():
            abort(400, "question must be a string that is not empty.")
        return start("answer", "Answer", question=question.strip()[:500])

    return app


def error(status: int, code: str, message: str) -> Any:
    """A JSON error answer, as every route but the page gives."""
    return jsonify(error=code, message=message), status


# What a job broadcasts: (event type, fields, seconds to wait before it).
Action = tuple[str, dict[str, Any], float]


def plan(job: Job, step_seconds: float, token_seconds: float) -> list[Action]:
    """Everything a job will broadcast, decided from its id alone: a worker that
    takes over a job goes on exactly where the last one stopped."""
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
    """The job list (in Redis) did not answer."""


class LocalJobs:
    """The jobs of this process, for the in-process bus (one worker): a
    restarted server forgets them."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()

    def own(self, job_ids: list[str]) -> list[Job]:
        """Those of ``job_ids`` that are kept, in that order; finished jobs
        older than ``EXAMPLE_JOB_SECONDS`` are forgotten first."""
        expired = time.time() - self.app.config["EXAMPLE_JOB_SECONDS"]
        with self.lock:
            jobs = self.jobs
            for job in [job for job in jobs.values() if job.finished and job.created < expired]:
                del jobs[job.id]
            return [jobs[job_id] for job_id in job_ids if job_id in jobs]

    def add(self, job: Job) -> bool:
        """Keep the job and start it; False when the server keeps too many."""
        with self.lock:
            if len(self.jobs) >= self.app.config["EXAMPLE_MAX_JOBS"]:
                return False
            self.jobs[job.id] = job
        start_runner(self.app, job, self, "")
        return True

    def start_background(self) -> None:
        pass  # nothing to take over: the jobs die with the process

    # The runner's side.

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def position(self, job: Job) -> int:
        return 0

    def holds(self, job: Job, lease: str) -> bool:
        return True

    def finish(self, job: Job) -> None:
        job.finished = True


# Adds a job unless the server keeps too many (finished jobs past their time
# are forgotten first). KEYS: the job list (ids by start time), the running
# set, the job's key. ARGV: id, JSON, start time, oldest start kept, limit.
_ADD = """
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])) do
  if redis.call('SISMEMBER', KEYS[2], id) == 0 then redis.call('ZREM', KEYS[1], id) end
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[5]) then return 0 end
redis.call('SET', KEYS[3], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

# Renews a lease only while it is still ours.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class RedisJobs:
    """Jobs kept in Redis, shared by every worker and every restart.

    ``batchline:job:<id>`` holds a job's JSON (it expires
    ``EXAMPLE_JOB_SECONDS`` after the job started, once finished);
    ``batchline:jobs`` the ids by start time, for the cap;
    ``batchline:running`` the ids of unfinished jobs; ``batchline:lease:<id>``
    names the runner of a job (``<pid>:<token>``) and expires unless that
    runner renews it, before each event. Every worker looks for running jobs
    without a lease (their worker died, or gunicorn restarted) and takes them
    over: the job goes on after the last event Redis stored for it, so no
    step is lost or sent twice.
    """

    def __init__(self, app: Flask, url: str) -> None:
        self.app = app
        self.url = url
        self.lease_ms = round(app.config["EXAMPLE_LEASE_SECONDS"] * 1000)
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

    def own(self, job_ids: list[str]) -> list[Job]:
        if not job_ids:
            return []
        keys = [f"batchline:job:{job_id}" for job_id in job_ids]
        return [Job(**json.loads(raw)) for raw in self._call(lambda r: r.mget(keys)) if raw]

    def add(self, job: Job) -> bool:
        config = self.app.config
        keys = ["batchline:jobs", "batchline:running", f"batchline:job:{job.id}"]
        oldest = time.time() - config["EXAMPLE_JOB_SECONDS"]
        args = [job.id, json.dumps(asdict(job)), job.created, oldest, config["EXAMPLE_MAX_JOBS"]]
        if not self._call(lambda r: r.eval(_ADD, len(keys), *keys, *args)):
            return False
        self._claim(job.id)
        return True

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
        start_runner(self.app, job, self, lease)
        return True

    def _take_over(self) -> None:
        """Forever: claim the running jobs whose runner stopped renewing them."""
        while True:
            try:
                for job_id in self._call(lambda r: r.smembers("batchline:running")):
                    self._claim(job_id)
            except StoreDown:
                pass  # Redis is down: look again later
            time.sleep(self.lease_ms / 4000 * random.uniform(0.5, 1))

    # The runner's side.

    def get(self, job_id: str) -> Job | None:
        raw = self._call(lambda r: r.get(f"batchline:job:{job_id}"))
        return Job(**json.loads(raw)) if raw else None

    def position(self, job: Job) -> int:
        """The place in the job's plan after the last event Redis stored."""
        key = self.events_key.format(job.id)
        entries = self._call(lambda r: r.xrevrange(key, count=1))
        return int(json.loads(entries[0][1]["d"])["seq"]) + 1 if entries else 0

    def holds(self, job: Job, lease: str) -> bool:
        """Renew the job's lease; False when another runner has it now."""
        key = f"batchline:lease:{job.id}"
        return bool(self._call(lambda r: r.eval(_RENEW, 1, key, lease, self.lease_ms)))

    def finish(self, job: Job) -> None:
        """Mark the job finished, to be forgotten ``EXAMPLE_JOB_SECONDS`` after it started."""
        expires = job.created + self.app.config["EXAMPLE_JOB_SECONDS"]
        text = json.dumps(asdict(replace(job, finished=True)))

        def store(r: Any) -> None:
            with r.pipeline() as pipe:
                pipe.set(f"batchline:job:{job.id}", text, pxat=math.ceil(expires * 1000))
                pipe.srem("batchline:running", job.id)
                pipe.execute()

        self._call(store)


def start_runner(app: Flask, job: Job, jobs: LocalJobs | RedisJobs, lease: str) -> None:
    """Run the job in a thread of its own (a greenlet under gevent)."""
    target = stream_answer if job.kind == "answer" else run_job
    threading.Thread(target=target, args=(app, job.id, jobs, lease), daemon=True).start()


def run_job(app: Flask, job_id: str, jobs: LocalJobs | RedisJobs, lease: str) -> None:
    """A job's life: progress, one numbered log line per step, then complete."""
    run_plan(app, job_id, jobs, lease)


def stream_answer(app: Flask, job_id: str, jobs: LocalJobs | RedisJobs, lease: str) -> None:
    """The streamed-answer demo: a canned answer, one word at a time."""
    run_plan(app, job_id, jobs, lease)


def run_plan(app: Flask, job_id: str, jobs: LocalJobs | RedisJobs, lease: str) -> None:
    """Broadcast the job's plan step by step from where it stands, while this
    runner holds the job's ``lease``."""
    with app.app_context():
        while True:
            job = None
            try:
                job = jobs.get(job_id)
                if job is None:
                    return  # forgotten meanwhile
                config = app.config
                actions = plan(job, config["EXAMPLE_STEP_SECONDS"], config["EXAMPLE_TOKEN_SECONDS"])
                for seq in range(jobs.position(job), len(actions)):
                    kind, fields, wait = actions[seq]
                    if wait:
                        time.sleep(wait)
                    if not jobs.holds(job, lease):
                        return  # another runner took it over
                    send(job.id, seq, kind, fields)
                jobs.finish(job)
                return
            except (BackendUnavailable, StoreDown):
                # Redis is down: wait, then go on from what it stored.
                time.sleep(1)
            finally:
                if isinstance(jobs, LocalJobs) and job is not None:
                    jobs.finish(job)  # whatever happened: it gives way to new jobs
