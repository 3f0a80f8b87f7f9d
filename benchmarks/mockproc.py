"""The mock EC2 endpoint in its own process, so it never shares a core or an event loop with
the contender it serves.

Counters, duplicates and image states come over the mock's own ``/_mock/`` HTTP endpoints.
The per-instance pending times (which the bound needs, and which ``/_mock/`` does not expose)
and the images' creation times come over a control pipe, read inside the mock process; so do
the mock's test controls (:meth:`MockProcess.control`: seeding images for prune, say).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import urllib.request
from collections.abc import Callable
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from fleetimage.mock import MockConfig

__all__ = ["MockProcess"]

IMAGEABLE = frozenset({"running", "stopping", "stopped"})


def _snapshot(mock: Any) -> dict[str, Any]:
    """Per-lane facts read inside the mock process (its own records, no HTTP)."""
    cfg = mock.config
    lag = cfg.scaled(cfg.visibility_lag_s)
    lanes: dict[str, Any] = {}
    for st in mock.fleet.states():
        images = sorted(
            ((i.visible_at - lag, i.ready_at, i.source_instance_id) for i in st.image_list),
            key=lambda x: x[0],
        )
        imageable = [i.instance_id for i in st.instance_list if i.state in IMAGEABLE]
        lanes[f"{st.account}/{st.region}"] = {
            "account": st.account,
            "region": st.region,
            # In DescribeInstances order, with the pending time each one's image will get.
            "imageable": imageable,
            "pending_aws_s": [
                mock.fleet.pending_aws_s(st.account, st.region, iid) for iid in imageable
            ],
            "instances": len(st.instance_list),
            # (created at, wall seconds pending, instance) per image, in creation order
            "images": [(c, r - c, iid) for c, r, iid in images],
        }
    dups = mock.copy_duplicates()
    return {
        "lanes": lanes,
        "copy_duplicates": {kind: [[*k, n] for k, n in d.items()] for kind, d in dups.items()},
    }


def _serve(make_config: Callable[[], MockConfig], conn: Connection) -> None:
    from fleetimage.mock import MockEC2

    config = make_config()  # built here: MockConfig holds mappingproxies, which don't pickle

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with MockEC2(config) as mock:
            # Touch every configured lane so the fleet exists before the contender starts.
            for account in config.accounts:
                for region in config.regions:
                    mock.fleet.state(account, region)
            conn.send({"endpoint": mock.endpoint_url, "credentials": mock.credentials()})
            while True:
                command = await loop.run_in_executor(None, conn.recv)
                if command == "snapshot":
                    conn.send(_snapshot(mock))
                elif isinstance(command, tuple) and command[0] == "call":
                    # a test control of the mock (seed images, read its per-image records)
                    _, name, args = command
                    conn.send(getattr(mock, name)(*args))
                elif command == "stop":
                    conn.send("bye")
                    return

    asyncio.run(main())


class MockProcess:
    """``with MockProcess(scenario.mock_config) as mock:`` — a fresh mock in a spawned
    process; ``make_config`` must be picklable (a bound method of a frozen dataclass is)."""

    def __init__(self, make_config: Callable[[], MockConfig]) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(make_config, child), daemon=True)
        self.endpoint_url = ""
        self.credentials: dict[str, str] = {}

    def __enter__(self) -> MockProcess:
        self._proc.start()
        if not self._conn.poll(60):
            self._proc.kill()
            raise RuntimeError("the mock process did not start within 60 s")
        hello = self._conn.recv()
        self.endpoint_url = hello["endpoint"]
        self.credentials = hello["credentials"]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._conn.send("stop")
            self._conn.poll(10)
        except (BrokenPipeError, EOFError, OSError):
            pass
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()

    def account_credentials(self, account: str) -> dict[str, str]:
        """Fake static credentials that select ``account`` (the mock's key scheme)."""
        return {
            "aws_access_key_id": f"AKIA{account}MOCK",
            "aws_secret_access_key": self.credentials["aws_secret_access_key"],
        }

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.endpoint_url}/_mock/{path}", timeout=30) as resp:
            return json.loads(resp.read())

    def counters(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.get("counters")
        return data

    def request_kinds(self) -> list[dict[str, Any]]:
        """DescribeImages counts per kind (poll, lookup, listing) and outcome."""
        data: list[dict[str, Any]] = self.get("request_kinds")
        return data

    def duplicates(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.get("duplicates")
        return data

    def stats(self) -> dict[str, float]:
        data: dict[str, float] = self.get("stats")
        return data

    def control(self, name: str, *args: Any) -> Any:
        """``mock.<name>(*args)`` inside the mock process (its test controls)."""
        self._conn.send(("call", name, args))
        if not self._conn.poll(120):
            raise RuntimeError(f"the mock process did not answer {name}")
        return self._conn.recv()

    def snapshot(self) -> dict[str, Any]:
        self._conn.send("snapshot")
        if not self._conn.poll(120):
            raise RuntimeError("the mock process did not answer the snapshot request")
        data: dict[str, Any] = self._conn.recv()
        return data
