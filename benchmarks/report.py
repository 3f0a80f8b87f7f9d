"""Results → JSON, a markdown table and a PNG (images completed over time, bound drawn)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["markdown", "plot", "write_results"]

COLUMNS = (
    ("contender", "contender"),
    ("makespan", "makespan s (AWS s)"),
    ("images_per_s", "images/s (AWS)"),
    ("bound", "bound s (AWS s)"),
    ("efficiency", "efficiency (excl. startup)"),
    ("startup", "startup s"),
    ("create", "CreateImage calls / throttled"),
    ("di", "DescribeImages / image"),
    ("dup", "dup"),
    ("failed", "failed / lost"),
    ("cpu", "CPU ms / image"),
    ("rss", "peak RSS MB"),
)


def _f(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _cells(row: dict[str, Any]) -> dict[str, str]:
    if "error" in row:
        return {"contender": row["contender"], "makespan": f"error: {row['error']}"}
    if row["makespan_s"] is None:
        makespan = (
            f"DNF: {row['available']}/{row['targets']} in {row['elapsed_s']:.1f} "
            f"({row['elapsed_s'] * row['time_scale']:.0f})"
        )
    else:
        makespan = f"{row['makespan_s']:.2f} ({row['makespan_aws_s']:.0f})"
    return {
        "contender": row["contender"],
        "makespan": makespan,
        "images_per_s": f"{row['images_per_s']:.1f} ({row['images_per_aws_s']:.2f})",
        # A cut-off run created only part of the fleet: its bound would be partial.
        "bound": f"{row['bound_s']:.2f} ({row['bound_aws_s']:.0f})" if row["finished"] else "—",
        "efficiency": f"{_f(row['efficiency'], '.3f')} ({_f(row['efficiency_imaging'], '.3f')})",
        "startup": _f(row["first_create_s"], ".2f"),
        "create": f"{row['create_calls']} / {row['create_throttled']} "
        f"({row['create_throttled_pct']:.1f}%)",
        "di": _f(row["describe_images_per_image"], ".3f"),
        "dup": str(row["duplicates"]),
        "failed": f"{row['failed']} / {row['lost']}",
        "cpu": _f(row["cpu_ms_per_image"], ".2f"),
        "rss": f"{row['peak_rss_mb']:.0f}",
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# fleetimage benchmark results",
        "",
        f"Command: `{results['command']}`  ",
        f"Date: {results['date']}; host: {results['host']}; Python {results['python']}.",
        "",
        "Times are wall seconds under the scenario's time scale, AWS-equivalent seconds in "
        "parentheses. DNF: cut off at the time limit (images done/targets in elapsed s). "
        "See benchmarks/README.md for what each column means.",
    ]
    for name, sc in results["scenarios"].items():
        lines += [
            "",
            f"## {name}",
            "",
            f"{sc['description']} — {sc['targets']} targets, time scale {sc['time_scale']:g}, "
            f"poll interval {sc['poll_interval_s']:g} AWS s.",
            "",
            "| " + " | ".join(title for _, title in COLUMNS) + " |",
            "|" + "---|" * len(COLUMNS),
        ]
        for row in sc["rows"]:
            cells = _cells(row)
            lines.append("| " + " | ".join(cells.get(key, "") for key, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["scenarios"])
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names, strict=False):
        sc = results["scenarios"][name]
        bound = None
        for row in sc["rows"]:
            if "error" in row:
                continue
            times = [t for t, ok in row["completions"] if ok]
            ax.step([0.0, *times], range(len(times) + 1), where="post", label=row["contender"])
            if row["contender"] == "fleetimage":
                bound = row["bound_s"]
        if bound:
            ax.axvline(bound, color="black", linestyle="--", linewidth=1, label="bound")
        ax.axhline(sc["targets"], color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"{name} (time scale {sc['time_scale']:g})", fontsize=10)
        ax.set_xlabel("wall seconds (x time scale = AWS seconds)")
        ax.set_ylabel("images available")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(results: dict[str, Any], out_dir: Path, stem: str) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / f"{stem}.json",
        "md": out_dir / f"{stem}.md",
        "png": out_dir / f"{stem}.png",
    }
    paths["json"].write_text(json.dumps(results, indent=1) + "\n", "utf-8")
    paths["md"].write_text(markdown(results), "utf-8")
    plot(results, paths["png"])
    return paths
