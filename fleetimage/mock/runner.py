"""Running the mock outside an event loop: :func:`serve` (blocking) and
:class:`MockEC2Thread` (a context manager running the server in its own thread and loop)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from fleetimage.core.errors import MockError
from fleetimage.mock.config import MockConfig
from fleetimage.mock.server import MockEC2, check_loopback

__all__ = ["MockEC2Thread", "serve"]

T = TypeVar("T")


def serve(
    config: MockConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ready: Callable[[MockEC2], None] | None = None,
) -> None:
    """Serve until interrupted (Ctrl-C / cancellation). ``ready(mock)`` is called once bound."""
    check_loopback(host)

    async def main() -> None:
        async with MockEC2(config, host, port) as mock:
            if ready is not None:
                ready(mock)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


class MockEC2Thread:
    """``with MockEC2Thread(cfg) as mock:`` — the server runs in a daemon thread with its own
    event loop; ``endpoint_url`` and ``credentials()`` work from any thread, and
    ``call(fn, *args)`` runs ``fn(mock_ec2, *args)`` on the server's loop (for test controls)."""

    def __init__(
        self, config: MockConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.mock = MockEC2(config, host, port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._started = concurrent.futures.Future[None]()

    @property
    def endpoint_url(self) -> str:
        return self.mock.endpoint_url

    def credentials(self, account: str | None = None) -> dict[str, str]:
        return self.mock.credentials(account)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(self.mock, *args)`` on the server loop and return its result."""
        if self._loop is None:
            raise MockError("the mock thread is not running")

        async def run() -> T:
            return fn(self.mock, *args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result()

    def count(
        self,
        action: str | None = None,
        outcome: str | None = None,
        account: str | None = None,
        region: str | None = None,
    ) -> int:
        """:meth:`MockEC2.count`, run on the server loop."""
        return self.call(MockEC2.count, action, outcome, account, region)

    def start(self) -> MockEC2Thread:
        self._thread = threading.Thread(target=self._run, name="fleetimage-mock", daemon=True)
        self._thread.start()
        self._started.result(timeout=30)
        return self

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                await self.mock.start()
            except BaseException as exc:
                self._started.set_exception(exc)
                return
            self._started.set_result(None)
            try:
                await self._stop.wait()
            finally:
                await self.mock.close()

        asyncio.run(main())

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._loop = None

    def __enter__(self) -> MockEC2Thread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
