"""Run the workloads against the floors, ours and the competitors, side by side, and
write the results.

    python -m benchmarks.run              # the full run, competitors included (40-45 min)
    python -m benchmarks.run --quick      # small N, one repetition, no competitors (~1 min)
    python -m benchmarks.run --quick --competitors   # the competitors too, at small N

Writes ``<out>/<date>-<name>.json`` (every figure, every repetition),
``<out>/LATEST.md`` (the summary against the targets of BENCHMARKS.md) and the plots
(``w1-memory.png``, ``w2-fanout.png``; with the run's name in them unless it is
``full``).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import plots
from .competitors import COMPETITORS, requirements, versions
from .loadclient import LoadClient, Tally, percentile
from .report import evaluate, rep_ratios, write_summary
from .servers import CLIENT_CPU, SERVER_CPU, Server, log

# W1 adds the Flask floor; the competitors join W1-W4 when they run.
KINDS = ("floor", "ours")
PAYLOAD = {"step": "transcoding", "pct": 42, "detail": "x" * 80}


@dataclass(frozen=True)
class Plan:
    """The sizes of one run."""

    reps: int
    w1_sizes: tuple[int, ...]
    w1_idle_seconds: float
    w2_sizes: tuple[int, ...]
    w2_broadcasts: int
    w4_sessions: int
    w4_listeners: int
    w4_events: int
    w7_cycles: int
    w7_concurrency: int
    w3_connections: int
    w3_rate: int
    w3_seconds: float
    w3_ramp: tuple[int, ...]
    w3_ramp_seconds: float
    w6_connections: int
    w6_sessions: int
    w6_rate: int
    w6_seconds: float
    w5_connections: int
    w5_sessions: int
    w5_rate: int
    w5_seconds: float
    w5_ingest_sessions: int
    w5_ingest_events: int
    w5_clients: int


FULL = Plan(
    reps=3,
    w1_sizes=(1000, 5000, 10000),
    w1_idle_seconds=10,
    w2_sizes=(1000, 2000, 5000, 10000),
    w2_broadcasts=5,
    w4_sessions=1000,
    w4_listeners=5,
    w4_events=20,
    w7_cycles=10000,
    w7_concurrency=100,
    w3_connections=5000,
    w3_rate=1000,
    w3_seconds=5,
    w3_ramp=(1000, 2000, 3000, 4000, 6000, 8000, 12000, 16000),
    w3_ramp_seconds=3,
    w6_connections=200,
    w6_sessions=2,
    w6_rate=100,
    w6_seconds=8,
    w5_connections=1000,
    w5_sessions=500,
    w5_rate=200,
    w5_seconds=5,
    w5_ingest_sessions=1000,
    w5_ingest_events=100_000,
    w5_clients=10_000,
)
QUICK = Plan(
    reps=1,
    w1_sizes=(200,),
    w1_idle_seconds=1,
    w2_sizes=(500,),
    w2_broadcasts=3,
    w4_sessions=50,
    w4_listeners=4,
    w4_events=20,
    w7_cycles=500,
    w7_concurrency=50,
    w3_connections=400,
    w3_rate=200,
    w3_seconds=1,
    w3_ramp=(500,),
    w3_ramp_seconds=0.5,
    w6_connections=100,
    w6_sessions=1,
    w6_rate=50,
    w6_seconds=1,
    w5_connections=200,
    w5_sessions=100,
    w5_rate=100,
    w5_seconds=1,
    w5_ingest_sessions=100,
    w5_ingest_events=5_000,
    w5_clients=400,
)
# Slow consumers need a queue they can overflow within seconds: the kernel's send
# buffer of a stalled socket grows to 4 MiB (tcp_wmem) before a write blocks, so
# events are 16 KB and each session gets ~400 of them.
W6_CONFIG = {"SSE_SESSIONS_QUEUE_SIZE": 64}
W6_PAYLOAD = {"step": "chunk", "detail": "y" * 16000}
# W3 runs with the library's default heartbeat: with 5 s, a heartbeat round to all
# 5k connections (synchronised, as they were opened together) falls in every window.
W3_HEARTBEAT = 30


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def median(values: list[float | None]) -> float | None:
    """The median of the values there are (``None`` for a figure a run could not
    take, such as a latency without deliveries); ``None`` if there is none."""
    present = [value for value in values if value is not None]
    return float(statistics.median(present)) if present else None


def connect(
    server: Server, client: LoadClient, session_ids: list[str], **options: Any
) -> tuple[float, int]:
    """Open one stream per session id and wait until the server holds each one.

    :returns: the seconds it took, and how many streams the server holds: those
        that got their first frame, or for flask-sse (which sends nothing before
        the first event) its subscribers in Redis.
    """
    paths = [server.stream_path(session_id) for session_id in session_ids]
    count = server.held(session_ids)
    if count is None:
        return client.open(paths, **options), client.connected
    before = count()
    seconds = client.open(paths, held=lambda: count() - before, **options)
    return seconds, min(client.connected, count() - before)


def delivered(tally: Tally) -> dict[str, Any]:
    """The deliveries since the tally was reset and their timing (``None`` without any)."""
    if not tally.deliveries:
        return dict.fromkeys(("to_first_ms", "to_last_ms", "p50_ms", "p99_ms", "max_ms"))
    return {
        "to_first_ms": ms(tally.first_recv - tally.min_s0),
        "to_last_ms": ms(tally.last_recv - tally.min_s0),
        "p50_ms": ms(percentile(tally.latencies, 50)),
        "p99_ms": ms(percentile(tally.latencies, 99)),
        "max_ms": ms(max(tally.latencies)),
    }


def warm_up(server: Server) -> None:
    """Two connections and one broadcast, so that lazy set-up is not measured."""
    client = LoadClient(server.port)
    try:
        _, connected = connect(server, client, ["warmup", "warmup"])
        if server.publishes:
            client.call("POST", "/publish/warmup", {"data": PAYLOAD})
            client.drain(connected, 5)
    finally:
        client.close()
    time.sleep(0.3)


# -- W1 idle ---------------------------------------------------------------------


def w1_idle(kind: str, size: int, plan: Plan) -> dict[str, Any]:
    with Server(kind) as server:
        warm_up(server)
        before = server.rss_kib_by_process()
        client = LoadClient(server.port)
        try:
            seconds, connected = connect(server, client, [f"idle{i // 2}" for i in range(size)])
            client.pump_for(1.0)
            opened = server.rss_kib_by_process()
            cpu_start = server.cpu_seconds()
            client.reset_tally()
            client.pump_for(plan.w1_idle_seconds)
            cpu = server.cpu_seconds() - cpu_start
            heartbeats = client.tally.heartbeats
            failed = client.failed
            refused = {str(status): count for status, count in client.refused.items()}
        finally:
            client.close()
    rss_before, rss_open = sum(before.values()), sum(opened.values())
    return {
        "size": size,
        "connections": connected,
        "failed": failed,
        "refused_by_status": refused,
        "connect_seconds": round(seconds, 3),
        "connect_rate": round(connected / seconds, 1) if seconds else 0.0,
        "rss_before_kib": rss_before,
        "rss_open_kib": rss_open,
        "rss_kib_by_process": {name: [before[name], opened[name]] for name in before},
        "rss_per_connection_bytes": round((rss_open - rss_before) * 1024 / max(1, connected)),
        "idle_seconds": plan.w1_idle_seconds,
        "idle_cpu_percent": round(cpu / plan.w1_idle_seconds * 100, 2),
        "heartbeats_received": heartbeats,
    }


# -- W2 hot session --------------------------------------------------------------


def w2_hot(kind: str, size: int, plan: Plan) -> dict[str, Any]:
    broadcasts = []
    with Server(kind) as server:
        warm_up(server)
        client = LoadClient(server.port)
        try:
            _, connected = connect(server, client, ["hot"] * size)
            client.pump_for(0.5)
            for _ in range(plan.w2_broadcasts):
                client.reset_tally()
                control = client.request("POST", "/publish/hot", {"data": PAYLOAD})
                client.drain(connected, 30)
                broadcasts.append(
                    {
                        "deliveries": client.tally.deliveries,
                        **delivered(client.tally),
                        "publish_status": client.status_of(control),
                    }
                )
                client.pump_for(0.3)
            failed = client.failed
        finally:
            client.close()
    return {
        "size": size,
        "connections": connected,
        "failed": failed,
        "expected_per_broadcast": connected,
        "broadcasts": broadcasts,
        "expected": connected * len(broadcasts),
        "deliveries": sum(b["deliveries"] for b in broadcasts),
        "to_last_ms": median([b["to_last_ms"] for b in broadcasts]),
        "p50_ms": median([b["p50_ms"] for b in broadcasts]),
        "p99_ms": median([b["p99_ms"] for b in broadcasts]),
    }


# -- W4 bursts -------------------------------------------------------------------


def w4_bursts(kind: str, plan: Plan) -> dict[str, Any]:
    sessions = [f"burst{i}" for i in range(plan.w4_sessions)]
    size = plan.w4_sessions * plan.w4_listeners
    with Server(kind) as server:
        warm_up(server)
        client = LoadClient(server.port)
        try:
            listeners = [sessions[i % len(sessions)] for i in range(size)]
            _, connected = connect(server, client, listeners)
            expected = connected * plan.w4_events
            client.pump_for(0.5)
            client.reset_tally()
            control = client.request(
                "POST",
                "/publish-many",
                {"sessions": sessions, "count": plan.w4_events, "data": PAYLOAD},
            )
            client.drain(expected, 120)
            status = client.status_of(control)
            tally = client.tally
        finally:
            client.close()
    seconds = tally.last_recv - tally.min_s0 if tally.deliveries else 0.0
    figures = delivered(tally)
    return {
        "size": size,
        "connections": connected,
        "sessions": len(sessions),
        "events_per_session": plan.w4_events,
        "expected": expected,
        "deliveries": tally.deliveries,
        "publish_status": status,
        "seconds": round(seconds, 4),
        "events_per_second": round(tally.deliveries / seconds, 1) if seconds > 0 else 0.0,
        "p50_ms": figures["p50_ms"],
        "p99_ms": figures["p99_ms"],
    }


# -- W7 churn --------------------------------------------------------------------


def w7_churn(kind: str, plan: Plan) -> dict[str, Any]:
    with Server(kind) as server:
        warm_up(server)
        client = LoadClient(server.port)
        try:
            batch = plan.w7_concurrency

            checkpoints: list[tuple[int, int]] = []

            def cycles(count: int, every: int = 0) -> int:
                done = 0
                for round_ in range(count // batch):
                    client.open(
                        [server.stream_path(f"churn{round_}-{i % 10}") for i in range(batch)]
                    )
                    done += client.close_some(batch, reset=False)
                    if every and done % every == 0:
                        checkpoints.append((done, server.rss_kib()))
                return done

            cycles(min(500, plan.w7_cycles // 10))  # warm-up: allocator pools, watcher
            settle(server)
            stats_before = server.stats()
            rss_before = server.rss_kib()
            start = time.monotonic()
            done = cycles(plan.w7_cycles, every=max(batch, plan.w7_cycles // 5))
            seconds = time.monotonic() - start
            stats_after = settle(server)
            rss_after = server.rss_kib()
        finally:
            client.close()
    return {
        "cycles": done,
        "expected": plan.w7_cycles,
        "cycles_per_second": round(done / seconds, 1),
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_growth_percent": round((rss_after - rss_before) / rss_before * 100, 2),
        "rss_kib_at_cycles": checkpoints,
        "stats_before": stats_before,
        "stats_after": stats_after,
    }


def settle(server: Server, timeout: float = 15) -> dict[str, Any]:
    """Wait until the server counts no open stream; its stats then."""
    deadline = time.monotonic() + timeout
    stats = server.stats()
    while stats["connections"] and time.monotonic() < deadline:
        time.sleep(0.1)
        stats = server.stats()
    return stats


# -- W3 many sessions ------------------------------------------------------------


def w3_many(kind: str, plan: Plan) -> dict[str, Any]:
    size = plan.w3_connections
    sessions = [f"many{i}" for i in range(size // 2)]
    steps = []
    with Server(kind, heartbeat=W3_HEARTBEAT) as server:
        warm_up(server)
        client = LoadClient(server.port)
        try:
            _, connected = connect(
                server, client, [sessions[i % len(sessions)] for i in range(size)]
            )
            client.pump_for(0.5)

            def hold(rate: int, seconds: float, seed: int) -> dict[str, Any]:
                expected = int(rate * seconds) * 2
                client.reset_tally()
                body = {"sessions": sessions, "rate": rate, "seconds": seconds, "seed": seed}
                client.call("POST", "/load", {**body, "data": PAYLOAD})
                client.drain(expected, seconds + 10)
                tally = client.tally
                figures = delivered(tally)
                every = tally.deliveries >= expected
                p99 = figures["p99_ms"]
                late = tally.last_recv - (tally.min_s0 + seconds) if tally.deliveries else 0.0
                return {
                    "rate": rate,
                    "seconds": seconds,
                    "expected": expected,
                    "deliveries": tally.deliveries,
                    "p50_ms": figures["p50_ms"],
                    "p99_ms": p99,
                    "max_ms": figures["max_ms"],
                    "held": every and p99 is not None and p99 < 50 and late < 0.25,
                    "held_2ms": every and p99 is not None and p99 <= 2,
                }

            at_target = hold(plan.w3_rate, plan.w3_seconds, 1)
            for index, rate in enumerate(plan.w3_ramp):
                step = hold(rate, plan.w3_ramp_seconds, 10 + index)
                steps.append(step)
                if not step["held"]:
                    break
                client.pump_for(0.5)
        finally:
            client.close()
    return {
        "size": size,
        "connections": connected,
        "sessions": len(sessions),
        "at_rate": at_target,
        "ramp": steps,
        "p99_ms_at_rate": at_target["p99_ms"],
        "highest_rate_held": max((s["rate"] for s in steps if s["held"]), default=0),
        "highest_rate_held_2ms": max((s["rate"] for s in steps if s["held_2ms"]), default=0),
    }


# -- W6 slow consumers -----------------------------------------------------------


def w6_slow(plan: Plan, stall: bool) -> dict[str, Any]:
    size = plan.w6_connections
    sessions = [f"slow{i}" for i in range(plan.w6_sessions)]
    stalled = set(range(0, size, 100)) if stall else set()
    with Server("ours", W6_CONFIG) as server:
        warm_up(server)
        rss_before = server.rss_kib()
        client = LoadClient(server.port)
        try:
            listeners = [sessions[i % len(sessions)] for i in range(size)]
            _, connected = connect(server, client, listeners, stalled=stalled)
            client.pump_for(0.5)
            client.reset_tally()
            body = {"sessions": sessions, "rate": plan.w6_rate, "seconds": plan.w6_seconds}
            client.call("POST", "/load", {**body, "seed": 6, "data": W6_PAYLOAD})
            published = int(plan.w6_rate * plan.w6_seconds)
            readers = [s for s in client.streams.values() if not s.stalled]

            def per_session() -> dict[str, set[int]]:
                seen: dict[str, set[int]] = {}
                for stream in readers:
                    seen.setdefault(stream.path, set()).add(stream.events)
                return seen

            def done() -> bool:
                return sum(max(v) for v in per_session().values()) >= published

            client.pump(done, plan.w6_seconds + 15)
            client.pump_for(0.5)
            counts = per_session()
            rss_peak = server.rss_kib()
            stats = server.stats()
            tally = client.tally
        finally:
            client.close()
    return {
        "connections": connected,
        "stalled": len(stalled),
        "published": published,
        "received_by_each_session": sum(max(v) for v in counts.values()),
        "readers_agree": all(len(v) == 1 for v in counts.values()),
        "reader_deliveries": tally.deliveries,
        "p50_ms": ms(percentile(tally.latencies, 50)),
        "p99_ms": ms(percentile(tally.latencies, 99)),
        "dropped": stats.get("dropped", 0),
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_peak,
    }


# -- the run ---------------------------------------------------------------------


def repeat(reps: int, label: str, job: Callable[[], dict[str, Any]]) -> list[dict[str, Any]]:
    runs = []
    for rep in range(reps):
        log(f"{label} rep {rep + 1}/{reps}")
        runs.append(job())
    return runs


def med(runs: list[dict[str, Any]], key: str) -> float | None:
    return median([run[key] for run in runs])


def interleaved(
    reps: int, kinds: tuple[str, ...], label: str, job: Callable[[str], dict[str, Any]]
) -> dict[str, Any]:
    """``job(kind)`` ``reps`` times for each kind, interleaved so that drifts hit all
    alike: ``{kind: {"runs": [...]}}``."""
    entry: dict[str, Any] = {kind: {"runs": []} for kind in kinds}
    for rep in range(reps):
        for kind in kinds:
            log(f"{label} {kind} rep {rep + 1}/{reps}")
            entry[kind]["runs"].append(job(kind))
    return entry


def ratio(entry: dict[str, Any], key: str, name: str, reference: str = "floor") -> None:
    """Ours over ``reference``, repetition by repetition (``<name>s``) and their median."""
    ratios = rep_ratios(entry, key, "ours", reference)
    entry[f"{name}s"] = ratios
    entry[name] = median(list(ratios))


def run(plan: Plan, only: set[str] | None, competitors: tuple[str, ...]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    kinds = (*KINDS, *competitors)

    def wanted(name: str) -> bool:
        return only is None or name in only

    if wanted("W1"):
        w1: dict[str, Any] = {}
        for size in plan.w1_sizes:
            entry = interleaved(
                plan.reps,
                ("floor", "flask-floor", "ours", *competitors),
                f"W1 idle N={size}",
                functools.partial(w1_idle, size=size, plan=plan),
            )
            for figures in entry.values():
                for key in ("connections", "rss_per_connection_bytes", "idle_cpu_percent",
                            "connect_rate"):  # fmt: skip
                    figures[key] = med(figures["runs"], key)
            ratio(entry, "rss_per_connection_bytes", "rss_ratio")
            ratio(entry, "idle_cpu_percent", "cpu_ratio")
            ratio(entry, "connect_rate", "connect_ratio", "flask-floor")
            w1[str(size)] = entry
        results["W1"] = w1

    if wanted("W2"):
        w2: dict[str, Any] = {}
        for size in plan.w2_sizes:
            entry = interleaved(
                plan.reps,
                kinds,
                f"W2 hot N={size}",
                functools.partial(w2_hot, size=size, plan=plan),
            )
            for figures in entry.values():
                for key in ("connections", "to_last_ms", "p50_ms", "p99_ms"):
                    figures[key] = med(figures["runs"], key)
            ratio(entry, "to_last_ms", "to_last_ratio")
            w2[str(size)] = entry
        results["W2"] = w2

    if wanted("W4"):
        entry = interleaved(plan.reps, kinds, "W4 bursts", lambda kind: w4_bursts(kind, plan))
        for figures in entry.values():
            figures["events_per_second"] = med(figures["runs"], "events_per_second")
        ratio(entry, "events_per_second", "rate_ratio")
        results["W4"] = entry

    if wanted("W7"):
        entry = {}
        for kind in KINDS:
            churn = functools.partial(w7_churn, kind, plan)
            entry[kind] = {"runs": repeat(1, f"W7 churn {kind}", churn)}
            entry[kind].update(entry[kind]["runs"][0])
        results["W7"] = entry

    if wanted("W3"):
        entry = interleaved(plan.reps, kinds, "W3 many", lambda kind: w3_many(kind, plan))
        for figures in entry.values():
            for key in ("p99_ms_at_rate", "highest_rate_held", "highest_rate_held_2ms"):
                figures[key] = med(figures["runs"], key)
        ratio(entry, "highest_rate_held_2ms", "rate_2ms_ratio")
        results["W3"] = entry

    if wanted("W6"):
        w6: dict[str, list[dict[str, Any]]] = {"no_stalls": [], "stalled": []}
        for rep in range(plan.reps):
            for label, stall in (("no_stalls", False), ("stalled", True)):
                log(f"W6 slow consumers {label} rep {rep + 1}/{plan.reps}")
                w6[label].append(w6_slow(plan, stall=stall))
        ours = {}
        for label, runs in w6.items():
            # The run with the median p99 stands for the label; all runs are kept.
            ordered = sorted(runs, key=lambda r: r["p99_ms"])
            ours[label] = {**ordered[len(ordered) // 2], "runs": runs}
        results["W6"] = {
            "ours": ours,
            "p99_ratio": round(
                ours["stalled"]["p99_ms"] / max(1e-9, ours["no_stalls"]["p99_ms"]), 3
            ),
        }

    if wanted("W5"):
        results["W5"] = w5_redis(plan)
    return results


def describe_competitors(competitors: tuple[str, ...]) -> dict[str, Any]:
    """Each competitor's installed versions and what its server reports of itself
    (sse-starlette: the event loop and HTTP implementation uvicorn chose); installs
    them on first use."""
    described: dict[str, Any] = {}
    for kind in competitors:
        found = versions(kind)
        with Server(kind) as server:
            runtime = {key: server.info[key] for key in ("loop", "http") if key in server.info}
        described[kind] = {"requirements": requirements(kind), "versions": found, **runtime}
    return described


def w5_redis(plan: Plan) -> dict[str, Any]:
    from .redis_w5 import W5_MODES, connections, ingest, latency, redis_server

    redis_process = redis_server()
    try:
        entry: dict[str, Any] = {"latency": {mode: {"runs": []} for mode in W5_MODES}}
        for rep in range(plan.reps):
            for mode in W5_MODES:  # interleaved, so drifts hit all alike
                log(f"W5 latency {mode} rep {rep + 1}/{plan.reps}")
                entry["latency"][mode]["runs"].append(
                    latency(
                        mode,
                        redis_process.url,
                        connections=plan.w5_connections,
                        sessions=plan.w5_sessions,
                        rate=plan.w5_rate,
                        seconds=plan.w5_seconds,
                    )
                )
        for mode in W5_MODES:
            for key in ("p50_ms", "p90_ms", "p99_ms"):
                entry["latency"][mode][key] = med(entry["latency"][mode]["runs"], key)
        reference = entry["latency"]["inproc"]["p50_ms"]
        for mode in ("redis_worker", "redis_publisher"):
            entry["latency"][mode]["added_p50_ms"] = round(
                entry["latency"][mode]["p50_ms"] - reference, 3
            )
        runs = repeat(
            plan.reps,
            "W5 ingest",
            lambda: ingest(
                redis_process.url, sessions=plan.w5_ingest_sessions, events=plan.w5_ingest_events
            ),
        )
        entry["ingest"] = {
            "runs": runs,
            "events_per_second": med(runs, "events_per_second"),
            "events_per_cpu_second": med(runs, "events_per_cpu_second"),
        }
        log(f"W5 connections, {plan.w5_clients} clients on 2 workers")
        entry["connections"] = connections(redis_process, clients=plan.w5_clients)
    finally:
        redis_process.cleanup()
    return entry


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    versions = {}
    for module in ("gevent", "gunicorn", "flask", "greenlet", "blinker", "redis", "hiredis"):
        try:
            from importlib.metadata import version

            versions[module] = version(module)
        except Exception:
            versions[module] = "?"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "pinning": f"server on CPU {SERVER_CPU} (flask-sse's redis-server too), client on"
        f" CPU {CLIENT_CPU}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N, one repetition")
    parser.add_argument("--reps", type=int, help="repetitions (default 3; 1 with --quick)")
    parser.add_argument("--only", help="comma-separated workloads, e.g. W1,W2")
    parser.add_argument("--name", help="results file name part (default: quick or full)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument(
        "--competitors",
        action=argparse.BooleanOptionalAction,
        help="run sse-starlette and flask-sse in W1-W4 (default: in the full run, not with"
        " --quick); the first run installs them into ~/.cache/flask-sse-sessions-bench",
    )
    args = parser.parse_args(argv)
    plots.require()

    plan = QUICK if args.quick else FULL
    if args.reps:
        plan = Plan(**{**plan.__dict__, "reps": args.reps})
    only = set(args.only.upper().split(",")) if args.only else None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 20000 if hard == resource.RLIM_INFINITY else min(20000, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {CLIENT_CPU})

    started = time.time()
    name = args.name or ("quick" if args.quick else "full")
    with_competitors = not args.quick if args.competitors is None else args.competitors
    if only is not None and not only & {"W1", "W2", "W3", "W4"}:
        with_competitors = False  # they run in W1-W4 only
    competitors = COMPETITORS if with_competitors else ()
    log(
        f"benchmark run '{name}', reps={plan.reps}, competitors: {', '.join(competitors) or 'none'}"
    )
    described = describe_competitors(competitors)
    figures = run(plan, only, competitors)
    duration = time.time() - started
    document = {
        "name": name,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.run " + " ".join(sys.argv[1:] if argv is None else argv),
        "duration_seconds": round(duration, 1),
        "machine": machine(),
        "plan": plan.__dict__,
        "competitors": described,
        "workloads": figures,
    }
    document["targets"] = evaluate(document)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    path = args.out / f"{stamp}-{name}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    suffix = "" if name == "full" else f"-{name}"
    images = plots.write_plots(document, args.out, suffix)
    write_summary(document, args.out / "LATEST.md", path.name, [image.name for image in images])
    log(f"wrote {path}, {args.out / 'LATEST.md'} and {len(images)} plots in {duration:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
