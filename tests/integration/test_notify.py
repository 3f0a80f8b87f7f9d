"""Notifications end to end: SNS Publish through aiobotocore on the mock, a chat webhook
through aiohttp on a local receiver (127.0.0.1), and dead webhooks that change nothing."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from fleetimage import Outcome, image_fleet, parse_config
from fleetimage.aws.clients import new_session
from fleetimage.aws.notify import WebhookChannel
from fleetimage.engine.notify import notifier_for
from fleetimage.mock import MockConfig, Outage
from fleetimage.output.notices import run_notice
from fleetimage.output.notifier import Notifier

TOPIC = "arn:aws:sns:eu-west-1:123456789012:fleet-alerts"
HOOK = "FLEET_HOOK_URL"


class Receiver:
    """A chat webhook on 127.0.0.1: keeps every JSON body; ``mode`` ok, 500 or hang."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.posts: list[Any] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.append(await request.json())
        if self.mode == "500":
            return web.Response(status=500, text="boom")
        if self.mode == "hang":
            await asyncio.sleep(3600)  # bounded by the notifier's timeout, cut at teardown
        return web.Response(text="ok")

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/services/T000/B000/secret-token", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/services/T000/B000/secret-token"
        return self


@pytest.fixture
async def receiver() -> AsyncIterator[Callable[[str], Awaitable[Receiver]]]:
    started: list[Receiver] = []

    async def factory(mode: str = "ok") -> Receiver:
        started.append(await Receiver(mode).start())
        return started[-1]

    yield factory
    for r in started:
        assert r.runner is not None
        await r.runner.cleanup()


def refused_url() -> str:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook/secret-token"


def config(**notify: Any) -> dict[str, Any]:
    return {
        "name": "prod",
        "targets": [{"regions": ["eu-west-1"], "all_instances": True}],
        "limits": {"CreateImage": {"burst": 50, "rate_per_s": 250}},
        "wait": {"poll_interval_s": 0.05, "timeout_s": 60, "not_found_grace_s": 5},
        "retry": {
            "base_delay_s": 0.01,
            "max_delay_s": 0.1,
            "max_outage_s": 30,
            "breaker_cooldown_s": 0.05,
            "breaker_max_cooldown_s": 0.2,
        },
        "max_errors": "100%",
        # generous bounds: a loaded machine must not make a live channel look dead
        "notify": {"timeout_s": 10, "attempts": 3, **notify},
    }


def small_mock(**kwargs: Any) -> MockConfig:
    kwargs.setdefault("instances_per_region", 4)
    return MockConfig(
        regions=("eu-west-1",),
        state_mix={"running": 1.0},
        time_scale=50,
        pending_s=1.0,
        **kwargs,
    )


async def run_notified(cfg: dict[str, Any], mock: Any, url: str = "") -> tuple[Any, Any]:
    """A run observed by the config's notifier, then the end-of-run notice, as the CLI does."""
    config_ = parse_config(cfg)
    notifier = notifier_for(
        config_, session=new_session(), endpoint_url=mock.endpoint_url, environ={HOOK: url}
    )
    assert notifier is not None
    async with notifier:
        report = await image_fleet(config_, endpoint_url=mock.endpoint_url, on_event=[notifier])
        notifier.post(run_notice(report, Path("fleetimage-report.json"), fleet=config_.name))
    return report, notifier


async def test_run_end_goes_to_sns_on_the_mock_and_to_the_webhook(
    fleet_mock: Any, receiver: Any
) -> None:
    mock = await fleet_mock(small_mock())
    hook = await receiver()
    report, notifier = await run_notified(
        config(sns_topic_arn=TOPIC, webhook_url_env=HOOK), mock, hook.url
    )
    assert report.ok and report.counts["available"] == 4
    assert mock.count("Publish", "ok", region="eu-west-1") == 1  # signed for the topic's region
    [published] = mock.sns_messages
    assert published.topic_arn == TOPIC
    assert published.subject == f"fleetimage run {report.run_id} of fleet prod finished: ok"
    head, verdict, where = published.message.splitlines()
    assert head == f"✅ fleetimage run {report.run_id} of fleet prod finished: ok"
    assert verdict.startswith("4 targets in ") and verdict.endswith(": 4 available: ok")
    assert where == "report: fleetimage-report.json"
    assert hook.posts == [{"text": published.message}]  # one JSON POST, chat-ready text
    assert sorted((d.channel, d.kind, d.ok) for d in notifier.deliveries) == [
        ("sns", "run_finished", True),
        ("webhook", "run_finished", True),
    ]


async def test_dead_webhooks_change_nothing_and_are_reported(
    fleet_mock: Any, receiver: Any
) -> None:
    """Refused, HTTP 500 and hanging webhooks at once, beside a live SNS topic, in one run."""
    mock = await fleet_mock(small_mock())
    cfg = parse_config(config(sns_topic_arn=TOPIC, timeout_s=3))
    built = notifier_for(cfg, session=new_session(), endpoint_url=mock.endpoint_url)
    assert built is not None
    hooks = {"refused": refused_url(), "500": (await receiver("500")).url}
    hooks["hang"] = (await receiver("hang")).url
    channels: list[Any] = [*built.channels]
    for mode, url in hooks.items():
        channel = WebhookChannel(url, request_timeout_s=1.0)  # 3 s / 3 attempts, as built
        channel.name = f"webhook-{mode}"
        channels.append(channel)
    notifier = Notifier(channels, fleet="prod", attempts=3, timeout_s=3)
    async with notifier:
        report = await image_fleet(cfg, endpoint_url=mock.endpoint_url, on_event=[notifier])
        notifier.post(run_notice(report, None, fleet="prod"))

    assert report.ok and [r.outcome for r in report.results] == [Outcome.AVAILABLE] * 4
    assert [d.channel for d in notifier.deliveries if d.ok] == ["sns"]
    failed = {d.channel: d for d in notifier.failures}
    assert set(failed) == {"webhook-refused", "webhook-500", "webhook-hang"}
    assert failed["webhook-refused"].attempts == 3
    assert "cannot connect (Connection refused)" in failed["webhook-refused"].error
    assert failed["webhook-500"].attempts == 3
    assert "answered HTTP 500" in failed["webhook-500"].error
    # 1 s per attempt: tried again after each, until the 3 s bound
    assert failed["webhook-hang"].attempts >= 1
    assert "no answer in time" in failed["webhook-hang"].error
    for d in failed.values():
        assert "secret-token" not in d.error and "127.0.0.1" not in d.error
    assert mock.count("Publish", "ok") == 1  # the live channel is unaffected


async def test_the_error_budget_tripping_is_announced(fleet_mock: Any, receiver: Any) -> None:
    mock = await fleet_mock(small_mock(failure_rate=1.0))
    hook = await receiver()
    cfg = config(webhook_url_env=HOOK)
    cfg["max_errors"] = 0
    report, notifier = await run_notified(cfg, mock, hook.url)

    assert report.counts["failed"] >= 1
    kinds = [d.kind for d in notifier.deliveries if d.ok]
    assert kinds == ["error_budget", "run_finished"], notifier.deliveries
    budget = hook.posts[0]["text"]
    assert budget.startswith(f"⚠️ fleetimage run {report.run_id} of fleet prod: error budget")
    assert "exceed max_errors" in budget


async def test_a_lane_failing_for_long_then_stopping_is_announced(
    fleet_mock: Any, receiver: Any
) -> None:
    mock = await fleet_mock(
        small_mock(outages=(Outage(0, 1_000_000, region="eu-west-1", action="CreateImage"),))
    )
    hook = await receiver()
    cfg = config(webhook_url_env=HOOK, outage_alert_s=0.1)
    cfg["retry"]["max_outage_s"] = 1.0
    report, notifier = await run_notified(cfg, mock, hook.url)

    assert not report.ok  # the lane stopped: its targets are not started or unknown
    kinds = [d.kind for d in notifier.deliveries if d.ok]
    assert kinds == ["lane_outage", "lane_stopped", "run_finished"], notifier.deliveries
    account = mock.config.accounts[0]
    outage, stopped, _ = (p["text"] for p in hook.posts)
    assert f"lane {account}/eu-west-1 failing" in outage and "CreateImage" in outage
    assert f"lane {account}/eu-west-1 stopped" in stopped
    assert f"fleetimage resume {report.run_id}" in stopped
