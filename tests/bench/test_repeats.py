"""Each repetition of a scenario draws its injected faults from its own seed (seed + r, the
same for every contender's r-th run) over the same fleet and pending times, so a median is
over several fault draws rather than three replays of one (benchmarks/README.md)."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import harness
from benchmarks.scenarios import load_scenarios
from fleetimage.mock import MockConfig
from fleetimage.mock.fleet import Fleet


class _Made(Exception):
    """Raised by the stand-in mock process once it has made its config."""


def test_each_repeat_draws_its_own_faults_over_the_same_fleet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sc = load_scenarios()["faults"]
    made: list[MockConfig] = []

    class Mock:
        def __init__(self, make_config: Any) -> None:
            made.append(make_config())
            raise _Made

    monkeypatch.setattr(harness, "MockProcess", Mock)
    asked: list[int] = []
    real = harness.run_contender

    def run_contender(*args: Any, repeat: int = 0, **kwargs: Any) -> dict[str, Any]:
        asked.append(repeat)
        with pytest.raises(_Made):
            real(*args, repeat=repeat, **kwargs)
        return {"error": "the mock is a stand-in here"}

    monkeypatch.setattr(harness, "run_contender", run_contender)
    harness.run_scenario(sc, ["fleetimage", "boto3-batch-standard"], log=lambda _: None)

    assert asked == [0, 0, 1, 1, 2, 2]  # interleaved: the r-th run of each contender alike
    assert [c.faults.seed for c in made] == [sc.seed + r for r in asked]
    assert {c.faults.throttle for c in made} == {0.05}
    first, other = Fleet(made[0]), Fleet(made[-1])
    lanes = [(a, r) for a in sc.account_ids for r in sc.region_names]
    assert len(lanes) == 8
    for account, region in lanes:
        ids = list(first.state(account, region).instances)
        assert len(ids) == sc.instances_per_region
        assert ids == list(other.state(account, region).instances)
        assert [first.pending_aws_s(account, region, i) for i in ids] == [
            other.pending_aws_s(account, region, i) for i in ids
        ]
