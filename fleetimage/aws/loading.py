"""A session's service models, loaded once and off the event loop; the clients made from them.

botocore loads a service's model and its shared data (endpoints, partitions, retry rules) from
disk the first time a client of it is made: ~0.1-0.2 s of CPU, which would block the event
loop. aiobotocore's remedy, ``AioConfig(warm_up_loader_caches=True)``, moves that load into a
worker thread for *every* client, loaded or not, and a run makes one client a lane: an
organisation's first wave of ~100 clients then waits on ~100 thread hops contending for the
GIL, which delayed the first CreateImage of a 100-lane fleet by ~0.5 s. Here the load goes to a
thread once per (loader, service), the first client of a service waits for it alone with the
others behind it, and every client after that is made on the loop from the loader's cache.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
from aiobotocore.session import AioSession

__all__ = ["loaded", "open_client"]

# The services each loader has loaded (account sessions share their base session's loader).
_LOADED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
# The load under way per (loader, service), in this event loop: the later clients wait on it.
_LOADING: anyio.lowlevel.RunVar[dict[tuple[int, str], anyio.Lock]] = anyio.lowlevel.RunVar(
    "fleetimage_loading"
)


def loaded(session: AioSession, *services: str) -> None:
    """Load ``services``' models into ``session``'s loader now, in this thread (a worker
    process does it before its event loop starts); a failure is left to the first client."""
    for service in services:
        with contextlib.suppress(Exception):
            session.warm_up_loader_caches(service)
            _LOADED.setdefault(session.get_component("data_loader"), set()).add(service)


async def _load(session: AioSession, service: str) -> None:
    loader = session.get_component("data_loader")
    if service in _LOADED.get(loader, ()):
        return
    try:
        locks = _LOADING.get()
    except LookupError:
        locks = {}
        _LOADING.set(locks)
    lock = locks.setdefault((id(loader), service), anyio.Lock())
    async with lock:
        if service not in _LOADED.get(loader, ()):
            await anyio.to_thread.run_sync(loaded, session, service)


@contextlib.asynccontextmanager
async def open_client(session: AioSession, service: str, **kwargs: Any) -> AsyncIterator[Any]:
    """``session.create_client(service, **kwargs)``, its model loaded first (off the loop, once).
    ``kwargs``' config must not ask aiobotocore to warm up again (``client_config`` does not)."""
    await _load(session, service)
    async with session.create_client(service, **kwargs) as client:
        yield client
