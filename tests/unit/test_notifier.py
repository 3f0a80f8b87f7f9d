"""The notifier without a network: which events become notices, that nothing is sent twice,
that a hanging channel is given up on (and recorded), and the notify/OU config values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from fleetimage import parse_config
from fleetimage.config import AccountSpec, OrgUnitSpec
from fleetimage.core.errors import ConfigError
from fleetimage.core.models import BreakerChanged, BreakerState, RunStopping
from fleetimage.output.notices import outage_notice
from fleetimage.output.notifier import Notifier

AT = datetime(2026, 11, 29, tzinfo=UTC)


class Recorder:
    """An in-process channel (no wire): keeps what it is given, or hangs."""

    def __init__(self, name: str = "fake", *, hang: bool = False) -> None:
        self.name = name
        self.hang = hang
        self.sent: list[tuple[str, str]] = []
        self.changed = anyio.Event()

    async def send(self, subject: str, text: str) -> None:
        if self.hang:
            await anyio.sleep_forever()
        self.sent.append((subject, text))
        self.changed.set()
        self.changed = anyio.Event()

    async def wait_for(self, count: int) -> None:
        with anyio.fail_after(10):
            while len(self.sent) < count:
                await self.changed.wait()


def breaker(state: BreakerState, region: str = "us-east-1") -> BreakerChanged:
    return BreakerChanged(
        "RUN", "123456789012", region, None, AT, state, "why", "CreateImage: Unavailable: down"
    )


async def test_a_breaker_that_closes_in_time_is_not_announced() -> None:
    channel = Recorder()
    async with Notifier([channel], outage_alert_s=3600) as notifier:
        notifier(breaker(BreakerState.OPEN))
        notifier(breaker(BreakerState.HALF_OPEN))
        notifier(breaker(BreakerState.CLOSED))
    assert channel.sent == [] and notifier.deliveries == []


async def test_a_long_outage_then_a_stop_is_announced_once_each() -> None:
    channel = Recorder()
    async with Notifier([channel], outage_alert_s=0.01, fleet="prod") as notifier:
        notifier(breaker(BreakerState.OPEN))
        notifier(breaker(BreakerState.OPEN, region="eu-west-1"))
        await channel.wait_for(2)  # one per lane, whatever the timer's lateness
        notifier(breaker(BreakerState.HALF_OPEN))
        notifier(breaker(BreakerState.OPEN))  # the same outage: no second alert
        notifier(breaker(BreakerState.STOPPED))
        notifier(breaker(BreakerState.STOPPED))
    kinds = [d.kind for d in notifier.deliveries]
    assert sorted(kinds) == ["lane_outage", "lane_outage", "lane_stopped"]
    subjects = [s for s, _ in channel.sent]
    assert "fleetimage run RUN of fleet prod: lane 123456789012/us-east-1 stopped" in subjects


async def test_only_the_error_budget_stop_is_announced() -> None:
    channel = Recorder()
    async with Notifier([channel]) as notifier:
        notifier(RunStopping("RUN", "", "", None, AT, "DeadlineReached", 0, 10))
        notifier(RunStopping("RUN", "", "", None, AT, "ErrorBudgetExceeded", 3, 10))
        notifier(RunStopping("RUN", "", "", None, AT, "ErrorBudgetExceeded", 4, 10))
    [(subject, text)] = channel.sent
    assert subject == "fleetimage run RUN: error budget exceeded"
    assert "3 errors of 10 targets exceed max_errors" in text


async def test_a_hanging_channel_is_given_up_on_and_recorded() -> None:
    good, stuck = Recorder("good"), Recorder("stuck", hang=True)
    async with Notifier([good, stuck], timeout_s=0.2) as notifier:
        notifier.post(
            outage_notice(
                "R", fleet=None, account="1", region="r", failing_s=1, last_error="", stopped=True
            )
        )
    assert [d.channel for d in notifier.deliveries if d.ok] == ["good"]
    [failed] = notifier.failures
    assert failed.channel == "stuck" and "gave up after 0.2 s" in failed.error


def test_notice_subjects_fit_sns() -> None:
    notice = outage_notice(
        "R" * 90,
        fleet="ünïcode",
        account="1",
        region="r",
        failing_s=1,
        last_error="x",
        stopped=False,
    )
    assert len(notice.subject) <= 100 and notice.subject.isascii()
    assert "\n" not in notice.subject


def _cfg(**extra: Any) -> dict[str, Any]:
    return {"targets": [{"regions": ["us-east-1"], "all_instances": True}], **extra}


@pytest.mark.parametrize(
    ("environ", "ok"),
    [
        ({"HOOK": "https://hooks.example.com/services/x"}, True),
        ({"HOOK": "http://127.0.0.1:8080/x"}, True),
        ({}, False),
        ({"HOOK": "  "}, False),
        ({"HOOK": "ftp://example.com/x"}, False),
        ({"HOOK": "https:///no-host"}, False),
        ({"HOOK": "http://example.com:99999/x"}, False),
    ],
)
def test_the_webhook_variable(environ: dict[str, str], ok: bool) -> None:
    config = parse_config(_cfg(notify={"webhook_url_env": "HOOK"}), source="f.yaml")
    assert config.notify is not None
    if ok:
        assert config.notify.webhook_url(environ) == environ["HOOK"]
        return
    with pytest.raises(ConfigError) as info:
        config.notify.webhook_url(environ, source="f.yaml")
    assert str(info.value).startswith("f.yaml: notify.webhook_url_env: environment variable HOOK")
    if environ.get("HOOK", "").strip():
        assert environ["HOOK"] not in str(info.value)  # never the value


def test_an_ou_item_becomes_one_role_per_account() -> None:
    item = {
        "organization_unit": "ou-ab12-cd345678",
        "role_name": "team/imager",
        "exclude": [111122223333],  # YAML read it as a number: still an account id
        "duration_s": 900,
    }
    role = {"role_arn": "arn:aws:iam::444455556666:role/fleetimage"}
    config = parse_config(
        _cfg(targets=[{"regions": ["us-east-1"], "all_instances": True, "accounts": [item, role]}])
    )
    ou, plain = config.targets[0].accounts
    assert isinstance(ou, OrgUnitSpec) and isinstance(plain, AccountSpec)
    assert ou.exclude == ("111122223333",)
    spec = ou.account("777788889999", "aws-us-gov")
    assert spec.role_arn == "arn:aws-us-gov:iam::777788889999:role/team/imager"
    assert spec.duration_s == 900 and spec.session_name == "fleetimage"
    # snapshots (the journal's copy) read back the same items
    assert type(config).from_snapshot(config.model_dump(mode="json")) == config


def test_a_run_wide_event_makes_no_progress_lane() -> None:
    from fleetimage.output.progress import ProgressTracker

    tracker = ProgressTracker()
    tracker(RunStopping("RUN", "", "", None, AT, "ErrorBudgetExceeded", 3, 10))
    assert tracker.rows() == []
