"""The contenders, each run in its own spawned process against the same (fresh) mock.

* ``fleetimage``            the engine through its public API (``run_fleet``) with its default
                            configuration (plus the scenario's ``time_scale`` and stated
                            overrides); completion times from its ``Available``/``Failed`` events
                            (:mod:`benchmarks.engine_contender`).
* ``fleetimage-w2``         the same with ``workers=2`` (its lanes over 2 worker processes); run
                            only where a scenario or ``--contenders`` names it, and skipped
                            where the checkout's engine has no ``workers`` parameter.
* ``boto3-script``          a loop of ``create_image`` + ``image_available`` waiter per image
                            (the cron/Lambda script); botocore's default (legacy) retries.
* ``boto3-waiters``         the usual script: 32 threads create every image, then one
                            ``image_available`` waiter per image (32 threads), botocore
                            ``standard`` retries (default attempts).
* ``boto3-batch-standard``  the competent script, and the yardstick: one thread per (account,
                            region) creates everything, then polls DescribeImages by ``ImageIds``
                            (<= 200 per call) every 15 AWS s; botocore ``standard`` retries,
                            ``max_attempts`` 10.
* ``boto3-batch-adaptive``  the same with botocore's ``adaptive`` retry mode (its client-side
                            rate limiter).

Every contender discovers the fleet itself (DescribeInstances, paginated, state filter), images
every running/stopping/stopped instance and stops starting work at its cut-off. Waiter delays,
poll intervals and every botocore backoff (legacy, standard, and the adaptive limiter's clock)
are divided by the time scale, like the mock's clock. The child measures the CPU time of its
whole process tree over the run (itself, all threads, and any worker processes:
:class:`~benchmarks.meter.Meter`) and its peak RSS.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.engine_contender import run_fleetimage, workers_unsupported
from benchmarks.meter import Meter
from benchmarks.scenarios import Scenario

__all__ = [
    "CONTENDERS",
    "OPT_IN",
    "SAMPLED",
    "WORKERS",
    "ContenderJob",
    "child_main",
    "unavailable",
]

IMAGEABLE = ["running", "stopping", "stopped"]
THREADS = 32
BATCH_IDS = 200  # ImageIds per DescribeImages call (the competent script)
BATCH_MAX_ATTEMPTS = 10
Completion = tuple[float, str, str, str, str]  # (t, account, region, instance, outcome)


@dataclass(frozen=True, slots=True)
class ContenderJob:
    contender: str
    scenario: Scenario
    endpoint_url: str
    credentials: dict[str, str]  # the default account's
    time_limit_s: float
    run_tag: str
    workers: int = 1  # fleetimage's worker processes (passed to the engine only when > 1)


def _isolate_env(job: ContenderJob) -> None:
    for key in list(os.environ):
        if key.startswith("AWS_"):
            del os.environ[key]
    os.environ["AWS_ACCESS_KEY_ID"] = job.credentials["aws_access_key_id"]
    os.environ["AWS_SECRET_ACCESS_KEY"] = job.credentials["aws_secret_access_key"]
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


# --- boto3 baselines -------------------------------------------------------------------------


def _scale_botocore(time_scale: float) -> None:
    """Run every botocore backoff on the mock's clock: legacy and standard backoff delays
    divided by the time scale, and the adaptive limiter's clock made to tick in AWS seconds."""
    from botocore import retryhandler
    from botocore.retries import bucket, standard

    legacy = retryhandler.delay_exponential

    def delay_exponential(base: Any, growth_factor: Any, attempts: Any) -> float:
        return float(legacy(base, growth_factor, attempts)) / time_scale

    retryhandler.delay_exponential = delay_exponential

    original = standard.ExponentialBackoff.delay_amount

    def delay_amount(self: Any, context: Any) -> float:
        return float(original(self, context)) / time_scale

    standard.ExponentialBackoff.delay_amount = delay_amount  # type: ignore[method-assign]

    class ScaledClock(bucket.Clock):  # type: ignore[misc]
        def sleep(self, amount: float) -> None:
            time.sleep(amount / time_scale)

        def current_time(self) -> float:
            return time.time() * time_scale

    bucket.Clock = ScaledClock  # adaptive.register_retry_handler builds one per client


def _boto3_lanes(
    job: ContenderJob, retries: dict[str, Any] | None, pool: int
) -> list[tuple[str, str, Any]]:
    """One boto3 client per (account, region); other accounts through STS AssumeRole."""
    import boto3
    from botocore.config import Config

    kwargs: dict[str, Any] = {"max_pool_connections": pool}
    if retries is not None:
        kwargs["retries"] = retries
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


def _discover_lane(ec2: Any) -> list[str]:
    found = []
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": IMAGEABLE}],
        PaginationConfig={"PageSize": 1000},
    )
    for page in pages:
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                found.append(instance["InstanceId"])
    return found


def _discover(lanes: list[tuple[str, str, Any]]) -> list[tuple[str, str, Any, str]]:
    return [(a, r, ec2, iid) for a, r, ec2 in lanes for iid in _discover_lane(ec2)]


def _error_code(exc: BaseException) -> str:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__


def _create(job: ContenderJob, ec2: Any, instance_id: str) -> tuple[str | None, str]:
    """create_image; returns (image id, "") or (None, "failed:<code>")."""
    try:
        answer = ec2.create_image(
            InstanceId=instance_id,
            Name=f"bench-{instance_id}-{job.run_tag}",
            NoReboot=True,
            TagSpecifications=[
                {"ResourceType": "image", "Tags": [{"Key": "Purpose", "Value": "bench"}]}
            ],
        )
    except Exception as exc:
        return None, f"failed:{_error_code(exc)}"
    return str(answer["ImageId"]), ""


def _wait_one(ec2: Any, image_id: str, delay_s: float) -> str:
    from botocore.exceptions import WaiterError

    try:
        ec2.get_waiter("image_available").wait(
            ImageIds=[image_id], WaiterConfig={"Delay": delay_s, "MaxAttempts": 40}
        )
    except WaiterError as exc:
        reason = exc.last_response.get("Error", {}).get("Code") if exc.last_response else None
        return f"failed:Waiter:{reason or 'failure'}"
    except Exception as exc:
        return f"failed:{_error_code(exc)}"
    return "available"


class _Run:
    """What every baseline shares: the meter, the completions, the stop flag."""

    def __init__(self, job: ContenderJob) -> None:
        self.job = job
        self.meter = Meter()
        self.completions: list[Completion] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.discovered = 0

    def done(self, account: str, region: str, instance_id: str, outcome: str) -> None:
        with self.lock:
            self.completions.append((self.meter.now(), account, region, instance_id, outcome))

    def remaining(self) -> float:
        return max(0.0, self.job.time_limit_s - self.meter.now())

    def result(self, targets: int, finished: bool) -> dict[str, Any]:
        self.stop.set()
        measured = self.meter.result()
        with self.lock:
            snapshot = list(self.completions)
        return {
            **measured,
            "completions": snapshot,
            "targets": targets,
            "skipped": 0,
            "finished": finished,
            "counts": {},
        }


def run_boto3_script(job: ContenderJob) -> dict[str, Any]:
    sc = job.scenario
    _scale_botocore(sc.time_scale)
    run = _Run(job)
    targets = _discover(_boto3_lanes(job, None, 10))

    def work() -> None:
        for account, region, ec2, iid in targets:
            if run.stop.is_set():
                return
            image_id, failed = _create(job, ec2, iid)
            outcome = failed or _wait_one(ec2, str(image_id), sc.wall(sc.waiter_delay_s))
            run.done(account, region, iid, outcome)

    runner = threading.Thread(target=work, daemon=True)
    runner.start()
    runner.join(run.remaining())
    return run.result(len(targets), not runner.is_alive())


def run_boto3_waiters(job: ContenderJob) -> dict[str, Any]:
    sc = job.scenario
    _scale_botocore(sc.time_scale)
    run = _Run(job)
    targets = _discover(_boto3_lanes(job, {"mode": "standard"}, THREADS))
    pool = concurrent.futures.ThreadPoolExecutor(THREADS)
    try:
        created: list[tuple[str, str, Any, str, str | None]] = []

        def create(target: tuple[str, str, Any, str]) -> None:
            if run.stop.is_set():
                return
            account, region, ec2, iid = target
            image_id, failed = _create(job, ec2, iid)
            if failed:
                run.done(account, region, iid, failed)
            else:
                with run.lock:
                    created.append((account, region, ec2, iid, image_id))

        futures = [pool.submit(create, t) for t in targets]
        done, _ = concurrent.futures.wait(futures, timeout=run.remaining())
        if len(done) < len(futures):
            return run.result(len(targets), False)

        def wait(item: tuple[str, str, Any, str, str | None]) -> None:
            if run.stop.is_set():
                return
            account, region, ec2, iid, image_id = item
            run.done(
                account, region, iid, _wait_one(ec2, str(image_id), sc.wall(sc.waiter_delay_s))
            )

        futures = [pool.submit(wait, c) for c in created]
        done, _ = concurrent.futures.wait(futures, timeout=run.remaining())
        return run.result(len(targets), len(done) == len(futures))
    finally:
        run.stop.set()
        pool.shutdown(wait=False, cancel_futures=True)


def _batch_lane(run: _Run, account: str, region: str, ec2: Any, interval_s: float) -> None:
    """One (account, region): discover, create everything, then poll by ImageIds."""
    pending: dict[str, str] = {}  # image id -> instance id
    found = _discover_lane(ec2)
    with run.lock:
        run.discovered += len(found)
    for iid in found:
        if run.stop.is_set():
            return
        image_id, failed = _create(run.job, ec2, iid)
        if failed:
            run.done(account, region, iid, failed)
        else:
            pending[str(image_id)] = iid
    while pending and not run.stop.wait(interval_s):
        ids = list(pending)
        for i in range(0, len(ids), BATCH_IDS):
            try:
                answer = ec2.describe_images(ImageIds=ids[i : i + BATCH_IDS])
            except Exception:
                continue  # throttled past the retries, or not visible yet: next poll
            for image in answer["Images"]:
                state = image["State"]
                if state == "pending":
                    continue
                iid = pending.pop(image["ImageId"], "")
                run.done(
                    account, region, iid, "available" if state == "available" else f"failed:{state}"
                )


def _run_boto3_batch(job: ContenderJob, mode: str) -> dict[str, Any]:
    sc = job.scenario
    _scale_botocore(sc.time_scale)
    run = _Run(job)
    lanes = _boto3_lanes(job, {"mode": mode, "max_attempts": BATCH_MAX_ATTEMPTS}, 4)
    threads = [
        threading.Thread(
            target=_batch_lane,
            args=(run, account, region, ec2, sc.wall(sc.waiter_delay_s)),
            daemon=True,
        )
        for account, region, ec2 in lanes
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(run.remaining())
    finished = not any(t.is_alive() for t in threads)
    return run.result(run.discovered, finished)


def run_boto3_batch_standard(job: ContenderJob) -> dict[str, Any]:
    return _run_boto3_batch(job, "standard")


def run_boto3_batch_adaptive(job: ContenderJob) -> dict[str, Any]:
    return _run_boto3_batch(job, "adaptive")


CONTENDERS: dict[str, Callable[[ContenderJob], dict[str, Any]]] = {
    "fleetimage": run_fleetimage,
    "fleetimage-w2": run_fleetimage,
    "boto3-batch-standard": run_boto3_batch_standard,
    "boto3-batch-adaptive": run_boto3_batch_adaptive,
    "boto3-waiters": run_boto3_waiters,
    "boto3-script": run_boto3_script,
}
# Sampled (not run to the end): far slower than the bound by construction; their makespan is
# projected from the rate they reached (see the harness).
SAMPLED = frozenset({"boto3-waiters", "boto3-script"})
# fleetimage's worker processes per contender (the others run in one process).
WORKERS = {"fleetimage-w2": 2}
# Run only where a scenario's ``contenders`` or the command's ``--contenders`` names them: a
# second fleetimage per scenario would lengthen a full run for a question only some ask.
OPT_IN = frozenset({"fleetimage-w2"})


def unavailable(contender: str) -> str | None:
    """Why this checkout cannot run ``contender`` (None: it can)."""
    return workers_unsupported(WORKERS.get(contender, 1))


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
