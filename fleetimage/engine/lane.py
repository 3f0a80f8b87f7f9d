"""One lane per (account, region): its client, its token buckets, its breaker, its retries.

Every request of the lane goes through :meth:`Lane.send`, retries included: the lane's
breaker admits it (it waits while the lane is paused by transient failures), then the lane's
bucket paces it, and the server's answers tell both how things go.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from tenacity import AsyncRetrying

from fleetimage.aws.clients import to_aws_error
from fleetimage.aws.credentials import AccountCredentials
from fleetimage.core.clock import now
from fleetimage.core.copies import CopyRequested
from fleetimage.core.errors import AwsError, ErrorKind
from fleetimage.core.models import (
    BreakerChanged,
    BreakerState,
    LaneKey,
    Requested,
    Retried,
    Throttled,
)
from fleetimage.engine.breaker import Breaker, Ticket, describe_error
from fleetimage.engine.bucket import AdaptiveTokenBucket
from fleetimage.engine.bus import Bus
from fleetimage.engine.limiter import Limiter
from fleetimage.engine.retry import TIME_BOUNDED, RetryPolicy, retrying
from fleetimage.engine.stop import Stopper

__all__ = ["Lane", "LanePolicy"]

_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")


class LanePolicy(RetryPolicy, Protocol):
    """The retry knobs plus the breaker's (``config.RetryOptions`` satisfies it)."""

    @property
    def request_timeout_s(self) -> float: ...
    @property
    def breaker_failures(self) -> int: ...
    @property
    def breaker_cooldown_s(self) -> float: ...
    @property
    def breaker_max_cooldown_s(self) -> float: ...


class Lane:
    """The (account, region) unit: a long-lived client, its own buckets and its breaker."""

    def __init__(
        self,
        key: LaneKey,
        client: Any,
        limiter: Limiter,
        retry_policy: LanePolicy,
        *,
        run_id: str,
        bus: Bus,
        stopper: Stopper | None = None,
        credentials: AccountCredentials | None = None,
        breaker: Breaker | None = None,
    ) -> None:
        self.key = key
        self.client = client
        # What the client signs with; renewed on an expiry answer (aws/credentials.py).
        self.credentials = credentials
        self.limiter = limiter
        self.retry_policy = retry_policy
        self.run_id = run_id
        self.bus = bus
        self.stopper = stopper or Stopper()
        p = retry_policy
        self.breaker = breaker or Breaker(
            key,
            failures=p.breaker_failures,
            cooldown_s=p.breaker_cooldown_s,
            max_cooldown_s=p.breaker_max_cooldown_s,
            max_outage_s=p.max_outage_s,
            # A failed call comes back within its retry backoff plus a cool-down.
            linger_s=p.max_delay_s + p.breaker_max_cooldown_s,
            probe_wait_s=p.request_timeout_s,
            on_change=self._breaker_changed,
        )
        # CreateImage successes in this lane (a lane outage with none names the options).
        self.create_successes = 0

    async def send(
        self,
        action: str,
        params: dict[str, Any],
        *,
        instance_id: str | None = None,
        write_ahead: Requested | CopyRequested | None = None,
        interruptible: bool = True,
    ) -> Any:
        """One attempt: pass the breaker, wait for a token, send, feed the outcome back.

        ``write_ahead``: committed to the ledger once the breaker and the token let the
        request go, right before the send (a stop or a lane outage during the waits then
        leaves nothing that looks sent). ``interruptible``: False for what must go on after
        new work stops (the waiter's polls): neither a run's stop nor the lane's outage
        (:class:`~fleetimage.engine.breaker.LaneOutage`) ends its waits.
        """
        bucket = self.limiter.bucket(action)
        creds = self.credentials
        ticket: Ticket | None = None
        heard = False  # the bucket is told how the token's request ended, once
        try:
            if interruptible:
                with self.stopper.interruptible():  # a stop ends the waits; never the send
                    ticket = await self._admit(action, bucket, through_outage=False)
            else:
                ticket = await self._admit(action, bucket, through_outage=True)
            if write_ahead is not None:
                await self.bus.before_send(write_ahead)
            sent_at = bucket.now()  # a late throttle of a request sent before a cut is no news
            generation = creds.generation if creds is not None else 0
            method = getattr(self.client, _SNAKE.sub("_", action).lower())
            try:
                answer = await method(**params)
            except Exception as exc:
                error = to_aws_error(exc, action)
                await self.breaker.record(ticket, error)
                if error.kind is ErrorKind.THROTTLE:
                    heard = True
                    rate = bucket.on_throttle(sent_at=sent_at)
                    await self.bus.emit(
                        Throttled(
                            self.run_id,
                            self.key.account,
                            self.key.region,
                            instance_id,
                            now(),
                            action=action,
                            new_rate_per_s=rate,
                        )
                    )
                elif error.kind is ErrorKind.AUTH_EXPIRED and creds is not None:
                    await creds.renew(error, generation)  # the retry resends; raises if it cannot
                raise error from None
            heard = True
            bucket.on_success()
            await self.breaker.record(ticket, None)
            if creds is not None:
                creds.worked()
            return answer
        finally:
            if ticket is not None:
                self.breaker.release(ticket)  # no-op once recorded
                if not heard:
                    bucket.on_returned()

    async def _admit(
        self, action: str, bucket: AdaptiveTokenBucket, *, through_outage: bool
    ) -> Ticket:
        """The breaker's admission, then a token; again if the breaker opened meanwhile (a
        token wait can be long: what queued for tokens must not storm an endpoint gone bad)."""
        while True:
            ticket = await self.breaker.admit(action, through_outage=through_outage)
            try:
                await bucket.acquire()
            except BaseException:
                self.breaker.release(ticket)
                raise
            if self.breaker.admits(ticket, through_outage=through_outage):
                return ticket
            self.breaker.release(ticket)  # the token is spent; the lane is paused anyway
            bucket.on_returned()

    async def call(
        self,
        action: str,
        params: dict[str, Any],
        *,
        instance_id: str | None = None,
        interruptible: bool = True,
    ) -> Any:
        """A call that is safe to repeat (reads): retried per the policy, through the breaker."""
        try:
            async for attempt in self.retrying(action, instance_id, interruptible=interruptible):
                with attempt:
                    return await self.send(
                        action, params, instance_id=instance_id, interruptible=interruptible
                    )
        except AwsError as error:
            raise await self.gave_up(error) from None
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def retrying(
        self, action: str, instance_id: str | None, *, interruptible: bool = True
    ) -> AsyncRetrying:
        """The retry controller for one logical call of this lane (see ``retry.py``)."""
        return retrying(
            self.retry_policy,
            on_retry=self.on_retry(action, instance_id),
            in_lane=True,
            stopper=self.stopper if interruptible else None,
        )

    async def gave_up(self, error: AwsError) -> AwsError:
        """What a call whose retries ended raises: a spent throttle/transient budget
        (``max_outage_s`` of trying) stops the lane (LaneOutage); anything else as is."""
        if error.kind in TIME_BOUNDED:
            return await self.breaker.trip(error)
        return error

    def on_retry(
        self, action: str, instance_id: str | None
    ) -> Callable[[AwsError, int, float], Awaitable[None]]:
        """The callback that reports a retry (non-throttle) as a Retried event."""

        async def on_retry(error: AwsError, attempt: int, delay_s: float) -> None:
            if error.kind is ErrorKind.THROTTLE:
                return  # already reported as Throttled; a Retried line per throttle is noise
            await self.bus.emit(
                Retried(
                    self.run_id,
                    self.key.account,
                    self.key.region,
                    instance_id,
                    now(),
                    action=action,
                    attempt=attempt,
                    error_code=error.code,
                    delay_s=delay_s,
                )
            )

        return on_retry

    async def _breaker_changed(
        self, state: BreakerState, reason: str, error: AwsError | None
    ) -> None:
        await self.bus.emit(
            BreakerChanged(
                self.run_id,
                self.key.account,
                self.key.region,
                None,
                now(),
                state=state,
                reason=reason,
                last_error=describe_error(error),
            )
        )
