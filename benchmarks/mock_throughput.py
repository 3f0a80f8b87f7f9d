"""How many CreateImage calls per second the mock serves (it must not be the bottleneck).

The mock runs in its own process (``fleetimage.mock.serve``); ``--clients`` processes each
fire ``--calls`` CreateImage calls with a real aiobotocore client (concurrency 64,
max_pool_connections 64, botocore retries off). Prints the achieved calls/s and the mock's
own CPU time per call, whose inverse is the mock's capacity on one core (the honest number
on a 2-core machine, where one aiobotocore client process tops out around 580 calls/s).

    python benchmarks/mock_throughput.py --calls 5000 --clients 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import time
import urllib.request
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"
CONCURRENCY = 64


def _serve(queue: Any, instances: int) -> None:
    from fleetimage.mock import MockConfig, serve

    cfg = MockConfig(
        regions=(REGION,),
        accounts=(ACCOUNT,),
        instances_per_region=instances,
        state_mix={"running": 1.0},
        throttling=False,
        pending_s=5.0,
    )
    serve(cfg, "127.0.0.1", 0, ready=lambda mock: queue.put(mock.endpoint_url))


async def _fire(endpoint: str, worker: int, calls: int, start_at: float) -> tuple[int, int]:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    config = AioConfig(retries={"total_max_attempts": 1}, max_pool_connections=CONCURRENCY)
    session = get_session()
    async with session.create_client(
        "ec2",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=f"AKIA{ACCOUNT}BNCH",
        aws_secret_access_key="bench-secret",
        config=config,
    ) as ec2:
        ids: list[str] = []
        paginator = ec2.get_paginator("describe_instances")
        async for page in paginator.paginate(PaginationConfig={"PageSize": 1000}):
            ids += [i["InstanceId"] for r in page["Reservations"] for i in r["Instances"]]
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(calls):
            queue.put_nowait(n)
        ok = errors = 0

        async def one() -> None:
            nonlocal ok, errors
            while not queue.empty():
                n = queue.get_nowait()
                try:
                    await ec2.create_image(
                        InstanceId=ids[n % len(ids)], Name=f"bench-{worker}-{n}", NoReboot=True
                    )
                    ok += 1
                except Exception:
                    errors += 1

        await asyncio.sleep(max(0.0, start_at - time.time()))
        await asyncio.gather(*(one() for _ in range(CONCURRENCY)))
        return ok, errors


def _client(endpoint: str, worker: int, calls: int, start_at: float, out: Any) -> None:
    out.put(asyncio.run(_fire(endpoint, worker, calls, start_at)))


def _stats(endpoint: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{endpoint}/_mock/stats", timeout=10) as resp:
        data: dict[str, float] = json.loads(resp.read())
        return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000, help="CreateImage calls per client")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--instances", type=int, default=2000)
    args = parser.parse_args()

    ctx = mp.get_context("spawn")
    urls: Any = ctx.Queue()
    server = ctx.Process(target=_serve, args=(urls, args.instances), daemon=True)
    server.start()
    try:
        endpoint = urls.get(timeout=60)
        results: Any = ctx.Queue()
        start_at = time.time() + 3.0  # let every client warm up (session, paginate) first
        clients = [
            ctx.Process(target=_client, args=(endpoint, w, args.calls, start_at, results))
            for w in range(args.clients)
        ]
        for proc in clients:
            proc.start()
        time.sleep(max(0.0, start_at - time.time()))
        before = _stats(endpoint)
        t0 = time.perf_counter()
        outcomes = [results.get(timeout=600) for _ in clients]
        elapsed = time.perf_counter() - t0
        after = _stats(endpoint)
        for proc in clients:
            proc.join()
    finally:
        server.terminate()
        server.join()
    ok = sum(o for o, _ in outcomes)
    errors = sum(e for _, e in outcomes)
    served = after["requests"] - before["requests"]
    cpu = after["cpu_s"] - before["cpu_s"]
    print(f"CreateImage: {ok} ok, {errors} errors in {elapsed:.2f} s from {args.clients} clients")
    print(f"achieved: {ok / elapsed:,.0f} calls/s (client-bound on a 2-core machine)")
    if served and cpu > 0:
        print(
            f"mock CPU: {cpu / served * 1e6:,.0f} µs per call "
            f"=> capacity ≈ {served / cpu:,.0f} calls/s per core"
        )


if __name__ == "__main__":
    main()
