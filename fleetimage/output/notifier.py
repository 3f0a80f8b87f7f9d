"""Delivering notifications without ever holding up or failing a run.

:class:`Notifier` is an observer of the run's events (it is called with each one, and never
awaits anything there): ``RunStopping`` with the error budget as its reason, and a lane's
``BreakerChanged`` (open for ``outage_alert_s``, or stopped) become a :class:`Notice`, queued.
One sender task, in the notifier's own task group, delivers each notice to every channel at
once, each delivery retried (tenacity: jittered exponential backoff, ``attempts`` tries) and
bounded by ``timeout_s`` in all. A delivery that fails is logged and kept in
:attr:`Notifier.deliveries`, which the CLI shows under the summary; it never changes the run's
outcome or exit code. Leaving ``async with notifier`` waits at most ``timeout_s`` for what is
queued (the end-of-run notice is the last), then gives up on the rest (recorded as failed).

Channels (:class:`Channel`) are the wire (``fleetimage.aws.notify``: SNS, webhook); they raise
on failure with a message that holds no secret (never the webhook URL).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

import anyio
import anyio.abc
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from tenacity import AsyncRetrying, stop_after_attempt, wait_random_exponential

from fleetimage.core.models import BreakerChanged, BreakerState, Event, RunStopping
from fleetimage.core.redaction import scrub_text
from fleetimage.output.notices import Notice, budget_notice, outage_notice

__all__ = ["BUDGET_REASON", "Channel", "Delivery", "Notifier", "delivery_lines"]

BUDGET_REASON = "ErrorBudgetExceeded"  # engine.lanerun.StopReason.ERROR_BUDGET
_QUEUE = 64  # notices waiting at most; more are dropped (and recorded), never waited for


class Channel(Protocol):
    """Where notices go. ``name`` is safe to print (``sns``, ``webhook``)."""

    @property
    def name(self) -> str: ...

    async def send(self, subject: str, text: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one notice fared on one channel."""

    channel: str
    kind: str
    ok: bool
    attempts: int
    error: str = ""


@dataclass(slots=True)
class _Outage:
    since: float
    epoch: int
    alerted: bool = False  # "failing for long" told
    stopped: bool = False  # "stopped" told


class Notifier:
    """The run's notifications (see the module doc). Use as ``async with Notifier(...)``."""

    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        fleet: str | None = None,
        attempts: int = 3,
        timeout_s: float = 30.0,
        outage_alert_s: float = 300.0,
        time_scale: float = 1.0,
    ) -> None:
        self.channels = list(channels)
        self.fleet = fleet
        self.attempts = attempts
        self.timeout_s = timeout_s
        self.outage_alert_s = outage_alert_s  # wall seconds
        self.time_scale = time_scale  # to say how long in AWS seconds
        self.deliveries: list[Delivery] = []
        self._outages: dict[tuple[str, str], _Outage] = {}
        self._epochs = 0
        self._budget_told = False
        self._tg: anyio.abc.TaskGroup | None = None
        self._send: MemoryObjectSendStream[Notice] | None = None
        self._receive: MemoryObjectReceiveStream[Notice] | None = None
        self._done: anyio.Event | None = None  # set once the sender delivered everything
        self._timers: set[anyio.CancelScope] = set()
        self._drain_s = timeout_s  # how long leaving waits for what is queued
        self._log = structlog.get_logger("fleetimage.notify")

    # --- lifetime ----------------------------------------------------------------------

    async def __aenter__(self) -> Notifier:
        self._done = anyio.Event()
        self._send, receive = anyio.create_memory_object_stream[Notice](_QUEUE)
        self._receive = receive
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._sender, receive)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None and self._send is not None and self._receive is not None
        assert self._done is not None
        tg, self._tg = self._tg, None  # from now on, post() records instead of queueing
        for timer in list(self._timers):
            timer.cancel()
        self._send.close()  # the sender ends once the queue is empty
        with anyio.move_on_after(self._drain_s, shield=True):
            await self._done.wait()
        if not self._done.is_set():
            tg.cancel_scope.cancel()
            left: list[Notice] = []
            while True:  # what never got its turn is recorded, not silently lost
                try:
                    left.append(self._receive.receive_nowait())
                except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                    break
            for notice in left:
                self._failed_all(notice, "not sent: the command ended first")
            self._receive.close()
        return await tg.__aexit__(exc_type, exc, tb)

    # --- the observer ------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStopping):
            if event.reason == BUDGET_REASON and not self._budget_told:
                self._budget_told = True
                self.post(
                    budget_notice(
                        event.run_id, fleet=self.fleet, errors=event.errors, total=event.total
                    )
                )
        elif isinstance(event, BreakerChanged):
            self._breaker(event)

    def post(self, notice: Notice) -> None:
        """Queue ``notice`` for every channel; never waits (a full queue drops it, recorded)."""
        if self._send is None or self._tg is None:
            self._failed_all(notice, "not sent: notifications are not running")
            return
        try:
            self._send.send_nowait(notice)
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._failed_all(notice, "not sent: too many notifications queued")

    def hurry(self) -> None:
        """Leave at once, without waiting for what is queued (a second Ctrl-C): it is
        recorded as not sent."""
        self._drain_s = 0.0

    @property
    def failures(self) -> list[Delivery]:
        return [d for d in self.deliveries if not d.ok]

    # --- breaker tracking --------------------------------------------------------------

    def _breaker(self, event: BreakerChanged) -> None:
        lane = (event.account, event.region)
        outage = self._outages.get(lane)
        if event.state is BreakerState.CLOSED:
            self._outages.pop(lane, None)
            return
        now = time.monotonic()
        if outage is None:
            self._epochs += 1
            outage = self._outages[lane] = _Outage(now, self._epochs)
            if self._tg is not None and event.state is not BreakerState.STOPPED:
                self._tg.start_soon(self._alert_later, event, outage.epoch)
        if event.state is BreakerState.STOPPED and not outage.stopped:
            outage.stopped = outage.alerted = True  # no "failing" after "stopped"
            self.post(self._outage_notice(event, now - outage.since, stopped=True))

    async def _alert_later(self, event: BreakerChanged, epoch: int) -> None:
        if self._tg is None:
            return  # the notifier is closing
        with anyio.CancelScope() as timer:
            self._timers.add(timer)
            try:
                await anyio.sleep(self.outage_alert_s)
            finally:
                self._timers.discard(timer)
        if timer.cancel_called:
            return
        outage = self._outages.get((event.account, event.region))
        if outage is None or outage.epoch != epoch or outage.alerted:
            return  # closed (or stopped and told) since
        outage.alerted = True
        self.post(self._outage_notice(event, time.monotonic() - outage.since, stopped=False))

    def _outage_notice(self, event: BreakerChanged, wall_s: float, *, stopped: bool) -> Notice:
        return outage_notice(
            event.run_id,
            fleet=self.fleet,
            account=event.account,
            region=event.region,
            failing_s=wall_s * self.time_scale,
            last_error=event.last_error,
            stopped=stopped,
        )

    # --- delivery ----------------------------------------------------------------------

    async def _sender(self, receive: MemoryObjectReceiveStream[Notice]) -> None:
        try:
            async with receive:
                async for notice in receive:
                    async with anyio.create_task_group() as tg:
                        for channel in self.channels:
                            tg.start_soon(self._deliver, channel, notice)
        finally:
            assert self._done is not None
            self._done.set()

    async def _deliver(self, channel: Channel, notice: Notice) -> None:
        tries, last = 0, ""
        outcome: Delivery | None = None
        try:
            # The channels' own request timeouts give each attempt its share of the bound
            # (see engine.notify), so a hanging endpoint is tried again; this bounds the whole.
            with anyio.move_on_after(self.timeout_s):
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(self.attempts),
                    wait=wait_random_exponential(multiplier=0.2, max=min(5.0, self.timeout_s / 4)),
                    sleep=anyio.sleep,
                    reraise=True,
                ):
                    with attempt:
                        tries += 1
                        try:
                            await channel.send(notice.subject, notice.text)
                        except Exception as exc:
                            last = (
                                scrub_text(" ".join(str(exc).split()))[:300] or type(exc).__name__
                            )
                            raise
                outcome = Delivery(channel.name, notice.kind, True, tries)
        except Exception:  # a notification never fails the run: recorded below
            pass
        finally:
            # Also when the notifier gives up on it (cancelled): a delivery is never lost.
            if outcome is None:
                gave_up = f"gave up after {self.timeout_s:g} s"
                why = f"{last}; {gave_up}" if last and tries < self.attempts else last or gave_up
                outcome = Delivery(channel.name, notice.kind, False, tries, why)
            self._record(outcome)

    def _record(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        if delivery.ok:
            self._log.info("notified", channel=delivery.channel, kind=delivery.kind)
        else:
            self._log.warning(
                "notification_failed",
                channel=delivery.channel,
                kind=delivery.kind,
                attempts=delivery.attempts,
                error=delivery.error,
            )

    def _failed_all(self, notice: Notice, why: str) -> None:
        for channel in self.channels:
            self._record(Delivery(channel.name, notice.kind, False, 0, why))


def delivery_lines(notifier: Notifier) -> tuple[list[str], list[str]]:
    """For under a summary: what was notified, and one warning per failed notification."""
    sent = sorted({f"{d.kind} via {d.channel}" for d in notifier.deliveries if d.ok})
    done = [f"notified: {', '.join(sent)}"] if sent else []
    warnings = []
    for d in notifier.failures:
        tries = f"{d.attempts} attempt{'' if d.attempts == 1 else 's'}"
        warnings.append(
            f"warning: notification {d.kind} via {d.channel} failed after {tries}: {d.error} "
            "(the outcome and exit code are unchanged)"
        )
    return done, warnings
