"""Hostile and odd input: each is a clear error or a correct result, never a crash or a silent skip.

- tag values AMI names refuse (punctuation, unicode, control characters, empty, missing,
  500 characters) rendered into names: always valid, unique per instance, stable across resume;
- instance tags that look like fleetimage's own, and images pre-created under the name the
  engine will render: never adopted;
- instances that vanish, images deregistered while pending, regions that answer only
  AuthFailure / UnauthorizedOperation / an HTML 500 (through a small loopback proxy in front
  of the mock: the mock itself has no per-region denial), accounts whose AssumeRole fails:
  reported per target (or per lane) with the reason, and the rest of the fleet completes;
- journal files that are corrupt, locked, foreign or of another schema: one-line
  JournalError, original file untouched.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetimage import Created, JournalError, Outcome, Requested, image_fleet, parse_config
from fleetimage.core.models import Event, JournalState, TargetRecord
from fleetimage.core.naming import AMI_NAME_MAX, is_valid_ami_name, render_name
from fleetimage.core.tags import INSTANCE_TAG, RUN_TAG, START_TAG
from fleetimage.engine.plan import plan_fleet
from fleetimage.engine.run import execute
from fleetimage.journal import Journal
from fleetimage.mock import MockConfig, MockEC2

ACCOUNT = "123456789012"
OTHER = "222222222222"
RUN_ID = "20260101T000000Z-abcdef"
STARTED = datetime(2026, 1, 1, tzinfo=UTC)


# --- helpers ---------------------------------------------------------------------------------


def cfg(regions: tuple[str, ...] = ("us-east-1",), **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "targets": [{"regions": list(regions), "all_instances": True}],
        "image": {"name_template": "{tag:Name}-{instance_id}-{run_id}"},
        "wait": {"poll_interval_s": 0.05, "timeout_s": 30, "not_found_grace_s": 0.5},
        "retry": {
            "base_delay_s": 0.01,
            "max_delay_s": 0.05,
            "quota_delay_s": 0.05,
            # A region that keeps failing stops its lane after 2 s (scaled down from 30 min).
            "max_outage_s": 2,
            "breaker_cooldown_s": 0.05,
            "breaker_max_cooldown_s": 0.3,
        },
        "max_errors": "100%",
    }
    config.update(overrides)
    return config


def running_only(**kwargs: Any) -> MockConfig:
    base: dict[str, Any] = {
        "instances_per_region": 0,
        "pending_s": 0.05,
        "time_scale": 1,
        "state_mix": {"running": 1.0},
    }
    base.update(kwargs)
    return MockConfig(**base)


Rule = Callable[[str, str, str, dict[str, str]], tuple[int, str, str] | None]
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/")


class HostileProxy:
    """A loopback proxy in front of the mock: ``rule(region, service, action, params)`` may
    answer instead of the mock with ``(status, body, content_type)``; else it forwards."""

    def __init__(self, upstream: str, rule: Rule) -> None:
        self.upstream, self.rule = upstream, rule
        self.hits = 0
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.ServerRunner | None = None
        self.url = ""

    async def start(self) -> HostileProxy:
        self._session = aiohttp.ClientSession()
        self._runner = web.ServerRunner(web.Server(self._handle), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        params = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        found = _SCOPE.search(request.headers.get("Authorization", ""))
        region, service = (found.group(1), found.group(2)) if found else ("", "")
        answer = self.rule(region, service, params.get("Action", ""), params)
        if answer is not None:
            self.hits += 1
            status, text, ctype = answer
            return web.Response(status=status, text=text, content_type=ctype)
        assert self._session is not None
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as upstream:
            data = await upstream.read()
            ctype = upstream.headers.get("Content-Type", "text/xml")
            return web.Response(status=upstream.status, body=data, headers={"Content-Type": ctype})


@pytest.fixture
async def hostile() -> AsyncIterator[Callable[[str, Rule], Awaitable[HostileProxy]]]:
    proxies: list[HostileProxy] = []

    async def factory(upstream: str, rule: Rule) -> HostileProxy:
        proxy = await HostileProxy(upstream, rule).start()
        proxies.append(proxy)
        return proxy

    yield factory
    for proxy in proxies:
        await proxy.close()


def ec2_error(code: str, message: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
        f"<Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        "<RequestID>11111111-2222-3333-4444-555555555555</RequestID></Response>"
    )


HTML_500 = (
    500,
    "<!doctype html><html><title>500 Internal Server Error</title></html>",
    "text/html",
)


def lane_results(report: Any, region: str) -> list[Any]:
    return [r for r in report.results if r.region == region]


# --- names from hostile tag values ------------------------------------------------------------

HOSTILE_VALUES = {
    "colon": "web:01/prod|a*b?c<d>e",
    "unicode": "Zürich—東京 🚀 café",
    "empty": "",
    "spaces": "   ",
    "dashes": "--//--",
    # \x00-\x08 cannot travel in EC2's XML at all (and the mock does not refuse them in
    # add_instance: it then serves XML no parser reads), so only XML-legal controls here.
    "control": "a\nb\tc\u200bd\x7fe\u2028",
    "long": "x" * 500,
    "long-unicode": "é東" * 250,
    "braces": "{instance_id}{run_id}%s${HOME}",
    "quotes": 'it\'s "quoted" `cmd`',
}


@settings(max_examples=200, deadline=None)
@given(
    tags=st.dictionaries(
        st.sampled_from(["Name", "Env", "Team"]),
        st.one_of(st.text(max_size=600), st.sampled_from(list(HOSTILE_VALUES.values()))),
    ),
    template=st.sampled_from(
        [
            "{tag:Name}-{instance_id}-{run_id}",
            "{tag:Name}{tag:Env}{tag:Team}{instance_id}{run_id}",
            "({tag:Team}) [{tag:Env}] {tag:Name} @ {region}/{account} {instance_id}.{run_id}",
            "{tag:Name}_{date}_{time}_{instance_id}",
            "{instance_id}-{run_id}-{tag:Missing}",
        ]
    ),
    ids=st.lists(
        st.from_regex(r"i-[0-9a-f]{17}", fullmatch=True), min_size=2, max_size=4, unique=True
    ),
)
def test_rendered_names_are_valid_unique_and_deterministic(
    tags: dict[str, str], template: str, ids: list[str]
) -> None:
    names = []
    for instance_id in ids:
        args: dict[str, Any] = {
            "instance_id": instance_id,
            "region": "ap-southeast-2",
            "account": ACCOUNT,
            "run_id": RUN_ID,
            "started_at": STARTED,
            "tags": tags,
        }
        name = render_name(template, **args)
        assert is_valid_ami_name(name), (name, tags)
        assert len(name) <= AMI_NAME_MAX
        assert instance_id in name  # never cut: what makes it unique per instance
        assert render_name(template, **args) == name  # same inputs, same name (resume)
        assert render_name(template, **{**args, "tags": dict(reversed(tags.items()))}) == name
        names.append(name)
    assert len(set(names)) == len(names)


async def test_hostile_tag_values_end_to_end_valid_unique_and_stable(fleet_mock: Any) -> None:
    mock = await fleet_mock(running_only(regions=("us-east-1",)))
    ids = {
        label: mock.add_instance(ACCOUNT, "us-east-1", tags={"Name": value, "Env": value})
        for label, value in HOSTILE_VALUES.items()
    }
    ids["no-tags"] = mock.add_instance(ACCOUNT, "us-east-1", tags={})
    config = parse_config(
        cfg(image={"name_template": "{tag:Name} {tag:Env}-{tag:Missing}-{instance_id}-{run_id}"})
    )
    planned = await plan_fleet(
        config, endpoint_url=mock.endpoint_url, run_id=RUN_ID, started_at=STARTED
    )
    replanned = await plan_fleet(
        config, endpoint_url=mock.endpoint_url, run_id=RUN_ID, started_at=STARTED
    )
    names = {s.target.instance_id: s.name for s in planned.specs}
    assert names == {s.target.instance_id: s.name for s in replanned.specs}  # stable

    report = await image_fleet(
        config, endpoint_url=mock.endpoint_url, run_id=RUN_ID, started_at=STARTED, wait=False
    )
    assert report.counts["pending"] == len(ids), report.failures()
    assert not report.failures()
    rendered = {r.instance_id: r.image_name for r in report.results}
    assert rendered == names
    assert len(set(rendered.values())) == len(ids)
    for name in rendered.values():
        assert name is not None and is_valid_ami_name(name)
    images = mock.images(ACCOUNT, "us-east-1")
    assert sorted(i["name"] for i in images) == sorted(n for n in names.values())

    # A crash right after the sends, journal without names: the names re-rendered by a new
    # process find the images (adopted), nothing is created twice.
    crashed = [
        TargetRecord(ACCOUNT, "us-east-1", iid, JournalState.REQUESTING) for iid in ids.values()
    ]
    events: list[Event] = []
    resumed = await execute(
        config,
        endpoint_url=mock.endpoint_url,
        run_id=RUN_ID,
        started_at=STARTED,
        resume=crashed,
        on_event=events.append,
    )
    assert resumed.counts["available"] == len(ids), resumed.failures()
    assert all(e.adopted for e in events if isinstance(e, Created))
    assert not [e for e in events if isinstance(e, Requested)]
    assert not mock.duplicates()


# --- forged fleetimage tags and pre-created names --------------------------------------------

FORGED = {
    RUN_TAG: RUN_ID,
    INSTANCE_TAG: "i-0aaaaaaaaaaaaaaaa",
    "FleetImage:Run-Id": RUN_ID,
    "FLEETIMAGE:INSTANCE-ID": "i-0bbbbbbbbbbbbbbbb",
    "fleetimage:RUN-ID": "forged",
    "aws:cloudformation:stack-name": "stack",
    "Name": "victim",
}


async def _precreate(
    mock: MockEC2, ec2_client: Any, instance_id: str, name: str, tags: dict[str, str]
) -> str:
    async with ec2_client(mock, "us-east-1") as ec2:
        params: dict[str, Any] = {"InstanceId": instance_id, "Name": name, "NoReboot": True}
        if tags:
            params["TagSpecifications"] = [
                {"ResourceType": "image", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
            ]
        return str((await ec2.create_image(**params))["ImageId"])


@pytest.mark.parametrize(
    "squatter_tags",
    [
        {},
        {RUN_TAG: "20250101T000000Z-000000", INSTANCE_TAG: "SAME"},
        {"FleetImage:Run-Id": RUN_ID, "FLEETIMAGE:INSTANCE-ID": "SAME"},
        {RUN_TAG: RUN_ID, INSTANCE_TAG: "i-0ffffffffffffffff"},
    ],
    ids=["untagged", "other-run", "case-variant-forgery", "other-instance"],
)
async def test_forged_tags_and_squatted_names_are_never_adopted(
    fleet_mock: Any, ec2_client: Any, squatter_tags: dict[str, str]
) -> None:
    mock = await fleet_mock(running_only(regions=("us-east-1",)))
    victim = mock.add_instance(ACCOUNT, "us-east-1", tags=FORGED)
    bystanders = [
        mock.add_instance(ACCOUNT, "us-east-1", tags={**FORGED, "Name": f"ok-{n}"})
        for n in range(3)
    ]
    config = parse_config(
        cfg(
            image={"name_template": "{tag:Name}-{instance_id}-{run_id}", "copy_instance_tags": True}
        )
    )
    plan = await plan_fleet(
        config, endpoint_url=mock.endpoint_url, run_id=RUN_ID, started_at=STARTED
    )
    name = next(s.name for s in plan.specs if s.target.instance_id == victim)
    tags = {k: (victim if v == "SAME" else v) for k, v in squatter_tags.items()}
    squatter = await _precreate(mock, ec2_client, victim, name, tags)

    events: list[Event] = []
    report = await image_fleet(
        config,
        endpoint_url=mock.endpoint_url,
        run_id=RUN_ID,
        started_at=STARTED,
        on_event=events.append,
    )
    by_id = {r.instance_id: r for r in report.results}
    failed = by_id[victim]
    assert failed.outcome is Outcome.FAILED
    assert failed.error_code == "InvalidAMIName.Duplicate"
    assert squatter in (failed.error_message or "") and "not adopting" in (
        failed.error_message or ""
    )
    assert failed.image_id is None  # nothing adopted
    assert not [e for e in events if isinstance(e, Created) and e.instance_id == victim]
    assert all(by_id[b].outcome is Outcome.AVAILABLE for b in bystanders)

    # The images the engine made carry exactly its own fleetimage tags, whatever the instance
    # pretended: forged keys (any case) are not copied, aws:* neither.
    for image in mock.images(ACCOUNT, "us-east-1"):
        if image["image_id"] == squatter:
            continue
        keys = [k for k in image["tags"] if k.lower().startswith(("fleetimage:", "aws:"))]
        assert sorted(keys) == sorted([RUN_TAG, INSTANCE_TAG, START_TAG]), image["tags"]
        assert image["tags"][RUN_TAG] == RUN_ID
        assert datetime.fromisoformat(image["tags"][START_TAG]) == STARTED
        assert image["tags"][INSTANCE_TAG] == image["source_instance_id"]
    assert [i["image_id"] for i in mock.images(ACCOUNT, "us-east-1") if i["name"] == name] == [
        squatter
    ]


# --- a world that changes under the engine ---------------------------------------------------


async def test_instances_vanishing_before_create_are_skipped_alone(fleet_mock: Any) -> None:
    mock = await fleet_mock(running_only(regions=("us-east-1", "eu-west-1")))
    ids = {
        r: [mock.add_instance(ACCOUNT, r, tags={"Name": "w"}) for _ in range(6)]
        for r in ("us-east-1", "eu-west-1")
    }
    doomed = set(ids["us-east-1"][:3])
    stopping = ids["eu-west-1"][0]

    def on_event(event: Event) -> None:
        if type(event).__name__ == "Discovered" and event.instance_id in doomed:
            mock.set_instance_state(ACCOUNT, event.region, event.instance_id, "terminated")
        if type(event).__name__ == "Discovered" and event.instance_id == stopping:
            mock.set_instance_state(ACCOUNT, event.region, stopping, "stopped")

    report = await image_fleet(
        parse_config(cfg(("us-east-1", "eu-west-1"))),
        endpoint_url=mock.endpoint_url,
        on_event=on_event,
    )
    by_id = {r.instance_id: r for r in report.results}
    for iid in doomed:  # EC2 refused because of the instance: skipped with its reason
        assert by_id[iid].outcome is Outcome.SKIPPED
        assert "InvalidParameterValue" in (by_id[iid].error_message or "")
        assert "terminated" in (by_id[iid].error_message or "")
        assert by_id[iid].attempts == 1
    assert report.counts["available"] == 12 - len(doomed)
    assert not mock.duplicates()


async def test_image_deregistered_by_someone_else_while_pending(fleet_mock: Any) -> None:
    mock = await fleet_mock(running_only(regions=("us-east-1",), pending_s=1.0))
    ids = [mock.add_instance(ACCOUNT, "us-east-1", tags={"Name": "w"}) for _ in range(5)]
    victim = ids[0]

    def on_event(event: Event) -> None:
        if isinstance(event, Created) and event.instance_id == victim:
            mock.deregister_image(ACCOUNT, "us-east-1", event.image_id)

    report = await image_fleet(
        parse_config(cfg()), endpoint_url=mock.endpoint_url, on_event=on_event
    )
    by_id = {r.instance_id: r for r in report.results}
    lost = by_id[victim]
    assert lost.outcome is Outcome.FAILED
    assert lost.error_code == "InvalidAMIID.NotFound" and lost.image_id
    assert "deregistered" in (lost.error_message or "")
    assert report.counts["available"] == 4
    assert not mock.duplicates()  # no silent re-creation either


async def test_region_answering_only_auth_failure_fails_that_lane(
    fleet_mock: Any, hostile: Any
) -> None:
    mock = await fleet_mock(running_only(regions=("us-east-1", "eu-west-1")))
    for region in ("us-east-1", "eu-west-1"):
        for _ in range(4):
            mock.add_instance(ACCOUNT, region, tags={"Name": "w"})
    deny = ec2_error("AuthFailure", "AWS was not able to validate the provided access credentials")
    proxy = await hostile(
        mock.endpoint_url,
        lambda region, service, action, p: (
            (401, deny, "text/xml") if region == "eu-west-1" and service == "ec2" else None
        ),
    )
    report = await image_fleet(
        parse_config(cfg(("us-east-1", "eu-west-1"))), endpoint_url=proxy.url
    )
    assert lane_results(report, "eu-west-1") == []  # no target is known in that lane
    (denied,) = report.lane_failures
    assert (denied.region, denied.error_code, denied.action) == (
        "eu-west-1",
        "AuthFailure",
        "DescribeInstances",
    )
    assert "DescribeInstances" in denied.error_message and not report.ok
    assert [r.outcome for r in lane_results(report, "us-east-1")] == [Outcome.AVAILABLE] * 4


async def test_region_refusing_create_image_fails_each_target_once(
    fleet_mock: Any, hostile: Any
) -> None:
    mock = await fleet_mock(running_only(regions=("us-east-1", "eu-west-1")))
    for region in ("us-east-1", "eu-west-1"):
        for _ in range(4):
            mock.add_instance(ACCOUNT, region, tags={"Name": "w"})
    deny = ec2_error("UnauthorizedOperation", "You are not authorized to perform this operation.")
    proxy = await hostile(
        mock.endpoint_url,
        lambda region, service, action, p: (
            (403, deny, "text/xml") if region == "eu-west-1" and action == "CreateImage" else None
        ),
    )
    report = await image_fleet(
        parse_config(cfg(("us-east-1", "eu-west-1"))), endpoint_url=proxy.url
    )
    for result in lane_results(report, "eu-west-1"):
        assert result.outcome is Outcome.FAILED and result.error_code == "UnauthorizedOperation"
        assert result.attempts == 1  # fatal: not retried
    assert proxy.hits == 4
    assert report.counts["available"] == 4


async def test_region_refusing_describe_images_reports_the_reason_promptly(
    fleet_mock: Any, hostile: Any
) -> None:
    mock = await fleet_mock(running_only(regions=("us-east-1", "eu-west-1")))
    for region in ("us-east-1", "eu-west-1"):
        for _ in range(3):
            mock.add_instance(ACCOUNT, region, tags={"Name": "w"})
    deny = ec2_error("UnauthorizedOperation", "You are not authorized to perform this operation.")
    proxy = await hostile(
        mock.endpoint_url,
        lambda region, service, action, p: (
            (403, deny, "text/xml")
            if region == "eu-west-1" and action == "DescribeImages"
            else None
        ),
    )
    config = cfg(("us-east-1", "eu-west-1"))
    config["wait"]["timeout_s"] = 6
    started = time.monotonic()
    report = await image_fleet(parse_config(config), endpoint_url=proxy.url)
    assert time.monotonic() - started < 4  # not the whole wait timeout
    for result in lane_results(report, "eu-west-1"):
        assert result.image_id  # created: must stay visible in the report
        assert result.error_code == "UnauthorizedOperation", result
    assert [r.outcome for r in lane_results(report, "us-east-1")] == [Outcome.AVAILABLE] * 3


@pytest.mark.parametrize(
    ("action", "service"),
    [
        ("DescribeInstances", "ec2"),
        ("DescribeImages", "ec2"),
        ("AssumeRole", "sts"),
        ("CreateImage", "ec2"),
    ],
)
async def test_html_500_from_a_proxy_is_reported_per_lane(
    fleet_mock: Any, hostile: Any, action: str, service: str
) -> None:
    """A load balancer or proxy answering an HTML error page, in one region (or for one
    account's AssumeRole): that lane fails with a clear AWS-style error, the rest completes."""
    mock = await fleet_mock(
        running_only(regions=("us-east-1", "eu-west-1"), accounts=(ACCOUNT, OTHER))
    )
    for account in (ACCOUNT, OTHER):
        for region in ("us-east-1", "eu-west-1"):
            for _ in range(3):
                mock.add_instance(account, region, tags={"Name": "w"})

    def rule(region: str, svc: str, act: str, params: dict[str, str]) -> Any:
        if svc != service or act != action:
            return None
        if service == "sts":
            return HTML_500 if OTHER in params.get("RoleArn", "") else None
        return HTML_500 if region == "eu-west-1" else None

    proxy = await hostile(mock.endpoint_url, rule)
    config = cfg(("us-east-1", "eu-west-1"))
    config["targets"].append(
        {
            "regions": ["us-east-1", "eu-west-1"],
            "all_instances": True,
            "accounts": [{"role_arn": f"arn:aws:iam::{OTHER}:role/fleetimage"}],
        }
    )
    config["wait"]["timeout_s"] = 5
    report = await image_fleet(parse_config(config), endpoint_url=proxy.url)

    # The proxy answers for OTHER's AssumeRole, or for every account in eu-west-1.
    hit_lanes = (
        [(OTHER, "eu-west-1"), (OTHER, "us-east-1")]
        if service == "sts"
        else [(ACCOUNT, "eu-west-1"), (OTHER, "eu-west-1")]
    )
    if action in ("AssumeRole", "DescribeInstances"):  # the lane cannot even plan
        assert sorted((f.account, f.region) for f in report.lane_failures) == hit_lanes
        for lane in report.lane_failures:
            assert lane.action == action
            assert lane.error_code not in ("", "InternalError"), lane.error_message
            assert "<!doctype" not in lane.error_message.lower()
        assert {(r.account, r.region) for r in report.results}.isdisjoint(hit_lanes)
    else:  # planned, then its targets fail one by one
        assert report.lane_failures == ()
        hit = [r for r in report.results if (r.account, r.region) in hit_lanes]
        assert hit
        for result in hit:
            assert result.outcome is not Outcome.AVAILABLE
            assert result.error_code not in (None, "InternalError"), result.error_message
            assert "<!doctype" not in (result.error_message or "").lower()
    rest = [r for r in report.results if (r.account, r.region) not in hit_lanes]
    assert rest and all(r.outcome is Outcome.AVAILABLE for r in rest), report.failures()


async def test_garbage_200_to_create_image_is_not_an_internal_error(
    fleet_mock: Any, hostile: Any
) -> None:
    mock = await fleet_mock(running_only(regions=("us-east-1",)))
    for _ in range(3):
        mock.add_instance(ACCOUNT, "us-east-1", tags={"Name": "w"})
    proxy = await hostile(
        mock.endpoint_url,
        lambda region, service, action, p: (
            (200, "<html>captive portal</html>", "text/html") if action == "CreateImage" else None
        ),
    )
    report = await image_fleet(parse_config(cfg()), endpoint_url=proxy.url)
    # Not an answer about the request: the lane's breaker counts it as the endpoint failing,
    # and the lane stops after max_outage_s (resumable), naming what the endpoint answered.
    for result in report.results:
        # The garbage may have come after the image was made: unknown, looked up on resume,
        # not failed (EC2 never said so), and never an internal error.
        assert result.outcome is Outcome.UNKNOWN, result
        assert result.error_code == "LaneOutage", result
        assert "InvalidResponse" in (result.error_message or ""), result
    assert not mock.images(ACCOUNT, "us-east-1")


async def test_assume_role_denied_fails_that_account_in_every_region(fleet_mock: Any) -> None:
    denied = f"arn:aws:iam::{OTHER}:role/denied"
    mock = await fleet_mock(
        running_only(
            regions=("us-east-1", "eu-west-1"),
            accounts=(ACCOUNT, OTHER),
            denied_roles=frozenset({denied}),
        )
    )
    for account in (ACCOUNT, OTHER):
        for region in ("us-east-1", "eu-west-1"):
            for _ in range(3):
                mock.add_instance(account, region, tags={"Name": "w"})
    config = cfg(("us-east-1", "eu-west-1"))
    config["targets"].append(
        {
            "regions": ["us-east-1", "eu-west-1"],
            "all_instances": True,
            "accounts": [{"role_arn": denied}],
        }
    )
    report = await image_fleet(parse_config(config), endpoint_url=mock.endpoint_url)
    assert [r for r in report.results if r.account == OTHER] == []
    failed = report.lane_failures
    assert sorted((f.account, f.region) for f in failed) == [
        (OTHER, "eu-west-1"),
        (OTHER, "us-east-1"),
    ]
    for lane in failed:
        assert lane.error_code == "AccessDenied" and lane.action == "AssumeRole"
        assert denied in lane.error_message
    assert report.counts["available"] == 6
    assert mock.count(action="CreateImage", account=OTHER) == 0


# --- hostile journal files -------------------------------------------------------------------


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _foreign_db(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('alice')")
    conn.commit()
    conn.close()


def _schema_db(version: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (version,))
        conn.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY)")
        conn.execute("INSERT INTO runs VALUES ('an-old-run')")
        conn.commit()
        conn.close()

    return make


async def _valid_journal_bytes(tmp: Path) -> bytes:
    path = tmp / "src.sqlite3"
    journal = await Journal.open(path)
    await journal.start_run(RUN_ID, started_at=STARTED, config_snapshot={})
    await journal.close()
    return path.read_bytes()


@pytest.mark.parametrize("kind", ["random-bytes", "text-file", "truncated", "zeroed-header"])
async def test_corrupt_journal_is_a_one_line_error_and_untouched(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "journal.sqlite3"
    if kind == "random-bytes":
        path.write_bytes(os.urandom(16384))
    elif kind == "text-file":
        path.write_text("my notes, not a database\n" * 50)
    else:
        data = await _valid_journal_bytes(tmp_path)
        if kind == "truncated":
            path.write_bytes(data[: len(data) // 2])
        else:
            path.write_bytes(b"\0" * 100 + data[100:])
    before = _digest(path)
    with pytest.raises(JournalError) as caught:
        await Journal.open(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    assert _digest(path) == before
    assert not path.with_name(path.name + "-wal").exists()


async def test_locked_journal_is_a_one_line_error_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    holder = await Journal.open(path)
    try:
        await holder.start_run(RUN_ID, started_at=STARTED, config_snapshot={})
        await holder.flush()
        with pytest.raises(JournalError) as caught:
            await Journal.open(path)
        message = str(caught.value)
        assert "\n" not in message and "in use" in message and str(os.getpid()) in message
        assert [r.run_id for r in await holder.runs()] == [RUN_ID]  # the holder is unharmed
    finally:
        await holder.close()
    reopened = await Journal.open(path)
    try:
        assert [r.run_id for r in await reopened.runs()] == [RUN_ID]
    finally:
        await reopened.close()


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_foreign_db, "not a fleetimage journal"),
        (_schema_db("0"), "schema version 0"),
        (_schema_db("99"), "upgrade fleetimage"),
    ],
    ids=["foreign-sqlite", "older-schema", "newer-schema"],
)
async def test_foreign_or_other_schema_journal_is_a_one_line_error(
    tmp_path: Path, make: Callable[[Path], None], words: str
) -> None:
    path = tmp_path / "journal.sqlite3"
    make(path)
    with pytest.raises(JournalError) as caught:
        await Journal.open(path)
    message = str(caught.value)
    assert "\n" not in message and words in message and str(path) in message


@pytest.mark.parametrize(
    "make",
    [_foreign_db, _schema_db("0"), _schema_db("99")],
    ids=["foreign-sqlite", "older-schema", "newer-schema"],
)
async def test_foreign_or_other_schema_journal_is_left_untouched(
    tmp_path: Path, make: Callable[[Path], None]
) -> None:
    path = tmp_path / "journal.sqlite3"
    make(path)
    before = _digest(path)
    with pytest.raises(JournalError):
        await Journal.open(path)
    assert _digest(path) == before


async def test_journal_path_that_is_a_directory_is_a_journal_error(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    path.mkdir()
    with pytest.raises(JournalError):
        await Journal.open(path)


def _sts_error(code: str, message: str) -> str:
    return (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
        f"<Type>Receiver</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>11111111-2222-3333-4444-555555555555</RequestId></ErrorResponse>"
    )


@pytest.mark.parametrize(
    ("action", "status", "code"),
    [("AssumeRole", 500, "InternalError"), ("GetCallerIdentity", 400, "Throttling")],
)
async def test_one_transient_sts_error_is_retried(
    fleet_mock: Any, hostile: Any, action: str, status: int, code: str
) -> None:
    mock = await fleet_mock(running_only(regions=("us-east-1",), accounts=(ACCOUNT, OTHER)))
    for account in (ACCOUNT, OTHER):
        for _ in range(3):
            mock.add_instance(account, "us-east-1", tags={"Name": "w"})
    failures_left = [1]

    def rule(region: str, service: str, act: str, params: dict[str, str]) -> Any:
        if service == "sts" and act == action and failures_left[0]:
            failures_left[0] -= 1
            return (status, _sts_error(code, "try again"), "text/xml")
        return None

    proxy = await hostile(mock.endpoint_url, rule)
    config = cfg()
    config["targets"].append(
        {
            "regions": ["us-east-1"],
            "all_instances": True,
            "accounts": [{"role_arn": f"arn:aws:iam::{OTHER}:role/fleetimage"}],
        }
    )
    report = await image_fleet(parse_config(config), endpoint_url=proxy.url)
    assert proxy.hits == 1
    assert report.counts["available"] == 6, report.failures()
