"""The test controls of :class:`~fleetimage.mock.server.MockEC2` (a mixin): change the fleet,
the clock-driven behaviour (credential expiry, outages, instance events, latency) and reset.

Call them on the loop the server runs on (``MockEC2Thread.call`` from another thread). The
same controls are reachable over HTTP under ``/_mock/`` (:mod:`fleetimage.mock.introspect`).
All times are AWS seconds since the mock started (:meth:`MockControls.aws_now`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from fleetimage.core.errors import MockError
from fleetimage.mock import copies
from fleetimage.mock.buckets import Buckets
from fleetimage.mock.clock import Latency, MockClock
from fleetimage.mock.config import INSTANCE_STATES, InstanceEvent, MockConfig, Outage
from fleetimage.mock.credentials import CredentialTable
from fleetimage.mock.fleet import Fleet, Image
from fleetimage.mock.schedule import Schedule
from fleetimage.mock.sts import StsState

__all__ = ["MockControls"]

# EC2 tags are XML text: C0 controls other than tab/newline/CR cannot be served.
_XML_UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class MockControls:
    """Test controls; :class:`~fleetimage.mock.server.MockEC2` provides the state."""

    config: MockConfig
    counters: dict[tuple[str, str, str, str], int]
    request_kinds: dict[tuple[str, str, str, str, str], int]
    fleet: Fleet
    buckets: Buckets
    clock: MockClock
    keys: CredentialTable
    sts: StsState
    schedule: Schedule
    latency: Latency

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
        """Back to the initial fleet: no images, no counters, full buckets; the clock restarts
        at AWS time 0, issued sessions, forced expiries and AssumeRole counts are forgotten,
        outages, instance events and latency are the config's again."""
        self.counters.clear()
        self.request_kinds.clear()
        self.fleet.reset()
        self.buckets.reset()
        self.clock.restart()
        self.keys = self.sts.table = CredentialTable(self.config.own_credentials_expire_after_s)
        self.schedule = Schedule(self.config, self.fleet)
        self.latency = Latency(self.config)

    def _image(self, account: str, region: str, image_id: str) -> Image:
        image = self.fleet.state(account, region).images.get(image_id)
        if image is None:
            raise MockError(f"no image {image_id} in {account}/{region}")
        return image

    # --- time ---------------------------------------------------------------------------------

    def aws_now(self) -> float:
        """AWS seconds since the mock started (wall seconds × ``time_scale``)."""
        return self.clock.aws_now()

    def expire_key(self, access_key_id: str, at_s: float | None = None) -> None:
        """Make any access key (issued by the mock or not) expire at AWS time ``at_s``
        (default: now)."""
        self.keys.expire_key(access_key_id, self._at(at_s, "at_s"))

    def expire_all_session_credentials(self, at_s: float | None = None) -> int:
        """Expire every session AssumeRole issued so far (at ``at_s``, default now)."""
        return self.keys.expire_all_sessions(self._at(at_s, "at_s"))

    def set_own_credentials_expiry(self, at_s: float | None) -> None:
        """The caller's own (non-issued) keys expire at AWS time ``at_s`` (None: never)."""
        self.keys.own_expire_at_s = None if at_s is None else self._at(at_s, "own_expire_at_s")

    def assume_role_count(self, role_arn: str | None = None, account: str | None = None) -> int:
        """Successful AssumeRole calls, for one role ARN and/or the roles of one account."""
        return self.keys.assume_role_count(role_arn, account)

    def credential_state(self) -> dict[str, object]:
        """AssumeRole counts per role ARN and account, and the issued sessions (JSON-able)."""
        return self.keys.snapshot(self.aws_now())

    def add_outage(self, outage: Outage) -> None:
        if not isinstance(outage, Outage):
            raise MockError("add_outage takes an Outage")
        self.schedule.add_outage(outage)

    def clear_outages(self) -> None:
        self.schedule.clear_outages()

    def add_instance_event(self, event: InstanceEvent) -> None:
        """Schedule an instance change; the instance must exist now (MockError otherwise)."""
        if not isinstance(event, InstanceEvent):
            raise MockError("add_instance_event takes an InstanceEvent")
        account = event.account or self.config.default_account
        region = event.region or self.config.regions[0]
        if event.instance_id not in self.fleet.state(account, region).instances:
            raise MockError(f"no instance {event.instance_id} in {account}/{region}")
        self.schedule.add_event(event)

    def instance_events_applied(self) -> list[dict[str, object]]:
        """What each due instance event did (or why it was skipped), in order."""
        self.schedule.apply_due(self.aws_now())
        return list(self.schedule.applied)

    def set_latency(
        self,
        latency_s: float | None = None,
        latency_jitter_s: float | None = None,
        region_latency_s: Mapping[str, float] | None = None,
    ) -> None:
        """Change the answer latency knobs given (AWS seconds); the others stay."""
        self.latency.set(latency_s, latency_jitter_s, region_latency_s)

    def _at(self, at_s: float | None, name: str) -> float:
        if at_s is None:
            return self.aws_now()
        if isinstance(at_s, bool) or not isinstance(at_s, int | float) or math.isnan(at_s):
            raise MockError(f"{name} must be AWS seconds since start, got {at_s!r}")
        return float(at_s)

    # --- images made, and what was made more than once ---------------------------------

    def images_per_instance(self) -> dict[tuple[str, str, str], int]:
        """Images ever created per (account, region, instance id), deregistered included."""
        return dict(self.fleet.images_created)

    def duplicates(self) -> dict[tuple[str, str, str], int]:
        """The instances that got more than one image."""
        return {k: n for k, n in self.fleet.images_created.items() if n > 1}

    def copy_stats(self) -> list[dict[str, Any]]:
        """CopyImage per (account, destination region), from the mock's own accounting: see
        :func:`fleetimage.mock.copies.copy_stats`."""
        return copies.copy_stats(self.fleet, self.counters, self.buckets, self.clock)

    def copy_duplicates(self) -> dict[str, dict[tuple[str, ...], int]]:
        """CopyImage's duplicates: copies made more than once per ClientToken, per name and
        per (source image, destination); all empty when no copy was ever made twice."""
        c = self.fleet.copies
        return {
            "by_token": {k: n for k, n in c.by_token.items() if n > 1 and k[2]},
            "by_name": {k: n for k, n in c.by_name.items() if n > 1},
            "by_source": {k: n for k, n in c.by_source.items() if n > 1},
        }
