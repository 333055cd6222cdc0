"""The benchmark harness runs end to end in its quick mode and writes sane figures.

No speed is asserted here (these machines are noisy): only that every workload ran,
that the counts are positive and that every expected event was delivered. The quick
mode runs the floors and ours; one test runs the competitors (installed on first
use into ``~/.cache/flask-sse-sessions-bench``) at quick sizes in W1 and W4.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.plots import DPI, HEIGHT, WIDTH, write_plots
from benchmarks.report import NOT_MEASURED

ROOT = Path(__file__).resolve().parent.parent
QUICK = {"met (quick sizes)", "NOT met (quick sizes)"}


def run_harness(out: Path, *args: str, timeout: float) -> dict[str, Any]:
    subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out), *args],
        cwd=ROOT,
        check=True,
        timeout=timeout,
    )
    (path,) = out.glob("*.json")
    return dict(json.loads(path.read_text()))


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="module")
def results(out: Path) -> dict[str, Any]:
    document = run_harness(out, timeout=240)
    assert document["name"] == "quick"
    assert (out / "LATEST.md").read_text().startswith("# Benchmark results: quick")
    return document


def test_every_workload_is_reported(results: dict[str, Any]) -> None:
    assert set(results["workloads"]) == {"W1", "W2", "W3", "W4", "W5", "W6", "W7"}
    assert results["machine"]["cores"] >= 1
    assert results["duration_seconds"] > 0
    verdicts = {row["figure"]: row["verdict"] for row in results["targets"]}
    # Quick sizes: every measured verdict says so; sizes below the targets' are
    # not judged at all; what the harness does not run is "not measured".
    assert set(verdicts.values()) <= QUICK | {NOT_MEASURED}, verdicts
    measured = ("RSS per idle", "W1 connect rate", "W2 fan-out", "W4 bursts", "W6 others")
    for prefix in (*measured, "W7 after", "W5 Redis connections", "W5 latency", "W5 one worker"):
        (figure,) = [f for f in verdicts if f.startswith(prefix)]
        assert verdicts[figure] in QUICK, (figure, verdicts[figure])
    # Judged when the floor gives a reference: CPU the clock can count in a 1 s
    # window, a ramp step it held with p99 <= 2 ms.
    for prefix in ("W1 idle CPU", "W3 highest broadcast rate"):
        (figure,) = [f for f in verdicts if f.startswith(prefix)]
        assert verdicts[figure] in QUICK | {NOT_MEASURED}, (figure, verdicts[figure])
    assert verdicts["idle connections per worker"] == NOT_MEASURED  # fewer than 10,000
    # The competitors do not run in quick mode unless asked to.
    assert results["competitors"] == {}
    for figure in ("vs flask-sse", "vs sse-starlette/uvicorn"):
        assert verdicts[figure] == NOT_MEASURED
    # Every judged row gives its range over the repetitions.
    for row in results["targets"]:
        if row["verdict"] != NOT_MEASURED:
            assert "over 1 rep]" in row["value"] or "[1 run]" in row["value"], row
    # The structural half of W7's target holds in any run: nothing left behind.
    (w7,) = [row for row in results["targets"] if row["figure"].startswith("W7 after")]
    assert "left 0;" in w7["value"], w7


def test_w1_idle(results: dict[str, Any]) -> None:
    for size, entry in results["workloads"]["W1"].items():
        assert {"floor", "flask-floor", "ours"} <= set(entry)
        assert not {"sse-starlette", "flask-sse"} & set(entry)
        for kind in ("floor", "flask-floor", "ours"):
            figures = entry[kind]
            assert figures["connections"] == int(size)
            assert figures["connect_rate"] > 0
            assert figures["rss_per_connection_bytes"] > 0
            # An idle worker is far from using a whole core.
            assert 0 <= figures["idle_cpu_percent"] < 50, figures
        ours, floor, flask = entry["ours"], entry["floor"], entry["flask-floor"]
        ratio = ours["rss_per_connection_bytes"] / floor["rss_per_connection_bytes"]
        assert entry["rss_ratio"] == pytest.approx(ratio, abs=0.001)
        assert entry["rss_ratios"] == [entry["rss_ratio"]]
        ratio = ours["connect_rate"] / flask["connect_rate"]
        assert entry["connect_ratio"] == pytest.approx(ratio, abs=0.001)


def test_plots_of_the_quick_run(results: dict[str, Any], out: Path) -> None:
    for name in ("w1-memory-quick.png", "w2-fanout-quick.png"):
        assert png_size(out / name) == (WIDTH * DPI, HEIGHT * DPI)
        assert f"![{name}]({name})" in (out / "LATEST.md").read_text()


def test_w2_every_listener_gets_every_broadcast(results: dict[str, Any]) -> None:
    for entry in results["workloads"]["W2"].values():
        assert set(entry) >= {"floor", "ours"}
        for kind in ("floor", "ours"):
            for run in entry[kind]["runs"]:
                assert run["connections"] > 0
                expected = results["plan"]["w2_broadcasts"] * run["connections"]
                assert run["deliveries"] == run["expected"] == expected
                for broadcast in run["broadcasts"]:
                    assert broadcast["deliveries"] == run["expected_per_broadcast"]
                    assert broadcast["publish_status"] == 200
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
            assert step["held_2ms"] == (step["p99_ms"] <= 2)
        held = [step["rate"] for step in run["ramp"] if step["held_2ms"]]
        assert run["highest_rate_held_2ms"] == max(held, default=0)


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


def synthetic_run(kind: str, size: int, index: int) -> dict[str, Any]:
    """A W1 and W2 run of ``kind`` at ``size``: slower and bigger down SERVERS' order."""
    lost = kind == "flask-sse" and size > 1000  # loses half, as flask-sse is reported to
    return {
        "connections": size,
        "rss_per_connection_bytes": (10 + 8 * index) * 1024 + size,
        "to_last_ms": size / 50 * (1 + index) + index,
        "deliveries": size // 2 if lost else size,
        "expected": size,
    }


def test_plots_from_a_synthetic_run(tmp_path: Path) -> None:
    """Every server and size of a run is drawn; the plots are written at their size."""
    kinds = ("floor", "flask-floor", "ours", "sse-starlette", "flask-sse")
    w1: dict[str, Any] = {}
    w2: dict[str, Any] = {}
    for size in (1000, 5000):
        runs = {
            k: [synthetic_run(k, size, i), synthetic_run(k, size, i)] for i, k in enumerate(kinds)
        }
        w1[str(size)] = {
            k: {
                "runs": r,
                "connections": size,
                "rss_per_connection_bytes": r[0]["rss_per_connection_bytes"],
            }
            for k, r in runs.items()
        }
        w2[str(size)] = {
            k: {"runs": r, "to_last_ms": r[0]["to_last_ms"]}
            for k, r in runs.items()
            if k != "flask-floor"
        }
    w2["5000"]["flask-sse"]["to_last_ms"] = None  # nothing delivered at this size
    document = {"workloads": {"W1": w1, "W2": w2}}
    written = write_plots(document, tmp_path, "-synthetic")
    assert [path.name for path in written] == ["w2-fanout-synthetic.png", "w1-memory-synthetic.png"]
    for path in written:
        assert png_size(path) == (WIDTH * DPI, HEIGHT * DPI)
        assert path.stat().st_size > 10_000  # lines, labels and a legend, not a blank canvas


@pytest.mark.timeout(360)
def test_competitors_end_to_end(tmp_path: Path) -> None:
    """sse-starlette and flask-sse, installed by the harness, run W1 and W4 at quick
    sizes: every stream held, every event delivered, their versions recorded."""
    document = run_harness(
        tmp_path, "--competitors", "--only", "W1,W4", "--name", "competitors", timeout=330
    )
    described = document["competitors"]
    assert set(described) == {"sse-starlette", "flask-sse"}
    assert described["flask-sse"]["versions"]["flask-sse"] == "1.0.0"
    assert described["sse-starlette"]["versions"]["sse-starlette"] != "-"
    assert described["sse-starlette"]["loop"] and described["sse-starlette"]["http"]
    for size, entry in document["workloads"]["W1"].items():
        for kind in ("sse-starlette", "flask-sse"):
            assert entry[kind]["connections"] == int(size)
            assert entry[kind]["rss_per_connection_bytes"] > 0
        # flask-sse's memory is its worker's and its redis-server's.
        (run,) = entry["flask-sse"]["runs"]
        assert set(run["rss_kib_by_process"]) == {"server", "redis-server"}
    for kind in ("sse-starlette", "flask-sse"):
        (run,) = document["workloads"]["W4"][kind]["runs"]
        expected = run["connections"] * document["plan"]["w4_events"]
        assert run["deliveries"] == run["expected"] == expected > 0
        assert run["publish_status"] == 200
    verdicts = {row["figure"]: row["verdict"] for row in document["targets"]}
    for figure in (
        "vs flask-sse",
        "vs sse-starlette/uvicorn, W1 idle",
        "vs sse-starlette/uvicorn, W4 bursts",
    ):
        (found,) = [f for f in verdicts if f.startswith(figure)]
        assert verdicts[found] in QUICK, (found, verdicts[found])
    summary = (tmp_path / "LATEST.md").read_text()
    for size in document["plan"]["w1_sizes"]:
        assert f"| {size} | flask-sse | {size} |" in summary
