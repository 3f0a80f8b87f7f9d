"""Run scenarios × contenders × repetitions: a fresh mock process per run (same seed, so the
same fleet and the same pending times), the contender in its own process, then the mock's
counters and records turned into metrics; each contender's figures are medians over its runs."""

from __future__ import annotations

import functools
import math
import multiprocessing as mp
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.bound import run_bound
from benchmarks.contenders import SAMPLED, WORKERS, ContenderJob, child_main, unavailable
from benchmarks.counters import count, describe_images_split
from benchmarks.mockproc import IMAGEABLE, MockProcess
from benchmarks.scenarios import Scenario
from fleetimage.mock.fleet import Fleet

__all__ = ["TOLERANCE", "fleet_lanes", "run_contender", "run_scenario", "scenario_bound"]

# Two contenders' makespans within this share of each other are a tie (run-to-run noise).
TOLERANCE = 0.02

# Wall seconds a contender process may spend on startup (imports, clients) beyond its limit.
STARTUP_GRACE_S = 120.0


def _spawn(job: ContenderJob) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    # Not daemonic: a daemonic process may not start children, and fleetimage's workers are
    # its children. The finally below still ends it whatever happens here.
    proc = ctx.Process(target=child_main, args=(job, child), daemon=False)
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


def fleet_lanes(sc: Scenario) -> dict[str, dict[str, Any]]:
    """Per lane, the imageable instances' pending times (AWS s) in DescribeInstances order:
    the mock's own pure function, evaluated here without a server or a client."""
    fleet = Fleet(sc.mock_config())
    lanes = {}
    for account in sc.account_ids:
        for region in sc.region_names:
            st = fleet.state(account, region)
            ids = [i.instance_id for i in st.instance_list if i.state in IMAGEABLE]
            lanes[f"{account}/{region}"] = {
                "pending_aws_s": [fleet.pending_aws_s(account, region, i) for i in ids]
            }
    return lanes


def scenario_bound(sc: Scenario) -> tuple[float, str]:
    """(bound in AWS seconds, deciding lane), from the fleet alone."""
    burst, rate = sc.limits()["CreateImage"]
    return run_bound(
        fleet_lanes(sc),
        burst=burst,
        rate_per_s=rate,
        refill=sc.refill,
        throttling=sc.throttling,
        neighbour_load=sc.neighbour_load,
    )


def cutoff_s(sc: Scenario, contender: str, bound_aws_s: float) -> float:
    """Wall seconds after which a contender stops starting work."""
    if not sc.throttling or bound_aws_s <= 0:
        return sc.time_limit_s
    if contender in SAMPLED:
        factor = sc.sample_cutoff_bounds
    elif contender.startswith("fleetimage"):
        factor = sc.cutoff_bounds
    else:
        factor = sc.baseline_cutoff_bounds
    return sc.wall(bound_aws_s) * factor


def run_contender(
    scenario: Scenario,
    contender: str,
    *,
    run_tag: str,
    bound_aws_s: float,
    limit_s: float,
    repeat: int = 0,
) -> dict[str, Any]:
    """One contender against a fresh mock (that of the scenario's ``repeat``-th run);
    returns the metrics row (wall = scaled seconds)."""
    sc = scenario
    # The machine's 1-minute load before and after: on a shared machine the CPU a contender
    # gets depends on it, so a CPU-bound scenario's figures are read with it.
    load = [os.getloadavg()[0]]
    with MockProcess(functools.partial(sc.mock_config, repeat)) as mock:
        stats0 = mock.stats()
        job = ContenderJob(
            contender,
            sc,
            mock.endpoint_url,
            mock.credentials,
            limit_s,
            run_tag,
            workers=WORKERS.get(contender, 1),
        )
        raw = _spawn(job)
        counters = mock.counters()
        kinds = mock.request_kinds()
        duplicates = mock.duplicates()
        stats1 = mock.stats()
        snap = mock.snapshot()
    load.append(os.getloadavg()[0])
    row: dict[str, Any] = {
        "scenario": sc.name,
        "contender": contender,
        "workers": WORKERS.get(contender, 1),
        "time_scale": sc.time_scale,
        "cutoff_s": limit_s,
        "load_avg_1m": load,
    }
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

    bound_s = sc.wall(bound_aws_s)
    makespan = completions[-1][0] if (finished and completions) else None
    # Where the time went, on the mock's clock relative to the contender's start.
    t0 = raw["t0_monotonic"]
    created = [c - t0 for ln in lanes.values() for c, _, _ in ln["images"]]
    ready = [c + p - t0 for ln in lanes.values() for c, p, _ in ln["images"]]
    n_ok = len(available & expected)
    complete = makespan is not None and n_ok == len(expected)
    creates = count(counters, "CreateImage")
    throttled = count(counters, "CreateImage", "throttled")
    describe_images = count(counters, "DescribeImages")
    di = describe_images_split(kinds)
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
            # Per-image figures only for a finished run; a cut-off one gets a projection.
            "images_per_s": n_ok / makespan if makespan else None,
            "images_per_aws_s": n_ok / makespan / sc.time_scale if makespan else None,
            "projected_makespan_s": raw["elapsed_s"] * len(expected) / n_ok
            if (not finished and n_ok)
            else None,
            "bound_s": bound_s,
            "bound_aws_s": bound_aws_s,
            # Only for a run that imaged every target: one that failed some did less work.
            "efficiency": bound_s / makespan if (complete and sc.throttling) else None,
            # The same from the contender's first CreateImage (without clients, STS, discovery).
            "efficiency_imaging": bound_s / (makespan - min(created))
            if (complete and sc.throttling and makespan > min(created))
            else None,
            "first_create_s": min(created, default=None),
            "last_create_s": max(created, default=None),
            "last_ready_s": max(ready, default=None),
            "detect_lag_s": makespan - max(ready) if (makespan and ready) else None,
            "create_calls": creates,
            "create_throttled": throttled,
            "create_throttled_pct": 100.0 * throttled / creates if creates else 0.0,
            "create_faults": count(counters, "CreateImage", "fault")
            + count(counters, "CreateImage", "lost_answer"),
            "describe_images_calls": describe_images,
            **di,
            # Issue 16's budget: the waiter's answered polls per image (see describe_images_split).
            "describe_images_per_image": di["describe_images_polls"] / n_ok
            if (n_ok and finished)
            else None,
            "describe_images_calls_per_image": describe_images / n_ok
            if (n_ok and finished)
            else None,
            "describe_instances_calls": count(counters, "DescribeInstances"),
            "requests": sum(c["count"] for c in counters),
            # The contender's whole process tree: itself and its children (fleetimage's workers).
            "cpu_s": raw["cpu_s"],
            "cpu_self_s": raw["cpu_self_s"],
            "cpu_children_s": raw["cpu_children_s"],
            "cpu_ms_per_image": 1000.0 * raw["cpu_s"] / n_ok if (n_ok and finished) else None,
            # Cores the contender kept busy on average: near 1 for one process, CPU-bound.
            "cores_used": raw["cpu_s"] / raw["elapsed_s"] if raw["elapsed_s"] > 0 else None,
            # Share of the run its main thread (fleetimage's event loop; the parent's with
            # workers) was on a CPU or runnable waiting for one: ~1 = CPU-bound. (For the
            # scripts the main thread only waits for theirs.)
            "main_thread_busy": (raw["main_thread_run_s"] + raw["main_thread_wait_s"])
            / raw["elapsed_s"]
            if raw["elapsed_s"] > 0
            else None,
            "main_thread_run_s": raw["main_thread_run_s"],
            "main_thread_wait_s": raw["main_thread_wait_s"],
            "peak_rss_mb": raw["peak_rss_mb"],
            "peak_rss_children_mb": raw["peak_rss_children_mb"],
            # Completion instants taken from fleetimage's report, not its events (see
            # engine_contender); 0 when every event reached the contender's subscriber.
            "completions_from_report": raw.get("completions_from_report", 0),
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
) -> dict[str, Any]:
    """Every contender ``repeats`` times (sampled ones ``sample_repeats``), interleaved so
    machine noise spreads over all of them; returns the bound, the runs and the medians."""
    sc = scenario
    bound_aws_s, bound_lane = scenario_bound(sc)
    if sc.throttling:
        log(f"  bound {sc.wall(bound_aws_s):.2f} s ({bound_aws_s:.1f} AWS s), lane {bound_lane}")
    skipped = {c: why for c in contenders if (why := unavailable(c)) is not None}
    for contender, why in skipped.items():
        log(f"  {contender} skipped: {why}")
    contenders = [c for c in contenders if c not in skipped]
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in contenders}
    reps = {c: sc.sample_repeats if c in SAMPLED else sc.repeats for c in contenders}
    for rep in range(max(reps.values(), default=0)):
        for contender in contenders:
            if rep >= reps[contender]:
                continue
            t = time.perf_counter()
            row = run_contender(
                sc,
                contender,
                run_tag=f"{time.strftime('%Y%m%d%H%M%S')}r{rep}",
                bound_aws_s=bound_aws_s,
                limit_s=cutoff_s(sc, contender, bound_aws_s),
                repeat=rep,
            )
            log(f"  {contender:<21} #{rep + 1} {_brief(row)}  [{time.perf_counter() - t:.0f} s]")
            runs[contender].append(row)
    return {
        "bound_s": sc.wall(bound_aws_s) if sc.throttling else None,
        "bound_aws_s": bound_aws_s if sc.throttling else None,
        "bound_lane": bound_lane,
        "rows": [summarise(rows) for rows in runs.values() if rows],
        "runs": runs,
        "skipped_contenders": skipped,
    }


# Figures reported as the median over a contender's runs.
MEDIAN_KEYS = (
    "makespan_s",
    "makespan_aws_s",
    "images_per_s",
    "images_per_aws_s",
    "projected_makespan_s",
    "efficiency",
    "efficiency_imaging",
    "first_create_s",
    "last_create_s",
    "last_ready_s",
    "detect_lag_s",
    "create_calls",
    "create_throttled",
    "create_throttled_pct",
    "describe_images_calls",
    "describe_images_polls",
    "describe_images_lookups",
    "describe_images_listings",
    "describe_images_throttled",
    "describe_images_failed",
    "describe_images_per_image",
    "describe_images_calls_per_image",
    "cpu_s",
    "cpu_self_s",
    "cpu_children_s",
    "cpu_ms_per_image",
    "cores_used",
    "main_thread_busy",
    "peak_rss_mb",
    "elapsed_s",
    "available",
    "failed",
    "lost",
    "duplicates",
)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One row of medians. The run with the median makespan (a cut-off run counts as
    infinitely long) gives the curve and the counts; a contender finished if that run did."""
    ok = [r for r in rows if "error" not in r]
    if not ok:
        return {**rows[0], "runs": len(rows)}

    def key(r: dict[str, Any]) -> tuple[float, int]:
        return (r["makespan_s"] if r["makespan_s"] is not None else math.inf, -r["available"])

    ordered = sorted(ok, key=key)
    middle = ordered[(len(ordered) - 1) // 2]
    same = [r for r in ok if r["finished"] == middle["finished"]]
    out = dict(middle)
    for k in MEDIAN_KEYS:
        values = [r[k] for r in same if r.get(k) is not None]
        out[k] = statistics.median(values) if values else None
    out["runs"] = len(rows)
    out["errors"] = len(rows) - len(ok)
    out["finished_runs"] = sum(1 for r in ok if r["finished"])
    # Worst case, not median, for what must never happen.
    out["duplicates_max"] = max(r["duplicates"] for r in ok)
    out["lost_max"] = max(r["lost"] for r in ok)
    out["efficiency_runs"] = [r["efficiency"] for r in ok]
    return out


def compare(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    """fleetimage's median makespan against another's, with the stated tolerance."""
    a, b = ours.get("makespan_s"), theirs.get("makespan_s")
    if a is None or b is None:
        if a is not None:
            return "faster (they did not finish)"
        return "—"
    ratio = a / b
    if ratio < 1 - TOLERANCE:
        return f"faster ({ratio:.2f}x the time)"
    if ratio > 1 + TOLERANCE:
        return f"slower ({ratio:.2f}x the time)"
    return f"tie (within {TOLERANCE:.0%}: {ratio:.3f})"


def _brief(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"ERROR {row['error']}"
    eff = row["efficiency"]
    if row["makespan_s"] is not None:
        span = f"{row['makespan_s']:.2f} s"
    elif row["projected_makespan_s"] is not None:
        span = f"DNF (projected {row['projected_makespan_s']:.0f} s)"
    else:
        span = "DNF"
    return (
        f"{span}  {row['available']}/{row['targets']} ok"
        + (f"  eff {eff:.3f}/{row['efficiency_imaging'] or 0:.3f}" if eff is not None else "")
        + f"  cpu {row['cpu_ms_per_image'] or 0:.2f} ms/img ({row['cores_used'] or 0:.2f} cores,"
        f" main thread busy {row['main_thread_busy'] or 0:.2f})"
        f"  DI polls/img {row['describe_images_per_image'] or 0:.3f}"
        f" lookups {row['describe_images_lookups']}  thr {row['create_throttled_pct']:.1f}%"
        f"  dup {row['duplicates']} lost {row['lost']} failed {row['failed']}"
        f"  first/last create {row['first_create_s'] or 0:.2f}/{row['last_create_s'] or 0:.2f}"
        f"  last ready {row['last_ready_s'] or 0:.2f} lag {row['detect_lag_s'] or 0:.2f}"
    )
