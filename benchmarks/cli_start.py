"""How soon ``fleetimage run`` sends its first CreateImage on an organisation's fleet:
asking nothing (``--yes``: each lane imaged from its first DescribeInstances page), asking
nothing under a named run (``--yes --run-id``, the deploy examples' way: every lane is first
asked for the run's images, as a restart must), and asking first (on a terminal: every lane
discovered, the plan shown, the question answered at once through a pseudo-terminal), the
three alternated in one run on the same build.

The fleet is org-scale's shape (20 regions x 5 accounts, 100 instances a lane, AWS's buckets)
on the mock at 20x, every DescribeInstances page answered after ``page_s`` AWS seconds (10:
0.5 s real, AWS's order for a page). Each run is a real CLI process (interpreter start
included, the same for all three); it is killed once the mock has seen its first CreateImage, and
what is measured is the wall time from launch to then, and how many DescribeInstances
requests the mock had received by then (a page's request arrives when the one before is
answered). ::

    python -m benchmarks.cli_start                 # 3 runs each: results/cli-start.md
    python -m benchmarks.cli_start --repeats 5 --out /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import select
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fleetimage.mock import FaultConfig, MockConfig
from fleetimage.mock.runner import MockEC2Thread

__all__ = ["PATHS", "Start", "first_create", "main", "mock_config"]

REGIONS = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "sa-east-1",
    "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-north-1", "eu-south-1",
    "ap-south-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1",
    "ap-southeast-2", "me-south-1", "af-south-1",
)  # fmt: skip
ACCOUNTS = tuple(f"{n}" * 12 for n in range(1, 6))
PATHS = ("streamed", "named", "asked first")
NAMED = {"streamed": (), "named": ("--run-id", "cli-start-bench")}
PROMPT = b"Create images of"
TIME_SCALE = 20.0


@dataclass(frozen=True)
class Start:
    path: str
    seconds: float  # launch to the mock's first CreateImage (wall)
    pages: int  # DescribeInstances requests received by then


def mock_config(regions: int, accounts: int, instances: int, page_s: float) -> MockConfig:
    return MockConfig(
        regions=REGIONS[:regions],
        accounts=ACCOUNTS[:accounts],
        instances_per_region=instances,
        state_mix={"running": 1.0},
        time_scale=TIME_SCALE,
        pending_s=60.0,
        faults=FaultConfig(slow=1.0, slow_s=page_s, actions=frozenset({"DescribeInstances"})),
    )


def _config(mock: MockConfig) -> dict[str, object]:
    scale = TIME_SCALE  # AWS's buckets, as fast as the mock's clock
    return {
        "targets": [
            {
                "regions": list(mock.regions),
                "all_instances": True,
                "accounts": [
                    {"role_arn": f"arn:aws:iam::{a}:role/fleetimage"} for a in mock.accounts
                ],
            }
        ],
        "limits": {
            "CreateImage": {"burst": 50, "rate_per_s": 5 * scale},
            "DescribeImages": {"burst": 100, "rate_per_s": 20 * scale},
            "DescribeInstances": {"burst": 100, "rate_per_s": 20 * scale},
        },
    }


def first_create(mock: MockEC2Thread, path: str, workdir: Path, timeout_s: float = 120) -> Start:
    """Launch ``fleetimage run`` on the mock's fleet, kill it at its first CreateImage."""
    cfg = workdir / "fleet.json"
    cfg.write_text(json.dumps(_config(mock.mock.config)))
    creds = mock.credentials()
    empty = workdir / "aws-empty"
    empty.write_text("")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "AWS_ACCESS_KEY_ID": creds["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": creds["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),  # this checkout
    }
    journal = workdir / f"journal-{time.monotonic_ns()}.sqlite3"
    command = [sys.executable, "-m", "fleetimage.cli", "run", "-c", str(cfg)]
    command += ["--endpoint-url", mock.endpoint_url, "--journal", str(journal)]
    asked = path == "asked first"
    # Asked first: stdin and stderr are a terminal (the question and the progress go there).
    leader, follower = pty.openpty() if asked else (-1, -1)
    terminal = follower if asked else subprocess.DEVNULL
    before = mock.count(action="CreateImage")
    started = time.monotonic()
    proc = subprocess.Popen(
        command if asked else [*command, "--yes", *NAMED[path]], cwd=workdir, env=env,
        stdin=terminal, stdout=subprocess.DEVNULL, stderr=terminal,
    )  # fmt: skip
    seen, answered = b"", not asked
    try:
        while mock.count(action="CreateImage") == before:
            if asked and select.select([leader], [], [], 0)[0]:
                seen += os.read(leader, 65536)  # drained, so the process never blocks on it
                if not answered and PROMPT in seen:
                    os.write(leader, b"y\n")
                    answered = True
            if proc.poll() is not None:
                raise RuntimeError(f"{path}: exited {proc.returncode}: {seen[-2000:]!r}")
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"{path}: no CreateImage within {timeout_s} s")
            time.sleep(0.005)
        seconds = time.monotonic() - started
        pages = mock.count(action="DescribeInstances")
    finally:
        proc.kill()
        proc.wait()
        if asked:
            os.close(leader)
            os.close(follower)
    return Start(path, seconds, pages)


def measure(
    repeats: int,
    *,
    regions: int = 20,
    accounts: int = 5,
    instances: int = 100,
    page_s: float = 10.0,
) -> list[Start]:
    """``repeats`` runs of each path, alternated, each on a fresh mock."""
    starts = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            for path in PATHS:
                with MockEC2Thread(mock_config(regions, accounts, instances, page_s)) as mock:
                    starts.append(first_create(mock, path, Path(tmp)))
                    print(
                        f"{path}: {starts[-1].seconds:.2f} s, {starts[-1].pages} DescribeInstances requests",
                        flush=True,
                    )
    return starts


def markdown(starts: list[Start], command: str) -> str:
    median = {p: statistics.median(s.seconds for s in starts if s.path == p) for p in PATHS}
    lines = [
        "# `fleetimage run`: launch to first CreateImage",
        "",
        f"`{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}); 100 lanes "
        "(20 regions x 5 accounts) x 100 instances, DescribeInstances pages answered after 0.5 s.",
        "",
        "| path | runs (s) | median (s) | DescribeInstances requests by then |",
        "|---|---|---|---|",
    ]
    for p in PATHS:
        mine = [s for s in starts if s.path == p]
        runs = ", ".join(f"{s.seconds:.2f}" for s in mine)
        pages = ", ".join(str(s.pages) for s in mine)
        lines.append(f"| {p} | {runs} | {median[p]:.2f} | {pages} |")
    ratios = ", ".join(
        f"{p} ÷ streamed **{median[p] / median['streamed']:.1f}×**" for p in PATHS[1:]
    )
    lines += ["", f"Medians: {ratios}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    starts = measure(args.repeats)
    command = "python -m benchmarks.cli_start" + (
        f" --repeats {args.repeats}" if args.repeats != 3 else ""
    )
    text = markdown(starts, command)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cli-start.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
