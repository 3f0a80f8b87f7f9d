"""Scenarios: ``scenarios.yaml`` → :class:`Scenario` (mock config, fleet config, limits)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from fleetimage.mock import FaultConfig, MockConfig, load_default_limits
from fleetimage.mock.copy_config import CopyConfig

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
    # org-scale's 20 regions (real EC2 region names: fleetimage checks only their shape)
    "eu-south-1",
    "ap-northeast-3",
    "me-central-1",
    "af-south-1",
)
ACCOUNTS = ("111111111111", "222222222222", "333333333333", "444444444444", "555555555555")


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
    refill: str
    server_limits: dict[str, list[float]]
    neighbour_load: float
    faults: dict[str, float]
    fault_actions: tuple[str, ...]
    waiter_delay_s: float
    repeats: int
    sample_repeats: int
    cutoff_bounds: float
    sample_cutoff_bounds: float
    baseline_cutoff_bounds: float
    time_limit_s: float
    fleetimage: dict[str, Any]
    state_mix: dict[str, float] | None = None
    contenders: tuple[str, ...] | None = None
    quick: dict[str, Any] = field(default_factory=dict)
    kind: str = "image"  # or "prune": benchmarks/prune_bench.py (instances = images)
    # A copy scenario (benchmarks/copy_bench.py): {destination, pending_s, pending_sigma,
    # max_concurrent}; empty for imaging scenarios.
    copy: dict[str, Any] = field(default_factory=dict)

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
        """The *server's* (burst, rate_per_s) per action in AWS seconds: AWS's defaults with
        the scenario's ``server_limits`` (the mock scales the rates)."""
        merged = load_default_limits()
        for action, (burst, rate) in self.server_limits.items():
            merged[action] = (float(burst), float(rate))
        return merged

    def mock_config(self, repeat: int = 0) -> MockConfig:
        """The mock of this scenario's ``repeat``-th run: the same fleet and pending times
        for every run; its faults drawn from seed + repeat (benchmarks/README.md)."""
        return MockConfig(
            regions=self.region_names,
            accounts=self.account_ids,
            instances_per_region=self.instances_per_region,
            seed=self.seed,
            time_scale=self.time_scale,
            pending_s=self.pending_s,
            pending_sigma=self.pending_sigma,
            throttling=self.throttling,
            limits=self.limits() if self.server_limits else None,
            neighbour_load=self.neighbour_load,
            state_mix=self.state_mix,
            faults=FaultConfig(
                **self.faults, actions=frozenset(self.fault_actions), seed=self.seed + repeat
            )
            if self.faults
            else FaultConfig(),
            refill=self.refill,
            copies=CopyConfig(
                pending_s=float(self.copy.get("pending_s", 4.0)),
                pending_sigma=float(self.copy.get("pending_sigma", 0.0)),
                max_concurrent=int(self.copy.get("max_concurrent", 100)),
            ),
        )

    def wall(self, aws_s: float) -> float:
        return aws_s / self.time_scale

    def fleet_config(self) -> dict[str, Any]:
        """fleetimage's config: its defaults (AWS's limits and timings, in AWS seconds), the
        scenario's time scale, and only the overrides the scenario states (``fleetimage``)."""
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
            "time_scale": float(self.time_scale),
            **(
                {
                    "copy": {
                        "regions": [self.copy["destination"]],
                        "max_concurrent_per_region": int(self.copy["max_concurrent"]),
                    }
                }
                if self.copy
                else {}
            ),
            **self.fleetimage,
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
        if data.get("contenders") is not None:
            data["contenders"] = tuple(data["contenders"])
        scenario = Scenario(name=name, **data)
        # Slicing past the end would silently give a smaller fleet than the file says.
        if not 1 <= scenario.regions <= len(REGIONS):
            raise ValueError(f"{path}: {name}.regions must be 1..{len(REGIONS)}")
        if not 1 <= scenario.accounts <= len(ACCOUNTS):
            raise ValueError(f"{path}: {name}.accounts must be 1..{len(ACCOUNTS)}")
        out[name] = scenario
    return out
