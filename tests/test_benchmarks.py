"""The benchmark harness runs end to end in its quick mode and writes sane figures.

No speed is asserted here (these machines are noisy): only that every workload ran,
that the counts are positive and that every expected event was delivered.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.report import NOT_MEASURED

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out)],
        cwd=ROOT,
        check=True,
        timeout=240,
    )
    files = list(out.glob("*-quick.json"))
    assert len(files) == 1, files
    assert (out / "LATEST.md").read_text().startswith("# Benchmark results: quick")
    return dict(json.loads(files[0].read_text()))


def test_every_workload_is_reported(results: dict[str, Any]) -> None:
    assert set(results["workloads"]) == {"W1", "W2", "W3", "W4", "W5", "W6", "W7"}
    assert results["machine"]["cores"] >= 1
    assert results["duration_seconds"] > 0
    verdicts = {row["figure"]: row["verdict"] for row in results["targets"]}
    # Quick sizes: every measured verdict says so; sizes below the targets' are
    # not judged at all; what the harness does not run is "not measured".
    quick = {"met (quick sizes)", "NOT met (quick sizes)"}
    assert set(verdicts.values()) <= quick | {NOT_MEASURED}, verdicts
    measured = ("RSS per idle", "W2 fan-out", "W4 bursts", "W6 others", "W7 after")
    for prefix in (*measured, "W5 Redis connections", "W5 latency", "W5 one worker"):
        (figure,) = [f for f in verdicts if f.startswith(prefix)]
        assert verdicts[figure] in quick, (figure, verdicts[figure])
    assert verdicts["idle connections per worker"] == NOT_MEASURED  # fewer than 10,000
    for figure in ("vs flask-sse", "vs sse-starlette/uvicorn"):
        assert verdicts[figure] == NOT_MEASURED
    # The structural half of W7's target holds in any run: nothing left behind.
    (w7,) = [row for row in results["targets"] if row["figure"].startswith("W7 after")]
    assert "left 0;" in w7["value"], w7


def test_w1_idle(results: dict[str, Any]) -> None:
    for size, entry in results["workloads"]["W1"].items():
        for kind in ("floor", "ours"):
            figures = entry[kind]
            assert figures["connections"] == int(size)
            assert figures["connect_rate"] > 0
            assert figures["rss_per_connection_bytes"] > 0
            # An idle worker is far from using a whole core.
            assert 0 <= figures["idle_cpu_percent"] < 50, figures
        ratio = entry["ours"]["rss_per_connection_bytes"] / max(
            1.0, entry["floor"]["rss_per_connection_bytes"]
        )
        assert entry["rss_ratio"] == pytest.approx(ratio, abs=0.001)


def test_w2_every_listener_gets_every_broadcast(results: dict[str, Any]) -> None:
    for entry in results["workloads"]["W2"].values():
        for kind in ("floor", "ours"):
            for run in entry[kind]["runs"]:
                assert run["connections"] > 0
                for broadcast in run["broadcasts"]:
                    assert broadcast["deliveries"] == run["expected_per_broadcast"]
                    assert 0 < broadcast["to_last_ms"] < 60_000
                    assert 0 < broadcast["p50_ms"] <= broadcast["p99_ms"]
        assert entry["to_last_ratio"] > 0


def test_w4_bursts_deliver_every_event(results: dict[str, Any]) -> None:
    entry = results["workloads"]["W4"]
    for kind in ("floor", "ours"):
        for run in entry[kind]["runs"]:
            assert run["expected"] == run["connections"] * run["events_per_session"] > 0
            assert run["deliveries"] == run["expected"]
            assert run["events_per_second"] > 0


def test_w3_many_sessions(results: dict[str, Any]) -> None:
    for kind in ("floor", "ours"):
        run = results["workloads"]["W3"][kind]["runs"][0]
        assert run["connections"] == 2 * run["sessions"] > 0
        for step in [run["at_rate"], *run["ramp"]]:
            assert step["deliveries"] == step["expected"] > 0
            assert step["p99_ms"] > 0


def test_w6_readers_get_everything(results: dict[str, Any]) -> None:
    entry = results["workloads"]["W6"]["ours"]
    assert entry["stalled"]["stalled"] > 0 == entry["no_stalls"]["stalled"]
    for figures in [run for label in entry.values() for run in label["runs"]]:
        assert figures["readers_agree"]
        assert figures["received_by_each_session"] == figures["published"] > 0
        assert figures["p99_ms"] > 0


def test_w7_churn_leaves_nothing_behind(results: dict[str, Any]) -> None:
    for kind in ("floor", "ours"):
        figures = results["workloads"]["W7"][kind]
        assert figures["cycles"] == figures["expected"] > 0
        assert figures["stats_after"]["connections"] == 0
        assert figures["stats_after"]["sessions"] == 0
        assert figures["rss_after_kib"] > 0
    ours = results["workloads"]["W7"]["ours"]
    assert ours["stats_after"]["watched_sockets"] == 0
    assert ours["stats_after"]["receivers"] == ours["stats_before"]["receivers"]


def test_w5_redis_every_client_gets_every_event(results: dict[str, Any]) -> None:
    entry = results["workloads"]["W5"]
    for mode in ("inproc", "redis_worker", "redis_publisher"):
        for run in entry["latency"][mode]["runs"]:
            assert run["connections"] > 0
            assert run["deliveries"] == run["expected"] > 0
            assert run["p50_ms"] > 0
    for run in entry["ingest"]["runs"]:
        assert run["deliveries"] == run["events"]
        assert (run["redis_reconnects"], run["redis_errors"]) == (0, 0)
    connections = entry["connections"]
    assert connections["deliveries"] == connections["clients"] > 0
    # One listener and at most two pooled connections per worker, whatever the clients.
    assert connections["listeners"] == connections["workers"]
    assert connections["redis_clients_of_workers"] <= 3 * connections["workers"]
