"""The progress ETA: the pure estimate, and a real run against the mock (through the engine
and aiobotocore) whose ETA at the halfway point is recorded next to the actual time left."""

from __future__ import annotations

import io
import math
import re
import time
from typing import Any

import pytest
from rich.console import Console

from fleetimage import image_fleet, parse_config
from fleetimage.core.models import Event
from fleetimage.mock import MockConfig
from fleetimage.output.eta import LaneClock, lane_eta
from fleetimage.output.progress import ProgressTracker

SCALE = 5.0


def _clock(**kw: Any) -> LaneClock:
    base: dict[str, Any] = {
        "unsent": 0,
        "pending": 0,
        "sent": 0,
        "elapsed_s": 0.0,
        "create_rate": 0.0,
        "done_rate": 0.0,
        "bucket": None,
        "pending_s": None,
        "youngest_age_s": None,
    }
    return LaneClock(**{**base, **kw})


def test_bucket_bound_burst_then_refill() -> None:
    # 1,000 to send, nothing sent yet, AWS's bucket: 950 after the burst at 5/s = 190 s.
    eta, sending = lane_eta(_clock(unsent=1000, bucket=(50, 5.0), pending_s=60.0))
    assert sending == pytest.approx(190.0) and eta == pytest.approx(250.0)
    # Within the burst: all at once, then the pending time.
    eta, sending = lane_eta(_clock(unsent=30, bucket=(50, 5.0), pending_s=60.0))
    assert sending == 0.0 and eta == 60.0
    # Slower than the bucket (a neighbour drains it): the observed rate wins.
    _, sending = lane_eta(
        _clock(unsent=100, sent=950, elapsed_s=190, bucket=(50, 5.0), create_rate=2.0)
    )
    assert sending == pytest.approx(50.0)


def test_unknown_pending_time_and_the_tail() -> None:
    eta, sending = lane_eta(_clock(unsent=100, bucket=(50, 5.0)))
    assert eta is None and sending == pytest.approx(10.0)  # shown "≥ 10s + pending"
    # All sent: what is left of the pending time for the youngest image, or the pending
    # images over the completion rate, whichever is longer.
    eta, _ = lane_eta(_clock(pending=10, pending_s=60.0, youngest_age_s=20.0, done_rate=1.0))
    assert eta == pytest.approx(40.0)
    eta, _ = lane_eta(_clock(pending=100, pending_s=60.0, youngest_age_s=20.0, done_rate=1.0))
    assert eta == pytest.approx(100.0)
    assert lane_eta(_clock()) == (0.0, 0.0)


def _config(regions: tuple[str, ...]) -> Any:
    return parse_config(
        {
            "targets": [{"regions": list(regions), "all_instances": True}],
            "limits": {
                "CreateImage": {"burst": 50, "rate_per_s": 5 * SCALE},
                "DescribeImages": {"burst": 100, "rate_per_s": 20 * SCALE},
                "DescribeInstances": {"burst": 100, "rate_per_s": 20 * SCALE},
            },
            "wait": {"poll_interval_s": 0.2, "timeout_s": 120, "not_found_grace_s": 10},
            "retry": {"base_delay_s": 0.01, "max_delay_s": 0.2, "quota_delay_s": 0.1},
            "max_errors": "100%",
        },
        source="<test>",
    )


async def test_eta_at_the_halfway_point_of_a_mock_run(
    mock_ec2: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    regions = ("us-east-1", "eu-west-1")
    mock = await mock_ec2(
        MockConfig(
            regions=regions,
            instances_per_region=150,
            time_scale=SCALE,
            pending_s=20.0,
            pending_sigma=0.3,
            seed=7,
        )
    )
    for key, value in mock.credentials().items():
        monkeypatch.setenv(key.upper(), value)
    config = _config(regions)
    tracker = ProgressTracker(limits=config.limits_for)
    seen: dict[str, Any] = {}

    def at_halfway(event: Event) -> None:
        total = tracker.total()
        if "eta" not in seen and total.targets == 300 and total.done * 2 >= total.targets:
            seen.update(eta=tracker.eta(), at=time.monotonic(), row=total)
            seen["lines"] = tracker.lines()
            console = Console(file=io.StringIO(), width=160, force_terminal=True)
            console.print(tracker.table("run: "))
            seen["live"] = console.file.getvalue()  # type: ignore[attr-defined]

    report = await image_fleet(
        config, endpoint_url=mock.endpoint_url, on_event=[tracker, at_halfway]
    )
    actual = time.monotonic() - seen["at"]
    eta = seen["eta"]
    assert report.counts["available"] > 0
    print(
        f"\nETA at the halfway point: {eta:.2f}s; actual time left: {actual:.2f}s "
        f"(ratio {eta / actual if actual else float('nan'):.2f})"
    )
    print("\n".join(seen["lines"]))
    # A benchmark-style figure, not a timed assertion: only that an ETA exists and is finite.
    assert eta is not None and math.isfinite(eta) and eta >= 0
    # Shown on a terminal (a bar, the rates, the ETA) and in the plain lines.
    live = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen["live"])
    assert "ETA" in live and "done/s" in live and "━" in live
    for line in seen["lines"]:
        assert re.search(r": \d+ targets, .*create/s, .*done/s, \[[#.]{10}\] +\d+%, ETA ", line)
    assert seen["lines"][-1].split("] ", 1)[1].startswith("all: ")
