"""The example app on Redis in Chromium: two gevent workers, one killed mid-job.

gunicorn runs the example app with ``REDIS_URL`` set (so its streams and its
job list are in Redis) on a ``redis-server`` of the test's own, with two
workers. The worker that runs the job and the worker that holds the page's
stream are killed with SIGKILL while the job runs; the page must reconnect by
itself and the job's bar reach 100% with every log line once, in order.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, Response, expect

from example_app.app import KINDS
from tests.appstream import wait_until
from tests.harness import Server
from tests.redisproc import RedisProcess
from tests.test_browser import job_lines, start_job

# Steps of 0.3 s, and a lease of 2 s: a dead worker's job is taken over within
# about 2 s. Clients reconnect after 1 s.
APP = (
    "tests.example_on_redis:create_app(EXAMPLE_STEP_SECONDS=0.3, EXAMPLE_TOKEN_SECONDS=0.01,"
    " EXAMPLE_LEASE_SECONDS=2, SSE_SESSIONS_RETRY_MS=1000)"
)


@pytest.fixture
def redis_process() -> Iterator[RedisProcess]:
    process = RedisProcess(appendonly=True).start()
    yield process
    process.cleanup()


@pytest.fixture
def example(redis_process: RedisProcess) -> Iterator[Server]:
    """The example app with the example's gunicorn settings, but two workers."""
    server = Server(
        app=APP,
        workers=2,
        extra_args=("-c", "example_app/gunicorn.conf.py"),
        env={"REDIS_URL": redis_process.url, "SECRET_KEY": "browser-test-example-secret"},
        ready_path="/",
    )
    server.start()
    yield server
    server.stop(signal.SIGINT)


def runner_of(redis_process: RedisProcess, job_id: str) -> int | None:
    """The pid of the worker whose lease runs the job now."""
    lease = redis_process.client().get(f"batchline:lease:{job_id}")
    return int(lease.split(b":")[0]) if lease else None


def stream_workers(page: Page) -> list[int]:
    """The worker of every stream the page opens from now on, in order."""
    pids: list[int] = []

    def record(response: Response) -> None:
        if "/api/stream/" in response.url and response.status == 200:
            pids.append(int(response.headers["x-worker-pid"]))

    page.on("response", record)
    return pids


def test_the_worker_of_a_job_killed_mid_job_the_bar_still_reaches_100_percent(
    page: Page, example: Server, redis_process: RedisProcess
) -> None:
    steps = KINDS["import"].steps
    streams = stream_workers(page)
    page.goto(example.url)
    card = start_job(page, "import")
    expect(card.locator(".log li[data-n='3']")).to_be_attached()
    job_id = card.get_attribute("data-job-id")
    assert job_id is not None
    runner = runner_of(redis_process, job_id)
    assert runner is not None and streams, "the job has no runner or the page no stream"
    victims = {runner, streams[-1]}
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    assert len(job_lines(card)) < steps, "the job ended before the kill"

    taken_over = wait_until(
        lambda: (runner_of(redis_process, job_id) or runner) not in victims,
        timeout=30,
        what="another worker taking the job over",
    )
    assert taken_over
    expect(card).to_have_attribute("data-state", "done")
    expect(card.locator(".percent")).to_have_text("100%")
    expect(card.locator(".fill")).to_have_attribute("style", "width: 100%;")
    assert job_lines(card) == list(range(1, steps + 1))
    assert card.locator(".log li.gap").count() == 0
    assert card.locator(".log li.warn").count() == 0  # "import" has no hiccup
    assert len(streams) >= 2 and streams[-1] not in victims  # reconnected to another worker
    assert not redis_process.client().sismember("batchline:running", job_id)


def test_a_gunicorn_restart_mid_job_loses_no_progress(
    page: Page, example: Server, redis_process: RedisProcess
) -> None:
    steps = KINDS["reindex"].steps
    page.goto(example.url)
    card = start_job(page, "reindex")
    expect(card.locator(".log li[data-n='2']")).to_be_attached()
    example.kill()  # master and workers at once
    expect(card).to_have_attribute("data-connection", "connecting")
    assert len(job_lines(card)) < steps, "the job ended before the restart"
    example.restart()

    expect(card).to_have_attribute("data-state", "done")
    expect(card.locator(".percent")).to_have_text("100%")
    assert job_lines(card) == list(range(1, steps + 1))
    assert card.locator(".log li.gap").count() == 0
    assert card.locator(".log li.warn").count() == 1  # the hiccup, once
    # A new tab lists the job from Redis and rebuilds it the same.
    late = page.context.new_page()
    late.goto(example.url)
    late_card = late.locator(f".job[data-job-id='{card.get_attribute('data-job-id')}']")
    expect(late_card).to_have_attribute("data-state", "done")
    assert job_lines(late_card) == job_lines(card)
