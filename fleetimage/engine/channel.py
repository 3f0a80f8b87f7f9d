"""Messages between the run's process and one of its worker processes, over a pipe pair.

Each frame is a 4-byte big-endian length and a pickled list of messages: a worker posts one
message per event, and a frame carries whatever piled up since the last write, so a busy
worker pays one write (and the parent one read) per batch rather than per event. Pickle is
safe here: both ends are this program, started by it, talking over its own pipes.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio

__all__ = ["Channel", "ChannelClosed", "Receive", "Send"]

_HEADER = struct.Struct(">I")
BATCH = 2000
# No frame is this big (the first, the job with its plan, is the largest): a length above it
# means the pipe carries something else, and reading stops at once.
MAX_FRAME = 1 << 30


class ChannelClosed(Exception):
    """The other end is gone (its process exited, or closed the pipe)."""


Receive = Callable[[int], Awaitable[bytes]]  # exactly n bytes; ChannelClosed at the end
Send = Callable[[bytes], Awaitable[None]]  # all of it; ChannelClosed if the reader is gone


class Channel:
    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive, self._send = receive, send
        self._outbox: list[Any] = []
        self._ready = anyio.Event()
        self._closing = False
        self._drained = anyio.Event()
        self.closed = False

    def post(self, message: Any) -> None:
        """Queue ``message``; :meth:`pump` writes it (never blocks the caller)."""
        self._outbox.append(message)
        self._ready.set()

    async def pump(self) -> None:
        """Write what is posted, in order, until :meth:`close` or the reader is gone."""
        try:
            while not self.closed:
                await self._ready.wait()
                self._ready = anyio.Event()
                # At most BATCH messages a frame: a backlog goes out in pieces the other end
                # can start on, each pickled while the last one is being written.
                batch, self._outbox = self._outbox[:BATCH], self._outbox[BATCH:]
                if self._outbox:
                    self._ready.set()
                if batch:
                    body = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
                    try:
                        await self._send(_HEADER.pack(len(body)) + body)
                    except ChannelClosed:
                        self.closed = True  # the reader is gone; what it missed, resume redoes
                        return
                if self._closing and not self._outbox:
                    return
        finally:
            self._drained.set()

    async def close(self, timeout_s: float = 30.0) -> None:
        """Write what is still queued, then stop the pump (bounded: the reader may be gone)."""
        self._closing = True
        self._ready.set()
        with anyio.move_on_after(timeout_s):
            await self._drained.wait()

    async def messages(self) -> AsyncIterator[Any]:
        """Every message the other end sends, in order, until it closes the pipe."""
        while True:
            try:
                header = await self._receive(_HEADER.size)
                (size,) = _HEADER.unpack(header)
                if size > MAX_FRAME:
                    raise ChannelClosed(f"a frame of {size} bytes: the pipe carries something else")
                body = await self._receive(size)
            except ChannelClosed:
                # Gone, even in the middle of a frame (a kill -9 while it wrote): what the
                # frame carried was never acted on, and the other end's going is handled as
                # any other (a worker is started again, a parent's workers stop).
                return
            for message in pickle.loads(body):
                yield message
