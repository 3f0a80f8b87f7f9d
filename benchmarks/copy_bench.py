"""The copy-phase benchmark (scenario key ``copy:``): fleetimage copies every image of the
fleet into one destination; its copy phase — from its first CopyImage to its last copy seen
available — against the bound an ideal client would reach (``bound.copy_bound``).

The bound is computed from the fleet alone before the run: the imageable instances in
DescribeInstances order (the order fleetimage copies in), each copy's pending time from the
mock's pure function (``Fleet.copy_pending_aws_s``), the server's CopyImage bucket (100 at
once, then 1 per second, refilled per whole second like AWS's) and the destination's
concurrent-copy cap. The mock runs in its own process; fleetimage runs here, with its default
configuration plus ``time_scale`` and ``copy:`` (the destination and the cap the scenario
states). There is no baseline contender: no script we know copies fleet-wide.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from benchmarks.bound import copy_bound
from benchmarks.mockproc import IMAGEABLE, MockProcess
from benchmarks.scenarios import Scenario
from fleetimage.mock.fleet import Fleet

__all__ = ["copy_scenario_bound", "run_copy_scenario", "write_copy_results"]


def copy_scenario_bound(sc: Scenario) -> tuple[float, int]:
    """(the copy phase's bound in AWS seconds, the number of copies)."""
    fleet = Fleet(sc.mock_config())
    dest = sc.copy["destination"]
    pending = [
        fleet.copy_pending_aws_s(account, region, inst.instance_id, dest)
        for account in sc.account_ids
        for region in sc.region_names
        for inst in fleet.state(account, region).instance_list
        if inst.state in IMAGEABLE and region != dest
    ]
    burst, rate = sc.limits()["CopyImage"]
    return (
        copy_bound(
            pending,
            burst=burst,
            rate_per_s=rate,
            max_concurrent=int(sc.copy["max_concurrent"]),
            refill=sc.refill,
        ),
        len(pending),
    )


async def _run(sc: Scenario, endpoint_url: str) -> dict[str, Any]:
    from fleetimage import image_fleet, parse_config
    from fleetimage.core.copies import CopyAvailable, CopyFailed, CopyRequested
    from fleetimage.core.models import Event

    first: list[float] = []
    available: list[float] = []
    failed: list[str] = []

    def on_event(event: Event) -> None:
        if isinstance(event, CopyRequested) and not first:
            first.append(time.monotonic())
        elif isinstance(event, CopyAvailable):
            available.append(time.monotonic())
        elif isinstance(event, CopyFailed):
            failed.append(f"{event.outcome.value}:{event.error_code}")

    cpu0, t0 = time.process_time(), time.monotonic()
    report = await image_fleet(
        parse_config(sc.fleet_config()), endpoint_url=endpoint_url, on_event=on_event
    )
    return {
        "elapsed_s": time.monotonic() - t0,
        "cpu_s": time.process_time() - cpu0,
        "first_copy_s": first[0] - t0 if first else None,
        "copy_phase_s": max(available) - first[0] if (first and available) else None,
        "copies_available": len(available),
        "copy_failures": failed[:10],
        "images_available": report.counts["available"],
    }


def run_copy_scenario(sc: Scenario, log: Callable[[str], None] = print) -> dict[str, Any]:
    bound_aws_s, copies = copy_scenario_bound(sc)
    log(f"  bound {sc.wall(bound_aws_s):.2f} s ({bound_aws_s:.0f} AWS s) for {copies} copies")
    runs = []
    for rep in range(sc.repeats):
        with MockProcess(sc.mock_config) as mock:
            for key, value in mock.credentials.items():
                os.environ[key.upper()] = value
            row = anyio.run(_run, sc, mock.endpoint_url)
            counters = mock.counters()
            snap = mock.snapshot()
        row["copy_image_calls"] = sum(c["count"] for c in counters if c["action"] == "CopyImage")
        row["copy_refused"] = sum(
            c["count"] for c in counters if c["action"] == "CopyImage" and c["outcome"] == "error"
        )
        row["duplicates"] = snap["copy_duplicates"]
        phase = row["copy_phase_s"]
        row["efficiency"] = (
            sc.wall(bound_aws_s) / phase
            if phase
            and row["copies_available"] == copies
            and not any(snap["copy_duplicates"].values())
            else None
        )
        log(
            f"  fleetimage #{rep + 1}: copy phase {phase or 0:.2f} s, "
            f"{row['copies_available']}/{copies} copies, efficiency {row['efficiency'] or 0:.3f}, "
            f"CopyImage calls {row['copy_image_calls']} ({row['copy_refused']} refused)"
        )
        runs.append(row)
    return {
        "bound_s": sc.wall(bound_aws_s),
        "bound_aws_s": bound_aws_s,
        "copies": copies,
        "runs": runs,
    }


def write_copy_results(
    name: str, sc: Scenario, outcome: dict[str, Any], command: str, out: Path
) -> Path:
    """``<out>/<name>.md`` (and ``.json``): the bound, each run, the command."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"command": command, **outcome}, indent=2) + "\n")
    lines = [
        f"# {name}: {sc.description}",
        "",
        f"Command: `{command}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M:%S %z')}, time scale {sc.time_scale:g}, "
        f"{os.cpu_count()} cores (shared; load average {os.getloadavg()[0]:.1f} when written).",
        "",
        f"Bound (ideal client: CopyImage bucket {sc.limits()['CopyImage'][0]:g} + "
        f"{sc.limits()['CopyImage'][1]:g}/s per whole second, {sc.copy['max_concurrent']} "
        f"concurrent copies, the mock's copy pending times): **{outcome['bound_s']:.2f} s** "
        f"({outcome['bound_aws_s']:.0f} AWS s) for {outcome['copies']} copies.",
        "",
        "| run | copy phase s (AWS s) | copies available | efficiency | CopyImage calls "
        "(refused) | duplicates | CPU s |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(outcome["runs"], 1):
        phase = r["copy_phase_s"]
        dup = sum(len(v) for v in r["duplicates"].values())
        lines.append(
            f"| {i} | {phase or 0:.2f} ({(phase or 0) * sc.time_scale:.0f}) | "
            f"{r['copies_available']}/{outcome['copies']} | "
            f"{'—' if r['efficiency'] is None else format(r['efficiency'], '.3f')} | "
            f"{r['copy_image_calls']} ({r['copy_refused']}) | {dup} | {r['cpu_s']:.1f} |"
        )
    lines += [
        "",
        "Copy phase: fleetimage's first CopyImage to the last copy it saw available (its "
        "waiter polls every 15 AWS s, so detection lag is included); efficiency = bound / "
        "copy phase (target >= 0.9).",
    ]
    path = out / f"{name}.md"
    path.write_text("\n".join(lines) + "\n")
    return path
