"""Scenarios: ``scenarios.yaml`` → :class:`Scenario` (mock config, fleet config, limits)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from fleetimage.mock import FaultConfig, MockConfig, load_default_limits

__all__ = ["REGIONS", "SCENARIOS_FILE", "Scenario", "load_scenarios"]

SCENARIOS_FILE = Path(__file__).with_name("scenarios.yaml")
REGIONS = (
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-2",
    "ap-northeast-1",
    "us-east-2",
    "eu-west-2",
    "ap-southeast-1",
    "ca-central-1",
    "sa-east-1",
    "eu-north-1",
    "ap-south-1",
    "us-west-1",
    "eu-west-3",
    "ap-northeast-2",
)
ACCOUNTS = ("111111111111", "222222222222", "333333333333", "444444444444")
# The actions whose buckets the contenders meet (the bound uses CreateImage's).
BUCKET_ACTIONS = ("CreateImage", "DescribeImages", "DescribeInstances")


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    instances: int
    regions: int
    accounts: int
    time_scale: float
    seed: int
    pending_s: float
    pending_sigma: float
    throttling: bool
    neighbour_load: float
    faults: dict[str, float]
    fault_actions: tuple[str, ...]
    poll_interval_s: float
    waiter_delay_s: float
    max_in_flight_per_region: int
    max_pending_images_per_region: int
    time_limit_s: float
    state_mix: dict[str, float] | None = None
    baseline_time_limit_s: float | None = None
    quick: dict[str, Any] = field(default_factory=dict)

    @property
    def region_names(self) -> tuple[str, ...]:
        return REGIONS[: self.regions]

    @property
    def account_ids(self) -> tuple[str, ...]:
        return ACCOUNTS[: self.accounts]

    @property
    def instances_per_region(self) -> int:
        return math.ceil(self.instances / (self.regions * self.accounts))

    def limits(self) -> dict[str, tuple[float, float]]:
        """AWS's (burst, rate_per_s) per action, unscaled (the mock scales the rates)."""
        return load_default_limits()

    def mock_config(self) -> MockConfig:
        return MockConfig(
            regions=self.region_names,
            accounts=self.account_ids,
            instances_per_region=self.instances_per_region,
            seed=self.seed,
            time_scale=self.time_scale,
            pending_s=self.pending_s,
            pending_sigma=self.pending_sigma,
            throttling=self.throttling,
            neighbour_load=self.neighbour_load,
            state_mix=self.state_mix,
            faults=FaultConfig(**self.faults, actions=frozenset(self.fault_actions))
            if self.faults
            else FaultConfig(),
        )

    @property
    def baseline_limit_s(self) -> float:
        """The cut-off of the boto3 baselines (wall seconds)."""
        return self.baseline_time_limit_s or self.time_limit_s

    def wall(self, aws_s: float) -> float:
        return aws_s / self.time_scale

    def fleet_config(self) -> dict[str, Any]:
        """fleetimage's config: client-side limits equal to the mock's *scaled* limits."""
        ts = self.time_scale
        if self.throttling:
            limits = {
                a: {"burst": int(b), "rate_per_s": r * ts}
                for a, (b, r) in self.limits().items()
                if a in BUCKET_ACTIONS
            }
        else:  # the mock has no buckets: neither should the client
            limits = {a: {"burst": 1_000_000, "rate_per_s": 1e9} for a in BUCKET_ACTIONS}
        _own, *others = self.account_ids
        targets: list[dict[str, Any]] = [
            {"regions": list(self.region_names), "all_instances": True}
        ]
        for account in others:
            targets.append(
                {
                    "regions": list(self.region_names),
                    "all_instances": True,
                    "accounts": [{"role_arn": f"arn:aws:iam::{account}:role/fleetimage"}],
                }
            )
        return {
            "targets": targets,
            "image": {
                "name_template": "bench-{instance_id}-{run_id}",
                "tags": {"Purpose": "bench"},
            },
            "wait": {
                "poll_interval_s": self.wall(self.poll_interval_s),
                "timeout_s": self.time_limit_s * 4,
                "not_found_grace_s": max(self.wall(120.0), 1.0),
            },
            "limits": limits,
            "concurrency": {
                "max_in_flight_per_region": self.max_in_flight_per_region,
                "max_pending_images_per_region": self.max_pending_images_per_region,
            },
            # AWS-second backoffs, scaled like everything else.
            "retry": {
                "base_delay_s": self.wall(0.5),
                "max_delay_s": self.wall(30.0),
                "quota_delay_s": self.wall(60.0),
                "max_outage_s": self.wall(1800.0),
                "breaker_cooldown_s": self.wall(1.0),
                "breaker_max_cooldown_s": self.wall(60.0),
            },
            "max_errors": "100%",
        }

    def for_quick(self) -> Scenario:
        return replace(self, **self.quick)


def load_scenarios(path: Path = SCENARIOS_FILE) -> dict[str, Scenario]:
    raw = yaml.safe_load(path.read_text("utf-8"))
    defaults: dict[str, Any] = raw.get("defaults", {})
    out: dict[str, Scenario] = {}
    for name, entry in raw["scenarios"].items():
        data = {**defaults, **entry}
        data["fault_actions"] = tuple(data.get("fault_actions", ()))
        out[name] = Scenario(name=name, **data)
    return out
