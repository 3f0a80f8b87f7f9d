"""How many CreateImage calls per second the mock serves (it must not be the bottleneck).

The mock runs in its own process (``fleetimage.mock.serve``); ``--clients`` processes each
fire ``--calls`` CreateImage calls with a real aiobotocore client (concurrency 64,
max_pool_connections 64, botocore retries off). Prints the achieved calls/s and the mock's
own CPU time per call, whose inverse is the mock's capacity on one core (the honest number
on a 2-core machine, where one aiobotocore client process tops out around 580 calls/s).

    python benchmarks/mock_throughput.py --calls 5000 --clients 2
    python benchmarks/mock_throughput.py --raw --calls 20000 --clients 1

``--raw`` swaps aiobotocore for a lean aiohttp client that posts the same EC2 Query requests
(a SigV4-shaped Authorization header; the mock reads only its credential scope), so the
client no longer saturates its core first: what is measured end to end is the mock.
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


async def _fire_raw(endpoint: str, worker: int, calls: int, start_at: float) -> tuple[int, int]:
    import re

    import aiohttp

    auth = (
        f"AWS4-HMAC-SHA256 Credential=AKIA{ACCOUNT}BNCH/20261127/{REGION}/ec2/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64
    )
    headers = {"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"}
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
        body = "Action=DescribeInstances&Version=2016-11-15&MaxResults=1000"
        async with http.post(endpoint, data=body) as resp:
            ids = re.findall(r"<instanceId>(i-[0-9a-f]+)</instanceId>", await resp.text())
        ok = errors = 0
        todo = iter(range(calls))

        async def one() -> None:
            nonlocal ok, errors
            for n in todo:
                form = (
                    "Action=CreateImage&Version=2016-11-15&NoReboot=true"
                    f"&InstanceId={ids[n % len(ids)]}&Name=raw-{worker}-{n}"
                )
                async with http.post(endpoint, data=form) as resp:
                    await resp.read()
                    if resp.status == 200:
                        ok += 1
                    else:
                        errors += 1

        await asyncio.sleep(max(0.0, start_at - time.time()))
        await asyncio.gather(*(one() for _ in range(CONCURRENCY)))
        return ok, errors


def _client(
    endpoint: str, worker: int, calls: int, start_at: float, out: Any, raw: bool = False
) -> None:
    fire = _fire_raw if raw else _fire
    out.put(asyncio.run(fire(endpoint, worker, calls, start_at)))


def _stats(endpoint: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{endpoint}/_mock/stats", timeout=10) as resp:
        data: dict[str, float] = json.loads(resp.read())
        return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000, help="CreateImage calls per client")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--raw", action="store_true", help="lean aiohttp client, not aiobotocore")
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
            ctx.Process(target=_client, args=(endpoint, w, args.calls, start_at, results, args.raw))
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
    bound = "the mock, end to end" if args.raw else "client-bound on a 2-core machine"
    print(f"achieved: {ok / elapsed:,.0f} calls/s ({bound})")
    if served and cpu > 0:
        print(
            f"mock CPU: {cpu / served * 1e6:,.0f} µs per call "
            f"=> capacity ≈ {served / cpu:,.0f} calls/s per core"
        )


if __name__ == "__main__":
    main()
