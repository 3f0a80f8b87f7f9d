"""Planning: credentials per account, one lane per (account, region), discovery, image specs.

Planning is separated from executing (s3transfer's lesson): ``fleetimage plan`` runs only
this, and the engine runs it first. It sends only STS calls and DescribeInstances.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio
from aiobotocore.session import AioSession

from fleetimage.aws import clients
from fleetimage.config import AccountSpec, FleetConfig, OrgUnitSpec, TargetSpec
from fleetimage.core.errors import AwsError
from fleetimage.core.models import ImageSpec, LaneKey, Target
from fleetimage.core.naming import new_run_id
from fleetimage.engine.accounts import Access, resolve_account
from fleetimage.engine.adopt import RunImage, find_run_images
from fleetimage.engine.bus import Bus
from fleetimage.engine.discovery import IMAGEABLE_STATES, LaneDiscovery, Turn, discover_lane
from fleetimage.engine.lane import Lane
from fleetimage.engine.limiter import Limiter
from fleetimage.engine.organizations import OrgUnits, UnitAccounts, resolve_units
from fleetimage.engine.specs import build_spec
from fleetimage.engine.stop import Stopped, Stopper

__all__ = ["LanePlan", "Plan", "lane_keys", "open_lanes", "plan_fleet"]

# The throttle-confirmation rule, from AWS's bucket model. A lane paces itself with a copy of
# the server's bucket, so alone it is never throttled. If the server's bucket refills at r_s
# while we pace at r_c > r_s (a neighbour draining it, or limits lower than we assume), then
# once the bursts are spent we send r_c requests a second and r_s pass: the steady share of
# throttled answers is 1 - r_s / r_c, the shortage itself. So the share of throttled answers
# (a moving average over ~20 answers, ~10 after a cut: bucket._SHARE_WEIGHT_*) measures how
# much of the rate is missing. We act (empty our bucket, cut the rate) once it reaches 0.2, or
# at three throttles in a row: a shortage of 20 % or more is confirmed within a few answers
# (its throttles come in runs), while isolated throttles — one-offs from a neighbour's burst, or
# transient 503s at a few percent — rarely get there (one throttle lifts the share to ~0.05
# and it decays with each success), and do not cost a whole burst. A shortage below 20 % is
# not acted on: it costs at most that share of our requests as throttled retries (a throttled
# request takes no token), never a wrong image. tests/unit/test_confirm_share.py checks both
# sides on this model.
CONFIRM_SHARE = 0.2
# Parsing DescribeInstances answers is CPU-bound: this many lanes open or ask for a page at
# once. Since only the members discovery reads are parsed (aws.clients), 8 at once spread the
# lanes' first CreateImage over half the time 4 did (fleet-1k: ~1-2 s instead of ~2-3.5 s),
# each page in memory costing little. The slots are taken page by page (discovery.Turn).
DISCOVERY_CONCURRENCY = 8


@dataclass(slots=True)
class LanePlan:
    """One lane's share of the run: what to image, what is skipped, or why it cannot run."""

    key: LaneKey
    lane: Lane | None = None
    specs: list[ImageSpec] = field(default_factory=list)
    skipped: list[tuple[Target, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    # Targets whose rendered name another target of the lane already has (names are the
    # idempotency key: two targets must never share one). Each entry: (spec, other instance).
    collisions: list[tuple[ImageSpec, str]] = field(default_factory=list)
    error: AwsError | None = None
    # Images an earlier start of this run created here, by instance id (engine/adopt.py);
    # ``looked_up``: the lane has been asked for them.
    adopted: dict[str, RunImage] = field(default_factory=dict)
    looked_up: bool = False

    # The planned name of each spec, with its instance (names are the idempotency key).
    names: dict[str, str] = field(default_factory=dict, repr=False)

    def add(self, spec: ImageSpec) -> bool:
        """Plan ``spec``, unless another target of the lane already has its name (two targets
        must never share one): then it is a collision. True if planned."""
        other = self.names.setdefault(spec.name, spec.target.instance_id)
        if other != spec.target.instance_id:
            self.collisions.append((spec, other))
            return False
        self.specs.append(spec)
        return True

    def keep_unique_names(self) -> None:
        every, self.specs, self.names = self.specs, [], {}
        for spec in every:
            self.add(spec)


@dataclass(slots=True)
class Plan:
    run_id: str
    started_at: datetime
    lanes: dict[LaneKey, LanePlan]
    # What each OU item of the config resolved to (accounts found, suspended, excluded).
    units: list[UnitAccounts] = field(default_factory=list)

    @property
    def specs(self) -> list[ImageSpec]:
        return [s for lp in self.lanes.values() for s in lp.specs]

    def minimum_seconds(self, config: FleetConfig) -> float:
        """The least time the CreateImage buckets allow (the slowest lane decides)."""
        worst = 0.0
        for key, lp in self.lanes.items():
            burst, rate = config.limits_for(key.region).get("CreateImage", (0, 0.0))
            if rate > 0:
                worst = max(worst, max(0, len(lp.specs) - burst) / rate)
        return worst


async def open_lanes(
    config: FleetConfig,
    *,
    session: AioSession,
    endpoint_url: str | None,
    run_id: str,
    started_at: datetime,
    bus: Bus,
    stack: contextlib.AsyncExitStack,
    stopper: Stopper | None = None,
    planned: Plan | None = None,
    on_lane_ready: Callable[[LanePlan], Awaitable[None]] | None = None,
    on_lane_page: Callable[[LanePlan, list[ImageSpec]], Awaitable[bool]] | None = None,
    owns: Callable[[LaneKey], bool] | None = None,
    adopt: bool = False,
    found: Plan | None = None,
    discover: bool = True,
) -> Plan:
    """Resolve accounts, open one client per lane (concurrently, kept in ``stack``), discover.

    ``planned``: what an earlier ``plan_fleet`` found (and the user confirmed); its lanes are
    reopened without discovering again, so exactly the confirmed targets are imaged.
    ``owns``: the lanes this process images (a shard's); the others are not even opened.
    ``adopt``: also find the images an earlier start of this run created (engine/adopt.py).
    ``on_lane_ready``: called with each lane as soon as it is planned (or has failed), so the
    engine can start imaging it while other lanes still discover.
    ``on_lane_page``: called after each discovery page with the specs it added to the lane, so
    the engine can start imaging a lane of many pages from its first (with ``adopt``, only a
    lane ``found`` shows to hold none of the run's images: what an earlier start created is
    looked up before anything is created); it returns True if it is imaging them.
    ``found``: what a pass with ``discover=False`` found (each lane's images of this run, or
    why its look-up failed, before any lane is discovered); a lane whose look-up failed does
    not run.
    """
    units, lanes, covering = await _who_and_where(config, session, endpoint_url, owns)

    pool = config.concurrency.max_in_flight_per_region + 8  # + waiter, lookups, discovery
    cfg = clients.client_config(
        max_pool_connections=pool, request_timeout_s=config.retry.request_timeout_s
    )

    # Parsing DescribeInstances answers is CPU-bound: a few pages at a time come (and lanes
    # start imaging) sooner than all of them at once, and fewer raw answers are in memory.
    discovering = anyio.Semaphore(DISCOVERY_CONCURRENCY)

    async def look_up(lp: LanePlan) -> bool:
        """Before anything is created in the lane: what an earlier start of the run made.
        False if the lane cannot run (it must not create blind)."""
        if not adopt or lp.looked_up or lp.lane is None:
            return True
        try:
            lp.adopted = await find_run_images(lp.lane, run_id)
            lp.looked_up = True
            return True
        except Exception as exc:
            lp.error = _lane_error(exc, "DescribeImages")
            lp.specs, lp.skipped, lp.missing, lp.collisions = [], [], [], []
            return False

    async def open_one(key: LaneKey) -> None:
        await plan_one(key)
        if on_lane_ready is not None:
            await on_lane_ready(lanes[key])

    async def plan_one(key: LaneKey) -> None:
        acc, specs = covering[key]
        lp = lanes[key]
        if lp.error is not None:
            return
        earlier = planned.lanes.get(key) if planned is not None else None
        seen = found.lanes.get(key) if found is not None else None
        if seen is not None:  # looked up already: the run's images here, or why not
            lp.adopted, lp.looked_up, lp.error = dict(seen.adopted), seen.looked_up, seen.error
            if lp.error is not None:
                return
        # Opening a lane's client takes CPU too (botocore copies its handlers for each one)
        # and yields on the way: 100 lanes opened at once are all opened before the first
        # discovers or images. Opened in the lane's discovery turn, a few at a time (its first
        # page follows in the same slot), the first DescribeInstances goes ~0.25 s sooner
        # there, a confirmed plan's first image ~1.5 s.
        turn = Turn(discovering)
        try:
            await turn.take()
            await open_lane(key, acc)
            discovered = None
            if earlier is not None and earlier.error is None:  # confirmed: not discovered again
                lp.specs, lp.skipped = list(earlier.specs), list(earlier.skipped)
                lp.missing, lp.collisions = list(earlier.missing), list(earlier.collisions)
                lp.adopted, lp.looked_up = dict(earlier.adopted), earlier.looked_up
            elif discover and (discovered := await discover_one(lp, acc, specs, turn)) is None:
                return
        finally:
            turn.give_back()
        if await look_up(lp) and discovered is not None:
            lp.missing = sorted(discovered.missing)

    async def open_lane(key: LaneKey, acc: Access) -> None:
        # One client per lane, kept, from the account's session: it signs every request with
        # the account's one renewing credentials object (aws/credentials.py).
        assert acc.session is not None
        client = await stack.enter_async_context(
            clients.ec2_client(
                acc.session, region=key.region, endpoint_url=endpoint_url, config=cfg
            )
        )
        lanes[key].lane = Lane(
            key,
            client,
            # A throttle is acted on once ~20 % of recent answers are throttles: a real
            # shortage (a neighbour draining the bucket) gets there within a few answers.
            Limiter.from_limits(
                config.limits_for(key.region),
                confirm_share=CONFIRM_SHARE,
                **config.bucket_options(),
            ),
            config.wall_retry,
            run_id=run_id,
            bus=bus,
            stopper=stopper,
            credentials=acc.credentials,
        )

    async def discover_one(
        lp: LanePlan, acc: Access, specs: list[TargetSpec], turn: Turn
    ) -> LaneDiscovery | None:
        """The lane's discovery; None if it failed (``lp.error`` says why)."""
        assert lp.lane is not None
        # Adopting, a lane is imaged as it is found only once it is known to hold none of the
        # run's images (its look-up came first).
        paged = on_lane_page if not adopt or (lp.looked_up and not lp.adopted) else None
        imaging = False  # what the lane found is being imaged already

        async def page(targets: list[Target]) -> None:
            nonlocal imaging
            added = []
            for target in targets:
                if target.state not in IMAGEABLE_STATES:
                    why = f"instance is {target.state}; CreateImage needs running, stopping or stopped"
                    lp.skipped.append((target, why))
                elif lp.add(spec := build_spec(config, target, run_id, started_at)):
                    added.append(spec)
            if paged is not None and added:
                try:
                    imaging = await paged(lp, added) or imaging
                except Exception as exc:
                    raise _NotDiscovery(exc) from exc

        try:
            return await discover_lane(
                lp.lane, specs, role_arn=acc.role_arn, on_page=page, slot=turn
            )
        except _NotDiscovery as failed:  # the engine's own (a subscriber's): not the lane's
            raise failed.error from failed.error.__cause__
        except Exception as exc:
            lp.error = _lane_error(exc, "DescribeInstances")
            if not imaging:  # what it found is left to resume, which discovers it again
                lp.specs, lp.skipped, lp.collisions = [], [], []
            return None

    async with anyio.create_task_group() as tg:
        for key in lanes:
            tg.start_soon(open_one, key)
    return Plan(run_id, started_at, lanes, list(units.found.values()))


Covering = dict[LaneKey, tuple[Access, list[TargetSpec]]]


class _NotDiscovery(Exception):
    """What the engine's page callback raised, carried through discovery's own handling."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


async def _who_and_where(
    config: FleetConfig,
    session: AioSession,
    endpoint_url: str | None,
    owns: Callable[[LaneKey], bool] | None,
) -> tuple[OrgUnits, dict[LaneKey, LanePlan], Covering]:
    """Accounts (OU listings, then STS) and the lanes they give, each with its selectors."""
    # 1. who: the accounts under each OU item, then one STS call per distinct account
    # selector, concurrently.
    units = await resolve_units(config, session=session, endpoint_url=endpoint_url)
    selectors: dict[AccountSpec | OrgUnitSpec | None, list[TargetSpec]] = {}
    for spec in config.targets:
        for item in spec.accounts or (None,):
            for account in units.expand(item):
                selectors.setdefault(account, []).append(spec)
    access: dict[AccountSpec | OrgUnitSpec | None, Access] = {}

    async def resolve(account: AccountSpec | OrgUnitSpec | None, specs: list[TargetSpec]) -> None:
        if isinstance(account, OrgUnitSpec):  # the OU could not be listed: its lanes say why
            unit = units.found[account]
            access[account] = Access(account=unit.unit, error=unit.error)
            return
        access[account] = await resolve_account(
            session, account, region=specs[0].regions[0], endpoint_url=endpoint_url, config=config
        )

    async with anyio.create_task_group() as tg:
        for account, specs in selectors.items():
            tg.start_soon(resolve, account, specs)

    # 2. where: lanes, each with the selectors that cover it.
    lanes: dict[LaneKey, LanePlan] = {}
    covering: Covering = {}
    for account, specs in selectors.items():
        acc = access[account]
        for spec in specs:
            for region in spec.regions:
                key = LaneKey(acc.account or "self", region)
                if owns is not None and not owns(key):
                    continue  # another shard's lane
                lanes.setdefault(key, LanePlan(key, error=acc.error))
                covering.setdefault(key, (acc, []))[1].append(spec)

    return units, lanes, covering


async def lane_keys(
    config: FleetConfig,
    *,
    session: AioSession,
    endpoint_url: str | None = None,
    owns: Callable[[LaneKey], bool] | None = None,
) -> list[LaneKey]:
    """The run's lanes: OU listings and STS only (no client, no discovery), so worker
    processes can be dealt their lanes at once and discover them themselves."""
    _, lanes, _ = await _who_and_where(config, session, endpoint_url, owns)
    return list(lanes)


def _lane_error(exc: Exception, action: str) -> AwsError:
    """What a lane records when planning it failed: its targets are unknown, the others go on."""
    if isinstance(exc, AwsError):
        return exc
    if isinstance(exc, Stopped):  # resume discovers the lane again
        return AwsError(
            exc.reason,
            "the run stopped before this lane's discovery finished; resume discovers it",
            action=action,
        )
    # One lane's surprise must not take the fleet down.
    return AwsError("DiscoveryFailed", f"{type(exc).__name__}: {exc}", action=action)


async def plan_fleet(
    config: FleetConfig,
    *,
    endpoint_url: str | None = None,
    session: AioSession | None = None,
    run_id: str | None = None,
    started_at: datetime | None = None,
    owns: Callable[[LaneKey], bool] | None = None,
    adopt: bool = False,
    discover: bool = True,
) -> Plan:
    """What a run would image (STS + DescribeInstances only; with ``adopt``, DescribeImages
    for the run's existing images too); the clients are closed after. ``owns``: only these
    lanes (a shard's). ``discover=False``: the lanes and (``adopt``) their images of the run
    only, no targets."""
    started_at = started_at or datetime.now(UTC)

    async with contextlib.AsyncExitStack() as stack:
        plan = await open_lanes(
            config,
            session=session or clients.new_session(),
            endpoint_url=endpoint_url,
            run_id=run_id or new_run_id(started_at),
            started_at=started_at,
            bus=Bus([]),
            stack=stack,
            owns=owns,
            adopt=adopt,
            discover=discover,
        )
    for lp in plan.lanes.values():
        lp.lane = None  # its client is closed
    return plan
