"""A worker process of a ``--workers N`` run (started by engine/workers.py, never by hand).

Started before the run knows its lanes, it loads the AWS models it needs, then reads its
:class:`~fleetimage.engine.workers.WorkerJob` from stdin (if stdin closes first, it exits),
images those lanes with the ordinary engine, and talks to the run's process over stdin/stdout
(engine/channel.py):

- its ledger is the parent's journal: a write-ahead is sent and awaited (nothing leaves before
  the parent committed the row); every other event is sent on, recorded there. Without a
  journal there is nothing to await: the write-ahead is sent on like the others;
- its error budget and stop are the run's (:class:`~fleetimage.engine.runstate.RunLink`).

If the parent goes away (its end of the pipe closes: kill -9, a crash), the worker stops at
once: with nobody to commit a write-ahead it must not send anything new, and the journal's
rows are what ``fleetimage resume`` finishes from. Its stdout is the channel: anything else
printed goes to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pickle
import stat
import sys
from collections.abc import AsyncIterator

import anyio
from aiobotocore.session import AioSession

from fleetimage.aws import clients
from fleetimage.aws.loading import loaded
from fleetimage.config import FleetConfig
from fleetimage.core.copies import CopyRequested
from fleetimage.core.errors import FleetImageError
from fleetimage.core.models import Event, Requested
from fleetimage.core.shards import Shard
from fleetimage.engine.channel import Channel, ChannelClosed, Receive, Send
from fleetimage.engine.run import execute
from fleetimage.engine.runstate import RunState, StopReason
from fleetimage.engine.workers import WorkerJob

__all__ = ["main", "parent_pipes"]

# A parent that never answers a write-ahead is gone or wedged: the send is not made.
_WRITE_AHEAD_TIMEOUT_S = 120.0
# The last frames are written within this after the work ends, or never (the parent is gone).
_FLUSH_TIMEOUT_S = 30.0
EXIT_PARENT_GONE = 3


class _ParentLedger:
    """The ledger of a worker: the parent's journal, over the channel."""

    def __init__(self, channel: Channel, *, journaled: bool) -> None:
        self.channel = channel
        self.journaled = journaled
        self._seq = itertools.count()
        self._waiting: dict[int, anyio.Event] = {}
        self._answers: dict[int, str | None] = {}
        self.written: set[int] = set()  # ids of events sent as write-aheads (not sent twice)

    async def before_send(self, event: Requested | CopyRequested) -> None:
        if not self.journaled:
            return  # nothing to commit: the event goes on as any other (in order)
        seq = next(self._seq)
        done = self._waiting[seq] = anyio.Event()
        self.written.add(id(event))
        self.channel.post(("send", seq, event))
        try:
            with anyio.fail_after(_WRITE_AHEAD_TIMEOUT_S):
                await done.wait()
        finally:
            self._waiting.pop(seq, None)
        refused = self._answers.pop(seq, None)
        if refused is not None:
            raise FleetImageError(f"the run's journal could not record the request: {refused}")

    def answered(self, seq: int, refused: str | None) -> None:
        done = self._waiting.get(seq)
        if done is not None:
            self._answers[seq] = refused
            done.set()

    def record(self, event: Event) -> None:
        return None  # the parent records it when the event arrives there


class _ParentLink:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def counted(self, *, errors: int = 0, targets: int = 0, discovered: bool = False) -> None:
        self.channel.post(("count", errors, targets, discovered))

    def stopped(self, reason: str, *, stop_waiting: bool) -> None:
        self.channel.post(("stop", reason, stop_waiting))


async def _work(channel: Channel, session: AioSession) -> int:
    messages = channel.messages()
    try:
        job = await anext(messages)
    except StopAsyncIteration:
        return EXIT_PARENT_GONE
    assert isinstance(job, WorkerJob)
    config = FleetConfig.from_snapshot(job.config)
    ledger = _ParentLedger(channel, journaled=job.journaled)
    state = RunState(config.max_errors, total=0, link=_ParentLink(channel))

    def forward(event: Event) -> None:
        if id(event) in ledger.written:  # the parent had it as a write-ahead
            ledger.written.discard(id(event))
        else:
            channel.post(("event", event))

    parent_gone = False
    async with anyio.create_task_group() as tg:

        async def listen() -> None:
            nonlocal parent_gone
            async for message in messages:
                if message[0] == "ack":
                    ledger.answered(message[1], message[2])
                elif message[0] == "stop":
                    state.interrupted = message[1] == StopReason.INTERRUPTED
                    state.request_stop(message[1], stop_waiting=message[2], relay=False)
            parent_gone = True
            tg.cancel_scope.cancel()  # nobody commits write-aheads any more: stop now

        tg.start_soon(channel.pump)
        tg.start_soon(listen)
        try:
            await execute(
                config,
                ledger=ledger,
                endpoint_url=job.endpoint_url,
                session=session,
                on_event=forward,
                dry_run=job.dry_run,
                wait=job.wait,
                run_id=job.run_id,
                started_at=job.started_at,
                resume=job.resume,
                plan=job.plan,
                retry_failed=job.retry_failed,
                shard=Shard(job.index, job.count, lanes=job.lanes),
                adopt=job.adopt,
                found=job.found,
                copies=job.copies,
                state=state,
            )
            channel.post(("done",))
        except Exception as exc:
            channel.post(("error", _portable(exc)))
        await channel.close()
        tg.cancel_scope.cancel()
    return EXIT_PARENT_GONE if parent_gone else 0


def _portable(exc: BaseException) -> BaseException:
    """The exception itself if it survives pickling, else a FleetImageError that says it."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return FleetImageError(f"{type(exc).__name__}: {exc}")


def _warmed_session() -> AioSession:
    """The worker's AWS session, with the models of every client it makes (EC2, STS) loaded:
    done while the job is still coming (the parent starts us before it knows the lanes),
    not on the way to the first CreateImage (up to ~0.2 s of CPU before the cut EC2 model is
    on disk, see aws/model.py)."""
    session = clients.new_session()
    loaded(session, "sts", "ec2")  # what fails here, the first client says
    return session


class _WriteProtocol(asyncio.streams.FlowControlMixin):
    """The pipe to the parent: paced like a stream's, and it tells when the pipe is closed
    (after a close, once what was buffered is written)."""

    def __init__(self) -> None:
        super().__init__()
        self.gone = anyio.Event()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.gone.set()


@contextlib.asynccontextmanager
async def parent_pipes(in_fd: int, out_fd: int) -> AsyncIterator[tuple[Receive, Send]]:
    """The channel's two ends on the run's pipes: ``in_fd`` read, ``out_fd`` written. On the
    way out, what is still buffered is written before the process may exit."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(in_fd, "rb", buffering=0)
    )
    transport, protocol = await loop.connect_write_pipe(
        _WriteProtocol, os.fdopen(out_fd, "wb", buffering=0)
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)

    async def receive(size: int) -> bytes:
        try:
            return await reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise ChannelClosed(str(exc)) from None

    async def send(data: bytes) -> None:
        try:
            writer.write(data)
            await writer.drain()
        except ConnectionError as exc:
            raise ChannelClosed(str(exc)) from None

    try:
        yield receive, send
    finally:
        writer.close()
        # drain() returns with up to 64 KiB still buffered: an exit right after it would cut
        # off the last frame (the end of the run's events, "done"), and the parent would take
        # a worker that finished for one that died. Bounded: the parent may not be reading.
        with anyio.move_on_after(_FLUSH_TIMEOUT_S):
            await protocol.gone.wait()


async def _main(out_fd: int, session: AioSession) -> int:
    async with parent_pipes(0, out_fd) as (receive, send):
        return await _work(Channel(receive, send), session)


def main() -> None:
    # asyncio cannot watch a terminal, a file or /dev/null for reading: such a worker would
    # wait for its job for ever.
    mode = os.fstat(0).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        print(
            "fleetimage: this process is a worker of `fleetimage run --workers N`, which "
            "starts it; it cannot be run by hand",
            file=sys.stderr,
        )
        sys.exit(2)
    # The channel is our stdout: keep it for frames, and point fd 1 (print, any library's
    # chatter) at stderr so nothing else can land in the middle of a frame.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.exit(anyio.run(_main, out_fd, _warmed_session()))


if __name__ == "__main__":
    main()
