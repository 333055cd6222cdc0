"""Prometheus metrics: one scrape of a two-worker gunicorn covers both workers
(prometheus_client's multi-process mode, with the example's child_exit hook),
parsed by prometheus_client's own parser; stats() carries the same counters."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from flask_sse_sessions import broadcast_progress, stats
from flask_sse_sessions.metrics import metrics_response
from tests.conftest import ROOT, Server
from tests.rawhttp import RawStream


def scrape(server: Server) -> dict[str, float]:
    """Every sample of a scrape, by name and labels: ``{'name{label=value}': value}``."""
    response = httpx.get(server.url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_one_scrape_sums_the_connections_of_two_workers(tmp_path: Path, session_id: str) -> None:
    server = Server(
        {"SSE_SESSIONS_REQUIRE_TOKEN": False},
        workers=2,
        extra_args=("-c", str(ROOT / "example_app" / "gunicorn.conf.py")),
        env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
    ).start()
    streams: list[RawStream] = []
    try:
        # Open streams until both workers hold some, as each says of itself.
        per_worker: dict[int, int] = {}
        deadline = time.monotonic() + 30
        while len(per_worker) < 2 or 0 in per_worker.values() or len(streams) < 10:
            assert time.monotonic() < deadline, per_worker
            streams.append(server.stream(session_id))
            streams[-1].events(1)
            for _ in range(4):
                info = server.stats()
                per_worker[info["pid"]] = info["connections"]
        total = len(streams)
        # A refusal, counted by its reason.
        refused = httpx.get(f"{server.url}/api/stream/{session_id}?token=bad", timeout=10)
        assert refused.status_code == 401
        expected = {
            "sse_sessions_connections": total,
            "sse_sessions_connections_opened_total": total,
            "sse_sessions_connections_refused_total{reason=unauthorized}": 1,
        }
        deadline = time.monotonic() + 30
        while True:
            samples = scrape(server)
            found = {name: samples.get(name) for name in expected}
            if found == expected:
                break
            assert time.monotonic() < deadline, found
            time.sleep(0.2)
        for stream in streams:
            stream.close()
        streams = []
        deadline = time.monotonic() + 30
        while scrape(server).get("sse_sessions_connections_closed_total") != total:
            assert time.monotonic() < deadline, scrape(server)
            time.sleep(0.2)
        assert scrape(server)["sse_sessions_connections"] == 0
    finally:
        for stream in streams:
            stream.close()
        server.stop()


def test_stats_and_metrics_carry_the_same_counters(apps: Any) -> None:
    app = apps(SSE_SESSIONS_REQUIRE_TOKEN=False)
    client = app.test_client()
    with app.app_context():
        before = stats()
    response = client.get("/api/stream/job", buffered=False)
    body = iter(response.response)
    next(body)  # connected
    with app.app_context():
        broadcast_progress("job", {"percent": 5})
    assert b'"percent":5' in next(body)
    response.close()
    with app.app_context():
        after = stats()
        text = metrics_response().get_data(as_text=True)
    assert after["connections_opened"] == before["connections_opened"] + 1
    assert after["connections_closed"] == before["connections_closed"] + 1
    assert after["events_published"] == before["events_published"] + 1
    assert after["events_delivered"] == before["events_delivered"] + 1
    assert after["publish_to_write"]["writes"] == before["publish_to_write"]["writes"] + 1
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("le", "+Inf") == "+Inf"
    }
    # Summed over the apps of this test process, so at least this app's.
    assert samples["sse_sessions_events_delivered_total"] >= after["events_delivered"]
    assert samples["sse_sessions_publish_to_write_seconds_count"] >= 1


def test_metrics_response_names_the_extra_without_prometheus_client(
    apps: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from flask_sse_sessions import metrics

    monkeypatch.setattr(metrics, "_exporter", None)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with apps().app_context(), pytest.raises(RuntimeError, match=r"\[metrics\]"):
        metrics_response()
