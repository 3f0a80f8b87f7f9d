"""Soak: 50,000 targets across 20 regions and 5 accounts, through the mock with faults on.

Run it (it is excluded from the default suite)::

    pytest -m slow tests/soak -s

The mock runs in a separate *process* (so its CPU and memory are not the engine's); the engine,
its journal (SQLite, on disk) and a report run in this process. Checks: every target ends
``available``, no instance got two images (the mock's own count, lost answers included), and
memory stays flat: RSS is sampled every 0.5 s and its growth over the imaging phase must stay
within what the run's per-target results explain. Printed: targets, wall time, calls, peak RSS,
growth, journal size. ``SOAK_PER_LANE`` (default 500) scales it down for a quick look.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fleetimage import Created, Outcome, Retried, Throttled, image_fleet, parse_config
from fleetimage.core.clock import now
from fleetimage.core.models import Event
from fleetimage.journal import Journal

pytestmark = pytest.mark.slow

REGIONS = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1",
    "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-north-1",
    "eu-south-1", "ap-south-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
    "ap-southeast-1", "ap-southeast-2", "sa-east-1", "me-south-1", "af-south-1",
)  # fmt: skip
ACCOUNTS = ("111111111111", "222222222222", "333333333333", "444444444444", "555555555555")
PER_LANE = int(os.environ.get("SOAK_PER_LANE", "500"))
TIME_SCALE = 60.0  # an AWS minute per wall second: buckets refill 60x faster, pending 60x shorter


def _serve(kwargs: dict[str, Any], port_queue: Any) -> None:  # pragma: no cover - child process
    from fleetimage.mock import FaultConfig, MockConfig, serve

    faults = FaultConfig(**kwargs.pop("faults"))
    config = MockConfig(**kwargs, faults=faults)
    serve(config, ready=lambda mock: port_queue.put(mock.port))


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0  # pragma: no cover


def _size_of(db: Path) -> int:
    """The journal's bytes on disk: the database plus its WAL and shared-memory files."""
    return sum(
        os.path.getsize(f"{db}{suffix}")
        for suffix in ("", "-wal", "-shm")
        if os.path.exists(f"{db}{suffix}")
    )


class RssSampler(threading.Thread):
    def __init__(self, progress: dict[str, int]) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.progress = progress
        self.samples: list[tuple[float, int, float]] = []  # (t, created so far, RSS MiB)
        self.stop_flag = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self.stop_flag.wait(0.5):
            self.samples.append((time.monotonic() - self.t0, self.progress["created"], _rss_mib()))


async def test_soak_50k_targets_20_regions_5_accounts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    total = PER_LANE * len(REGIONS) * len(ACCOUNTS)
    ctx = multiprocessing.get_context("spawn")
    port_queue = ctx.Queue()
    mock_kwargs: dict[str, Any] = {
        "regions": REGIONS,
        "accounts": ACCOUNTS,
        "instances_per_region": PER_LANE,
        "state_mix": {"running": 1.0},
        "seed": 42,
        "time_scale": TIME_SCALE,
        "pending_s": 60.0,
        "pending_sigma": 0.5,
        "visibility_lag_s": 2.0,
        "faults": {
            "throttle": 0.01,
            "internal_error": 0.01,
            "unavailable": 0.005,
            "reset": 0.005,
            "lost_answer": 0.005,
        },
    }
    server = ctx.Process(target=_serve, args=(mock_kwargs, port_queue), daemon=True)
    server.start()
    try:
        port = port_queue.get(timeout=60)
        url = f"http://127.0.0.1:{port}"
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", f"AKIA{ACCOUNTS[0]}MOCK")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "soak-secret-not-a-real-secret-0000000000")
        rate = TIME_SCALE
        config = parse_config(
            {
                "targets": [
                    {"regions": list(REGIONS), "all_instances": True},
                    {
                        "regions": list(REGIONS),
                        "all_instances": True,
                        "accounts": [
                            {"role_arn": f"arn:aws:iam::{a}:role/fleetimage"} for a in ACCOUNTS[1:]
                        ],
                    },
                ],
                "image": {"name_template": "{tag:Name}-{instance_id}-{run_id}"},
                "wait": {"poll_interval_s": 0.5, "timeout_s": 600, "not_found_grace_s": 30},
                "limits": {
                    "CreateImage": {"burst": 50, "rate_per_s": 5 * rate},
                    "DescribeImages": {"burst": 100, "rate_per_s": 20 * rate},
                    "DescribeInstances": {"burst": 100, "rate_per_s": 20 * rate},
                },
                "concurrency": {"max_in_flight_per_region": 10},
                "retry": {
                    "base_delay_s": 0.05,
                    "max_delay_s": 1.0,
                    "quota_delay_s": 1.0,
                    "breaker_cooldown_s": 0.05,
                    "breaker_max_cooldown_s": 1.0,
                },
                "max_errors": "1%",
            }
        )
        progress = {"created": 0, "retried": 0, "throttled": 0}

        def count(event: Event) -> None:
            if isinstance(event, Created):
                progress["created"] += 1
            elif isinstance(event, Retried):
                progress["retried"] += 1
            elif isinstance(event, Throttled):
                progress["throttled"] += 1

        journal_path = tmp_path / "soak.sqlite3"
        sampler = RssSampler(progress)
        rss_start = _rss_mib()
        sampler.start()
        started = time.monotonic()
        async with await Journal.open(journal_path) as journal:
            started_at = now()
            await journal.start_run("soak", started_at=started_at, config_snapshot={})
            report = await image_fleet(
                config,
                endpoint_url=url,
                on_event=[journal, count],
                run_id="soak",
                started_at=started_at,
            )
            await journal.finish_run("soak", status="finished", finished_at=now())
            records = await journal.targets("soak")
        wall = time.monotonic() - started
        sampler.stop_flag.set()
        sampler.join()

        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/_mock/duplicates") as answer:
                duplicates = await answer.json()
            async with http.get(f"{url}/_mock/counters") as answer:
                counters = await answer.json()
    finally:
        server.terminate()
        server.join(timeout=10)

    calls: dict[str, int] = {}
    for row in counters:
        calls[f"{row['action']}:{row['outcome']}"] = (
            calls.get(f"{row['action']}:{row['outcome']}", 0) + row["count"]
        )
    samples = sampler.samples
    peak = max(rss for _, _, rss in samples)
    # Growth over the imaging phase: from the first sample with 10% of images created to the end.
    early = next(rss for _, created, rss in samples if created >= total // 10)
    late = samples[-1][2]
    db_bytes = _size_of(journal_path)
    figures = {
        "targets": total,
        "wall_s": round(wall, 1),
        "targets_per_s": round(total / wall, 1),
        "outcomes": {k: v for k, v in report.counts.items() if v},
        "retried_events": progress["retried"],
        "throttled_events": progress["throttled"],
        "mock_calls": dict(sorted(calls.items())),
        "rss_mib": {
            "before": round(rss_start, 1),
            "at_10pct_created": round(early, 1),
            "end": round(late, 1),
            "peak": round(peak, 1),
            "growth_10pct_to_end": round(late - early, 1),
            "per_target_kib": round((late - early) * 1024 / (total * 0.9), 2),
        },
        "rss_timeline": [
            (round(t), c, round(r)) for t, c, r in samples[:: max(1, len(samples) // 20)]
        ],
        "journal_bytes": db_bytes,
        "journal_rows": len(records),
    }
    timeline = figures.pop("rss_timeline")
    print("\nSOAK " + json.dumps(figures, indent=1))
    print("SOAK rss timeline (s, images created, MiB): " + json.dumps(timeline))

    assert report.counts["total"] == total
    assert report.counts["available"] == total, report.failures()[:5]
    assert duplicates == []
    assert calls.get("CreateImage:ok", 0) + calls.get("CreateImage:lost_answer", 0) == total
    assert len(records) == total and all(r.state.value == "available" for r in records)
    assert all(r.outcome is Outcome.AVAILABLE and r.image_id for r in report.results)
    # Flat: what grows is the run's own per-target state (report + events), bounded per target.
    assert figures["rss_mib"]["per_target_kib"] < 8, figures["rss_mib"]
