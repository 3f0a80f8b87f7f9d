"""Results → JSON, a markdown table and a PNG (images completed over time, bound drawn)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.results_format import compact, completion_times, dumps

__all__ = ["markdown", "plot", "write_results"]

HEADLINE = ("fleetimage", "boto3-batch-standard", "boto3-batch-adaptive")
YARDSTICKS = ("boto3-batch-standard", "boto3-batch-adaptive")

COLUMNS = (
    ("contender", "contender (runs)"),
    ("makespan", "makespan s (AWS s)"),
    ("images_per_s", "images/s (AWS)"),
    ("efficiency", "efficiency"),
    ("efficiency_imaging", "efficiency_imaging"),
    ("startup", "startup s"),
    ("create", "CreateImage calls / throttled"),
    ("di", "DescribeImages polls / image (all calls)"),
    ("di_other", "DescribeImages lookups (listings) / failed / throttled"),
    ("dup", "dup"),
    ("failed", "failed / lost"),
    ("cpu", "CPU ms / image"),
    ("cpu_total", "CPU s (of it in children), cores busy"),
    ("rss", "peak RSS MB"),
)


def _f(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _makespan(row: dict[str, Any]) -> str:
    if row["makespan_s"] is not None:
        return f"{row['makespan_s']:.2f} ({row['makespan_aws_s']:.0f})"
    ts = row["time_scale"]
    text = (
        f"DNF: {row['available']}/{row['targets']} in {row['elapsed_s']:.1f} "
        f"({row['elapsed_s'] * ts:.0f})"
    )
    if row.get("projected_makespan_s") is not None:
        p = row["projected_makespan_s"]
        text += f"; projected {p:.0f} ({p * ts:.0f})"
    return text


def _cells(row: dict[str, Any]) -> dict[str, str]:
    runs = f"{row['contender']} ({row.get('runs', 1)})"
    if "error" in row:
        return {"contender": runs, "makespan": f"error: {row['error']}"}
    return {
        "contender": runs,
        "makespan": _makespan(row),
        "images_per_s": "—"
        if row["images_per_s"] is None
        else f"{row['images_per_s']:.1f} ({row['images_per_aws_s']:.2f})",
        "efficiency": _f(row["efficiency"], ".3f"),
        "efficiency_imaging": _f(row["efficiency_imaging"], ".3f"),
        "startup": _f(row["first_create_s"], ".2f"),
        "create": f"{row['create_calls']:.0f} / {row['create_throttled']:.0f} "
        f"({row['create_throttled_pct']:.1f}%)",
        "di": f"{_f(row.get('describe_images_per_image'), '.3f')} "
        f"({_f(row.get('describe_images_calls_per_image'), '.3f')})",
        "di_other": _di_other(row),
        "dup": f"{row.get('duplicates_max', row['duplicates'])}",
        "failed": f"{row['failed']:.0f} / {row.get('lost_max', row['lost'])}",
        "cpu": _f(row["cpu_ms_per_image"], ".2f"),
        "cpu_total": f"{row['cpu_s']:.1f} ({row.get('cpu_children_s') or 0.0:.1f}), "
        + _f(row.get("cores_used"), ".2f"),
        "rss": f"{row['peak_rss_mb']:.0f}",
    }


def _di_other(row: dict[str, Any]) -> str:
    """Counts (medians): by-name lookups (listings), failed, throttled; "—" where a results
    file predates the split (it has only the throttled count)."""
    lookups = _f(row.get("describe_images_lookups"), ".0f")
    listings = row.get("describe_images_listings")
    if listings:
        lookups += f" ({listings:.0f})"
    return (
        f"{lookups} / {_f(row.get('describe_images_failed'), '.0f')} "
        f"/ {_f(row.get('describe_images_throttled'), '.0f')}"
    )


def _eff(row: dict[str, Any] | None) -> str:
    if row is None or "error" in row:
        return "—"
    if row["makespan_s"] is None:
        return f"DNF {row['available']}/{row['targets']}"
    if row["failed"]:
        return f"{row['makespan_s']:.2f} s, {row['failed']:.0f} failed"
    if row["efficiency"] is None:
        return f"{row['makespan_s']:.2f} s"
    return f"{row['makespan_s']:.2f} s: {row['efficiency']:.3f} / {row['efficiency_imaging']:.3f}"


def summary(results: dict[str, Any]) -> list[str]:
    from benchmarks.harness import TOLERANCE, compare

    lines = [
        "| scenario | bound s (AWS s) | fleetimage | boto3-batch-standard | boto3-batch-adaptive "
        "| fleetimage vs the better boto3-batch |",
        "|---|---|---|---|---|---|",
    ]
    for name, sc in results["scenarios"].items():
        rows = {r["contender"]: r for r in sc["rows"]}
        bound = "—" if sc["bound_s"] is None else f"{sc['bound_s']:.2f} ({sc['bound_aws_s']:.0f})"
        batch = [rows[c] for c in YARDSTICKS if c in rows and "error" not in rows[c]]
        finished = [r for r in batch if r["makespan_s"] is not None]
        best = min(finished, key=lambda r: r["makespan_s"]) if finished else None
        verdict = (
            compare(rows["fleetimage"], best)
            if (best is not None and "fleetimage" in rows)
            else "—"
        )
        lines.append(
            f"| {name} | {bound} | {_eff(rows.get('fleetimage'))} "
            f"| {_eff(rows.get('boto3-batch-standard'))} | {_eff(rows.get('boto3-batch-adaptive'))} "
            f"| {verdict} |"
        )
    lines += [
        "",
        "Cells: median makespan (wall s): `efficiency` / `efficiency_imaging` (bound / makespan,"
        " from the start of the run / from the contender's first CreateImage). Makespans within "
        f"{TOLERANCE:.0%} of each other are a tie.",
        *_workers_lines(results),
    ]
    return lines


def _workers_lines(results: dict[str, Any]) -> list[str]:
    """fleetimage with N worker processes against itself in one process, where both ran."""
    lines = []
    for name, sc in results["scenarios"].items():
        rows = {r["contender"]: r for r in sc["rows"] if "error" not in r}
        one = rows.get("fleetimage")
        for contender, row in rows.items():
            if one is None or row.get("workers", 1) <= 1:
                continue
            a, b = one.get("images_per_s"), row.get("images_per_s")
            ratio = "—" if not (a and b) else f"{b / a:.2f}x"
            lines.append(
                f"- {name}: {contender} ({row['workers']} workers) reaches {ratio} the images/s "
                f"of fleetimage in one process; CPU {_f(row['cpu_ms_per_image'], '.2f')} against "
                f"{_f(one['cpu_ms_per_image'], '.2f')} ms per image."
            )
    return ["", *lines] if lines else []


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# fleetimage benchmark results",
        "",
        f"Command: `{results['command']}`  ",
        f"Date: {results['date']}; host: {results['host']}; Python {results['python']}; "
        f"total {results.get('total_wall_s', 0):.0f} s.",
        "",
        "Times are wall seconds under the scenario's time scale, AWS-equivalent seconds in "
        "parentheses. Every figure is the median over the contender's runs (the number in "
        "parentheses after its name); dup and lost are the worst run. DNF: cut off (images "
        "done/targets in elapsed s) and, labelled, the makespan projected from the rate it "
        "reached; per-image figures are not given for a run that did not finish. The bound is "
        "computed from the fleet alone (see benchmarks/README.md), the same for every contender.",
        "",
        "## Summary",
        "",
        *summary(results),
    ]
    for name, sc in results["scenarios"].items():
        bound = (
            "no bound (no buckets)"
            if sc["bound_s"] is None
            else f"bound {sc['bound_s']:.2f} s ({sc['bound_aws_s']:.1f} AWS s, lane "
            f"{sc['bound_lane']})"
        )
        lines += [
            "",
            f"## {name}",
            "",
            f"{sc['description']} — {sc['targets']} targets, time scale {sc['time_scale']:g}, "
            f"bucket refill {sc['settings']['refill']}, {bound}.",
            "",
            "| " + " | ".join(title for _, title in COLUMNS) + " |",
            "|" + "---|" * len(COLUMNS),
        ]
        for row in sc["rows"]:
            cells = _cells(row)
            lines.append("| " + " | ".join(cells.get(key, "") for key, _ in COLUMNS) + " |")
        for contender, why in sc.get("skipped_contenders", {}).items():
            lines += ["", f"{contender} skipped: {why}."]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["scenarios"])
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.4 * cols, 3.9 * rows), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    styles = {
        "fleetimage": {"color": "tab:blue", "linewidth": 2.0},
        "fleetimage-w2": {"color": "tab:purple", "linewidth": 2.0, "linestyle": "--"},
        "boto3-batch-standard": {"color": "tab:orange", "linewidth": 1.6},
        "boto3-batch-adaptive": {"color": "tab:green", "linewidth": 1.6, "linestyle": "-."},
        "boto3-waiters": {"color": "tab:grey", "linewidth": 1.0, "linestyle": ":"},
        "boto3-script": {"color": "tab:brown", "linewidth": 1.0, "linestyle": ":"},
    }
    for ax, name in zip(axes.flat, names, strict=False):
        sc = results["scenarios"][name]
        for row in sc["rows"]:
            if "error" in row:
                continue
            times = completion_times(row)[0]
            label = row["contender"] + ("" if row["makespan_s"] is not None else " (DNF)")
            ax.step(
                [0.0, *times],
                range(len(times) + 1),
                where="post",
                label=label,
                **styles.get(row["contender"], {}),
            )
        if sc["bound_s"]:
            ax.axvline(sc["bound_s"], color="black", linestyle="--", linewidth=1, label="bound")
        ax.axhline(sc["targets"], color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"{name} (time scale {sc['time_scale']:g})", fontsize=10)
        ax.set_xlabel("wall seconds (x time scale = AWS seconds)")
        ax.set_ylabel("images available")
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(
        "median run of each contender; bound = the buckets and pending times alone",
        fontsize=9 if cols == 1 else 12,  # one panel: the title must fit its width
    )
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
    # Compact: summaries, and the median runs' completions for the plot (results_format).
    paths["json"].write_text(dumps(compact(results)), "utf-8")
    paths["md"].write_text(markdown(results), "utf-8")
    plot(results, paths["png"])
    return paths
