"""The targets of BENCHMARKS.md, judged against one run's figures, and LATEST.md.

Each target row gives its figure (a median over repetitions, or a median of
per-repetition ratios: the servers run interleaved, so repetition *i* of each ran
side by side) and its range over the repetitions, met or not.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

NOT_MEASURED = "not measured"
# The servers in the order of every table.
SERVERS = ("floor", "flask-floor", "ours", "sse-starlette", "flask-sse")
# The figure every W2 target row is judged at (when the run has them).
W2_TARGET_SIZES = (2000, 10000)


def _row(figure: str, target: str, value: str, met: bool | None) -> dict[str, Any]:
    verdict = NOT_MEASURED if met is None else ("met" if met else "NOT met")
    return {"figure": figure, "target": target, "value": value, "verdict": verdict}


def rep_ratios(entry: dict[str, Any], key: str, kind: str, reference: str) -> list[float | None]:
    """``kind``'s figure ``key`` over ``reference``'s, repetition by repetition;
    ``None`` where either has no figure or the reference's is 0."""
    if kind not in entry or reference not in entry:
        return []
    ratios: list[float | None] = []
    for mine, theirs in zip(entry[kind]["runs"], entry[reference]["runs"], strict=False):
        a, b = mine.get(key), theirs.get(key)
        ratios.append(round(a / b, 3) if a is not None and b else None)
    return ratios


def _present(values: list[float | None]) -> list[float]:
    return [value for value in values if value is not None]


def _median(values: list[float | None]) -> float | None:
    present = _present(values)
    return float(statistics.median(present)) if present else None


def _range(values: list[float | None], fmt: Callable[[float], str]) -> str:
    """``[min to max over n reps]`` of the values there are."""
    present = _present(values)
    if not present:
        return "[no figure]"
    reps = f"{len(values)} rep{'s' if len(values) != 1 else ''}"
    low, high = fmt(min(present)), fmt(max(present))
    return f"[{low} over {reps}]" if low == high else f"[{low} to {high} over {reps}]"


def _x(value: float) -> str:
    return f"{value:.2f}x"


def _pct(value: float) -> str:
    return f"{value * 100:.0f}%"


def _kib(value: float) -> str:
    return f"{value / 1024:.1f} KiB"


def _ms(value: float) -> str:
    return f"{value:.1f} ms"


def _ms2(value: float) -> str:
    return f"{value:.2f} ms"


def _rate(value: float) -> str:
    return f"{value:,.0f}/s"


def _runs(entry: dict[str, Any], kind: str, key: str) -> list[float | None]:
    return [run.get(key) for run in entry[kind]["runs"]] if kind in entry else []


def _largest(entries: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    size = max(int(key) for key in entries)
    return size, entries[str(size)]


def _ran(w: dict[str, Any], workload: str, kind: str) -> bool:
    """Whether ``kind`` ran in ``workload`` (at its largest size for W1 and W2)."""
    entry = w.get(workload)
    if not entry:
        return False
    return kind in (_largest(entry)[1] if workload in ("W1", "W2") else entry)


def delivered_and_expected(workloads: dict[str, Any], kind: str) -> tuple[int, int]:
    """What ``kind`` delivered of what it should have in W2 and W4, every run:
    a fixed number of events each, waited for generously (30 s a broadcast,
    120 s a burst), until none came for 3 s."""
    runs = [run for entry in workloads.get("W2", {}).values() for run in _all_runs(entry, kind)]
    runs += _all_runs(workloads.get("W4", {}), kind)
    return sum(run["deliveries"] for run in runs), sum(run["expected"] for run in runs)


def _all_runs(entry: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return list(entry[kind]["runs"]) if kind in entry else []


def _lost(workloads: dict[str, Any], kind: str) -> str:
    got, expected = delivered_and_expected(workloads, kind)
    return f"{kind} delivered {got:,} of {expected:,}"


def evaluate(document: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target: the figure of this run and whether it meets the target."""
    w = document["workloads"]
    rows: list[dict[str, Any]] = []
    plan = document["plan"]
    full = plan["reps"] > 1 or max(plan["w1_sizes"]) >= 10000
    if "W1" in w:
        rows += _w1_rows(w["W1"])
    if "W2" in w:
        sizes = [size for size in W2_TARGET_SIZES if str(size) in w["W2"]]
        for size in sizes or [_largest(w["W2"])[0]]:
            rows.append(_w2_row(size, w["W2"][str(size)]))
    if "W3" in w:
        rows += _w3_rows(w["W3"])
    if "W4" in w:
        e = w["W4"]
        ratios = e["rate_ratios"]
        got, expected = delivered_and_expected({"W4": e}, "ours")
        rows.append(
            _row(
                "W4 bursts, delivered events/s",
                ">= 3.5x the floor's uncoalesced rate",
                f"{_rate(e['ours']['events_per_second'])} vs floor "
                f"{_rate(e['floor']['events_per_second'])} = {_x(e['rate_ratio'])} "
                f"{_range(ratios, _x)}; delivered {got:,} of {expected:,}",
                e["rate_ratio"] >= 3.5 and got >= expected,
            )
        )
    if "W6" in w:
        rows.append(_w6_row(w["W6"]))
    if "W7" in w:
        rows.append(_w7_row(w["W7"]))
    if "W5" in w:
        rows += _w5_rows(w["W5"])
    else:
        for figure, target in (
            ("W5 Redis connections", "about 3 per worker + publishers"),
            ("W5 latency Redis adds, p50", "<= 1 ms"),
            ("W5 one worker's ingest from Redis", ">= 40,000 events/s"),
        ):
            rows.append(_row(figure, target, "-", None))
    rows.append(_vs_flask_sse(w))
    rows += _vs_starlette(w)
    if not full:
        for row in rows:
            if row["verdict"] != NOT_MEASURED:
                row["verdict"] += " (quick sizes)"
    return rows


def _w1_rows(w1: dict[str, Any]) -> list[dict[str, Any]]:
    size, e = _largest(w1)
    ours = e["ours"]
    connected = _runs(e, "ours", "connections")
    rows = [
        _row(
            "idle connections per worker",
            ">= 10,000",
            f"{ours['connections']:.0f} of {size} connected {_range(connected, str)}",
            (ours["connections"] >= 10000) if size >= 10000 else None,
        ),
        _row(
            f"RSS per idle connection (N={size})",
            "<= 1.4x the floor",
            f"{_kib(ours['rss_per_connection_bytes'])} vs floor "
            f"{_kib(e['floor']['rss_per_connection_bytes'])} = {_x(e['rss_ratio'])} "
            f"{_range(e['rss_ratios'], _x)}",
            e["rss_ratio"] <= 1.4,
        ),
    ]
    cpu = e["cpu_ratio"]
    rows.append(
        _row(
            f"W1 idle CPU at N={size}",
            "<= 2x the floor (at 10k)",
            f"{ours['idle_cpu_percent']:.2f}% vs floor {e['floor']['idle_cpu_percent']:.2f}%"
            + (
                f" = {_x(cpu)} {_range(e['cpu_ratios'], _x)}"
                if cpu is not None
                else " (no ratio: the floor used no CPU the clock could count)"
            ),
            None if cpu is None else cpu <= 2,
        )
    )
    connect = e.get("connect_ratio")
    rows.append(
        _row(
            f"W1 connect rate (N={size})",
            ">= 90% of the Flask floor's",
            "-"
            if connect is None
            else f"{_rate(ours['connect_rate'])} vs Flask floor "
            f"{_rate(e['flask-floor']['connect_rate'])} = {_pct(connect)} "
            f"{_range(e['connect_ratios'], _pct)}",
            None if connect is None else connect >= 0.9,
        )
    )
    return rows


def _w2_row(size: int, e: dict[str, Any]) -> dict[str, Any]:
    got, expected = delivered_and_expected({"W2": {str(size): e}}, "ours")
    ratio = e["to_last_ratio"]
    return _row(
        f"W2 fan-out to {size} listeners, time to last delivery",
        "<= 1.3x the floor (at 2k and at 10k)",
        f"{_ms(e['ours']['to_last_ms'])} vs floor {_ms(e['floor']['to_last_ms'])} = "
        f"{_x(ratio)} {_range(e['to_last_ratios'], _x)}; delivered {got:,} of {expected:,}",
        ratio <= 1.3 and got >= expected,
    )


def _w3_rows(w3: dict[str, Any]) -> list[dict[str, Any]]:
    ours, floor = w3["ours"], w3["floor"]
    run = ours["runs"][0]
    ratio = w3["rate_2ms_ratio"]
    rate, conns = run["at_rate"]["rate"], run["connections"]
    at_spec = rate >= 1000 and conns >= 5000
    p99 = ours["p99_ms_at_rate"]
    all_at_rate = all(r["at_rate"]["deliveries"] >= r["at_rate"]["expected"] for r in ours["runs"])
    return [
        _row(
            "W3 highest broadcast rate held with p99 <= 2 ms",
            ">= 75% of the floor's (held: every delivery arrived, p99 <= 2 ms)",
            f"{_rate(ours['highest_rate_held_2ms'])} vs floor "
            f"{_rate(floor['highest_rate_held_2ms'])}"
            + (
                f" = {_pct(ratio)} {_range(w3['rate_2ms_ratios'], _pct)}"
                if ratio is not None
                else ""
            ),
            None if ratio is None else ratio >= 0.75,
        ),
        _row(
            f"W3 p99 broadcast-to-receipt at {rate}/s, {conns} connections",
            "<= 2 ms (at 1k/s, 5k connections)",
            "no delivery"
            if p99 is None
            else f"{p99:.2f} ms {_range(_runs(w3, 'ours', 'p99_ms_at_rate'), _ms2)} (floor "
            f"{floor['p99_ms_at_rate']:.2f} ms); every delivery arrived: {all_at_rate}",
            (p99 is not None and p99 <= 2 and all_at_rate) if at_spec else None,
        ),
    ]


def _w6_row(w6: dict[str, Any]) -> dict[str, Any]:
    stalled, base = w6["ours"]["stalled"], w6["ours"]["no_stalls"]
    ratios: list[float | None] = [
        round(a["p99_ms"] / b["p99_ms"], 3) if b["p99_ms"] else None
        for a, b in zip(stalled["runs"], base["runs"], strict=False)
    ]
    ratio = w6["p99_ratio"]
    return _row(
        "W6 others' p99 with 1% stalled",
        "within 1.1x of no stalls; per-connection buffer capped",
        f"{stalled['p99_ms']:.1f} ms vs {base['p99_ms']:.1f} ms = {_x(ratio)} "
        f"{_range(ratios, _x)}; {stalled['dropped']} of {stalled['stalled']} stalled dropped;"
        f" RSS {stalled['rss_after_kib'] / 1024:.0f} MiB vs {base['rss_after_kib'] / 1024:.0f}"
        " MiB",
        ratio <= 1.1 and stalled["dropped"] >= stalled["stalled"],
    )


def _w7_row(w7: dict[str, Any]) -> dict[str, Any]:
    e = w7["ours"]
    growth = e["rss_growth_percent"]
    after, before = e["stats_after"], e["stats_before"]
    left = after["connections"] + after["sessions"] + after.get("watched_sockets", 0)
    receivers_back = after.get("receivers") == before.get("receivers")
    return _row(
        f"W7 after {e['cycles']} cycles",
        "RSS within 5%, zero receivers left",
        f"RSS {growth:+.1f}% [1 run] (floor {w7['floor']['rss_growth_percent']:+.1f}%);"
        f" connections/sessions/watched left {left}; blinker receivers "
        f"{before.get('receivers')} -> {after.get('receivers')} (the registry's one)",
        abs(growth) <= 5 and left == 0 and receivers_back,
    )


def _w5_rows(e: dict[str, Any]) -> list[dict[str, Any]]:
    c, lat, ing = e["connections"], e["latency"], e["ingest"]
    rows = [
        _row(
            f"W5 Redis connections, {c['clients']} clients on {c['workers']} workers",
            "about 3 per worker + publishers",
            f"{c['redis_clients_of_workers']} connections ({c['listeners']} listeners) [1 run];"
            f" {c['deliveries']} of {c['clients']} clients got their event",
            c["redis_clients_of_workers"] <= 3 * c["workers"] + 1
            and c["deliveries"] >= c["clients"],
        )
    ]
    publisher, worker = lat["redis_publisher"], lat["redis_worker"]
    added: list[float | None] = [
        round(a["p50_ms"] - b["p50_ms"], 3)
        for a, b in zip(publisher["runs"], lat["inproc"]["runs"], strict=False)
    ]
    rows.append(
        _row(
            "W5 latency Redis adds, p50",
            "<= 1 ms",
            f"+{publisher['added_p50_ms']:.2f} ms from a Publisher process "
            f"{_range(added, lambda v: f'{v:+.2f} ms')}"
            f" ({publisher['p50_ms']:.2f} vs {lat['inproc']['p50_ms']:.2f} ms in-process);"
            f" +{worker['added_p50_ms']:.2f} ms publishing in the worker",
            publisher["added_p50_ms"] <= 1,
        )
    )
    rows.append(
        _row(
            "W5 one worker's ingest from Redis",
            ">= 40,000 events/s",
            f"{ing['events_per_second']:,.0f} events/s "
            f"{_range([r['events_per_second'] for r in ing['runs']], _rate)}"
            f" ({ing['events_per_cpu_second']:,.0f} per CPU second of the worker)",
            ing["events_per_second"] >= 40_000,
        )
    )
    return rows


# -- the competitors ---------------------------------------------------------------


def _vs_flask_sse(w: dict[str, Any]) -> dict[str, Any]:
    figure, target = "vs flask-sse", ">= 3x deliveries/s, <= 1/3 memory per connection, no loss"
    w4 = w.get("W4", {})
    if not (_ran(w, "W4", "flask-sse") and _ran(w, "W1", "flask-sse")):
        return _row(figure, target, "-", None)
    size, w1 = _largest(w["W1"])
    speed = rep_ratios(w4, "events_per_second", "ours", "flask-sse")
    memory = rep_ratios(w1, "rss_per_connection_bytes", "ours", "flask-sse")
    speed_x, memory_x = _median(speed), _median(memory)
    theirs = w1["flask-sse"]["runs"][0]["rss_kib_by_process"]
    got, expected = delivered_and_expected(w, "ours")
    value = (
        f"W4 {_rate(w4['ours']['events_per_second'])} vs "
        f"{_rate(w4['flask-sse']['events_per_second'])}"
        + (f" = {_x(speed_x)} {_range(speed, _x)}" if speed_x is not None else "")
        + f"; W1 N={size} RSS/conn {_kib(w1['ours']['rss_per_connection_bytes'])} vs "
        f"{_kib(w1['flask-sse']['rss_per_connection_bytes'])} (worker and its redis-server: "
        + ", ".join(f"{name} {b - a:+,} KiB" for name, (a, b) in theirs.items())
        + f" in rep 1, {w1['flask-sse']['connections']:.0f} held)"
        + (f" = {_x(memory_x)} {_range(memory, _x)}" if memory_x is not None else "")
        + f"; loss (W2, W4): ours delivered {got:,} of {expected:,}, {_lost(w, 'flask-sse')}"
    )
    met = (
        speed_x is not None
        and memory_x is not None
        and speed_x >= 3
        and memory_x <= 1 / 3
        and got >= expected
    )
    return _row(figure, target, value, met)


def _vs_starlette(w: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per workload sse-starlette ran: ours ahead on each figure of it."""
    kind, target = "sse-starlette", "ours ahead"
    rows = []
    if _ran(w, "W1", kind):
        size, e = _largest(w["W1"])
        parts, ahead = [], []
        for key, label, fmt, lower in (
            ("rss_per_connection_bytes", "RSS/conn", _kib, True),
            ("idle_cpu_percent", "idle CPU", lambda v: f"{v:.2f}%", True),
            ("connect_rate", "connects/s", _rate, False),
        ):
            ratios = rep_ratios(e, key, "ours", kind)
            ratio = _median(ratios)
            parts.append(
                f"{label} {fmt(e['ours'][key])} vs {fmt(e[kind][key])}"
                + (f" = {_x(ratio)} {_range(ratios, _x)}" if ratio is not None else "")
            )
            if ratio is not None:
                ahead.append(ratio < 1 if lower else ratio > 1)
        rows.append(
            _row(
                f"vs sse-starlette/uvicorn, W1 idle (N={size})",
                f"{target}: less memory and idle CPU, faster connects",
                "; ".join(parts),
                all(ahead) if ahead else None,
            )
        )
    if _ran(w, "W2", kind):
        parts, ahead = [], []
        for size, e in w["W2"].items():
            ratios = rep_ratios(e, "to_last_ms", "ours", kind)
            ratio = _median(ratios)
            parts.append(
                f"N={size} {_ms(e['ours']['to_last_ms'])} vs "
                + ("-" if e[kind]["to_last_ms"] is None else _ms(e[kind]["to_last_ms"]))
                + (f" = {_x(ratio)} {_range(ratios, _x)}" if ratio is not None else "")
            )
            ahead.append(ratio is not None and ratio < 1)
        got, expected = delivered_and_expected({"W2": w["W2"]}, "ours")
        theirs = delivered_and_expected({"W2": w["W2"]}, kind)
        parts.append(
            f"delivered: ours {got:,} of {expected:,}, theirs {theirs[0]:,} of {theirs[1]:,}"
        )
        rows.append(
            _row(
                "vs sse-starlette/uvicorn, W2 hot session",
                f"{target}: sooner to the last delivery at every N, nothing lost",
                "; ".join(parts),
                all(ahead) and got >= expected,
            )
        )
    if _ran(w, "W3", kind):
        e = w["W3"]
        p99 = rep_ratios(e, "p99_ms_at_rate", "ours", kind)
        p99_x = _median(p99)
        rate = e["ours"]["runs"][0]["at_rate"]["rate"]
        mine, theirs_rate = e["ours"]["highest_rate_held_2ms"], e[kind]["highest_rate_held_2ms"]
        rows.append(
            _row(
                "vs sse-starlette/uvicorn, W3 many sessions",
                f"{target}: lower p99 at {rate}/s, at least its rate held with p99 <= 2 ms",
                f"p99 at {rate}/s {_cell(e['ours']['p99_ms_at_rate'], _ms2)} vs "
                f"{_cell(e[kind]['p99_ms_at_rate'], _ms2)}"
                + (f" = {_x(p99_x)} {_range(p99, _x)}" if p99_x is not None else "")
                + f"; held with p99 <= 2 ms {_rate(mine)} vs {_rate(theirs_rate)} "
                f"{_range(_runs(e, kind, 'highest_rate_held_2ms'), _rate)}",
                p99_x is not None and p99_x < 1 and mine >= theirs_rate,
            )
        )
    if _ran(w, "W4", kind):
        e = w["W4"]
        ratios = rep_ratios(e, "events_per_second", "ours", kind)
        ratio = _median(ratios)
        rows.append(
            _row(
                "vs sse-starlette/uvicorn, W4 bursts",
                f"{target}: more delivered events/s",
                f"{_rate(e['ours']['events_per_second'])} vs {_rate(e[kind]['events_per_second'])}"
                + (f" = {_x(ratio)} {_range(ratios, _x)}" if ratio is not None else ""),
                ratio is not None and ratio > 1,
            )
        )
    return rows or [_row("vs sse-starlette/uvicorn", "ahead on every workload", "-", None)]


# -- LATEST.md ---------------------------------------------------------------------


def _cell(value: float | None, fmt: Callable[[float], str]) -> str:
    return "-" if value is None else fmt(value)


def _kinds(entry: dict[str, Any]) -> list[str]:
    return [kind for kind in SERVERS if kind in entry]


def _servers(document: dict[str, Any]) -> list[str]:
    gunicorn = "`gunicorn -k gevent -w 1 --worker-connections 20000 --backlog 4096"
    lines = [
        "- floor: `python -m benchmarks.floor` (gevent StreamServer, chunked, no coalescing)",
        f"- Flask floor: {gunicorn} 'benchmarks.flask_floor:create_app()'` (a bare Flask"
        " route: connected frame, then heartbeats; W1 only)",
        f"- ours: {gunicorn} 'benchmarks.app:create_app()'`, in-process bus, heartbeat 5 s",
    ]
    described = document.get("competitors") or {}
    if "sse-starlette" in described:
        d = described["sse-starlette"]
        v = d["versions"]
        lines.append(
            f"- sse-starlette {v['sse-starlette']} (starlette {v['starlette']}, anyio"
            f" {v['anyio']}) on uvicorn {v['uvicorn']}, one process, loop {d.get('loop')},"
            f" HTTP {d.get('http')} (uvloop {v['uvloop']}, httptools {v['httptools']}):"
            " `uvicorn benchmarks.starlette_app:app --backlog 4096 --no-access-log`;"
            " ping (heartbeat) 5 s"
        )
    if "flask-sse" in described:
        v = described["flask-sse"]["versions"]
        lines.append(
            f"- flask-sse {v['flask-sse']} (redis-py {v['redis']}, hiredis {v['hiredis']};"
            f" Flask {v['flask']}, gunicorn {v['gunicorn']}, gevent {v['gevent']}):"
            f" {gunicorn} 'benchmarks.flask_sse_app:create_app()'`, one Redis pub/sub"
            f" connection per stream to a redis-server {v['redis-server']} of its own, pinned"
            " to the server's CPU; its memory and CPU are counted with the worker's;"
            " no heartbeat (flask-sse has none)"
        )
    if not described:
        lines.append("- sse-starlette and flask-sse: not run (`--competitors` runs them)")
    return lines


def write_summary(document: dict[str, Any], path: Path, json_name: str, images: list[str]) -> None:
    m = document["machine"]
    w = document["workloads"]
    lines = [
        f"# Benchmark results: {document['name']} ({document['date']})",
        "",
        f"- Command: `{document['command']}` ({document['duration_seconds']:.0f} s)",
        f"- Figures: `{json_name}` (every repetition; below are medians, and ranges are"
        " [min to max over repetitions])",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux "
        f"{m['kernel']}, Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        f"- {m['pinning']}; RLIMIT_NOFILE {m['nofile']}; repetitions {document['plan']['reps']}",
        *_servers(document),
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
    if images:
        lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in images]
    if "W1" in w:
        lines += _w1_table(w["W1"])
    if "W2" in w:
        lines += _w2_table(w["W2"])
    if "W4" in w:
        lines += _w4_table(w["W4"])
    if "W3" in w:
        lines += _w3_table(w["W3"])
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
        lines += _w5_summary(w["W5"])
    lines.append("")
    path.write_text("\n".join(lines))


def _w1_table(w1: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## W1 idle (RSS per connection, idle CPU over the window, connect rate)",
        "",
        "flask-sse's RSS is its worker's and its redis-server's together (split in the JSON).",
        "",
        "| N | server | connected | RSS/conn | idle CPU | connects/s | heartbeats | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size, e in w1.items():
        for kind in _kinds(e):
            k = e[kind]
            failed = ", ".join(str(run["failed"]) for run in k["runs"])
            connected = f"{k['connections']:.0f}" + (
                f" of {size} (failed by rep: {failed})" if k["connections"] < int(size) else ""
            )
            heartbeats = _median([run["heartbeats_received"] for run in k["runs"]])
            ratio = ""
            if kind == "ours":
                ratio = f"RSS {_x(e['rss_ratio'])} floor"
            lines.append(
                f"| {size} | {kind} | {connected} | {_kib(k['rss_per_connection_bytes'])} | "
                f"{k['idle_cpu_percent']:.2f}% | {k['connect_rate']:,.0f} | "
                f"{_cell(heartbeats, lambda v: f'{v:,.0f}')} | {ratio} |"
            )
    return lines


def _w2_table(w2: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## W2 hot session (one broadcast to N listeners; medians of broadcasts, then of"
        " repetitions)",
        "",
        "| N | server | connected | delivered | to last delivery | p50 | p99 | ratio to floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size, e in w2.items():
        for kind in _kinds(e):
            k = e[kind]
            got, expected = delivered_and_expected({"W2": {size: e}}, kind)
            ratio = _median(rep_ratios(e, "to_last_ms", kind, "floor"))
            failed = [
                b["publish_status"]
                for run in k["runs"]
                for b in run["broadcasts"]
                if b["publish_status"] != 200
            ]
            answered = f" (publish answered {', '.join(map(str, failed))})" if failed else ""
            lines.append(
                f"| {size} | {kind} | {_cell(k['connections'], lambda v: f'{v:.0f}')} | "
                f"{got:,} of {expected:,}{answered} | {_cell(k['to_last_ms'], _ms)} | "
                f"{_cell(k['p50_ms'], _ms)} | {_cell(k['p99_ms'], _ms)} | "
                f"{'' if kind == 'floor' else _cell(ratio, _x)} |"
            )
    return lines


def _w4_table(e: dict[str, Any]) -> list[str]:
    run = e["ours"]["runs"][0]
    lines = [
        "",
        f"## W4 bursts ({run['events_per_session']} events to each of {run['sessions']}"
        f" sessions, {run['size']} connections, in one request)",
        "",
        "The floor writes every event on its own; ours coalesces what is queued.",
        "",
        "| server | connected | delivered | events/s | range | ratio to floor |",
        "|---|---|---|---|---|---|",
    ]
    for kind in _kinds(e):
        k = e[kind]
        got, expected = delivered_and_expected({"W4": e}, kind)
        ratio = _median(rep_ratios(e, "events_per_second", kind, "floor"))
        connected = _median([r["connections"] for r in k["runs"]])
        lines.append(
            f"| {kind} | {_cell(connected, lambda v: f'{v:.0f}')} | {got:,} of {expected:,} | "
            f"{_rate(k['events_per_second'])} | "
            f"{_range(_runs(e, kind, 'events_per_second'), _rate)} | "
            f"{'' if kind == 'floor' else _cell(ratio, _x)} |"
        )
    return lines


def _w3_table(e: dict[str, Any]) -> list[str]:
    run = e["ours"]["runs"][0]
    at = run["at_rate"]
    lines = [
        "",
        f"## W3 many sessions ({run['size']} connections over {run['sessions']} sessions,"
        " steady random broadcasts; heartbeat 30 s)",
        "",
        f"At {at['rate']}/s for {at['seconds']} s, then a ramp of"
        f" {run['ramp'][0]['seconds'] if run['ramp'] else '-'} s steps until one is not held"
        " (held: every delivery arrived, p99 below 50 ms, the last within 250 ms of the end)."
        " The target's rate is the highest step with every delivery and p99 <= 2 ms.",
        "",
        f"| server | connected | p50 at {at['rate']}/s | p99 at {at['rate']}/s | highest held |"
        " highest held, p99 <= 2 ms |",
        "|---|---|---|---|---|---|",
    ]
    for kind in _kinds(e):
        k = e[kind]
        p50 = _median([r["at_rate"]["p50_ms"] for r in k["runs"]])
        lines.append(
            f"| {kind} | {_median([r['connections'] for r in k['runs']]) or 0:.0f} | "
            f"{_cell(p50, _ms2)} | "
            f"{_cell(k['p99_ms_at_rate'], _ms2)} | "
            f"{_rate(k['highest_rate_held'])} | {_rate(k['highest_rate_held_2ms'])} "
            f"{_range(_runs(e, kind, 'highest_rate_held_2ms'), _rate)} |"
        )
    lines.append("")
    for kind in _kinds(e):
        for index, r in enumerate(e[kind]["runs"]):
            steps = [r["at_rate"], *r["ramp"]]
            described = ", ".join(
                f"{s['rate']}/s p99 {_cell(s['p99_ms'], lambda v: f'{v:.1f} ms')}"
                f" {s['deliveries']}/{s['expected']}{'' if s['held'] else ' NOT held'}"
                for s in steps
            )
            lines.append(f"- {kind} rep {index + 1}: {described}")
    return lines


def _w5_summary(e: dict[str, Any]) -> list[str]:
    lines = [
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
    return lines
