"""The prune scenarios (``kind: prune``): a fresh mock seeded with a fleet's images, then
``prune_fleet`` of one run in its own process, measured against the DeregisterImage bound.

Per lane (account, region) the mock holds ``instances / lanes`` images of run ``RUN`` of fleet
``bench`` (each with a snapshot), and what a prune must leave alone: images of another run of
the fleet, images of another fleet carrying the same run id, and three of the run's images that
are in use (a launch template, an SSM parameter, deregistration protection). The prune is asked
to remove run ``RUN`` (the ``--run`` form). Measured, on the mock's clock:

- the deletion phase, from the first DeregisterImage that deregistered an image to the last
  (all lanes), against :func:`benchmarks.bound.deletion_bound` (burst then the refill rate,
  per lane): ``efficiency`` = bound / phase;
- the planning time (process start to the plan shown: clients, DescribeImages, references),
  reported apart;
- DeregisterImage calls and throttled answers; wrong deletions (an image not in the expected
  set deregistered), missed ones, and images deregistered more than once (must all be 0).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.bound import deletion_bound
from benchmarks.mockproc import MockProcess
from benchmarks.scenarios import Scenario
from fleetimage.core.tags import FLEET_TAG, RUN_TAG

__all__ = ["markdown", "run_prune_scenario"]

RUN = "20260101T000000Z-bench0"
FLEET = "bench"
OTHERS = 20  # per lane: images of another run, and of another fleet, that must stay


@dataclass(frozen=True, slots=True)
class PruneJob:
    scenario: Scenario
    endpoint_url: str
    credentials: dict[str, str]


def _prune_child(job: PruneJob, out: Any) -> None:
    """The contender's process: prune run RUN, send timings and counts, exit."""
    import anyio

    from fleetimage import parse_config
    from fleetimage.engine.prune import prune_fleet

    for key in [k for k in os.environ if k.startswith("AWS_")]:
        del os.environ[key]
    os.environ["AWS_ACCESS_KEY_ID"] = job.credentials["aws_access_key_id"]
    os.environ["AWS_SECRET_ACCESS_KEY"] = job.credentials["aws_secret_access_key"]
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    result: dict[str, Any]
    try:
        data = job.scenario.fleet_config()
        data["name"] = FLEET
        config = parse_config(data)
        t0 = time.monotonic()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        planned: list[float] = []

        async def on_plan(plan: Any) -> None:
            planned.append(time.monotonic())

        report = anyio.run(
            lambda: prune_fleet(config, endpoint_url=job.endpoint_url, run_id=RUN, on_plan=on_plan)
        )
        ru = resource.getrusage(resource.RUSAGE_SELF)
        result = {
            "t0_monotonic": t0,
            "plan_s": planned[0] - t0 if planned else None,
            "elapsed_s": time.monotonic() - t0,
            "cpu_s": (ru.ru_utime + ru.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
            "peak_rss_mb": ru.ru_maxrss / 1024,
            "deleted": report.count("deleted"),
            "kept": report.count("kept"),
            "failed": report.count("failed"),
            "fail_reasons": sorted({i.reason for i in report.items if i.outcome == "failed"})[:5],
        }
    except BaseException as exc:
        import traceback

        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    out.send(result)
    out.close()
    os._exit(0)


def _seed(mock: MockProcess, sc: Scenario) -> dict[tuple[str, str], set[str]]:
    """Seed every lane; return the images the prune must delete, per lane."""
    expected: dict[tuple[str, str], set[str]] = {}
    n = sc.instances_per_region
    for account in sc.account_ids:
        for region in sc.region_names:
            run = mock.control("seed_images", account, region, n, {FLEET_TAG: FLEET, RUN_TAG: RUN})
            mock.control(
                "seed_images", account, region, OTHERS, {FLEET_TAG: FLEET, RUN_TAG: "other-run"}
            )
            mock.control("seed_images", account, region, OTHERS, {FLEET_TAG: "other", RUN_TAG: RUN})
            in_use = run[:3]
            mock.control("add_launch_template", account, region, [in_use[0]])
            mock.control("add_ssm_parameter", account, region, "/bench/ami", in_use[1])
            mock.control("protect_image", account, region, in_use[2])
            expected[(account, region)] = set(run[3:])
    return expected


def _count(counters: list[dict[str, Any]], action: str, outcome: str | None = None) -> int:
    return sum(
        c["count"]
        for c in counters
        if c["action"] == action and (outcome is None or c["outcome"] == outcome)
    )


def run_prune_once(sc: Scenario, bound_aws_s: float) -> dict[str, Any]:
    with MockProcess(sc.mock_config) as mock:
        expected = _seed(mock, sc)
        mock_cpu0 = mock.stats()["cpu_s"]
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=_prune_child,
            args=(PruneJob(sc, mock.endpoint_url, mock.credentials), child),
            daemon=True,
        )
        proc.start()
        child.close()
        limit = sc.wall(bound_aws_s) * sc.cutoff_bounds + 120
        raw: dict[str, Any] = (
            parent.recv() if parent.poll(limit) else {"error": "no report in time"}
        )
        proc.join(10)
        if proc.is_alive():
            proc.kill()
        counters = mock.get("counters")
        mock_cpu_s = mock.stats()["cpu_s"] - mock_cpu0
        wrong = missed = twice = 0
        arrivals: list[float] = []
        for (account, region), want in expected.items():
            calls: dict[str, int] = mock.control("deregister_calls", account, region)
            gone = {
                i["image_id"] for i in mock.control("images", account, region) if i["deregistered"]
            }
            wrong += len(gone - want)
            missed += len(want - gone)
            twice += sum(1 for n in calls.values() if n > 1)
            arrivals += mock.control("deregistered_at", account, region)
    if "error" in raw:
        return raw
    phase_s = max(arrivals) - min(arrivals) if arrivals else None
    calls_n = _count(counters, "DeregisterImage")
    throttled = _count(counters, "DeregisterImage", "throttled")
    return {
        **raw,
        "expected": sum(len(v) for v in expected.values()),
        "wrong_deletions": wrong,
        "missed": missed,
        "deregistered_twice": twice,
        "deletion_phase_s": phase_s,
        "deletion_phase_aws_s": phase_s * sc.time_scale if phase_s else None,
        "first_deletion_s": min(arrivals) - raw["t0_monotonic"] if arrivals else None,
        "efficiency": bound_aws_s / (phase_s * sc.time_scale) if phase_s else None,
        "deregister_calls": calls_n,
        "deregister_throttled": throttled,
        "deregister_throttled_pct": 100.0 * throttled / calls_n if calls_n else 0.0,
        "describe_images_calls": _count(counters, "DescribeImages"),
        "references_calls": _count(counters, "DescribeImageReferences"),
        "describe_snapshots_calls": _count(counters, "DescribeSnapshots"),
        "delete_snapshot_calls": _count(counters, "DeleteSnapshot"),
        "requests": sum(c["count"] for c in counters),
        "mock_cpu_s": mock_cpu_s,
    }


MEDIANS = (
    "deletion_phase_s",
    "deletion_phase_aws_s",
    "efficiency",
    "plan_s",
    "elapsed_s",
    "first_deletion_s",
    "deregister_throttled_pct",
    "cpu_s",
    "mock_cpu_s",
    "peak_rss_mb",
)
WORST = ("wrong_deletions", "missed", "deregistered_twice", "failed")


def run_prune_scenario(sc: Scenario, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    n = sc.instances_per_region - 3  # three per lane are in use and kept
    per_lane = {f"{a}/{r}": n for a in sc.account_ids for r in sc.region_names}
    burst, rate = sc.limits()["DeregisterImage"]
    bound_aws_s, lane = deletion_bound(per_lane, burst=burst, rate_per_s=rate, refill=sc.refill)
    log(f"  deletion bound {sc.wall(bound_aws_s):.2f} s ({bound_aws_s:.1f} AWS s), lane {lane}")
    runs = []
    for rep in range(sc.repeats):
        t = time.perf_counter()
        row = run_prune_once(sc, bound_aws_s)
        runs.append(row)
        log(f"  fleetimage prune #{rep + 1} {_brief(row)}  [{time.perf_counter() - t:.0f} s]")
    ok = [r for r in runs if "error" not in r]
    summary: dict[str, Any] = {"runs": len(runs), "errors": len(runs) - len(ok)}
    for key in MEDIANS:
        values = [r[key] for r in ok if r.get(key) is not None]
        summary[key] = statistics.median(values) if values else None
    for key in WORST:
        summary[f"{key}_max"] = max((r[key] for r in ok), default=None)
    summary["deregister_throttled_pct_max"] = max(
        (r["deregister_throttled_pct"] for r in ok), default=None
    )
    return {
        "kind": "prune",
        "bound_s": sc.wall(bound_aws_s),
        "bound_aws_s": bound_aws_s,
        "bound_lane": lane,
        "images": sum(per_lane.values()),
        "summary": summary,
        "runs": runs,
        "rows": [],
    }


def _brief(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"ERROR {row['error']}"
    return (
        f"phase {row['deletion_phase_s']:.2f} s  eff {row['efficiency']:.3f}  "
        f"plan {row['plan_s']:.2f} s  deleted {row['deleted']}/{row['expected']}  "
        f"thr {row['deregister_throttled_pct']:.2f}%  wrong {row['wrong_deletions']} "
        f"missed {row['missed']} twice {row['deregistered_twice']} failed {row['failed']}  "
        f"cpu {row['cpu_s']:.1f} s (mock {row['mock_cpu_s']:.1f} s)"
    )


def markdown(name: str, results: dict[str, Any], sc: dict[str, Any]) -> str:
    s = sc["summary"]

    def f(key: str, fmt: str) -> str:
        value = s.get(key)
        return "—" if value is None else format(value, fmt)

    lines = [
        f"# fleetimage benchmark: {name}",
        "",
        f"Command: `{results['command']}`  ",
        f"Date: {results['date']}; host: {results['host']}; Python {results['python']}.",
        "",
        f"{sc['description']} — {sc['images']} images to delete, time scale "
        f"{sc['time_scale']:g}, bucket refill {sc['settings']['refill']}. Deletion bound "
        f"{sc['bound_s']:.2f} s ({sc['bound_aws_s']:.1f} AWS s, lane {sc['bound_lane']}): each "
        "lane's DeregisterImage bucket, its burst at once, then its refill rate "
        "(benchmarks/bound.py `deletion_bound`). Medians over the runs; wrong / missed / twice / "
        "failed and the throttled maximum are the worst run.",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| runs (errors) | {s['runs']} ({s['errors']}) | |",
        f"| deletion phase s (AWS s) | {f('deletion_phase_s', '.2f')} "
        f"({f('deletion_phase_aws_s', '.0f')}) | |",
        f"| efficiency (bound / deletion phase) | {f('efficiency', '.3f')} | ≥ 0.9 |",
        f"| DeregisterImage throttled % (worst run) | {f('deregister_throttled_pct', '.2f')} "
        f"({f('deregister_throttled_pct_max', '.2f')}) | ≤ 2 % |",
        f"| wrong deletions | {s['wrong_deletions_max']} | 0 |",
        f"| missed / deregistered twice / failed | {s['missed_max']} / "
        f"{s['deregistered_twice_max']} / {s['failed_max']} | 0 |",
        f"| planning s (start → plan shown) | {f('plan_s', '.2f')} | reported apart |",
        f"| first deletion s after start | {f('first_deletion_s', '.2f')} | |",
        f"| total s | {f('elapsed_s', '.2f')} | |",
        f"| client CPU s / peak RSS MB | {f('cpu_s', '.1f')} / {f('peak_rss_mb', '.0f')} | |",
        f"| mock CPU s | {f('mock_cpu_s', '.1f')} | |",
        "",
        "Runs:",
        "",
    ]
    for r in sc["runs"]:
        lines.append(f"- {_brief(r)}")
    return "\n".join(lines) + "\n"


def write_prune_results(results: dict[str, Any], name: str, out_dir: Path) -> Path:
    """``<out_dir>/<name>.md`` and ``.json`` (never the imaging results' latest.*)."""
    from benchmarks.results_format import compact, dumps

    out_dir.mkdir(parents=True, exist_ok=True)
    sc = results["scenarios"][name]
    # The same form as the imaging results (a prune run has no completions to compact).
    (out_dir / f"{name}.json").write_text(
        dumps(compact({**results, "scenarios": {name: sc}})), "utf-8"
    )
    path = out_dir / f"{name}.md"
    path.write_text(markdown(name, results, sc), "utf-8")
    return path
