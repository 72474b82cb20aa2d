"""Medians over runs, ratios between revisions, the Markdown tables and the latency plot."""

from __future__ import annotations

import statistics
from pathlib import Path

__all__ = ["median_of", "ratios", "render_markdown", "plot_latency"]

# Headline figures compared between revisions (current / reference).
_WRITES = ["latency_ms.p50", "latency_ms.p99", "commit_to_frame_ms.p50", "commit_to_frame_ms.p99"]
COMPARED = {
    **{s: [*_WRITES, "evaluations_per_write", "cpu_s_server"] for s in "abhi"},
    "c": [*_WRITES, "evaluations_per_write", "idle_after_last_write_ms", "cpu_s_server"],
    "g": [*_WRITES, "subscribe_ms.p99", "evaluations_per_write", "cpu_s_server"],
    "e": ["last_frame_ms", "evaluations_per_affected_observer", "cpu_s_server"],
    "f": [
        "ratio_no_observer",
        "ratio_one_observer",
        "cpu_ratio_no_observer",
        "cpu_ratio_one_observer",
    ],
}


def _pair(found: dict | None) -> str:
    """'p50 / p99' of a percentile dict; '' when the revision did not report it."""
    if not found:
        return ""
    return f"{_fmt(found.get('p50'))} / {_fmt(found.get('p99'))}"


def median_of(runs: list[dict]) -> dict:
    """The median of every numeric leaf over the runs (other leaves: the first run's)."""
    runs = [r for r in runs if "error" not in r]
    if not runs:
        return {}
    merged: dict = {}
    for key in dict.fromkeys(k for r in runs for k in r):
        if key.startswith("_"):
            continue
        values = [r[key] for r in runs if key in r]
        if all(isinstance(v, dict) for v in values):
            merged[key] = median_of(values)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            merged[key] = round(statistics.median(values), 3)
        else:
            numbers = [v for v in values if isinstance(v, (int, float))]
            merged[key] = round(statistics.median(numbers), 3) if numbers else values[0]
    if "cpu_s" in merged:
        # Server side: everything but the load client (which is the benchmark, not the app).
        merged["cpu_s_server"] = round(
            sum(v for k, v in merged["cpu_s"].items() if k != "load-client"), 2
        )
    return merged


def _get(result: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(result, dict) or part not in result:
            return None
        result = result[part]
    return result


def ratios(current: dict, reference: dict) -> dict:
    """current / reference for the compared figures of one scenario."""
    out = {}
    for name in COMPARED.get(current.get("scenario", ""), []):
        a, b = _get(current, name), _get(reference, name)
        out[name] = round(a / b, 2) if isinstance(a, (int, float)) and b else None
    return out


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines + [""]


def render_markdown(report: dict) -> str:
    """The tables of one suite run: one database, one or two revisions."""
    meta = report["meta"]
    labels = list(report["results"])
    lines = [
        f"### {meta['database']} — medians of {meta['runs']} run(s), protocol `{meta['protocol']}`",
        "",
        f"`{meta['command']}`",
        "",
    ]
    for label in labels:
        rev = meta["revisions"][label]
        lines.append(f"- `{label}`: {rev['commit']} — imports `{rev['package']}`")
    lines.append("")
    write_rows, e_rows, f_rows, cpu_rows = [], [], [], []
    for scenario in meta["scenarios"]:
        for label in labels:
            r = report["results"][label].get(scenario) or {}
            if not r:
                continue
            if scenario in ("a", "b", "c", "g", "h", "i"):
                lat = r.get("latency_ms", {})
                write_rows.append(
                    [
                        scenario,
                        label,
                        lat.get("p50"),
                        lat.get("p90"),
                        lat.get("p99"),
                        f"{_fmt(r.get('changes_delivered'))} / {_fmt(r.get('changes_expected'))}",
                        r.get("version_gaps"),
                        r.get("stale_clients"),
                        r.get("evaluations_per_write"),
                        r.get("patch_ms_p50"),
                        _pair(r.get("commit_to_frame_ms")),
                        r.get("idle_after_last_write_ms"),
                        _pair(r.get("subscribe_ms")),
                        r.get("cpu_s_server"),
                    ]
                )
            elif scenario == "e":
                e_rows.append(
                    [
                        label,
                        r.get("transaction_ms"),
                        r.get("first_frame_ms"),
                        r.get("last_frame_ms"),
                        f"{_fmt(r.get('changes_delivered'))} / {_fmt(r.get('changes_expected'))}",
                        r.get("stale_clients"),
                        r.get("evaluations"),
                        r.get("evaluations_per_affected_observer"),
                        r.get("cpu_s_server"),
                    ]
                )
            elif scenario == "f":
                f_rows.append(
                    [
                        label,
                        r.get("us_per_save_not_installed"),
                        r.get("us_per_save_no_observer"),
                        r.get("us_per_save_one_observer"),
                        r.get("ratio_no_observer"),
                        r.get("ratio_one_observer"),
                        r.get("cpu_ratio_no_observer"),
                        r.get("cpu_ratio_one_observer"),
                        r.get("evaluations_one_observer"),
                    ]
                )
            if "cpu_s" in r:
                cpu, rss = r["cpu_s"], r.get("peak_rss_mb", {})
                roles = [k for k in cpu if k != "load-client"]
                cpu_rows.append(
                    [
                        scenario,
                        label,
                        r.get("window_s"),
                        ", ".join(f"{k} {_fmt(cpu[k])}" for k in roles),
                        cpu.get("load-client"),
                        ", ".join(f"{k} {_fmt(rss[k])}" for k in rss),
                    ]
                )
    if write_rows:
        lines += _table(
            [
                "scenario",
                "revision",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "changes delivered / expected",
                "version gaps",
                "stale clients",
                "evaluations / write",
                "PATCH p50 ms",
                "commit → frame p50 / p99 ms",
                "idle after last write ms",
                "subscribe p50 / p99 ms",
                "server CPU s",
            ],
            write_rows,
        )
    if e_rows:
        lines.append("(e) one transaction of 1,000 saves over 10 of 20 observed groups:")
        lines.append("")
        lines += _table(
            [
                "revision",
                "transaction ms",
                "commit → first frame ms",
                "commit → last frame ms",
                "changes delivered / expected",
                "stale clients",
                "evaluations",
                "evaluations / affected observer",
                "server CPU s",
            ],
            e_rows,
        )
    if f_rows:
        lines.append("(f) one autocommitted `save()`, µs (ratio to the app not installed):")
        lines.append("")
        lines += _table(
            [
                "revision",
                "not installed",
                "installed, no observer",
                "installed, 1 dependent observer",
                "ratio, no observer",
                "ratio, 1 observer",
                "CPU ratio, no observer",
                "CPU ratio, 1 observer",
                "evaluations during the loop",
            ],
            f_rows,
        )
    if cpu_rows:
        lines.append("CPU seconds over the measured window and peak RSS (MiB), per process:")
        lines.append("")
        lines += _table(
            ["scenario", "revision", "window s", "CPU s", "load client CPU s", "peak RSS MiB"],
            cpu_rows,
        )
    if report.get("ratios"):
        lines.append(f"Ratios `{labels[0]}` / `{labels[1]}` (below 1: the current one is lower):")
        lines.append("")
        rows = [
            [scenario, name, value]
            for scenario, figures in report["ratios"].items()
            for name, value in figures.items()
        ]
        lines += _table(["scenario", "figure", "ratio"], rows)
    return "\n".join(lines)


def plot_latency(latencies: dict[str, dict[str, list[float]]], title: str, path: Path) -> None:
    """One panel per scenario: the latency distribution (ECDF, log scale) of each revision."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a CI machine
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    scenarios = sorted({s for by_scenario in latencies.values() for s in by_scenario})
    if not scenarios:
        return
    fig, axes = plt.subplots(1, len(scenarios), figsize=(4 * len(scenarios), 3.4), squeeze=False)
    for ax, scenario in zip(axes[0], scenarios, strict=True):
        for label, by_scenario in latencies.items():
            values = sorted(v * 1000 for v in by_scenario.get(scenario, []) if v > 0)
            if not values:
                continue
            ys = [(i + 1) / len(values) for i in range(len(values))]
            ax.step(values, ys, where="post", label=label)
        ax.set_xscale("log")
        # 1-2-5 ticks in plain numbers: matplotlib's 10^x labels collide on short ranges.
        ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"({scenario})")
        ax.set_xlabel("commit → frame, ms" if scenario == "e" else "write → frame, ms")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("fraction of changes")
    axes[0][0].legend(loc="lower right", fontsize="small")
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
