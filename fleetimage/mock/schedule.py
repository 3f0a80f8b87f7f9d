"""What happens when, on the mock's AWS clock: outage windows and instance changes.

:class:`Schedule` holds the :class:`~fleetimage.mock.config.Outage` windows (from the config
and added at run time) and the pending :class:`~fleetimage.mock.config.InstanceEvent` s.
Events are applied lazily — at the start of every request and introspection call, all events
whose time has come are applied in time order — so no timer runs and the result is the same as
if each had fired on time (nothing can observe an instance in between).
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any

from fleetimage.mock.config import InstanceEvent, MockConfig, Outage
from fleetimage.mock.fleet import Fleet

__all__ = ["Schedule"]


class Schedule:
    def __init__(self, config: MockConfig, fleet: Fleet) -> None:
        self.config = config
        self.fleet = fleet
        self.outages: list[Outage] = list(config.outages)
        self._pending: list[tuple[float, int, InstanceEvent]] = []
        self._order = itertools.count()
        self.applied: list[dict[str, Any]] = []  # what each due event did (or why skipped)
        for event in config.instance_events:
            self.add_event(event)

    # --- outages -----------------------------------------------------------------------------

    def add_outage(self, outage: Outage) -> None:
        self.outages.append(outage)

    def clear_outages(self) -> None:
        self.outages.clear()

    def outage(self, region: str, action: str, aws_now: float) -> Outage | None:
        """The first outage window covering (region, action) now, if any."""
        for outage in self.outages:
            if outage.covers(region, action, aws_now):
                return outage
        return None

    # --- instance events ---------------------------------------------------------------------

    def add_event(self, event: InstanceEvent) -> None:
        heapq.heappush(self._pending, (event.at_s, next(self._order), event))

    def pending(self) -> list[InstanceEvent]:
        return [event for _, _, event in sorted(self._pending)]

    def apply_due(self, aws_now: float) -> None:
        """Apply, in time order, every event whose time is <= ``aws_now``."""
        pending = self._pending
        while pending and pending[0][0] <= aws_now:
            _, _, event = heapq.heappop(pending)
            self.applied.append(self._apply(event))

    def _apply(self, event: InstanceEvent) -> dict[str, Any]:
        account = event.account or self.config.default_account
        region = event.region or self.config.regions[0]
        record: dict[str, Any] = {
            "at_s": event.at_s,
            "account": account,
            "region": region,
            "instance_id": event.instance_id,
        }
        st = self.fleet.state(account, region)
        inst = st.instances.get(event.instance_id)
        if inst is None:
            return {**record, "outcome": "skipped: no such instance"}
        if event.vanish:
            del st.instances[event.instance_id]
            st.instance_list.remove(inst)
            return {**record, "outcome": "vanished"}
        changes: list[str] = []
        if event.state is not None:
            changes.append(f"state {inst.state} -> {event.state}")
            inst.state = event.state
        for key in sorted(event.remove_tags):
            if inst.tags.pop(key, None) is not None:
                changes.append(f"untagged {key}")
        if event.set_tags:
            inst.tags.update(event.set_tags)
            changes.append("tagged " + ",".join(sorted(event.set_tags)))
        return {**record, "outcome": "; ".join(changes) or "no change"}


def event_json(event: InstanceEvent) -> dict[str, Any]:
    return {
        "at_s": event.at_s,
        "instance_id": event.instance_id,
        "region": event.region,
        "account": event.account,
        "state": event.state,
        "vanish": event.vanish,
        "set_tags": dict(event.set_tags or {}),
        "remove_tags": sorted(event.remove_tags),
    }


def outage_json(outage: Outage) -> dict[str, Any]:
    return {
        "start_s": outage.start_s,
        "end_s": outage.end_s,
        "region": outage.region,
        "action": outage.action,
        "mode": outage.mode,
    }
