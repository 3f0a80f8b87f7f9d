"""The aiohttp server: :class:`MockEC2` (lifecycle, dispatch, introspection; its test controls
are the :class:`~fleetimage.mock.controls.MockControls` mixin).

One server serves every region and account: the region and service (``ec2``/``sts``) come
from the SigV4 credential scope of the ``Authorization`` header, the account from the access
key id (``AKIA``/``ASIA`` + 12 digits, else the default account). Signatures are not checked.

Per request: due instance events applied → AuthFailure without SigV4 → expired key
(``RequestExpired`` / ``ExpiredToken``) → unknown action → outage window → injected fault →
token bucket → handler → (lost answer) → (slow + latency) → answer. Throttled, faulted,
expired and outage requests apply nothing.

Time: :meth:`MockEC2.aws_now` is AWS seconds since start (wall × ``time_scale``); see
:mod:`fleetimage.mock.clock` for how that maps to the timestamps on the wire. The controls
for credentials, outages, instance events and latency are methods here and, over HTTP,
``/_mock/`` routes (:mod:`fleetimage.mock.introspect`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
from types import TracebackType
from typing import Any

from aiohttp import web

from fleetimage.core.errors import MockError
from fleetimage.mock import copies, ec2, images, introspect, lifecycle, organizations, rbin, sns
from fleetimage.mock.buckets import Buckets
from fleetimage.mock.clock import Latency, MockClock
from fleetimage.mock.config import MockConfig
from fleetimage.mock.controls import MockControls
from fleetimage.mock.credentials import CredentialTable, expired_error
from fleetimage.mock.faults import Fault, FaultInjector
from fleetimage.mock.fleet import Fleet, ImageRecord, InstanceRecord
from fleetimage.mock.protocol import (
    ApiError,
    ec2_error,
    ec2_ok,
    parse_credential_scope,
    parse_form,
    request_id,
    sts_error,
    sts_ok,
)
from fleetimage.mock.query import Ctx, Handler
from fleetimage.mock.request_kinds import request_kind
from fleetimage.mock.schedule import Schedule
from fleetimage.mock.sts import StsState, account_of_key

__all__ = ["MockEC2", "check_loopback"]

EC2_ACTIONS: dict[str, Handler] = {
    **ec2.HANDLERS,
    **images.HANDLERS,
    **lifecycle.HANDLERS,
    **copies.HANDLERS,
}
STS_ACTIONS = frozenset({"AssumeRole", "GetCallerIdentity"})
_XML = "text/xml;charset=UTF-8"
_JSON = "application/json"
_AMZ_JSON = "application/x-amz-json-1.1"
CounterKey = tuple[str, str, str, str]
KindKey = tuple[str, str, str, str, str]  # account, region, action, kind, outcome
#: The longest a "timeout" outage holds a request (wall seconds), whatever its window.
HOLD_MAX_WALL_S = 600.0


def check_loopback(host: str) -> str:
    """Return the address to bind for ``host``; refuse anything but loopback (MockError)."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise MockError(f"the mock binds loopback only; {host!r} is not a loopback IP") from None
    if not addr.is_loopback:
        raise MockError(f"the mock binds loopback only (127.0.0.0/8, ::1); got {host!r}")
    return str(addr)


class MockEC2(MockControls, lifecycle.LifecycleControls):
    """A mock EC2 + STS endpoint on loopback. Use as ``async with MockEC2(cfg) as mock``.

    Test controls (:meth:`add_instance`, :meth:`set_instance_state`, ...) must be called from
    the loop the server runs on (see :class:`~fleetimage.mock.runner.MockEC2Thread.call`).
    """

    def __init__(
        self, config: MockConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config if config is not None else MockConfig()
        self.host = check_loopback(host)
        self.port = port
        if not 0 <= port <= 65535:
            raise MockError(f"port must be 0..65535, got {port}")
        self.counters: dict[CounterKey, int] = {}
        # DescribeImages also by kind (poll, lookup by name, listing): see request_kinds.
        self.request_kinds: dict[KindKey, int] = {}
        self.fleet = Fleet(self.config)
        self.buckets = Buckets(self.config)
        self.faults = FaultInjector(self.config.faults, self.config.seed)
        self.clock = MockClock(self.config.time_scale)
        self.keys = CredentialTable(self.config.own_credentials_expire_after_s)
        self.sts = StsState(
            self.config.denied_roles,
            random.Random(f"{self.config.seed}:sts"),
            self.keys,
            self.clock,
            self.config.role_max_session_s or {},
        )
        self.schedule = Schedule(self.config, self.fleet)
        self.latency = Latency(self.config)
        self.sns_messages: list[sns.PublishedMessage] = []  # every SNS Publish accepted
        self._runner: web.ServerRunner | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        if self._runner is None:
            raise MockError("the mock is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> MockEC2:
        if self._runner is not None:
            raise MockError("the mock is already started")
        server = web.Server(self._dispatch, access_log=None, keepalive_timeout=30)
        runner = web.ServerRunner(server, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise MockError(f"cannot bind {self.host}:{self.port}: {exc}") from exc
        self.port = int(runner.addresses[0][1])
        self._runner = runner
        return self

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> MockEC2:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- introspection -----------------------------------------------------------------------

    def credentials(self, account: str | None = None) -> dict[str, str]:
        """Fake static credentials whose access key selects ``account`` (default account)."""
        account = account or self.config.default_account
        return {
            "aws_access_key_id": f"AKIA{account}MOCK",
            "aws_secret_access_key": "mock-secret-key-not-a-real-secret-000000",
        }

    def count(
        self,
        action: str | None = None,
        outcome: str | None = None,
        account: str | None = None,
        region: str | None = None,
    ) -> int:
        """Sum of :attr:`counters` over the entries matching every given field."""
        return sum(
            n
            for (acc, reg, act, out), n in self.counters.items()
            if (action is None or act == action)
            and (outcome is None or out == outcome)
            and (account is None or acc == account)
            and (region is None or reg == region)
        )

    def instances(self, account: str, region: str) -> list[InstanceRecord]:
        """Copies of the instances of (account, region), in creation order (due instance
        events applied first)."""
        self.schedule.apply_due(self.aws_now())
        return [i.record() for i in self.fleet.state(account, region).instance_list]

    def images(self, account: str, region: str) -> list[ImageRecord]:
        """Copies of the images of (account, region) in creation order, state computed now;
        deregistered ones included (``deregistered=True``)."""
        now = time.monotonic()
        return [i.record(now) for i in self.fleet.state(account, region).image_list]

    def image_state(self, account: str, region: str, image_id: str) -> str:
        return self._image(account, region, image_id).state(time.monotonic())

    # --- the wire ----------------------------------------------------------------------------

    def _bump(
        self, account: str, region: str, action: str, outcome: str, kind: str | None = None
    ) -> None:
        key = (account, region, action, outcome)
        self.counters[key] = self.counters.get(key, 0) + 1
        if kind is not None:
            kkey = (account, region, action, kind, outcome)
            self.request_kinds[kkey] = self.request_kinds.get(kkey, 0) + 1

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path.startswith("/_mock/"):
            return await introspect.handle(self, request)
        try:
            body = await request.read()
        except ConnectionResetError:  # the client went away mid-request (e.g. killed)
            return web.Response(status=400)
        params = parse_form(body) if body else {}
        if request.query_string:
            params = {**dict(request.query), **params}
        if self.config.ignore_dry_run:  # an endpoint that is not EC2: applied all the same
            params.pop("DryRun", None)
        action = params.get("Action", "")
        kind = request_kind(action, params)
        rid = request_id()
        now = time.monotonic()
        aws_now = self.clock.aws_now(now)
        self.schedule.apply_due(aws_now)
        scope = parse_credential_scope(request.headers.get("Authorization"))
        if scope is None:
            self._bump(self.config.default_account, "", action, "error")
            message = "AWS was not able to validate the provided access credentials"
            return await self._answer(401, ec2_error("AuthFailure", message, rid), "")
        access_key, region, service = scope
        account = account_of_key(access_key, self.config.default_account)
        if service == "rbin":
            self._bump(account, region, "rbin:" + request.path, "ok")
            status, data, headers = rbin.answer(
                self.fleet, account, region, request.method, request.path, body
            )
            return web.Response(status=status, body=data, headers=headers, content_type=_JSON)
        is_sts = service == "sts"
        if access_key in self.config.rejected_access_keys:
            self._bump(account, region, action, "error")
            if is_sts:
                message = "The security token included in the request is invalid."
                return await self._answer(
                    403, sts_error("InvalidClientTokenId", message, rid, 403), region
                )
            message = "AWS was not able to validate the provided access credentials"
            return await self._answer(401, ec2_error("AuthFailure", message, rid), region)
        render = sts_error if is_sts else _ec2_err
        if self.keys.expired(access_key, aws_now):
            self._bump(account, region, action, "expired", kind)
            err = expired_error(service)
            return await self._answer(
                err.status, render(err.code, err.message, rid, err.status), region
            )
        if service in ("sns", "organizations"):
            return await self._other_service(service, account, region, request, params, body, rid)
        if (action not in STS_ACTIONS) if is_sts else (action not in EC2_ACTIONS):
            self._bump(account, region, action, "error")
            message = f"The action {action} is not valid for this web service."
            if is_sts:
                message = f"Could not find operation {action} for version 2011-06-15"
                return await self._answer(
                    400, sts_error("InvalidAction", message, rid, 400), region
                )
            return await self._answer(400, ec2_error("InvalidAction", message, rid), region)
        outage = self.schedule.outage(region, action, aws_now) if self.schedule.outages else None
        if outage is not None:
            self._bump(account, region, action, "outage", kind)
            if outage.mode == "timeout":
                await self._hold(request, outage.end_s)
                return _drop(request)
            code, message, status = _FAULT_ANSWERS[Fault.UNAVAILABLE]
            return await self._answer(status, render(code, message, rid, status), region)

        fault, slow_s = self.faults.draw(action) if self.faults.enabled else (None, 0.0)
        status = 200
        outcome = "ok"
        if fault is not None and fault is not Fault.LOST_ANSWER:
            outcome = "fault"
            if fault is Fault.RESET:
                self._bump(account, region, action, outcome, kind)
                return _drop(request)
            code, message, status = _FAULT_ANSWERS[fault]
            payload = render(code, message, rid, status)
        elif not self.buckets.try_take(account, region, action, now):
            outcome, status = "throttled", (400 if is_sts else 503)
            payload = (
                sts_error("Throttling", "Rate exceeded", rid, status)
                if is_sts
                else ec2_error("RequestLimitExceeded", "Request limit exceeded.", rid)
            )
        else:
            try:
                if is_sts:
                    payload = self._sts(action, access_key, account, params, rid, aws_now)
                else:
                    st = self.fleet.state(account, region)
                    ctx = Ctx(account, region, st, self.fleet, now, time.time())
                    payload = ec2_ok(action, EC2_ACTIONS[action](ctx, params), rid)
            except ApiError as err:
                status = err.status
                outcome = "dry_run" if err.code == "DryRunOperation" else "error"
                payload = render(err.code, err.message, rid, status)
            if fault is Fault.LOST_ANSWER:
                self._bump(account, region, action, "lost_answer", kind)
                return _drop(request)
        self._bump(account, region, action, outcome, kind)
        return await self._answer(status, payload, region, slow_s)

    async def _answer(
        self, status: int, payload: bytes, region: str, slow_s: float = 0.0
    ) -> web.Response:
        """Wait out the slow fault and the latency (AWS seconds, scaled), then answer."""
        delay_s = slow_s + (self.latency.draw(region) if self.latency.enabled else 0.0)
        if delay_s > 0:
            await asyncio.sleep(self.config.scaled(delay_s))
        return web.Response(status=status, body=payload, content_type="text/xml", charset="UTF-8")

    async def _other_service(
        self,
        service: str,
        account: str,
        region: str,
        request: web.BaseRequest,
        params: dict[str, str],
        body: bytes,
        rid: str,
    ) -> web.Response:
        """SNS Publish (Query/XML) and Organizations' listings (JSON): counted like EC2's,
        throttled by ``MockConfig.limits`` when an entry names their action."""
        json_ = service == "organizations"
        target = request.headers.get("X-Amz-Target", "")
        action = target.rpartition(".")[2] if json_ else params.get("Action", "")
        if not self.buckets.try_take(account, region, action, time.monotonic()):
            self._bump(account, region, action, "throttled")
            if json_:
                data = b'{"__type": "TooManyRequestsException", "Message": "Rate exceeded"}'
                return web.Response(status=400, body=data, content_type=_AMZ_JSON)
            data = sns.error("Throttling", "Rate exceeded", rid)
            return web.Response(status=400, body=data, content_type="text/xml")
        if json_:
            status, data = organizations.answer(self.config.organization, account, target, body)
            self._bump(account, region, action, "ok" if status == 200 else "error")
            return web.Response(status=status, body=data, content_type=_AMZ_JSON)
        try:
            data, status = sns.publish(params, rid, self.sns_messages), 200
        except ApiError as err:
            data, status = sns.error(err.code, err.message, rid), err.status
        self._bump(account, region, action or "Publish", "ok" if status == 200 else "error")
        return web.Response(status=status, body=data, content_type="text/xml")

    async def _hold(self, request: web.BaseRequest, end_s: float) -> None:
        """Hold a request unanswered until AWS time ``end_s`` (at most HOLD_MAX_WALL_S) or
        until the client hangs up, whichever comes first."""
        deadline = time.monotonic() + min(self.clock.wall_until(end_s), HOLD_MAX_WALL_S)
        while (left := deadline - time.monotonic()) > 0:
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            await asyncio.sleep(min(left, 0.05))

    def _sts(
        self, action: str, access_key: str, account: str, params: Any, rid: str, aws_now: float
    ) -> bytes:
        _, caller_arn = self.sts.caller(access_key, account)
        if action == "AssumeRole":
            return sts_ok(
                action, self.sts.assume_role(access_key, caller_arn, params, aws_now), rid
            )
        return sts_ok(action, self.sts.get_caller_identity(access_key, account), rid)


_FAULT_ANSWERS: dict[Fault, tuple[str, str, int]] = {
    Fault.INTERNAL_ERROR: ("InternalError", "An internal error has occurred", 500),
    Fault.UNAVAILABLE: ("Unavailable", "The service is unavailable. Try again later.", 503),
    Fault.THROTTLE: ("RequestLimitExceeded", "Request limit exceeded.", 503),
}


def _ec2_err(code: str, message: str, rid: str, status: int) -> bytes:
    return ec2_error(code, message, rid)


def _drop(request: web.BaseRequest) -> web.StreamResponse:
    """Close the connection without any answer (the client sees a reset/disconnect)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError  # aiohttp treats a cancelled handler as "no response"
