"""The plots of a run, every server on one chart (PNG, matplotlib):

``w2-fanout<suffix>.png``
    W2: time from the broadcast to the last delivery against the number of
    listeners; the bars span the repetitions (min to max), a point where events
    were lost says how many arrived, and a size where none arrived says so.
``w1-memory<suffix>.png``
    W1: RSS per idle connection against the connections held (flask-sse's with
    its redis-server's), bars over the repetitions.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .report import SERVERS, delivered_and_expected

WIDTH, HEIGHT, DPI = 8.0, 5.0, 100
STYLE: dict[str, dict[str, Any]] = {
    "floor": {"color": "#555555", "marker": "s", "linestyle": "--", "label": "floor (gevent)"},
    "flask-floor": {
        "color": "#999999",
        "marker": "D",
        "linestyle": ":",
        "label": "Flask floor (gunicorn gevent)",
    },
    "ours": {"color": "#1f77b4", "marker": "o", "linestyle": "-", "label": "flask-sse-sessions"},
    "sse-starlette": {
        "color": "#2ca02c",
        "marker": "^",
        "linestyle": "-",
        "label": "sse-starlette (uvicorn)",
    },
    "flask-sse": {
        "color": "#d62728",
        "marker": "v",
        "linestyle": "-",
        "label": "flask-sse + Redis",
    },
}


def require() -> None:
    """Exit with what to install when matplotlib is missing (before anything runs)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        sys.exit(
            "The benchmark's plots need matplotlib: pip install -e '.[bench]'"
            " (or pip install matplotlib)"
        )


def write_plots(document: dict[str, Any], out: Path, suffix: str = "") -> list[Path]:
    """The plots of the workloads the run has, in ``out``; their paths."""
    import matplotlib

    matplotlib.use("Agg")
    written = []
    workloads = document["workloads"]
    if "W2" in workloads:
        written.append(_fanout(workloads["W2"], out / f"w2-fanout{suffix}.png"))
    if "W1" in workloads:
        written.append(_memory(workloads["W1"], out / f"w1-memory{suffix}.png"))
    return written


def _spread(values: list[float], centre: float) -> tuple[float, float]:
    return centre - min(values), max(values) - centre


def _axes() -> Any:
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(WIDTH, HEIGHT), dpi=DPI)[1]


def _finish(axes: Any, path: Path, sizes: list[int], xlabel: str, ylabel: str, title: str) -> Path:
    """Label, save and close the figure of ``axes``."""
    import matplotlib.pyplot as plt

    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.set_xticks(sizes)
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend()
    figure = axes.figure
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _fanout(w2: dict[str, Any], path: Path) -> Path:
    axes = _axes()
    sizes = sorted(int(size) for size in w2)
    for kind in SERVERS:
        points = []
        for size in sizes:
            entry = w2[str(size)]
            if kind not in entry:
                continue
            if entry[kind]["to_last_ms"] is None:
                axes.annotate(
                    f"{STYLE[kind]['label']}: nothing delivered",
                    (size, 0),
                    textcoords="offset points",
                    xytext=(-4, 6),
                    ha="right",
                    fontsize=8,
                    color=STYLE[kind]["color"],
                )
                continue
            runs = [r["to_last_ms"] for r in entry[kind]["runs"] if r["to_last_ms"] is not None]
            got, expected = delivered_and_expected({"W2": {str(size): entry}}, kind)
            points.append((size, entry[kind]["to_last_ms"], runs, got, expected))
        if not points:
            continue
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        spread = list(zip(*(_spread(p[2], p[1]) for p in points), strict=True))
        axes.errorbar(xs, ys, yerr=spread, capsize=3, **STYLE[kind])
        for size, y, _, got, expected in points:
            if got < expected:
                axes.annotate(
                    f"{got / expected:.0%} delivered",
                    (size, y),
                    textcoords="offset points",
                    xytext=(4, 6),
                    fontsize=8,
                    color=STYLE[kind]["color"],
                )
    return _finish(
        axes,
        path,
        sizes,
        "listeners of one session",
        "broadcast to last delivery (ms)",
        "W2 hot session: one broadcast to N listeners (lower is better)",
    )


def _memory(w1: dict[str, Any], path: Path) -> Path:
    axes = _axes()
    sizes = sorted(int(size) for size in w1)
    for kind in SERVERS:
        points = []
        for size in sizes:
            entry = w1[str(size)]
            if kind not in entry:
                continue
            kib = entry[kind]["rss_per_connection_bytes"] / 1024
            runs = [r["rss_per_connection_bytes"] / 1024 for r in entry[kind]["runs"]]
            points.append((entry[kind]["connections"], kib, runs))
        if not points:
            continue
        spread = list(zip(*(_spread(p[2], p[1]) for p in points), strict=True))
        axes.errorbar(
            [p[0] for p in points], [p[1] for p in points], yerr=spread, capsize=3, **STYLE[kind]
        )
    return _finish(
        axes,
        path,
        sizes,
        "idle connections held",
        "RSS per connection (KiB)",
        "W1 idle: server memory per connection (lower is better)",
    )
