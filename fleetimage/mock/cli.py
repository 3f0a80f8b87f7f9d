"""``fleetimage mock serve``: run the mock EC2/STS endpoint until Ctrl-C.

Self-contained typer sub-app; ``fleetimage/cli.py`` mounts it as ``mock``.
"""

from __future__ import annotations

import typer

from fleetimage.core.errors import MockError
from fleetimage.mock.config import MockConfig, Outage
from fleetimage.mock.fault_config import FaultConfig
from fleetimage.mock.runner import serve
from fleetimage.mock.server import MockEC2

__all__ = ["mock_app"]

mock_app = typer.Typer(help="The mock EC2 endpoint (loopback only) for demos, tests, benchmarks.")


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _pairs(values: list[str], flag: str) -> dict[str, float]:
    """``KEY=NUMBER`` items (split at the last ``=``: role names may contain one)."""
    out: dict[str, float] = {}
    for item in values:
        key, sep, number = item.rpartition("=")
        try:
            out[key.strip()] = float(number)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise MockError(f"{flag} takes KEY=SECONDS, got {item!r}")
    return out


def _outage(value: str) -> Outage:
    """``START,END[,REGION[,ACTION[,MODE]]]``; ``*`` or empty: any region / action."""
    parts = [p.strip() for p in value.split(",")]
    if not 2 <= len(parts) <= 5:
        raise MockError(f"--outage takes START,END[,REGION[,ACTION[,MODE]]], got {value!r}")
    try:
        start, end = float(parts[0]), float(parts[1])
    except ValueError:
        raise MockError(f"--outage: START and END must be AWS seconds, got {value!r}") from None
    rest = [None if p in ("", "*") else p for p in parts[2:]] + [None] * (5 - len(parts))
    return Outage(start, end, rest[0], rest[1], rest[2] or "error")


def env_lines(mock: MockEC2) -> list[str]:
    creds = mock.credentials()
    return [
        f"export AWS_ENDPOINT_URL_EC2={mock.endpoint_url}",
        f"export AWS_ENDPOINT_URL_STS={mock.endpoint_url}",
        f"export AWS_ACCESS_KEY_ID={creds['aws_access_key_id']}",
        f"export AWS_SECRET_ACCESS_KEY={creds['aws_secret_access_key']}",
        "export AWS_EC2_METADATA_DISABLED=true",
    ]


@mock_app.command("serve")
def serve_command(
    host: str = typer.Option("127.0.0.1", help="Loopback address to bind."),
    port: int = typer.Option(0, help="Port (0: any free port)."),
    regions: str = typer.Option("us-east-1", help="Comma-separated regions."),
    accounts: str = typer.Option("123456789012", help="Comma-separated 12-digit accounts."),
    instances_per_region: int = typer.Option(20, help="Synthetic instances per region."),
    seed: int = typer.Option(0, help="Seed of the synthetic fleet and faults."),
    time_scale: float = typer.Option(1.0, help="Speed-up: rates x, delays / this."),
    pending_s: float = typer.Option(2.0, help="Median seconds an image stays pending."),
    pending_sigma: float = typer.Option(0.0, help="Log-normal sigma of pending time."),
    failure_rate: float = typer.Option(0.0, help="Share of images that end failed."),
    visibility_lag_s: float = typer.Option(0.0, help="Seconds a new image is invisible."),
    neighbour_load: float = typer.Option(0.0, help="Share of each bucket others drain."),
    no_throttling: bool = typer.Option(False, "--no-throttling", help="Disable buckets."),
    fault_rate: float = typer.Option(0.0, help="Rate of 500 InternalError answers."),
    lost_answer_rate: float = typer.Option(0.0, help="Rate of applied-but-lost answers."),
    latency_s: float = typer.Option(0.0, help="Extra AWS seconds before every answer."),
    latency_jitter_s: float = typer.Option(0.0, help="Uniform ± jitter on the latency (seeded)."),
    region_latency: list[str] = typer.Option(  # noqa: B008
        [], help="REGION=SECONDS extra latency for one region (repeatable)."
    ),
    role_max_session: list[str] = typer.Option(  # noqa: B008
        [], help="ROLE_ARN=SECONDS MaxSessionDuration, 3600..43200 (repeatable; default 3600)."
    ),
    own_credentials_expire_after_s: float | None = typer.Option(
        None, help="Your own (non-assumed) keys expire at this AWS time; default never."
    ),
    outage: list[str] = typer.Option(  # noqa: B008
        [],
        help="START,END[,REGION[,ACTION[,MODE]]]: AWS seconds since start; * = any; "
        "MODE error (503 Unavailable, default) or timeout (held, then dropped). Repeatable.",
    ),
) -> None:
    """Serve the mock until Ctrl-C; prints its URL and the env vars to use.

    Time: every knob is in AWS seconds. The mock runs TIME_SCALE times faster than AWS:
    AWS time t (seconds since the mock started) happens at wall start + t / TIME_SCALE,
    delays are divided and bucket refills multiplied by it. AssumeRole sessions last
    DurationSeconds / TIME_SCALE wall seconds; their Expiration is that real UTC moment, so
    clients refresh on their own clock (scale their refresh margins too). Expired keys get
    EC2 RequestExpired / STS ExpiredToken. At run time, GET /_mock/clock, /_mock/credentials,
    /_mock/outages, /_mock/instance_events, /_mock/latency inspect, and POST to them changes
    them (see fleetimage.mock.introspect).
    """
    try:
        config = MockConfig(
            regions=_split(regions),
            accounts=_split(accounts),
            instances_per_region=instances_per_region,
            seed=seed,
            time_scale=time_scale,
            pending_s=pending_s,
            pending_sigma=pending_sigma,
            failure_rate=failure_rate,
            visibility_lag_s=visibility_lag_s,
            neighbour_load=neighbour_load,
            throttling=not no_throttling,
            faults=FaultConfig(internal_error=fault_rate, lost_answer=lost_answer_rate),
            latency_s=latency_s,
            latency_jitter_s=latency_jitter_s,
            region_latency_s=_pairs(region_latency, "--region-latency"),
            role_max_session_s={
                arn: int(seconds)
                for arn, seconds in _pairs(role_max_session, "--role-max-session").items()
            },
            own_credentials_expire_after_s=own_credentials_expire_after_s,
            outages=tuple(_outage(o) for o in outage),
        )

        def ready(mock: MockEC2) -> None:
            typer.echo(f"mock EC2 listening on {mock.endpoint_url}")
            for line in env_lines(mock):
                typer.echo(line)
            typer.echo("Ctrl-C to stop.")

        serve(config, host, port, ready=ready)
    except MockError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
