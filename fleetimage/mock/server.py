"""The aiohttp server: :class:`MockEC2` (lifecycle, dispatch, introspection, test controls).

One server serves every region and account: the region and service (``ec2``/``sts``) come
from the SigV4 credential scope of the ``Authorization`` header, the account from the access
key id (``AKIA``/``ASIA`` + 12 digits, else the default account). Signatures are not checked.

Per request: AuthFailure without SigV4 → unknown action → injected fault → token bucket →
handler → (lost answer) → (slow) → answer. Throttled and faulted requests apply nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import re
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from aiohttp import web

from fleetimage.core.errors import MockError
from fleetimage.mock import ec2, images
from fleetimage.mock.buckets import Buckets
from fleetimage.mock.config import INSTANCE_STATES, MockConfig
from fleetimage.mock.faults import Fault, FaultInjector
from fleetimage.mock.fleet import Fleet, Image, ImageRecord, InstanceRecord
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
from fleetimage.mock.sts import StsState, account_of_key

# EC2 tags are XML text: C0 controls other than tab/newline/CR cannot be served.
_XML_UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

__all__ = ["MockEC2", "check_loopback"]

EC2_ACTIONS: dict[str, Handler] = {**ec2.HANDLERS, **images.HANDLERS}
STS_ACTIONS = frozenset({"AssumeRole", "GetCallerIdentity"})
_XML = "text/xml;charset=UTF-8"
CounterKey = tuple[str, str, str, str]


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


class MockEC2:
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
        self.fleet = Fleet(self.config)
        self.buckets = Buckets(self.config)
        self.faults = FaultInjector(self.config.faults, self.config.seed)
        self.sts = StsState(self.config.denied_roles, random.Random(f"{self.config.seed}:sts"))
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

    def images_per_instance(self) -> dict[tuple[str, str, str], int]:
        """Images ever created per (account, region, instance id), deregistered included."""
        return dict(self.fleet.images_created)

    def duplicates(self) -> dict[tuple[str, str, str], int]:
        """The instances that got more than one image."""
        return {k: n for k, n in self.fleet.images_created.items() if n > 1}

    def instances(self, account: str, region: str) -> list[InstanceRecord]:
        """Copies of the instances of (account, region), in creation order."""
        return [i.record() for i in self.fleet.state(account, region).instance_list]

    def images(self, account: str, region: str) -> list[ImageRecord]:
        """Copies of the images of (account, region) in creation order, state computed now;
        deregistered ones included (``deregistered=True``)."""
        now = time.monotonic()
        return [i.record(now) for i in self.fleet.state(account, region).image_list]

    def image_state(self, account: str, region: str, image_id: str) -> str:
        return self._image(account, region, image_id).state(time.monotonic())

    # --- test controls -----------------------------------------------------------------------

    def add_instance(
        self,
        account: str,
        region: str,
        instance_id: str | None = None,
        state: str = "running",
        tags: Mapping[str, str] | None = None,
        volumes: int = 2,
    ) -> str:
        """Add an instance (1..20 EBS volumes, 0 allowed) and return its id."""
        if state not in INSTANCE_STATES:
            raise MockError(f"unknown instance state {state!r}")
        if not 0 <= volumes <= 6:
            raise MockError("volumes must be 0..6")
        for text in (*(tags or {}).keys(), *(tags or {}).values()):
            if _XML_UNSAFE.search(text):
                raise MockError(f"tag text {text!r} has characters XML 1.0 cannot carry")
        st = self.fleet.state(account, region)
        if instance_id is not None and instance_id in st.instances:
            raise MockError(f"instance {instance_id} already exists in {account}/{region}")
        inst = st.new_instance(
            instance_id=instance_id, state=state, tags=dict(tags or {}), volumes=volumes
        )
        st.add_instance(inst)
        return inst.instance_id

    def set_instance_state(self, account: str, region: str, instance_id: str, state: str) -> None:
        if state not in INSTANCE_STATES:
            raise MockError(f"unknown instance state {state!r}")
        inst = self.fleet.state(account, region).instances.get(instance_id)
        if inst is None:
            raise MockError(f"no instance {instance_id} in {account}/{region}")
        inst.state = state

    def set_image_state(
        self,
        account: str,
        region: str,
        image_id: str,
        state: str | None,
        reason: tuple[str, str] | None = None,
    ) -> None:
        """Force an image's state (``None`` returns it to its timed course)."""
        image = self._image(account, region, image_id)
        if state == "deregistered":
            self.deregister_image(account, region, image_id)
            return
        if state not in (None, "pending", "available", "failed", "invalid", "error", "disabled"):
            raise MockError(f"unknown image state {state!r}")
        image.state_override = state
        image.reason_override = reason

    def deregister_image(self, account: str, region: str, image_id: str) -> None:
        self.fleet.state(account, region).deregister(self._image(account, region, image_id))

    def reset(self) -> None:
        """Back to the initial fleet: no images, no counters, full buckets."""
        self.counters.clear()
        self.fleet.reset()
        self.buckets.reset()

    def _image(self, account: str, region: str, image_id: str) -> Image:
        image = self.fleet.state(account, region).images.get(image_id)
        if image is None:
            raise MockError(f"no image {image_id} in {account}/{region}")
        return image

    # --- the wire ----------------------------------------------------------------------------

    def _bump(self, account: str, region: str, action: str, outcome: str) -> None:
        key = (account, region, action, outcome)
        self.counters[key] = self.counters.get(key, 0) + 1

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path.startswith("/_mock/"):
            return self._introspect(request)
        try:
            body = await request.read()
        except ConnectionResetError:  # the client went away mid-request (e.g. killed)
            return web.Response(status=400)
        params = parse_form(body) if body else {}
        if request.query_string:
            params = {**dict(request.query), **params}
        action = params.get("Action", "")
        rid = request_id()
        scope = parse_credential_scope(request.headers.get("Authorization"))
        if scope is None:
            self._bump(self.config.default_account, "", action, "error")
            message = "AWS was not able to validate the provided access credentials"
            return _answer(401, ec2_error("AuthFailure", message, rid))
        access_key, region, service = scope
        account = account_of_key(access_key, self.config.default_account)
        is_sts = service == "sts"
        if access_key in self.config.rejected_access_keys:
            self._bump(account, region, action, "error")
            if is_sts:
                message = "The security token included in the request is invalid."
                return _answer(403, sts_error("InvalidClientTokenId", message, rid, 403))
            message = "AWS was not able to validate the provided access credentials"
            return _answer(401, ec2_error("AuthFailure", message, rid))
        if (action not in STS_ACTIONS) if is_sts else (action not in EC2_ACTIONS):
            self._bump(account, region, action, "error")
            message = f"The action {action} is not valid for this web service."
            if is_sts:
                message = f"Could not find operation {action} for version 2011-06-15"
                return _answer(400, sts_error("InvalidAction", message, rid, 400))
            return _answer(400, ec2_error("InvalidAction", message, rid))

        fault, slow_s = self.faults.draw(action) if self.faults.enabled else (None, 0.0)
        now = time.monotonic()
        status = 200
        outcome = "ok"
        if fault is not None and fault is not Fault.LOST_ANSWER:
            outcome = "fault"
            if fault is Fault.RESET:
                self._bump(account, region, action, outcome)
                return _drop(request)
            code, message, status = _FAULT_ANSWERS[fault]
            payload = (sts_error if is_sts else _ec2_err)(code, message, rid, status)
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
                    payload = self._sts(action, access_key, account, params, rid)
                else:
                    st = self.fleet.state(account, region)
                    ctx = Ctx(account, region, st, self.fleet, now, time.time())
                    payload = ec2_ok(action, EC2_ACTIONS[action](ctx, params), rid)
            except ApiError as err:
                status = err.status
                outcome = "dry_run" if err.code == "DryRunOperation" else "error"
                render = sts_error if is_sts else _ec2_err
                payload = render(err.code, err.message, rid, status)
            if fault is Fault.LOST_ANSWER:
                self._bump(account, region, action, "lost_answer")
                return _drop(request)
        self._bump(account, region, action, outcome)
        if slow_s:
            await asyncio.sleep(self.config.scaled(slow_s))
        return _answer(status, payload)

    def _sts(self, action: str, access_key: str, account: str, params: Any, rid: str) -> bytes:
        if action == "AssumeRole":
            _, caller_arn = self.sts.caller(access_key, account)
            return sts_ok(action, self.sts.assume_role(caller_arn, params, time.time()), rid)
        return sts_ok(action, self.sts.get_caller_identity(access_key, account), rid)

    def _introspect(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        data: Any
        if path == "/_mock/reset" and request.method == "POST":
            self.reset()
            data = {"reset": True}
        elif request.method != "GET":
            return web.json_response({"error": "method not allowed"}, status=405)
        elif path == "/_mock/counters":
            data = [
                {"account": a, "region": r, "action": act, "outcome": o, "count": n}
                for (a, r, act, o), n in sorted(self.counters.items())
            ]
        elif path == "/_mock/images":
            data = self._images_summary()
        elif path == "/_mock/duplicates":
            data = [
                {"account": a, "region": r, "instance_id": i, "images": n}
                for (a, r, i), n in sorted(self.duplicates().items())
            ]
        elif path == "/_mock/stats":
            data = {"requests": sum(self.counters.values()), "cpu_s": time.process_time()}
        else:
            return web.json_response({"error": f"unknown path {path}"}, status=404)
        return web.Response(body=json.dumps(data).encode(), content_type="application/json")

    def _images_summary(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        out: list[dict[str, Any]] = []
        for st in self.fleet.states():
            states: dict[str, int] = {}
            for image in st.image_list:
                s = image.state(now)
                states[s] = states.get(s, 0) + 1
            out.append({"account": st.account, "region": st.region, "states": states})
        return out


_FAULT_ANSWERS: dict[Fault, tuple[str, str, int]] = {
    Fault.INTERNAL_ERROR: ("InternalError", "An internal error has occurred", 500),
    Fault.UNAVAILABLE: ("Unavailable", "The service is unavailable. Try again later.", 503),
    Fault.THROTTLE: ("RequestLimitExceeded", "Request limit exceeded.", 503),
}


def _ec2_err(code: str, message: str, rid: str, status: int) -> bytes:
    return ec2_error(code, message, rid)


def _answer(status: int, payload: bytes) -> web.Response:
    return web.Response(status=status, body=payload, content_type="text/xml", charset="UTF-8")


def _drop(request: web.BaseRequest) -> web.StreamResponse:
    """Close the connection without any answer (the client sees a reset/disconnect)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError  # aiohttp treats a cancelled handler as "no response"
