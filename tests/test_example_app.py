"""The example app is safe to copy: each browser sees and streams only its own
jobs, jobs are capped and expire, bad bodies get 400 JSON, the secret key comes
from the environment and the access log keeps stream tokens out.

Real gunicorn with the example's own config (gevent worker), real httpx
clients, one cookie jar per browser.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from tests import harness
from tests.harness import Server

SECRET_KEY = "example-test-secret"
FAST = "EXAMPLE_STEP_SECONDS=0.01, EXAMPLE_TOKEN_SECONDS=0.001"


class Example(Server):
    """``gunicorn -c example_app/gunicorn.conf.py``, the example's own settings."""

    def __init__(self, app_args: str, env: dict[str, str]) -> None:
        super().__init__(
            app=f"example_app.app:create_app({app_args})",
            extra_args=("-c", "example_app/gunicorn.conf.py"),
            workers=None,
            worker_connections=None,
            graceful_timeout=None,
            env=env,
            ready_path="/",
        )
        self.clients: list[httpx.Client] = []

    def browser(self, cookies: httpx.Cookies | None = None) -> httpx.Client:
        """A client with a cookie jar of its own (a copy of ``cookies``)."""
        self.clients.append(httpx.Client(base_url=self.url, cookies=cookies, timeout=30))
        return self.clients[-1]

    def stop(self, *args: Any, **kwargs: Any) -> None:
        for client in self.clients:
            client.close()
        super().stop(*args, **kwargs)


@pytest.fixture
def example() -> Iterator[Callable[..., Example]]:
    """``example(app_args, **env)``: the example app, stopped after the test."""
    started: list[Example] = []

    def start(app_args: str = FAST, **env: str) -> Example:
        env.setdefault("SECRET_KEY", SECRET_KEY)
        started.append(Example(app_args, env))
        return started[-1].start()  # type: ignore[return-value]

    yield start
    for server in started:
        server.stop()


def start_job(browser: httpx.Client, kind: str = "report") -> dict[str, Any]:
    response = browser.post("/jobs", json={"kind": kind})
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def stream_types(browser: httpx.Client, url: str) -> list[str]:
    """The event types of a stream, read until the server ends it."""
    with connect_sse(browser, "GET", url) as source:
        source.response.raise_for_status()
        return [event.json()["type"] for event in source.iter_sse()]


def wait_until(condition: Callable[[], Any], what: str) -> Any:
    return harness.wait_until(condition, message=f"waiting for {what}")


def test_a_second_browser_cannot_list_or_stream_the_first_ones_jobs(
    example: Callable[..., Example],
) -> None:
    server = example()
    first, second = server.browser(), server.browser()
    job = start_job(first)
    assert [j["id"] for j in first.get("/jobs").json()["jobs"]] == [job["id"]]
    assert stream_types(first, job["url"])[-1] == "complete"

    assert second.get("/jobs").json() == {"jobs": []}
    response = second.get(f"/jobs/{job['id']}")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    # Even the first browser's signed URL opens nothing for the second one.
    stream_path, _, query = job["url"].partition("?")
    for path in (job["url"], stream_path, f"{stream_path}/latest?{query}"):
        response = second.get(path)
        assert response.status_code == 403, path
        assert response.json()["error"] == "forbidden"
    # Its own jobs only, and a fresh browser none at all.
    own = start_job(second)
    assert [j["id"] for j in second.get("/jobs").json()["jobs"]] == [own["id"]]
    assert [j["id"] for j in first.get("/jobs").json()["jobs"]] == [job["id"]]
    assert server.browser().get(f"{stream_path}/latest").status_code == 403


BAD_BODIES = [
    ("/jobs", "not json", "application/json"),
    ("/jobs", '{"kind": "report"', "application/json"),
    ("/jobs", "[1, 2]", "application/json"),
    ("/jobs", '"report"', "application/json"),
    ("/jobs", "null", "application/json"),
    ("/jobs", "{}", "application/json"),
    ("/jobs", '{"kind": 5}', "application/json"),
    ("/jobs", '{"kind": ["report"]}', "application/json"),
    ("/jobs", '{"kind": "nothing"}', "application/json"),
    ("/jobs", '{"kind": "report"}', "text/plain"),
    ("/answers", "", "application/json"),
    ("/answers", "[]", "application/json"),
    ("/answers", '{"question": 5}', "application/json"),
    ("/answers", '{"question": {"a": 1}}', "application/json"),
    ("/answers", '{"question": "   "}', "application/json"),
    ("/answers", '{"question": "why?"', "application/json"),
]


def test_each_bad_body_gets_400_json(example: Callable[..., Example]) -> None:
    server = example()
    browser = server.browser()
    for path, body, content_type in BAD_BODIES:
        response = browser.post(path, content=body, headers={"Content-Type": content_type})
        assert response.status_code == 400, (path, body, response.text)
        assert response.headers["content-type"] == "application/json", (path, body)
        answer = response.json()
        assert answer["error"] == "bad_request" and answer["message"], (path, body, answer)
    assert browser.get("/jobs").json() == {"jobs": []}  # nothing was started


def test_jobs_are_capped_per_browser_and_in_all(example: Callable[..., Example]) -> None:
    # Jobs that take long, two per browser, three in all.
    server = example("EXAMPLE_STEP_SECONDS=30, EXAMPLE_JOBS_PER_BROWSER=2, EXAMPLE_MAX_JOBS=3")
    first, second = server.browser(), server.browser()
    start_job(first)
    start_job(first)
    response = first.post("/jobs", json={"kind": "report"})
    assert response.status_code == 429
    assert response.json()["error"] == "too_many_jobs"
    start_job(second)
    response = second.post("/answers", json={"question": "one more?"})
    assert response.status_code == 503
    assert response.json()["error"] == "busy"


def test_finished_jobs_give_way_and_expire(example: Callable[..., Example]) -> None:
    server = example(f"{FAST}, EXAMPLE_JOBS_PER_BROWSER=2, EXAMPLE_JOB_SECONDS=1")
    browser = server.browser()
    jobs = [start_job(browser) for _ in range(2)]
    for job in jobs:
        assert stream_types(browser, job["url"])[-1] == "complete"
    # A third job takes the place of the oldest finished one.
    third = start_job(browser)
    listed = [job["id"] for job in browser.get("/jobs").json()["jobs"]]
    assert listed == [jobs[1]["id"], third["id"]]
    assert browser.get(f"/jobs/{jobs[0]['id']}").status_code == 404
    # A finished job is forgotten after EXAMPLE_JOB_SECONDS.
    assert stream_types(browser, third["url"])[-1] == "complete"
    wait_until(lambda: browser.get("/jobs").json() == {"jobs": []}, "the jobs to expire")
    assert browser.get(f"/jobs/{third['id']}").status_code == 404


def test_the_access_log_leaves_out_query_strings(example: Callable[..., Example]) -> None:
    server = example()
    browser = server.browser()
    job = start_job(browser)
    assert "token=" in job["url"]
    stream_types(browser, job["url"])
    browser.get("/jobs?page=secret-query")
    path = job["url"].partition("?")[0]

    def logged() -> str:
        text = server.log.read_text()
        return text if "/jobs " in text and path in text else ""

    log = wait_until(logged, "the access log lines")
    assert f'"GET {path} HTTP/1.1" 200' in log
    assert "token=" not in log
    assert "secret-query" not in log


def test_the_secret_key_comes_from_the_environment(example: Callable[..., Example]) -> None:
    warning = "SECRET_KEY is not set in the environment"
    keyed = example()
    browser = keyed.browser()
    job = start_job(browser)
    assert warning not in keyed.log.read_text()
    latest = f"/api/stream/{job['id']}/latest"
    # Another process with the same key reads the same session cookie: the
    # browser may watch its job there (which has no events in that process).
    same_key = example().browser(browser.cookies)
    assert same_key.get(latest).status_code == 404
    # Without SECRET_KEY a random key is used, with a warning: the cookie is void.
    random_key = example(SECRET_KEY="")
    assert warning in random_key.log.read_text()
    other = random_key.browser(browser.cookies)
    assert other.get(latest).status_code == 403


def test_on_redis_the_workers_share_the_job_list_caps_and_expiry(
    example: Callable[..., Example], redis_server: Any
) -> None:
    """With REDIS_URL the example runs four workers (its gunicorn.conf.py): a
    browser's jobs are listed and streamed by whichever answers, and the cap
    in all counts every worker's jobs."""
    server = example(
        f"{FAST}, EXAMPLE_MAX_JOBS=3, EXAMPLE_JOB_SECONDS=2", REDIS_URL=redis_server.url
    )
    wait_until(lambda: server.log.read_text().count("Booting worker") == 4, "four workers")
    first, second = server.browser(), server.browser()
    jobs = [start_job(first), start_job(first, "import")]
    ids = [job["id"] for job in jobs]
    for _ in range(12):  # a new connection each time: any worker answers
        with httpx.Client(base_url=server.url, cookies=first.cookies, timeout=30) as fresh:
            assert [job["id"] for job in fresh.get("/jobs").json()["jobs"]] == ids
            assert fresh.get(f"/jobs/{ids[1]}").json()["kind"] == "import"
    for job in jobs:
        types = stream_types(first, job["url"])
        assert types[-1] == "complete" and types.count("complete") == 1
    assert second.get("/jobs").json() == {"jobs": []}
    assert second.get(jobs[0]["url"]).status_code == 403

    start_job(second)  # the third job, in all
    response = second.post("/answers", json={"question": "one more?"})
    assert response.status_code == 503
    assert response.json()["error"] == "busy"
    # Finished jobs are forgotten EXAMPLE_JOB_SECONDS after they started, and
    # make room for new ones.
    wait_until(lambda: first.get("/jobs").json() == {"jobs": []}, "the jobs to expire")
    assert start_job(second, "report")["kind"] == "report"
