"""Credentials over real durations, through the real aiobotocore client against the mock.

Sessions are time-scaled (900 AWS seconds at time_scale 300 last 3 wall seconds); the mock
counts every AssumeRole and every answer refused as expired. No assertion is about time:
renewals are bounded by the run's length measured on the mock's own clock.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from fleetimage import Outcome, image_fleet, parse_config
from fleetimage.core.models import ImageResult
from fleetimage.mock import FaultConfig, MockConfig, MockEC2

OWN = "123456789012"
ACCOUNT_A = "111111111111"
ACCOUNT_B = "222222222222"
ROLE_A = f"arn:aws:iam::{ACCOUNT_A}:role/fleetimage"
ROLE_B = f"arn:aws:iam::{ACCOUNT_B}:role/fleetimage"
REGIONS = ("us-east-1", "eu-west-1")


def config(scale: float, targets: list[dict[str, Any]], **overrides: Any) -> Any:
    """Client limits matching the mock's time-scaled buckets; short polls and backoffs."""
    cfg: dict[str, Any] = {
        "targets": targets,
        "limits": {
            "CreateImage": {"burst": 50, "rate_per_s": 5 * scale},
            "DescribeImages": {"burst": 100, "rate_per_s": 20 * scale},
            "DescribeInstances": {"burst": 100, "rate_per_s": 20 * scale},
        },
        "wait": {"poll_interval_s": 0.2, "timeout_s": 300, "not_found_grace_s": 5},
        "retry": {"base_delay_s": 0.01, "max_delay_s": 0.2, "quota_delay_s": 0.1},
        "max_errors": "100%",
    }
    cfg.update(overrides)
    return parse_config(cfg)


def imageable(mock: MockEC2, account: str, regions: tuple[str, ...]) -> int:
    return sum(
        i["state"] in {"running", "stopped", "stopping"}
        for r in regions
        for i in mock.instances(account, r)
    )


def one_line(text: str | None) -> str:
    assert text and "\n" not in text, text
    return text


async def until(condition: Any, bound_s: float = 60.0) -> None:
    """Poll the mock's counters (they change on the mock's side: no event to wait for)."""
    with anyio.fail_after(bound_s):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.02)


# --- sessions that renew themselves -----------------------------------------------------------


async def test_two_accounts_with_900s_sessions_renew_through_a_run_of_several_sessions(
    fleet_mock: Any,
) -> None:
    mock = await fleet_mock(
        MockConfig(
            regions=REGIONS,
            accounts=(OWN, ACCOUNT_A, ACCOUNT_B),
            instances_per_region=4,
            state_mix={"running": 1.0},
            seed=21,
            time_scale=300,  # a 900 s session lasts 3 wall seconds
            pending_s=2700,  # every image pends for 3 sessions
            # Renewals go through the retry: a third of AssumeRole answers are 500s.
            faults=FaultConfig(internal_error=0.3, actions=frozenset({"AssumeRole"})),
        )
    )
    accounts = [{"role_arn": role, "duration_s": 900} for role in (ROLE_A, ROLE_B)]
    cfg = config(300, [{"regions": list(REGIONS), "all_instances": True, "accounts": accounts}])
    started = mock.aws_now()
    report = await image_fleet(cfg, endpoint_url=mock.endpoint_url)
    sessions = (mock.aws_now() - started) / 900

    expected = imageable(mock, ACCOUNT_A, REGIONS) + imageable(mock, ACCOUNT_B, REGIONS)
    assert expected == 16 and report.counts["available"] == expected
    assert not report.failures() and not report.lane_failures
    assert mock.duplicates() == {}
    assert sessions >= 3
    for account in (ACCOUNT_A, ACCOUNT_B):
        renewals = mock.assume_role_count(account=account) - 1  # the first one is the issue
        assert 2 <= renewals <= sessions + 2, (account, renewals, sessions)
    assert mock.count(action="AssumeRole", outcome="fault") > 0  # retried, never fatal
    # None of the renewed sessions' keys shows anywhere the run reports.
    state: Any = mock.credential_state()
    keys = [session["access_key_id"] for session in state["sessions"]]
    shown = report.to_json() + report.to_csv() + repr(report)
    assert len(keys) >= 6 and not [key for key in keys if key in shown]


async def test_a_session_expired_mid_run_is_renewed_once_and_nothing_fails(
    fleet_mock: Any,
) -> None:
    mock = await fleet_mock(
        MockConfig(
            regions=REGIONS[:1],
            accounts=(OWN, ACCOUNT_A),
            instances_per_region=12,
            state_mix={"running": 1.0},
            seed=22,
            time_scale=20,
            pending_s=100,
        )
    )
    cfg = config(
        20,
        [{"regions": list(REGIONS[:1]), "all_instances": True, "accounts": [{"role_arn": ROLE_A}]}],
        limits={"CreateImage": {"burst": 1, "rate_per_s": 4}},  # ~3 wall s of CreateImage
    )
    reports = []

    async def run() -> None:
        reports.append(await image_fleet(cfg, endpoint_url=mock.endpoint_url))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await until(lambda: mock.count(action="CreateImage", outcome="ok") >= 3)
        # Revoked mid-run, while CreateImage calls and polls are under way.
        assert mock.expire_all_session_credentials() == 1
    (report,) = reports

    assert report.counts["available"] == 12 and not report.failures()
    assert mock.duplicates() == {}
    assert mock.count(outcome="expired", account=ACCOUNT_A) >= 1
    # One forced renewal for every request signed with the revoked keys: no storm.
    assert mock.assume_role_count(ROLE_A) == 2


# --- duration_s the role refuses --------------------------------------------------------------


@pytest.mark.parametrize("chained", [True, False])
async def test_duration_s_the_role_refuses_fails_that_lane_in_one_line(
    fleet_mock: Any, sts_client: Any, monkeypatch: pytest.MonkeyPatch, chained: bool
) -> None:
    mock = await fleet_mock(
        MockConfig(
            regions=REGIONS[:1],
            accounts=(OWN, ACCOUNT_A, ACCOUNT_B),
            instances_per_region=3,
            state_mix={"running": 1.0},
            seed=23,
            time_scale=20,
            pending_s=20,
            # Chained: the role itself allows 12 h; the chain caps at 1 h (and AWS fails).
            role_max_session_s={ROLE_A: 43200} if chained else None,
        )
    )
    if chained:  # our own credentials are an assumed role's session (Kubernetes, Batch)
        async with sts_client(mock) as sts:
            answer = await sts.assume_role(
                RoleArn=f"arn:aws:iam::{OWN}:role/runner", RoleSessionName="pod"
            )
        keys = answer["Credentials"]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys["SecretAccessKey"])
        monkeypatch.setenv("AWS_SESSION_TOKEN", keys["SessionToken"])
    accounts = [{"role_arn": ROLE_A, "duration_s": 7200}, {"role_arn": ROLE_B}]
    cfg = config(20, [{"regions": list(REGIONS[:1]), "all_instances": True, "accounts": accounts}])
    report = await image_fleet(cfg, endpoint_url=mock.endpoint_url)

    (lane,) = report.lane_failures
    assert (lane.account, lane.action) == (ACCOUNT_A, "AssumeRole")
    assert lane.error_code == "ValidationError"
    message = one_line(lane.error_message)
    assert "duration_s = 7200" in message
    assert ("chaining" in message) if chained else ("MaxSessionDuration" in message)
    assert report.counts["available"] == 3  # account B (3600 s, chained or not) went on
    assert mock.count(account=ACCOUNT_A, action="DescribeInstances") == 0


# --- expired credentials that renewing cannot fix -------------------------------------------


def _stopped(results: list[ImageResult]) -> list[ImageResult]:
    return [r for r in results if r.outcome is not Outcome.AVAILABLE]


async def test_own_env_credentials_expiring_stop_the_lane_in_one_line(fleet_mock: Any) -> None:
    mock = await fleet_mock(
        MockConfig(
            regions=REGIONS[:1],
            instances_per_region=12,
            state_mix={"running": 1.0},
            seed=24,
            time_scale=20,
            pending_s=100_000,  # still pending when the keys expire
        )
    )
    cfg = config(
        20,
        [{"regions": list(REGIONS[:1]), "all_instances": True}],
        limits={"CreateImage": {"burst": 1, "rate_per_s": 4}},
        concurrency={"max_in_flight_per_region": 2},
    )
    reports = []

    async def run() -> None:
        reports.append(await image_fleet(cfg, endpoint_url=mock.endpoint_url))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await until(lambda: mock.count(action="CreateImage", outcome="ok") >= 3)
        mock.set_own_credentials_expiry(mock.aws_now())  # e.g. an exported session token
    (report,) = reports

    stopped = _stopped(report.results)
    assert len(stopped) == 12  # created ones cannot be polled any more either
    # unstarted, or created and now of unknown state: CredentialsExpired; a request that was in
    # flight when the keys expired: unknown (NoAnswer), looked up by name on resume
    assert {r.error_code for r in stopped} <= {"CredentialsExpired", "NoAnswer"}
    assert {r.outcome for r in stopped} <= {Outcome.NOT_STARTED, Outcome.UNKNOWN}
    for result in stopped:
        if result.error_code == "CredentialsExpired":
            assert "your own AWS credentials" in one_line(result.error_message)
    # The lane stopped at the first expiry answer: only requests already in flight got one
    # (2 CreateImage + 1 poll at most); nothing after it was sent.
    assert 1 <= mock.count(outcome="expired") <= 3
    created = mock.count(action="CreateImage", outcome="ok")
    assert mock.count(action="CreateImage") == created + mock.count(
        action="CreateImage", outcome="expired"
    )
    assert mock.duplicates() == {}


async def test_own_credentials_expiring_stop_assumed_role_lanes_at_their_renewal(
    fleet_mock: Any,
) -> None:
    mock = await fleet_mock(
        MockConfig(
            regions=REGIONS[:1],
            accounts=(OWN, ACCOUNT_A),
            instances_per_region=6,
            state_mix={"running": 1.0},
            seed=25,
            time_scale=150,
            pending_s=100_000,
            own_credentials_expire_after_s=300,  # before the first renewal of a 900 s session
        )
    )
    # "Never used expired" holds while a request signed before the mandatory margin arrives
    # before the expiry. A loaded 2-core host has stalled the loop for longer than the default
    # margin (67 AWS s = 0.22 wall s at time_scale 300); the widest fraction at time_scale 150
    # leaves 225 AWS s = 1.5 wall s.
    accounts = [{"role_arn": ROLE_A, "duration_s": 900, "renew_fraction": 0.5}]
    cfg = config(150, [{"regions": list(REGIONS[:1]), "all_instances": True, "accounts": accounts}])
    report = await image_fleet(cfg, endpoint_url=mock.endpoint_url)

    stopped = _stopped(report.results)
    assert len(stopped) == 6 and {r.error_code for r in stopped} == {"CredentialsExpired"}
    assert all("your own AWS credentials" in one_line(r.error_message) for r in stopped)
    # The renewal was refused (ExpiredToken) and the role's session was never used expired.
    assert mock.count(action="AssumeRole", outcome="expired") >= 1
    assert mock.count(outcome="expired", account=ACCOUNT_A) == 0
    assert mock.assume_role_count(ROLE_A) == 1
