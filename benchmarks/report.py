"""The targets of BENCHMARKS.md, judged against one run's figures, and LATEST.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

NOT_MEASURED = "not measured"


def _row(figure: str, target: str, value: str, met: bool | None) -> dict[str, Any]:
    verdict = NOT_MEASURED if met is None else ("met" if met else "NOT met")
    return {"figure": figure, "target": target, "value": value, "verdict": verdict}


def _largest(entries: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    size = max(int(key) for key in entries)
    return size, entries[str(size)]


def evaluate(document: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target: the figure of this run and whether it meets the target."""
    w = document["workloads"]
    rows = []
    full = document["plan"]["reps"] > 1 or max(document["plan"]["w1_sizes"]) >= 10000
    if "W1" in w:
        size, e = _largest(w["W1"])
        got = int(e["ours"]["connections"])
        rows.append(
            _row(
                "idle connections per worker",
                ">= 10,000",
                f"{got} of {size} connected",
                got >= 10000 if size >= 10000 else None,
            )
        )
        ratio = e["rss_ratio"]
        rows.append(
            _row(
                f"RSS per idle connection (N={size})",
                "<= 1.5x the floor",
                f"{e['ours']['rss_per_connection_bytes'] / 1024:.1f} KiB vs floor "
                f"{e['floor']['rss_per_connection_bytes'] / 1024:.1f} KiB = {ratio:.2f}x",
                ratio <= 1.5,
            )
        )
    if "W2" in w:
        size, e = _largest(w["W2"])
        ratio = e["to_last_ratio"]
        rows.append(
            _row(
                f"W2 fan-out to {size} listeners, time to last delivery",
                "<= 1.3x the floor (at 10k)",
                f"{e['ours']['to_last_ms']:.1f} ms vs floor {e['floor']['to_last_ms']:.1f} ms"
                f" = {ratio:.2f}x",
                ratio <= 1.3,
            )
        )
    if "W4" in w:
        e = w["W4"]
        ratio = e["rate_ratio"]
        rows.append(
            _row(
                "W4 bursts, delivered events/s",
                ">= 4x the floor's uncoalesced rate",
                f"{e['ours']['events_per_second']:,.0f}/s vs floor "
                f"{e['floor']['events_per_second']:,.0f}/s = {ratio:.2f}x",
                ratio >= 4,
            )
        )
    if "W3" in w:
        e = w["W3"]["ours"]
        run = e["runs"][0]
        rate, conns = run["at_rate"]["rate"], run["connections"]
        at_spec = rate >= 1000 and conns >= 5000
        rows.append(
            _row(
                f"W3 p99 broadcast-to-receipt at {rate}/s, {conns} connections",
                "<= 2 ms (at 1k/s, 5k connections)",
                f"{e['p99_ms_at_rate']:.2f} ms (floor {w['W3']['floor']['p99_ms_at_rate']:.2f}"
                f" ms); highest rate held {e['highest_rate_held']}/s"
                f" (floor {w['W3']['floor']['highest_rate_held']}/s)",
                e["p99_ms_at_rate"] <= 2 if at_spec else None,
            )
        )
    if "W6" in w:
        e = w["W6"]
        stalled = e["ours"]["stalled"]
        base = e["ours"]["no_stalls"]
        ratio = e["p99_ratio"]
        rows.append(
            _row(
                "W6 others' p99 with 1% stalled",
                "within 1.1x of no stalls; per-connection buffer capped",
                f"{stalled['p99_ms']:.1f} ms vs {base['p99_ms']:.1f} ms = {ratio:.2f}x; "
                f"{stalled['dropped']} of {stalled['stalled']} stalled dropped; RSS "
                f"{stalled['rss_after_kib'] / 1024:.0f} MiB vs {base['rss_after_kib'] / 1024:.0f}"
                " MiB",
                ratio <= 1.1 and stalled["dropped"] >= stalled["stalled"],
            )
        )
    if "W7" in w:
        e = w["W7"]["ours"]
        growth = e["rss_growth_percent"]
        after, before = e["stats_after"], e["stats_before"]
        left = after["connections"] + after["sessions"] + after.get("watched_sockets", 0)
        receivers_back = after.get("receivers") == before.get("receivers")
        rows.append(
            _row(
                f"W7 after {e['cycles']} cycles",
                "RSS within 5%, zero receivers left",
                f"RSS {growth:+.1f}% (floor {w['W7']['floor']['rss_growth_percent']:+.1f}%);"
                f" connections/sessions/watched left {left}; blinker receivers "
                f"{before.get('receivers')} -> {after.get('receivers')} (the registry's one)",
                abs(growth) <= 5 and left == 0 and receivers_back,
            )
        )
    if "W5" in w:
        rows += _w5_rows(w["W5"])
    else:
        for figure, target in (
            ("W5 Redis connections", "about 3 per worker + publishers"),
            ("W5 latency Redis adds, p50", "<= 1 ms"),
            ("W5 one worker's ingest from Redis", ">= 40,000 events/s"),
        ):
            rows.append(_row(figure, target, "-", None))
    for figure, target in (
        ("vs flask-sse", ">= 3x deliveries/s, <= 1/3 memory per connection"),
        ("vs sse-starlette/uvicorn", "ahead on every workload"),
    ):
        rows.append(_row(figure, target, "-", None))
    if not full:
        for row in rows:
            if row["verdict"] != NOT_MEASURED:
                row["verdict"] += " (quick sizes)"
    return rows


def _w5_rows(e: dict[str, Any]) -> list[dict[str, Any]]:
    c, lat, ing = e["connections"], e["latency"], e["ingest"]
    rows = [
        _row(
            f"W5 Redis connections, {c['clients']} clients on {c['workers']} workers",
            "about 3 per worker + publishers",
            f"{c['redis_clients_of_workers']} connections ({c['listeners']} listeners);"
            f" {c['deliveries']} of {c['clients']} clients got their event",
            c["redis_clients_of_workers"] <= 3 * c["workers"] + 1
            and c["deliveries"] >= c["clients"],
        )
    ]
    publisher, worker = lat["redis_publisher"], lat["redis_worker"]
    rows.append(
        _row(
            "W5 latency Redis adds, p50",
            "<= 1 ms",
            f"+{publisher['added_p50_ms']:.2f} ms from a Publisher process"
            f" ({publisher['p50_ms']:.2f} vs {lat['inproc']['p50_ms']:.2f} ms in-process);"
            f" +{worker['added_p50_ms']:.2f} ms publishing in the worker",
            publisher["added_p50_ms"] <= 1,
        )
    )
    rows.append(
        _row(
            "W5 one worker's ingest from Redis",
            ">= 40,000 events/s",
            f"{ing['events_per_second']:,.0f} events/s"
            f" ({ing['events_per_cpu_second']:,.0f} per CPU second of the worker)",
            ing["events_per_second"] >= 40_000,
        )
    )
    return rows


def _fmt(value: float) -> str:
    return f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"


def write_summary(document: dict[str, Any], path: Path, json_name: str) -> None:
    m = document["machine"]
    w = document["workloads"]
    lines = [
        f"# Benchmark results: {document['name']} ({document['date']})",
        "",
        f"- Command: `{document['command']}` ({document['duration_seconds']:.0f} s)",
        f"- Figures: `{json_name}` (every repetition; below are medians)",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux "
        f"{m['kernel']}, Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        f"- {m['pinning']}; RLIMIT_NOFILE {m['nofile']}; repetitions {document['plan']['reps']}",
        "- Ours: `gunicorn -k gevent -w 1 --worker-connections 20000 "
        "'benchmarks.app:create_app()'`, in-process bus, heartbeat 5 s. "
        "Floor: `python -m benchmarks.floor` (gevent StreamServer, chunked, no coalescing).",
        "",
        "## Targets",
        "",
        "| figure | target | this run | verdict |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['figure']} | {r['target']} | {r['value']} | {r['verdict']} |"
        for r in document["targets"]
    ]
    if "W1" in w:
        lines += [
            "",
            "## W1 idle (RSS per connection, idle CPU over the window, connect rate)",
            "",
            "| N | server | connected | RSS/conn | idle CPU | connects/s |",
            "|---|---|---|---|---|---|",
        ]
        for size, e in w["W1"].items():
            for kind in ("floor", "ours"):
                k = e[kind]
                lines.append(
                    f"| {size} | {kind} | {k['connections']:.0f} | "
                    f"{k['rss_per_connection_bytes'] / 1024:.1f} KiB | "
                    f"{k['idle_cpu_percent']:.2f}% | {k['connect_rate']:,.0f} |"
                )
    if "W2" in w:
        lines += [
            "",
            "## W2 hot session (one broadcast to N listeners; medians of broadcasts)",
            "",
            "| N | server | to last delivery | p50 | p99 | ratio to floor |",
            "|---|---|---|---|---|---|",
        ]
        for size, e in w["W2"].items():
            for kind in ("floor", "ours"):
                k = e[kind]
                ratio = f"{e['to_last_ratio']:.2f}x" if kind == "ours" else ""
                lines.append(
                    f"| {size} | {kind} | {k['to_last_ms']:.1f} ms | {k['p50_ms']:.1f} ms | "
                    f"{k['p99_ms']:.1f} ms | {ratio} |"
                )
    if "W4" in w:
        e = w["W4"]
        run = e["ours"]["runs"][0]
        lines += [
            "",
            f"## W4 bursts ({run['events_per_session']} events to each of {run['sessions']}"
            f" sessions, {run['connections']} connections)",
            "",
            f"- floor (one write per event): {e['floor']['events_per_second']:,.0f} events/s",
            f"- ours (coalesced): {e['ours']['events_per_second']:,.0f} events/s "
            f"= {e['rate_ratio']:.2f}x",
        ]
    if "W3" in w:
        lines += [
            "",
            "## W3 many sessions (N over N/2 sessions, steady random broadcasts; heartbeat 30 s)",
            "",
        ]
        for kind in ("floor", "ours"):
            run = w["W3"][kind]["runs"][0]
            at = run["at_rate"]
            ramp = ", ".join(
                f"{s['rate']}/s p99 {s['p99_ms']:.1f} ms {'held' if s['held'] else 'NOT held'}"
                for s in run["ramp"]
            )
            lines.append(
                f"- {kind}: at {at['rate']}/s p50 {at['p50_ms']:.2f} ms, p99 {at['p99_ms']:.2f}"
                f" ms, max {at['max_ms']:.1f} ms ({at['deliveries']}/{at['expected']}"
                f" delivered); ramp: {ramp}"
            )
    if "W6" in w:
        e = w["W6"]["ours"]
        lines += ["", "## W6 slow consumers (ours; queue size 64, 16 KB events)", ""]
        for label, k in (("no stalls", e["no_stalls"]), ("1% stalled", e["stalled"])):
            lines.append(
                f"- {label}: readers p50 {k['p50_ms']:.1f} ms, p99 {k['p99_ms']:.1f} ms; "
                f"dropped {k['dropped']}; RSS {k['rss_before_kib'] / 1024:.0f} -> "
                f"{k['rss_after_kib'] / 1024:.0f} MiB; every reader got every event: "
                f"{k['readers_agree'] and k['received_by_each_session'] == k['published']}"
            )
    if "W7" in w:
        lines += ["", "## W7 churn", ""]
        for kind in ("floor", "ours"):
            k = w["W7"][kind]
            lines.append(
                f"- {kind}: {k['cycles']} cycles at {k['cycles_per_second']:,.0f}/s; RSS "
                f"{k['rss_before_kib'] / 1024:.1f} -> {k['rss_after_kib'] / 1024:.1f} MiB "
                f"({k['rss_growth_percent']:+.1f}%); RSS KiB at cycles: "
                f"{k.get('rss_kib_at_cycles')}; stats after: {k['stats_after']}"
            )
    if "W5" in w:
        e = w["W5"]
        lines += [
            "",
            "## W5 Redis (ours on Redis against ours in-process; Redis without persistence)",
            "",
            "| latency | p50 | p90 | p99 | p50 added |",
            "|---|---|---|---|---|",
        ]
        for mode, k in e["latency"].items():
            added = f"{k['added_p50_ms']:+.2f} ms" if "added_p50_ms" in k else "reference"
            lines.append(
                f"| {mode} | {k['p50_ms']:.2f} ms | {k['p90_ms']:.2f} ms | {k['p99_ms']:.2f} ms"
                f" | {added} |"
            )
        run = e["ingest"]["runs"][0]
        c = e["connections"]
        lines += [
            "",
            f"- ingest: {run['events']:,} events over {run['connections']:,} sessions:"
            f" {e['ingest']['events_per_second']:,.0f} events/s,"
            f" {e['ingest']['events_per_cpu_second']:,.0f} per CPU second of the worker",
            f"- connections: {c['clients']:,} clients over {c['sessions']:,} sessions on"
            f" {c['workers']} workers: {c['redis_clients_of_workers']} Redis connections,"
            f" {c['listeners']} of them listeners; {c['deliveries']:,} deliveries",
        ]
    lines += [
        "",
        "Not measured in this harness: flask-sse and sse-starlette.",
        "",
    ]
    path.write_text("\n".join(lines))
