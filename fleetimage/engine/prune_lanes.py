"""Prune's lanes: one per (account, target or copy region) of the config, each with its client,
limiter and retry policy (like imaging's), and what the Recycle Bin rules mean there."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from aiobotocore.session import AioSession

from fleetimage.aws import clients
from fleetimage.config import AccountSpec, FleetConfig, OrgUnitSpec
from fleetimage.core.models import LaneKey
from fleetimage.engine.accounts import Access, resolve_account
from fleetimage.engine.bus import Bus, Subscriber
from fleetimage.engine.lane import Lane
from fleetimage.engine.limiter import Limiter
from fleetimage.engine.organizations import resolve_units
from fleetimage.engine.plan import CONFIRM_SHARE
from fleetimage.engine.prune_plan import LanePrunePlan

__all__ = ["open_prune_lanes"]


async def open_prune_lanes(
    config: FleetConfig,
    session: AioSession,
    endpoint_url: str | None,
    stack: contextlib.AsyncExitStack,
    subscribers: Sequence[Subscriber] = (),
) -> dict[LaneKey, LanePrunePlan]:
    """One lane per (account, region) of ``config``'s targets; a lane whose account cannot be
    reached has ``error`` set and no client. ``subscribers`` get the lanes' events."""
    units = await resolve_units(config, session=session, endpoint_url=endpoint_url)
    regions: dict[AccountSpec | OrgUnitSpec | None, set[str]] = {}
    for target in config.targets:
        for item in target.accounts or (None,):
            for account in units.expand(item):
                # Copies are images of their own region: retention applies to them there, by
                # their own rules (a copy never goes because its source did, nor the reverse).
                regions.setdefault(account, set()).update(target.regions, config.copy_.regions)
    cfg = clients.client_config(
        max_pool_connections=config.concurrency.max_in_flight_per_region + 4,
        request_timeout_s=config.retry.request_timeout_s,
    )
    lanes: dict[LaneKey, LanePrunePlan] = {}
    for account, where in regions.items():
        if isinstance(account, OrgUnitSpec):  # the OU could not be listed: its lanes say why
            unit = units.found[account]
            access = Access(account=unit.unit, error=unit.error)
        else:
            access = await resolve_account(
                session, account, region=sorted(where)[0], endpoint_url=endpoint_url, config=config
            )
        for region in sorted(where):
            key = LaneKey(access.account or "self", region)
            lp = lanes[key] = LanePrunePlan(key, error=access.error)
            if access.error is not None or access.session is None:
                continue
            client = await stack.enter_async_context(
                clients.ec2_client(
                    access.session,
                    region=region,
                    endpoint_url=endpoint_url,
                    config=cfg,
                )
            )
            limiter = Limiter.from_limits(
                config.limits_for(region), confirm_share=CONFIRM_SHARE, **config.bucket_options()
            )
            lp.lane = Lane(
                key,
                client,
                limiter,
                config.wall_retry,
                run_id="prune",
                bus=Bus(list(subscribers)),
                credentials=access.credentials,
            )
            lp.recycle_bin = await _recycle_bin(access.session, endpoint_url, region, cfg)
    return lanes


async def _recycle_bin(session: AioSession, endpoint_url: str | None, region: str, cfg: Any) -> str:
    """What Recycle Bin rules mean for this lane ("" when none cover AMIs or snapshots)."""
    found = []
    try:
        async with clients.ec2_client(
            session,
            region=region,
            endpoint_url=endpoint_url,
            config=cfg,
            service="rbin",
        ) as rbin:
            for rtype in ("EC2_IMAGE", "EBS_SNAPSHOT"):
                rules = (await rbin.list_rules(ResourceType=rtype)).get("Rules", [])
                for rule in rules:
                    period = rule.get("RetentionPeriod", {})
                    found.append(
                        f"{rtype} kept {period.get('RetentionPeriodValue')} {period.get('RetentionPeriodUnit', '').lower()}"
                    )
    except Exception as exc:
        error = clients.to_aws_error(exc, "ListRules")
        return f"Recycle Bin rules unknown (rbin:ListRules: {error.code})"
    if not found:
        return ""
    return (
        "Recycle Bin rules retain deleted resources (" + "; ".join(found) + "): pruned images "
        "still count toward the 50,000-AMI quota, and snapshots are billed, until released"
    )
