"""FleetConfig.time_scale: every time of the limiter, retry and wait path is in AWS seconds in
the config and scaled through it (the demo and the benchmarks run against a time-scaled mock)."""

from __future__ import annotations

import json

import pytest

from fleetimage.config import FleetConfig, load_default_limits, parse_config
from fleetimage.engine.bucket import AdaptiveTokenBucket
from fleetimage.engine.limiter import Limiter

TARGETS = [{"regions": ["us-east-1"], "all_instances": True}]


def test_time_scale_one_changes_nothing() -> None:
    config = parse_config({"targets": TARGETS})
    assert config.time_scale == 1.0
    assert config.limits_for("us-east-1") == load_default_limits()
    assert config.wall_wait == config.wait and config.wall_retry == config.retry
    assert config.bucket_options() == {
        "min_coalesce_s": 1.0,
        "max_credit_s": 1.0,
        "recovery_fraction_per_s": 0.05,
        "probe_fraction": 0.1,
        "probe_memory_s": 60.0,
        "refill_period_s": 1.0,
    }


def test_time_scale_divides_times_and_multiplies_rates() -> None:
    config = parse_config(
        {"targets": TARGETS, "time_scale": 5.0, "limits": {"CreateImage": {"rate_per_s": 2.0}}}
    )
    limits = config.limits_for("us-east-1")
    assert limits["CreateImage"] == (50, 10.0)  # the override, scaled; bursts are not
    assert limits["DescribeImages"] == (100, 100.0)
    assert config.wall_wait.poll_interval_s == 3.0
    assert config.wall_wait.timeout_s == 7200 / 5 and config.wall_wait.not_found_grace_s == 24.0
    retry = config.wall_retry
    assert (retry.base_delay_s, retry.max_delay_s, retry.quota_delay_s) == (0.1, 6.0, 12.0)
    assert retry.request_timeout_s == 60.0  # a socket timeout, not AWS time
    assert retry.max_attempts == config.retry.max_attempts
    # the lane breaker's times too (its failure count is not a time)
    breaker = (retry.max_outage_s, retry.breaker_cooldown_s, retry.breaker_max_cooldown_s)
    assert breaker == (360.0, 0.2, 12.0) and retry.breaker_failures == 5
    assert config.bucket_options() == pytest.approx(
        {
            "min_coalesce_s": 0.2,
            "max_credit_s": 0.2,
            "recovery_fraction_per_s": 0.25,
            "probe_fraction": 0.1,  # a share of a speed: not scaled
            "probe_memory_s": 12.0,
            "refill_period_s": 0.2,
        }
    )
    # The config itself keeps AWS seconds, so a snapshot round-trips without double scaling.
    again = FleetConfig.from_snapshot(json.loads(config.model_dump_json()))
    assert again.wall_wait == config.wall_wait and again.time_scale == 5.0


def test_the_limiter_runs_on_the_scaled_clock() -> None:
    now = [0.0]
    config = parse_config({"targets": TARGETS, "time_scale": 5.0})
    limiter = Limiter.from_limits(
        config.limits_for("us-east-1"), clock=lambda: now[0], **config.bucket_options()
    )
    bucket = limiter.bucket("CreateImage")
    assert isinstance(bucket, AdaptiveTokenBucket)
    assert bucket.on_throttle() == pytest.approx(25 * 0.7)  # cut once
    now[0] = 0.15  # 0.75 AWS s later: the same event
    assert bucket.on_throttle() == pytest.approx(25 * 0.7)
    now[0] = 0.25  # 1.25 AWS s: a new one
    assert bucket.on_throttle() == pytest.approx(25 * 0.49)
    # Recovery: 5 % of the ceiling per AWS second = 1.25/s per 0.2 wall s (the credit cap);
    # a tenth of it, since the cut repeated within 60 AWS s ...
    now[0] = 1.25
    bucket.on_success()
    assert bucket.rate_per_s == pytest.approx(25 * 0.49 + 0.1 * 0.05 * 25 * 5 * 0.2)
    # ... which are 12 wall s: then full speed again.
    rate = bucket.rate_per_s
    now[0] = 0.25 + 12.0 + 0.1
    bucket.on_success()
    assert bucket.rate_per_s == pytest.approx(rate + 0.05 * 25 * 5 * 0.2)


def test_time_scale_must_be_positive() -> None:
    from fleetimage.core.errors import ConfigError

    with pytest.raises(ConfigError, match="time_scale"):
        parse_config({"targets": TARGETS, "time_scale": 0})
