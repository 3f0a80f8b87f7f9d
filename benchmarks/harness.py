"""Run scenarios × contenders: a fresh mock process per contender (same seed), the contender
in its own process, then the mock's counters and records turned into metrics."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.bound import run_bound
from benchmarks.contenders import ContenderJob, child_main
from benchmarks.mockproc import MockProcess
from benchmarks.scenarios import Scenario

__all__ = ["run_contender", "run_scenario"]

# Wall seconds a contender process may spend on startup (imports, clients) beyond its limit.
STARTUP_GRACE_S = 120.0


def _spawn(job: ContenderJob) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=child_main, args=(job, child), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(job.time_limit_s + STARTUP_GRACE_S):
            return {"error": "the contender process did not report back in time"}
        result: dict[str, Any] = parent.recv()
        return result
    except EOFError:
        return {"error": f"the contender process died (exit code {proc.exitcode})"}
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()


def _count(counters: list[dict[str, Any]], action: str, outcome: str | None = None) -> int:
    return sum(
        c["count"]
        for c in counters
        if c["action"] == action and (outcome is None or c["outcome"] == outcome)
    )


def run_contender(scenario: Scenario, contender: str, *, run_tag: str) -> dict[str, Any]:
    """One contender against a fresh mock; returns the metrics row (wall = scaled seconds)."""
    sc = scenario
    with MockProcess(sc.mock_config) as mock:
        stats0 = mock.stats()
        limit = sc.time_limit_s if contender == "fleetimage" else sc.baseline_limit_s
        job = ContenderJob(contender, sc, mock.endpoint_url, mock.credentials, limit, run_tag)
        raw = _spawn(job)
        counters = mock.counters()
        duplicates = mock.duplicates()
        stats1 = mock.stats()
        snap = mock.snapshot()
    row: dict[str, Any] = {"scenario": sc.name, "contender": contender, "time_scale": sc.time_scale}
    if "error" in raw:
        row["error"] = raw["error"]
        row["traceback"] = raw.get("traceback", "")
        return row

    lanes = snap["lanes"]
    expected = {(ln["account"], ln["region"], i) for ln in lanes.values() for i in ln["imageable"]}
    with_image = {
        (ln["account"], ln["region"], iid) for ln in lanes.values() for *_, iid in ln["images"]
    }
    completions = sorted(raw["completions"])
    available = {(a, r, i) for _, a, r, i, o in completions if o == "available"}
    failed = {(a, r, i): o for _, a, r, i, o in completions if o != "available"}
    finished = bool(raw["finished"])
    settled = available | set(failed)
    unaccounted = len(expected - settled) if finished else 0
    # Images the contender does not know it has (a cut-off run still has some in flight).
    orphans = len(with_image - available) if finished else 0
    missing_images = len(expected - with_image) if finished else 0

    limits = sc.limits()
    burst, rate = limits["CreateImage"]
    bound_s, bound_lane = run_bound(
        lanes,
        burst=burst,
        rate_per_s=rate * sc.time_scale,
        throttling=sc.throttling,
        neighbour_load=sc.neighbour_load,
    )
    makespan = completions[-1][0] if (finished and completions) else None
    # Where the time went, on the mock's clock relative to the contender's start.
    t0 = raw["t0_monotonic"]
    created = [c - t0 for ln in lanes.values() for c, _, _ in ln["images"]]
    ready = [c + p - t0 for ln in lanes.values() for c, p, _ in ln["images"]]
    n_ok = len(available & expected)
    creates = _count(counters, "CreateImage")
    throttled = _count(counters, "CreateImage", "throttled")
    describe_images = _count(counters, "DescribeImages")
    row.update(
        {
            "finished": finished,
            "targets": len(expected),
            "skipped_instances": sum(ln["instances"] for ln in lanes.values()) - len(expected),
            "available": n_ok,
            "failed": len(failed),
            "failure_codes": _top_codes(failed.values()),
            "unaccounted": unaccounted,
            "orphan_images": orphans,
            "missing_images": missing_images,
            "lost": unaccounted + orphans,
            "duplicates": len(duplicates),
            "elapsed_s": raw["elapsed_s"],
            "makespan_s": makespan,
            "makespan_aws_s": makespan * sc.time_scale if makespan is not None else None,
            "images_per_s": n_ok / makespan if makespan else n_ok / raw["elapsed_s"],
            "images_per_aws_s": (n_ok / makespan if makespan else n_ok / raw["elapsed_s"])
            / sc.time_scale,
            "bound_s": bound_s,
            "bound_aws_s": bound_s * sc.time_scale,
            "bound_lane": bound_lane,
            "efficiency": bound_s / makespan if (makespan and sc.throttling) else None,
            # The same without the startup (clients, STS, discovery) before the first image.
            "efficiency_imaging": bound_s / (makespan - min(created))
            if (makespan and sc.throttling and created and makespan > min(created))
            else None,
            "first_create_s": min(created, default=None),
            "last_create_s": max(created, default=None),
            "last_ready_s": max(ready, default=None),
            "detect_lag_s": makespan - max(ready) if (makespan and ready) else None,
            "create_calls": creates,
            "create_throttled": throttled,
            "create_throttled_pct": 100.0 * throttled / creates if creates else 0.0,
            "create_faults": _count(counters, "CreateImage", "fault")
            + _count(counters, "CreateImage", "lost_answer"),
            "describe_images_calls": describe_images,
            "describe_images_throttled": _count(counters, "DescribeImages", "throttled"),
            "describe_images_per_image": describe_images / n_ok if n_ok else None,
            "describe_instances_calls": _count(counters, "DescribeInstances"),
            "requests": sum(c["count"] for c in counters),
            "cpu_s": raw["cpu_s"],
            "cpu_ms_per_image": 1000.0 * raw["cpu_s"] / n_ok if n_ok else None,
            "peak_rss_mb": raw["peak_rss_mb"],
            "mock_cpu_s": stats1["cpu_s"] - stats0["cpu_s"],
            "completions": [(round(t, 4), o == "available") for t, _, _, _, o in completions],
        }
    )
    return row


def _top_codes(outcomes: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o] = counts.get(o, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:5])


def run_scenario(
    scenario: Scenario,
    contenders: Sequence[str],
    *,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    rows = []
    run_tag = time.strftime("%Y%m%d%H%M%S")
    for contender in contenders:
        t = time.perf_counter()
        row = run_contender(scenario, contender, run_tag=run_tag)
        log(f"  {contender:<15} {_brief(row)}  [{time.perf_counter() - t:.0f} s]")
        rows.append(row)
    return rows


def _brief(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"ERROR {row['error']}"
    eff = row["efficiency"]
    span = f"{row['makespan_s']:.2f} s" if row["makespan_s"] is not None else "DNF"
    return (
        f"{span}  {row['available']}/{row['targets']} ok  eff {eff:.3f}"
        if eff is not None
        else f"{span}  {row['available']}/{row['targets']} ok"
    ) + (
        f"  bound {row['bound_s']:.2f} s  cpu {row['cpu_ms_per_image'] or 0:.2f} ms/img"
        f"  DI/img {row['describe_images_per_image'] or 0:.3f}  thr {row['create_throttled_pct']:.1f}%"
        f"  dup {row['duplicates']} lost {row['lost']} failed {row['failed']}"
        f"  first/last create {row['first_create_s'] or 0:.2f}/{row['last_create_s'] or 0:.2f}"
        f"  last ready {row['last_ready_s'] or 0:.2f} lag {row['detect_lag_s'] or 0:.2f}"
    )
