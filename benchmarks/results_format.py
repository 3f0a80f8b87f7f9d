"""The results JSON's compact form, and the one-off conversion of files written before it.

A run's completions (every settled target's instant) are what the staircase plot needs, and
they used to be written as one ``[seconds, ok]`` pair per target, for every run and again in
each contender's summary row: 17 MB for a full run. Now:

* a summary row (the contender's median run, which the plot draws) keeps its completions as
  ``{"unit_s": 0.001, "available": [...], "failed": [...]}``: completion instants in whole
  milliseconds since the run's start, sorted, each list delta-encoded (the first value is the
  instant itself, each next one the gap to the one before), written on one line;
* the per-run rows keep every figure and counter but not the completions (``available`` and
  ``failed`` still count them).

``python -m benchmarks.results_format FILE...`` converts files in the old form in place: the
figures stay as published; only the completions are quantised to milliseconds and the per-run
lists dropped. Those files predate the split of DescribeImages by kind, so their
``describe_images_per_image`` (then every DescribeImages request per image) is renamed
``describe_images_calls_per_image``, which is what it measured, and the polls-only figure is
absent (the report shows "—").
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "FORMAT",
    "compact",
    "completion_times",
    "convert_file",
    "dumps",
    "pack_completions",
]

FORMAT = 2  # 1 (no marker): completions as [seconds, ok] pairs in every row and run
UNIT_S = 0.001


def _deltas(values: Iterable[int]) -> list[int]:
    out, last = [], 0
    for v in values:
        out.append(v - last)
        last = v
    return out


def _undelta(deltas: Iterable[int]) -> list[int]:
    out, total = [], 0
    for d in deltas:
        total += d
        out.append(total)
    return out


def pack_completions(completions: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """``[(seconds, ok), ...]`` → the compact form (instants rounded to the millisecond)."""
    ok = sorted(round(t / UNIT_S) for t, good in completions if good)
    bad = sorted(round(t / UNIT_S) for t, good in completions if not good)
    return {"unit_s": UNIT_S, "available": _deltas(ok), "failed": _deltas(bad)}


def completion_times(row: dict[str, Any]) -> tuple[list[float], list[float]]:
    """(available instants, failed instants) in seconds, sorted, from either form."""
    data = row.get("completions")
    if data is None:
        return [], []
    if isinstance(data, dict):
        unit = float(data["unit_s"])
        return (
            [v * unit for v in _undelta(data["available"])],
            [v * unit for v in _undelta(data["failed"])],
        )
    ok = sorted(float(t) for t, good in data if good)
    return ok, sorted(float(t) for t, good in data if not good)


def _is_imaging(sc: Any) -> bool:
    """A scenario with summary rows and per-run rows (prune and copy results have none)."""
    return isinstance(sc, dict) and isinstance(sc.get("rows"), list)


def _imaging_scenarios(results: dict[str, Any]) -> Iterable[dict[str, Any]]:
    return (sc for sc in results.get("scenarios", {}).values() if _is_imaging(sc))


def compact(results: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``results`` in the compact form (``results`` itself is left as it is)."""
    out = {**results, "results_format": FORMAT, "scenarios": dict(results.get("scenarios", {}))}
    for name, sc in list(out["scenarios"].items()):
        if not _is_imaging(sc):
            continue
        rows = [_packed(row) for row in sc["rows"]]
        runs = sc.get("runs")
        if isinstance(runs, dict):
            runs = {c: [_without_completions(r) for r in rs] for c, rs in runs.items()}
        out["scenarios"][name] = {**sc, "rows": rows, **({"runs": runs} if runs else {})}
    return out


def _packed(row: dict[str, Any]) -> dict[str, Any]:
    data = row.get("completions")
    if not isinstance(data, list):
        return row
    return {**row, "completions": pack_completions(data)}


def _without_completions(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "completions"}


def dumps(results: dict[str, Any]) -> str:
    """JSON with ``indent=1``, except that each packed completions list is one line."""
    lists: list[list[int]] = []

    def hold(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"unit_s", "available", "failed"}:
                held = {"unit_s": value["unit_s"]}
                for key in ("available", "failed"):
                    lists.append(value[key])
                    held[key] = f"\x00{len(lists) - 1}\x00"
                return held
            return {k: hold(v) for k, v in value.items()}
        if isinstance(value, list):
            return [hold(v) for v in value]
        return value

    text = json.dumps(hold(results), indent=1)
    for i, values in enumerate(lists):
        text = text.replace(f'"\\u0000{i}\\u0000"', json.dumps(values, separators=(",", ":")), 1)
    return text + "\n"


def _rename_old_describe_images(row: dict[str, Any]) -> dict[str, Any]:
    if "describe_images_polls" in row or "describe_images_per_image" not in row:
        return row
    out = {k: v for k, v in row.items() if k != "describe_images_per_image"}
    out["describe_images_calls_per_image"] = row["describe_images_per_image"]
    return out


def convert_file(path: Path) -> tuple[int, int]:
    """Rewrite a results file written before the compact form; (bytes before, after).
    A file already in the compact form is left untouched."""
    before = path.stat().st_size
    results = json.loads(path.read_text("utf-8"))
    if results.get("results_format", 1) >= FORMAT:
        return before, before
    for sc in _imaging_scenarios(results):
        sc["rows"] = [_rename_old_describe_images(r) for r in sc["rows"]]
        if isinstance(sc.get("runs"), dict):
            sc["runs"] = {
                c: [_rename_old_describe_images(r) for r in rs] for c, rs in sc["runs"].items()
            }
    path.write_text(dumps(compact(results)), "utf-8")
    return before, path.stat().st_size


def main(argv: Sequence[str]) -> int:
    if not argv:
        print("usage: python -m benchmarks.results_format RESULTS.json...", file=sys.stderr)
        return 2
    for name in argv:
        before, after = convert_file(Path(name))
        print(f"{name}: {before:,} -> {after:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
