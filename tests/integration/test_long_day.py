"""A long day on the mock: hours of AWS time in seconds of wall time, everything real-time
does to a run at once.

The mock runs 1200× faster than AWS and the engine is told so (``time_scale: 1200`` in the
config: every time constant of the client — breaker, backoff, renewal margins, polls — is in
AWS seconds and scaled through the configuration). Two accounts are reached through
AssumeRole with 900-second sessions; images pend 1-2 hours (log-normal) with a 4-hour wait
timeout; CreateImage is down for 20 minutes in one region at the start, DescribeImages for 15
minutes in the other during the wait; one instance is terminated before its image could be
requested, one after.
"""

from __future__ import annotations

from typing import Any

from fleetimage import Created, Discovered, Event, Outcome, parse_config
from fleetimage.engine.api import image_fleet
from fleetimage.mock import MockConfig, Outage

OWN = "123456789012"
ACCOUNTS = ("111111111111", "222222222222")
REGIONS = ("us-east-1", "eu-west-1")
SCALE = 1200.0
SESSION_S = 900


def long_day_config() -> dict[str, Any]:
    roles = [
        {"role_arn": f"arn:aws:iam::{a}:role/fleetimage", "duration_s": SESSION_S} for a in ACCOUNTS
    ]
    return {
        "targets": [{"regions": list(REGIONS), "all_instances": True, "accounts": roles}],
        "time_scale": SCALE,
        "wait": {"timeout_s": 4 * 3600},
        "max_errors": "100%",
    }


def long_day_mock() -> MockConfig:
    return MockConfig(
        regions=REGIONS,
        accounts=(OWN, *ACCOUNTS),
        instances_per_region=12,
        state_mix={"running": 1.0},
        seed=2026,
        time_scale=SCALE,
        pending_s=5000,  # median ~1.4 h
        pending_sigma=0.2,  # ~1-2 h
    )


async def test_a_long_day(fleet_mock: Any) -> None:
    mock = await fleet_mock(long_day_mock())
    a, b = ACCOUNTS
    early = mock.instances(a, "us-east-1")[0]["instance_id"]  # CreateImage is down there
    late = mock.instances(b, "eu-west-1")[0]["instance_id"]

    outages: list[Outage] = []

    def script(event: Event) -> None:
        # The outages start when the run gets there (start-up takes AWS minutes at 1200×):
        # CreateImage in us-east-1 for 20 minutes from its lane's discovery; DescribeImages in
        # eu-west-1 for 15 minutes, 20 minutes into the wait (1 s and 0.75 s of wall time: long
        # enough that a call lands in each even when a loaded machine stalls the loop; both
        # stay under retry.max_outage_s, 30 minutes, so neither stops its lane).
        t = mock.aws_now()
        if isinstance(event, Discovered) and event.region == "us-east-1" and not outages:
            outages.append(Outage(t, t + 1200, region="us-east-1", action="CreateImage"))
            mock.add_outage(outages[-1])
        if isinstance(event, Created) and event.region == "eu-west-1" and len(outages) == 1:
            outages.append(Outage(t + 1200, t + 2100, region="eu-west-1", action="DescribeImages"))
            mock.add_outage(outages[-1])
        # early: found running, terminated before its CreateImage could be sent (the outage);
        # late: terminated once its image exists
        if isinstance(event, Discovered) and event.instance_id == early:
            mock.set_instance_state(a, "us-east-1", early, "terminated")
        if isinstance(event, Created) and event.instance_id == late:
            mock.set_instance_state(b, "eu-west-1", late, "terminated")

    report = await image_fleet(
        parse_config(long_day_config()), endpoint_url=mock.endpoint_url, on_event=script
    )

    by_id = {r.instance_id: r for r in report.results}
    assert by_id[early].outcome is Outcome.SKIPPED, by_id[early]
    assert by_id[late].outcome is Outcome.AVAILABLE, by_id[late]  # created, then terminated
    rest = [r for r in report.results if r.instance_id != early]
    assert len(rest) == 2 * 2 * 12 - 1
    assert {r.outcome for r in rest} == {Outcome.AVAILABLE}, report.failures()[:3]
    assert not mock.duplicates() and not report.lane_failures
    run_s = mock.aws_now()
    assert run_s > 2 * 3600 * 0.9  # it really was a long day (AWS seconds)
    for account in ACCOUNTS:  # sessions renewed, and without a storm
        renewals = mock.assume_role_count(account=account) - 1
        assert 2 <= renewals <= run_s / SESSION_S + 2, (account, renewals, run_s)
    outage = mock.count(action="CreateImage", region="us-east-1", outcome="outage")
    assert outage > 0 and mock.count(action="DescribeImages", region="eu-west-1", outcome="outage")
    print(
        f"long day: {run_s / 3600:.1f} h of AWS time; {outage} CreateImage answers lost to the "
        f"outage; renewals {[mock.assume_role_count(account=x) - 1 for x in ACCOUNTS]}"
    )
