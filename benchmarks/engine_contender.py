"""The fleetimage contenders: the engine through its public API (``run_fleet``), in one
process (``fleetimage``) or spreading its lanes over worker processes (``fleetimage-w2``:
``workers=2``), with its default configuration plus the scenario's ``time_scale`` and stated
overrides. Completion times come from its ``Available``/``Failed`` events.

``workers`` is passed only when it is above 1, so the one-process contender calls the same API
whether or not the checkout has worker processes; a checkout whose ``image_fleet`` has no
``workers`` parameter cannot run the others (:func:`workers_unsupported` says why, and the
harness skips them).
"""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from benchmarks.meter import Meter

if TYPE_CHECKING:
    from benchmarks.contenders import ContenderJob

__all__ = ["run_fleetimage", "workers_unsupported"]

Completion = tuple[float, str, str, str, str]  # (t, account, region, instance, outcome)


def workers_unsupported(workers: int) -> str | None:
    """Why this checkout cannot run fleetimage with ``workers`` processes (None: it can)."""
    if workers <= 1:
        return None
    from fleetimage.engine.api import image_fleet

    if "workers" not in inspect.signature(image_fleet).parameters:
        return (
            f"image_fleet() in this checkout has no `workers` parameter, so fleetimage with "
            f"{workers} workers cannot run here (it needs the --workers change)"
        )
    return None


def run_fleetimage(job: ContenderJob) -> dict[str, Any]:
    from fleetimage import Available, Event, Failed, Skipped, parse_config, run_fleet

    reason = workers_unsupported(job.workers)
    if reason is not None:
        raise RuntimeError(reason)
    config = parse_config(job.scenario.fleet_config())
    completions: list[Completion] = []
    skipped = 0
    meter = Meter()
    wall0 = datetime.now(UTC)

    def on_event(event: Event) -> None:
        nonlocal skipped
        kind = type(event)
        if kind is Available:
            completions.append(
                (meter.now(), event.account, event.region, event.instance_id or "", "available")
            )
        elif kind is Failed:
            assert isinstance(event, Failed)
            completions.append(
                (
                    meter.now(),
                    event.account,
                    event.region,
                    event.instance_id or "",
                    f"{event.outcome.value}:{event.error_code}",
                )
            )
        elif kind is Skipped:
            skipped += 1

    extra: dict[str, Any] = {"workers": job.workers} if job.workers > 1 else {}
    deadline = datetime.now(UTC) + timedelta(seconds=job.time_limit_s)
    report = run_fleet(
        config, endpoint_url=job.endpoint_url, on_event=on_event, deadline=deadline, **extra
    )
    measured = meter.result()
    # Every image the report calls available must have a completion time. Should events from
    # worker processes not reach this process's subscriber, the report's own completion
    # instant stands in (counted, so the results say so).
    seen = {(a, r, i) for _, a, r, i, o in completions if o == "available"}
    from_report = 0
    for result in report.results:
        key = (result.account, result.region, result.instance_id)
        if result.outcome.value == "available" and key not in seen and result.completed_at:
            t = (result.completed_at - wall0).total_seconds()
            completions.append((t, *key, "available"))
            from_report += 1
    counts = report.counts
    unfinished = (
        counts["not_started"]
        + counts["pending"]
        + sum(1 for r in report.results if r.error_code == "DeadlineReached")
    )
    return {
        **measured,
        "completions": completions,
        "completions_from_report": from_report,
        "targets": counts["total"] - counts["skipped"],
        "skipped": skipped,
        "finished": unfinished == 0,
        "counts": counts,
        "workers": job.workers,
    }
