"""A worker process of a ``--workers N`` run, seen from the run's process: started, its pipes
as a :class:`~fleetimage.engine.channel.Channel`'s two ends, and dismissed if it gets no job.

A worker is started before the run knows its lanes (engine/workers.py), so its start-up
(interpreter, imports, AWS models) runs while the run finds them; it waits for its job on
stdin, and exits at once, having sent nothing, if stdin closes first.
"""

from __future__ import annotations

import subprocess
import sys

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from fleetimage.engine.channel import ChannelClosed, Receive, Send

__all__ = ["WORKER_MODULE", "dismiss_worker", "pipe_ends", "start_worker"]

WORKER_MODULE = "fleetimage.engine.worker"
# A worker dismissed before its job may still be importing (~1 s, more on a busy machine).
_DISMISS_GRACE_S = 10.0


async def start_worker() -> anyio.abc.Process:
    """A worker process, waiting for its job on stdin."""
    return await anyio.open_process(
        [sys.executable, "-m", WORKER_MODULE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=None,  # a worker's own complaints go where ours go
        start_new_session=True,  # the terminal's Ctrl-C is ours to relay, not theirs
    )


async def dismiss_worker(process: anyio.abc.Process) -> None:
    """End a worker that got no job: its pipes closed, it exits (killed if it does not)."""
    with anyio.move_on_after(_DISMISS_GRACE_S):
        await process.aclose()  # cancelled by the timeout, it kills the process and reaps it


def pipe_ends(process: anyio.abc.Process) -> tuple[Receive, Send]:
    """Read from the worker's stdout and write to its stdin; ChannelClosed once it is gone."""
    assert process.stdin is not None and process.stdout is not None
    stdin, stdout = process.stdin, BufferedByteReceiveStream(process.stdout)

    async def receive(size: int) -> bytes:
        try:
            return await stdout.receive_exactly(size)
        except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError) as exc:
            raise ChannelClosed(str(exc)) from None

    async def send(data: bytes) -> None:
        try:
            await stdin.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise ChannelClosed(str(exc)) from None

    return receive, send
