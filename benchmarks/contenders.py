"""The contenders, each run in its own spawned process against the same (fresh) mock.

* ``fleetimage``      the engine through its public API (``run_fleet``), completion times
                      from its ``Available``/``Failed`` events.
* ``boto3-script``    a loop of ``create_image`` + ``image_available`` waiter per image (the
                      cron/Lambda script); botocore's default (legacy) retries.
* ``boto3-threads``   32 threads, botocore ``standard`` retries, one waiter per image (the
                      Ansible/Custodian pattern).
* ``boto3-adaptive``  the same with botocore's ``adaptive`` retry mode (client-side limiter).

Every contender discovers the fleet itself (DescribeInstances, paginated), images every
running/stopping/stopped instance and stops starting work at the time limit. Waiter delays and
botocore's standard/adaptive backoff are divided by the time scale, like the mock's clock.
The child measures its own CPU time (``getrusage``, all threads) over the run and its peak RSS.
"""

from __future__ import annotations

import concurrent.futures
import os
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.scenarios import Scenario

__all__ = ["CONTENDERS", "ContenderJob", "child_main"]

IMAGEABLE = ["running", "stopping", "stopped"]
THREADS = 32
Completion = tuple[float, str, str, str, str]  # (t, account, region, instance, outcome)


@dataclass(frozen=True, slots=True)
class ContenderJob:
    contender: str
    scenario: Scenario
    endpoint_url: str
    credentials: dict[str, str]  # the default account's
    time_limit_s: float
    run_tag: str


def _isolate_env(job: ContenderJob) -> None:
    for key in list(os.environ):
        if key.startswith("AWS_"):
            del os.environ[key]
    os.environ["AWS_ACCESS_KEY_ID"] = job.credentials["aws_access_key_id"]
    os.environ["AWS_SECRET_ACCESS_KEY"] = job.credentials["aws_secret_access_key"]
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


class _Meter:
    """CPU seconds (all threads) and wall time since construction."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.t0_monotonic = time.monotonic()  # the mock's clock (CLOCK_MONOTONIC, system-wide)
        self.ru0 = resource.getrusage(resource.RUSAGE_SELF)

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def result(self) -> dict[str, float]:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (ru.ru_utime - self.ru0.ru_utime) + (ru.ru_stime - self.ru0.ru_stime)
        return {
            "elapsed_s": self.now(),
            "cpu_s": cpu,
            "peak_rss_mb": ru.ru_maxrss / 1024,
            "t0_monotonic": self.t0_monotonic,
        }


# --- fleetimage ------------------------------------------------------------------------------


def run_fleetimage(job: ContenderJob) -> dict[str, Any]:
    from fleetimage import Available, Event, Failed, Skipped, parse_config, run_fleet

    config = parse_config(job.scenario.fleet_config())
    completions: list[Completion] = []
    skipped = 0
    meter = _Meter()

    def on_event(event: Event) -> None:
        nonlocal skipped
        kind = type(event)
        if kind is Available:
            completions.append(
                (meter.now(), event.account, event.region, event.instance_id or "", "available")
            )
        elif kind is Failed:
            assert isinstance(event, Failed)
            completions.append(
                (
                    meter.now(),
                    event.account,
                    event.region,
                    event.instance_id or "",
                    f"{event.outcome.value}:{event.error_code}",
                )
            )
        elif kind is Skipped:
            skipped += 1

    deadline = datetime.now(UTC) + timedelta(seconds=job.time_limit_s)
    report = run_fleet(config, endpoint_url=job.endpoint_url, on_event=on_event, deadline=deadline)
    measured = meter.result()
    counts = report.counts
    unfinished = (
        counts["not_started"]
        + counts["pending"]
        + sum(1 for r in report.results if r.error_code == "DeadlineReached")
    )
    return {
        **measured,
        "completions": completions,
        "targets": counts["total"] - counts["skipped"],
        "skipped": skipped,
        "finished": unfinished == 0,
        "counts": counts,
    }


# --- boto3 baselines -------------------------------------------------------------------------


def _scale_botocore_backoff(time_scale: float) -> None:
    """Divide botocore's standard/adaptive retry backoff by the time scale (AWS shape)."""
    from botocore.retries import standard

    original = standard.ExponentialBackoff.delay_amount

    def delay_amount(self: Any, context: Any) -> float:
        return float(original(self, context)) / time_scale

    standard.ExponentialBackoff.delay_amount = delay_amount  # type: ignore[method-assign]


def _boto3_lanes(job: ContenderJob, retry_mode: str | None) -> list[tuple[str, str, Any]]:
    """One boto3 client per (account, region); other accounts through STS AssumeRole."""
    import boto3
    from botocore.config import Config

    kwargs: dict[str, Any] = {"max_pool_connections": THREADS}
    if retry_mode is not None:
        kwargs["retries"] = {"mode": retry_mode}
    config = Config(**kwargs)
    sc = job.scenario
    own, *others = sc.account_ids
    sessions = {own: boto3.session.Session()}
    for account in others:
        sts = sessions[own].client(
            "sts", region_name=sc.region_names[0], endpoint_url=job.endpoint_url
        )
        creds = sts.assume_role(
            RoleArn=f"arn:aws:iam::{account}:role/fleetimage", RoleSessionName="bench"
        )["Credentials"]
        sessions[account] = boto3.session.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )
    return [
        (
            account,
            region,
            sessions[account].client(
                "ec2", region_name=region, endpoint_url=job.endpoint_url, config=config
            ),
        )
        for account in sc.account_ids
        for region in sc.region_names
    ]


def _discover(lanes: list[tuple[str, str, Any]]) -> list[tuple[str, str, Any, str]]:
    targets = []
    for account, region, ec2 in lanes:
        pages = ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "instance-state-name", "Values": IMAGEABLE}],
            PaginationConfig={"PageSize": 1000},
        )
        for page in pages:
            for reservation in page["Reservations"]:
                for instance in reservation["Instances"]:
                    targets.append((account, region, ec2, instance["InstanceId"]))
    return targets


def _image_one(
    job: ContenderJob, ec2: Any, instance_id: str, delay_s: float
) -> tuple[str, str | None]:
    """create_image + image_available waiter; returns (outcome, image id)."""
    from botocore.exceptions import ClientError, WaiterError

    try:
        answer = ec2.create_image(
            InstanceId=instance_id,
            Name=f"bench-{instance_id}-{job.run_tag}",
            NoReboot=True,
            TagSpecifications=[
                {"ResourceType": "image", "Tags": [{"Key": "Purpose", "Value": "bench"}]}
            ],
        )
    except ClientError as exc:
        return f"failed:{exc.response.get('Error', {}).get('Code', 'ClientError')}", None
    except Exception as exc:
        return f"failed:{type(exc).__name__}", None
    image_id = answer["ImageId"]
    try:
        ec2.get_waiter("image_available").wait(
            ImageIds=[image_id], WaiterConfig={"Delay": delay_s, "MaxAttempts": 40}
        )
    except WaiterError as exc:
        reason = exc.last_response.get("Error", {}).get("Code") if exc.last_response else None
        return f"failed:Waiter:{reason or 'failure'}", image_id
    except Exception as exc:
        return f"failed:{type(exc).__name__}", image_id
    return "available", image_id


def _run_boto3(job: ContenderJob, retry_mode: str | None, threads: int) -> dict[str, Any]:
    sc = job.scenario
    if retry_mode in ("standard", "adaptive"):
        _scale_botocore_backoff(sc.time_scale)
    delay_s = sc.wall(sc.waiter_delay_s)
    meter = _Meter()
    completions: list[Completion] = []
    lock = threading.Lock()
    stop = threading.Event()
    lanes = _boto3_lanes(job, retry_mode)
    targets = _discover(lanes)

    def work(target: tuple[str, str, Any, str]) -> None:
        if stop.is_set():
            return
        account, region, ec2, instance_id = target
        outcome, _ = _image_one(job, ec2, instance_id, delay_s)
        with lock:
            completions.append((meter.now(), account, region, instance_id, outcome))

    remaining = max(0.0, job.time_limit_s - meter.now())
    if threads <= 1:
        runner = threading.Thread(target=lambda: [work(t) for t in targets], daemon=True)
        runner.start()
        runner.join(remaining)
        finished = not runner.is_alive()
    else:
        pool = concurrent.futures.ThreadPoolExecutor(threads)
        futures = [pool.submit(work, t) for t in targets]
        done, _ = concurrent.futures.wait(futures, timeout=remaining)
        finished = len(done) == len(futures)
        pool.shutdown(wait=False, cancel_futures=True)
    stop.set()
    measured = meter.result()
    with lock:
        snapshot = list(completions)
    return {
        **measured,
        "completions": snapshot,
        "targets": len(targets),
        "skipped": 0,
        "finished": finished,
        "counts": {},
    }


def run_boto3_script(job: ContenderJob) -> dict[str, Any]:
    return _run_boto3(job, None, 1)


def run_boto3_threads(job: ContenderJob) -> dict[str, Any]:
    return _run_boto3(job, "standard", THREADS)


def run_boto3_adaptive(job: ContenderJob) -> dict[str, Any]:
    return _run_boto3(job, "adaptive", THREADS)


CONTENDERS: dict[str, Callable[[ContenderJob], dict[str, Any]]] = {
    "fleetimage": run_fleetimage,
    "boto3-script": run_boto3_script,
    "boto3-threads": run_boto3_threads,
    "boto3-adaptive": run_boto3_adaptive,
}


def child_main(job: ContenderJob, out: Any) -> None:
    """Entry point of the contender's process: run, send the result, exit at once
    (a cut-off baseline leaves threads blocked in waiters; they must not delay the exit)."""
    _isolate_env(job)
    try:
        result = CONTENDERS[job.contender](job)
    except BaseException as exc:
        import traceback

        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    out.send(result)
    out.close()
    os._exit(0)
