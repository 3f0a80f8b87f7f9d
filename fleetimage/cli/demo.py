"""``fleetimage demo``: image a synthetic fleet on the embedded mock EC2 endpoint.

No AWS account is involved: the mock runs in a thread of this process on 127.0.0.1, and the
AWS environment of the process is replaced (for the demo's duration) by fake credentials for
the mock's default account, no profile and no config files, so nothing can reach real AWS.

The mock runs ``time_scale`` times faster than AWS (rates ×, delays ÷), and the demo's fleet
config sets the engine's limits to the mock's scaled limits, so the engine uses them fully.
A few images fail on purpose (``failure_rate``) and a few instances are terminated or pending
(skipped). **Exit code**: 0 when the run behaved correctly — exactly one image per imageable
instance, no duplicate, every failure one of the injected ones, every skip a non-imageable
instance — else 1. The injected failures therefore do not make the demo exit 1.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from fleetimage.aws.clients import new_session
from fleetimage.cli.execution import Consoles, Execution, RunOptions, run_command
from fleetimage.cli.views import plural
from fleetimage.config import FleetConfig, parse_config
from fleetimage.core.durations import format_duration
from fleetimage.core.models import ImageResult, Outcome
from fleetimage.mock import MockConfig, MockEC2Thread
from fleetimage.output.report import RunReport
from fleetimage.output.summary import render_summary

__all__ = [
    "AWS_ENV_DROP",
    "DEMO_REGIONS",
    "DemoCheck",
    "check_demo",
    "demo_fleet_config",
    "demo_mock_config",
    "is_injected",
    "run_demo",
]

DEMO_REGIONS = (
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-2",
    "ap-northeast-1",
    "sa-east-1",
    "ca-central-1",
    "eu-north-1",
    "ap-south-1",
)
IMAGEABLE = frozenset({"running", "stopped", "stopping"})
INJECTED_FAILURE = "Server.InternalError"  # the mock's StateReason for a failed image

AWS_ENV_DROP = (  # what could point a process at real AWS, besides the key pair
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_EC2",
    "AWS_ENDPOINT_URL_STS",
)


def demo_mock_config(
    *, regions: int, instances_per_region: int, time_scale: float, seed: int = 1
) -> MockConfig:
    """AWS-like fleet: images pending ~90 AWS seconds (log-normal), 2 % of them fail."""
    return MockConfig(
        regions=DEMO_REGIONS[:regions],
        instances_per_region=instances_per_region,
        seed=seed,
        time_scale=time_scale,
        pending_s=90.0,
        pending_sigma=0.3,
        failure_rate=0.02,
    )


def demo_fleet_config(mock: MockConfig) -> FleetConfig:
    """The fleet config of the demo: AWS's default limits and timings, scaled like the mock."""
    scale = mock.time_scale
    return parse_config(
        {
            "targets": [{"regions": list(mock.regions), "all_instances": True}],
            "image": {
                "name_template": "{tag:Name}-{instance_id}-{run_id}",
                "tags": {"Purpose": "fleetimage-demo"},
            },
            "limits": {
                "CreateImage": {"burst": 50, "rate_per_s": 5 * scale},
                "DescribeImages": {"burst": 100, "rate_per_s": 20 * scale},
                "DescribeInstances": {"burst": 100, "rate_per_s": 20 * scale},
            },
            "wait": {
                "poll_interval_s": 15 / scale,
                "min_poll_interval_s": 1 / scale,
                "timeout_s": 7200 / scale,
                "not_found_grace_s": 120 / scale,
            },
            "retry": {"base_delay_s": 0.5 / scale, "max_delay_s": 30 / scale},
            "max_errors": "20%",
        },
        source="<demo>",
    )


@contextlib.contextmanager
def mock_aws_env(credentials: dict[str, str]) -> Iterator[None]:
    """Point this process's AWS environment at the mock's fake credentials; restore after."""
    saved = dict(os.environ)
    try:
        for name in AWS_ENV_DROP:
            os.environ.pop(name, None)
        os.environ["AWS_ACCESS_KEY_ID"] = credentials["aws_access_key_id"]
        os.environ["AWS_SECRET_ACCESS_KEY"] = credentials["aws_secret_access_key"]
        os.environ["AWS_CONFIG_FILE"] = os.devnull
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
        os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass(frozen=True, slots=True)
class DemoCheck:
    ok: bool
    problems: tuple[str, ...]
    imageable: int
    injected_failures: int


def check_demo(mock: MockEC2Thread, report: RunReport) -> DemoCheck:
    """Did the run behave correctly against what the mock knows?"""
    cfg = mock.mock.config
    account = cfg.default_account
    problems: list[str] = []
    instances = {
        (account, region, i["instance_id"]): i["state"]
        for region in cfg.regions
        for i in mock.call(lambda m, r=region: m.instances(account, r))
    }
    per_instance = mock.call(lambda m: m.images_per_instance())
    imageable = {key for key, state in instances.items() if state in IMAGEABLE}
    for key in sorted(imageable):
        if per_instance.get(key, 0) != 1:
            problems.append(f"{key[2]} in {key[1]} has {per_instance.get(key, 0)} images")
    extra = set(per_instance) - imageable
    if extra:
        problems.append(f"{len(extra)} non-imageable instances got images")
    injected = 0
    for r in report.results:
        key = (r.account, r.region, r.instance_id)
        if r.outcome is Outcome.AVAILABLE and key in imageable:
            continue
        if r.outcome is Outcome.SKIPPED and key not in imageable:
            continue
        if r.outcome is Outcome.FAILED and r.error_code == INJECTED_FAILURE:
            injected += 1
            continue
        problems.append(f"{r.instance_id} in {r.region}: {r.outcome.value} {r.error_code or ''}")
    if len(report.results) != len(instances):
        problems.append(f"{len(report.results)} results for {len(instances)} instances")
    return DemoCheck(not problems, tuple(problems), len(imageable), injected)


def run_demo(
    *,
    regions: int,
    instances_per_region: int,
    time_scale: float,
    report_path: Path | None,
    live: bool | None,
    con: Consoles,
    workers: int = 1,
) -> Execution:
    """Start the mock, image its fleet like ``fleetimage run --yes``, check the outcome.
    ``workers``: as ``run --workers`` (they reach the mock over loopback, with this process's
    environment: the mock's fake credentials)."""
    import anyio

    mock_cfg = demo_mock_config(
        regions=regions, instances_per_region=instances_per_region, time_scale=time_scale
    )
    config = demo_fleet_config(mock_cfg)
    workdir = Path(tempfile.mkdtemp(prefix="fleetimage-demo-"))
    with MockEC2Thread(mock_cfg) as mock, mock_aws_env(mock.credentials()):
        con.out.print(
            f"demo: mock EC2 at {mock.endpoint_url} (loopback, no AWS account used): "
            f"{regions} regions × {instances_per_region} instances, "
            f"{time_scale:g}× faster than AWS, 2 % of images fail on purpose"
            + (f", lanes over {workers} worker processes" if workers > 1 else ""),
            markup=False,
            highlight=False,
        )
        session = new_session()  # fleetimage run's own: the cut model, the lean parser
        creds = mock.credentials()
        session.set_credentials(creds["aws_access_key_id"], creds["aws_secret_access_key"])
        opts = RunOptions(
            endpoint_url=mock.endpoint_url,
            report_path=report_path or workdir / "report.json",
            journal_path=workdir / "journal.sqlite3",
            yes=True,
            live=live,
            progress_interval_s=2.0,
            session=session,
            log_events=False,
            workers=workers,
        )
        # run_command's own summary would end "not ok" (the injected failures), then the
        # check would say ok: the demo prints one summary instead, with one verdict.
        captured = Consoles(out=_capture(con.out), err=con.err)
        ex = anyio.run(run_command, config, opts, captured)
        if ex.report is None:
            _replay(captured.out, con.out)
            return ex
        check = check_demo(mock, ex.report)
    ex.extra["check"] = check
    if not check.ok or ex.exit_code not in (0, 1):  # interrupted: what run said, as is
        _replay(captured.out, con.out)
    else:
        con.out.print(render_summary(ex.report, expected=is_injected, verdict=False))
        for line in (f"report: {ex.report_path}", f"run id: {ex.run_id}"):
            con.out.print(line, markup=False, highlight=False)
    elapsed = format_duration((ex.report.finished_at - ex.report.started_at).total_seconds())
    if check.ok:
        if ex.exit_code == 1 and ex.report_path is not None:
            ex.exit_code = 0
        con.out.print(
            f"journal: {opts.journal_path} (fleetimage runs --journal {opts.journal_path})",
            markup=False,
            highlight=False,
        )
        con.out.print(
            f"demo: ok — {ex.report.counts['total']} targets in {elapsed}: exactly one image "
            f"per imageable instance ({check.imageable}), no duplicates; "
            f"{plural(check.injected_failures, 'failure')} injected on purpose and reported "
            "as failed (expected)",
            markup=False,
            highlight=False,
        )
    else:
        for problem in check.problems[:20]:
            con.err.print(f"demo check: {problem}", markup=False, highlight=False)
        ex.exit_code = 1 if ex.exit_code == 0 else ex.exit_code
        con.out.print(
            f"demo: not ok — {plural(len(check.problems), 'problem')} (listed on stderr)",
            markup=False,
            highlight=False,
        )
    return ex


def is_injected(result: ImageResult) -> bool:
    """A failure the mock injected on purpose (``failure_rate``): expected."""
    return result.outcome is Outcome.FAILED and result.error_code == INJECTED_FAILURE


def _capture(like: Console) -> Console:
    """A console that records what is printed to it, with ``like``'s width and terminal-ness."""
    return Console(
        file=io.StringIO(),
        record=True,
        width=like.width,
        force_terminal=like.is_terminal,
        no_color=like.no_color,
        soft_wrap=like.soft_wrap,
    )


def _replay(captured: Console, out: Console) -> None:
    text = captured.export_text(styles=not out.no_color)
    out.file.write(text)
    out.file.flush()
