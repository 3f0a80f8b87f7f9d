"""The mock's notion of time: :class:`MockClock` (AWS seconds since start) and :class:`Latency`.

**How wall time maps to AWS time.** The mock keeps one clock per server, started when the
:class:`~fleetimage.mock.server.MockEC2` is constructed (and again on ``reset()``)::

    aws_now = (monotonic() - start_monotonic) * time_scale        # AWS seconds since start

Every scheduled thing (outage windows, instance events, credential expiry) is a point on that
axis. Timestamps *on the wire* are real UTC wall time, compressed the same way::

    wall_at(t) = start_wall + t / time_scale

so AssumeRole's ``Expiration`` is ``issue_wall + DurationSeconds / time_scale``: the wall
moment the key stops working. Clients compare ``Expiration`` with their own real clock
(botocore's refreshable credentials do), so they see a session that is ``time_scale`` times
shorter than the AWS one and refresh at the right scaled moment — provided their refresh
margins are scaled too (botocore's defaults are 15 min advisory / 10 min mandatory in *wall*
seconds; see ``tests/integration/test_mock_time.py``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping

from fleetimage.mock.checks import check_finite
from fleetimage.mock.config import MockConfig, check_region_latency

__all__ = ["Latency", "MockClock"]


class MockClock:
    """AWS seconds since the mock started, and the wall/monotonic moments of AWS times."""

    __slots__ = ("start_monotonic", "start_wall", "time_scale")

    def __init__(self, time_scale: float) -> None:
        self.time_scale = time_scale
        self.start_monotonic = 0.0
        self.start_wall = 0.0
        self.restart()

    def restart(self) -> None:
        self.start_monotonic = time.monotonic()
        self.start_wall = time.time()

    def aws_now(self, monotonic: float | None = None) -> float:
        """AWS seconds since start (at ``monotonic``, default now)."""
        mono = time.monotonic() if monotonic is None else monotonic
        return (mono - self.start_monotonic) * self.time_scale

    def wall_at(self, aws_t: float) -> float:
        """The UTC epoch (wall seconds) at which AWS time ``aws_t`` happens."""
        return self.start_wall + aws_t / self.time_scale

    def wall_until(self, aws_t: float, monotonic: float | None = None) -> float:
        """Wall seconds from now (or ``monotonic``) until AWS time ``aws_t`` (>= 0)."""
        return max(0.0, (aws_t - self.aws_now(monotonic)) / self.time_scale)


class Latency:
    """Extra time before each answer, in AWS seconds: ``base + region extra + jitter``.

    The jitter is uniform in ``[-jitter_s, +jitter_s]`` (symmetric, so the mean stays
    ``base + region``), drawn from ``random.Random(f"{seed}:latency")`` so a run is
    reproducible; the total is clamped at 0. Changeable at run time with :meth:`set`.
    """

    def __init__(self, config: MockConfig) -> None:
        self.base_s = config.latency_s
        self.jitter_s = config.latency_jitter_s
        self.region_s: dict[str, float] = dict(config.region_latency_s or {})
        self.rng = random.Random(f"{config.seed}:latency")

    @property
    def enabled(self) -> bool:
        return self.base_s > 0 or self.jitter_s > 0 or bool(self.region_s)

    def draw(self, region: str) -> float:
        """AWS seconds to wait before answering a request in ``region``."""
        total = self.base_s + self.region_s.get(region, 0.0)
        if self.jitter_s > 0:
            total += self.rng.uniform(-self.jitter_s, self.jitter_s)
        return max(0.0, total)

    def set(
        self,
        latency_s: float | None = None,
        latency_jitter_s: float | None = None,
        region_latency_s: Mapping[str, float] | None = None,
    ) -> None:
        """Change the knobs given (the others stay); validated like :class:`MockConfig`."""
        if latency_s is not None:
            check_finite("latency_s", latency_s)
        if latency_jitter_s is not None:
            check_finite("latency_jitter_s", latency_jitter_s)
        regions = check_region_latency(region_latency_s) if region_latency_s is not None else None
        if latency_s is not None:
            self.base_s = float(latency_s)
        if latency_jitter_s is not None:
            self.jitter_s = float(latency_jitter_s)
        if regions is not None:
            self.region_s = regions

    def snapshot(self) -> dict[str, object]:
        return {
            "latency_s": self.base_s,
            "latency_jitter_s": self.jitter_s,
            "region_latency_s": dict(self.region_s),
        }
