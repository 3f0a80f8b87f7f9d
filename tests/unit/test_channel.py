"""The pipe between a ``--workers`` run and its workers (engine/channel.py, the worker's end of
it in engine/worker.py): a frame cut off ends the conversation instead of crashing the run, and
a worker's last frame reaches the run whole even if the run reads it after the worker exited."""

from __future__ import annotations

import pickle
import struct
import subprocess
import sys
import time

from fleetimage.engine.channel import Channel, ChannelClosed


def _frame(messages: list[object]) -> bytes:
    body = pickle.dumps(messages)
    return struct.pack(">I", len(body)) + body


async def test_a_frame_cut_off_by_the_other_ends_exit_ends_its_messages() -> None:
    wire = _frame(["job", ("event", 1)]) + _frame([("event", 2), ("done",)])[:-5]
    offset = 0

    async def receive(size: int) -> bytes:
        nonlocal offset
        if offset + size > len(wire):
            raise ChannelClosed("gone")  # a kill -9 while it wrote its second frame
        offset += size
        return wire[offset - size : offset]

    async def send(data: bytes) -> None:
        raise AssertionError("nothing is sent")

    got = [m async for m in Channel(receive, send).messages()]
    assert got == ["job", ("event", 1)]


# A worker's end of the pipe: it posts its last frame, closes the channel and exits. The frame
# is more than a pipe holds (64 KiB on Linux) by less than asyncio's write buffer lets pile up
# before drain() waits: the worker's writes all return at once, with the end of the frame
# still in its buffer.
_WORKER = """
import anyio
from fleetimage.engine.channel import Channel
from fleetimage.engine.worker import parent_pipes

async def main():
    async with parent_pipes(0, 1) as (receive, send):
        channel = Channel(receive, send)
        async with anyio.create_task_group() as tg:
            tg.start_soon(channel.pump)
            channel.post("x" * 100_000)
            channel.post(("done",))
            await channel.close()

anyio.run(main)
"""


def test_a_workers_last_frame_reaches_the_run_whole_though_the_run_reads_it_late() -> None:
    worker = subprocess.Popen(
        [sys.executable, "-c", _WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert worker.stdin is not None and worker.stdout is not None
    with worker, worker.stdin, worker.stdout:
        time.sleep(1.0)  # a busy run: a worker that exits unflushed meanwhile cuts the frame off
        wire = worker.stdout.read()  # to the end: the worker exits once it has written it all
        assert worker.wait(timeout=30) == 0
    (size,) = struct.unpack(">I", wire[:4])
    assert (size, len(wire)) == (len(wire) - 4, len(wire))
    assert pickle.loads(wire[4:]) == ["x" * 100_000, ("done",)]
