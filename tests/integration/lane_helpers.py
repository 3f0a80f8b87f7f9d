"""A single lane against the mock, for tests that drive one engine operation directly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fleetimage import parse_config
from fleetimage.core.models import LaneKey
from fleetimage.engine.bus import Bus
from fleetimage.engine.lane import Lane
from fleetimage.engine.limiter import Limiter
from fleetimage.mock import MockEC2

RUN_ID = "run-lane-test"
REGION = "us-east-1"
# Generous buckets on both sides: these tests count calls, they do not measure pacing.
LIMITS = {"CreateImage": (1000, 1000.0), "DescribeImages": (1000, 1000.0)}


def _config(**retry: float) -> Any:
    return parse_config(
        {
            "targets": [{"regions": [REGION], "all_instances": True}],
            "image": {"name_template": "{instance_id}-{run_id}"},
            "retry": {
                "base_delay_s": 0.01,
                "max_delay_s": 0.05,
                "max_outage_s": 60,
                "breaker_cooldown_s": 0.02,
                "breaker_max_cooldown_s": 0.05,
                **retry,
            },
        }
    )


@asynccontextmanager
async def lane_on(
    mock: MockEC2, ec2_client: Any, *, retry: dict[str, float] | None = None, **client_kw: Any
) -> AsyncIterator[Lane]:
    """A lane on the mock's first account; ``retry`` overrides the config's retry knobs."""
    cfg = _config(**(retry or {}))
    account = mock.config.accounts[0]
    async with ec2_client(mock, REGION, **client_kw) as client:
        yield Lane(
            LaneKey(account, REGION),
            client,
            Limiter.from_limits(LIMITS),
            cfg.wall_retry,
            run_id=RUN_ID,
            bus=Bus([]),
        )
