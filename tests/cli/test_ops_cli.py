"""Notifications and organisation targets through the CLI: a dead webhook changes neither
the outcome nor the exit code and is reported; the webhook URL (a secret) is written
nowhere; bad notify/OU input is one line, exit 2, nothing sent; `plan` shows the accounts an
OU resolved to; `permissions` adds what these features need."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cli_helpers import MockFactory, cli, fleet_config, write_config

from fleetimage.mock import OrgAccount, OrgTree

TOPIC = "arn:aws:sns:us-east-1:123456789012:fleet-alerts"
SECRET_PATH = "/services/T000/B000/do-not-leak-me"


class ThreadReceiver:
    """A chat webhook (aiohttp) on 127.0.0.1, in its own thread and loop, for the in-process
    CLI (whose loop runs in the test's thread)."""

    def __init__(self) -> None:
        self.posts: list[Any] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        self.posts.append(await request.json())
        return web.Response(text="ok")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post(SECRET_PATH, self._handle)
        self.runner = web.AppRunner(app)
        self._loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}{SECRET_PATH}"
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self.runner.cleanup())
        self._loop.close()

    def __enter__(self) -> ThreadReceiver:
        self._thread.start()
        assert self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)


@pytest.fixture
def receiver() -> Iterator[ThreadReceiver]:
    with ThreadReceiver() as r:
        yield r


def refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{SECRET_PATH}"


def notified(**notify: Any) -> dict[str, Any]:
    cfg = fleet_config(("us-east-1",))
    cfg["notify"] = {"timeout_s": 10, **notify}
    return cfg


def test_a_dead_webhook_leaves_the_exit_code_alone(
    mock_thread: MockFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mock = mock_thread(regions=("us-east-1",), instances_per_region=6)
    monkeypatch.setenv("HOOK_URL", refused_url())
    cfg = write_config(
        tmp_path / "f.yaml", notified(sns_topic_arn=TOPIC, webhook_url_env="HOOK_URL")
    )
    journal = tmp_path / "j.sqlite3"
    ran = cli("run", "-c", cfg, "--endpoint-url", mock.endpoint_url, "--journal", journal, "-y")

    assert ran.code == 0, ran.output  # as without notifications: every image available
    assert ": ok" in ran.stdout and "notified: run_finished via sns" in ran.stdout
    assert (
        "warning: notification run_finished via webhook failed after 3 attempts: webhook: "
        "cannot connect (Connection refused) (the outcome and exit code are unchanged)"
    ) in ran.stderr
    assert mock.count("Publish", "ok") == 1
    [message] = mock.call(lambda m: list(m.sns_messages))
    run_id = ran.stdout.split("run id: ")[1].split()[0]
    assert f"report: fleetimage-{run_id}.json" in message.message
    # the URL is a secret: in no output, journal, report or log
    written = [ran.output, journal.read_bytes().decode("utf-8", "replace")]
    written += [p.read_text() for p in tmp_path.glob("fleetimage-*.json")]
    assert all("do-not-leak-me" not in text for text in written)

    # a prune ends with a notice too (a dry run: nothing is old enough to go)
    pruned = cli("prune", "-c", cfg, "--endpoint-url", mock.endpoint_url, "--dry-run")
    assert pruned.code == 0, pruned.output
    assert mock.count("Publish", "ok") == 2
    last = mock.call(lambda m: m.sns_messages[-1])
    assert last.subject.startswith("fleetimage prune ") and "(dry run) of fleet f" in last.subject
    assert "report: fleetimage-prune-" in last.message
    assert "notification prune_finished via webhook failed after 3 attempts" in pruned.stderr
    assert "do-not-leak-me" not in pruned.output


def test_the_webhook_gets_the_run_summary(
    mock_thread: MockFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    receiver: ThreadReceiver,
) -> None:
    mock = mock_thread(regions=("us-east-1",), instances_per_region=4, failure_rate=1.0)
    monkeypatch.setenv("HOOK_URL", receiver.url)
    cfg = write_config(tmp_path / "f.yaml", notified(webhook_url_env="HOOK_URL"))
    ran = cli("run", "-c", cfg, "--endpoint-url", mock.endpoint_url, "-y")

    assert ran.code == 1, ran.output  # the images failed: exit 1, notified or not
    run_id = ran.stdout.split("run id: ")[1].split()[0]
    [post] = receiver.posts
    lines = post["text"].splitlines()
    assert lines[0] == f"❌ fleetimage run {run_id} of fleet f finished: not ok"
    assert "failed" in lines[1] and lines[1].endswith(": not ok")
    assert f"report: fleetimage-{run_id}.json" in lines
    assert lines[-1] == f"to finish it: fleetimage resume {run_id}"
    assert "notified: run_finished via webhook" in ran.stdout


@pytest.mark.parametrize(
    ("notify", "env", "says"),
    [
        (
            {"webhook_url_env": "HOOK_URL"},
            None,
            "notify.webhook_url_env: environment variable HOOK_URL is not set",
        ),
        ({"webhook_url_env": "HOOK_URL"}, "ftp://example.com/x", "does not hold an http(s) URL"),
        ({"webhook_url_env": "HOOK_URL"}, "hooks.example.com/x", "does not hold an http(s) URL"),
        (
            {"webhook_url_env": "https://hooks.example.com/x"},
            None,
            "is not an environment variable name",
        ),
        ({"sns_topic_arn": "arn:aws:sns:us-east-1:fleet-alerts"}, None, "is not an SNS topic ARN"),
        ({"sns_topic_arn": "fleet-alerts"}, None, "notify.sns_topic_arn"),
        ({}, None, "set sns_topic_arn and/or webhook_url_env"),
    ],
)
def test_bad_notify_input_is_exit_2_and_sends_nothing(
    mock_thread: MockFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    notify: dict[str, Any],
    env: str | None,
    says: str,
) -> None:
    mock = mock_thread(regions=("us-east-1",), instances_per_region=2)
    if env is None:
        monkeypatch.delenv("HOOK_URL", raising=False)
    else:
        monkeypatch.setenv("HOOK_URL", env)
    cfg = fleet_config(("us-east-1",))
    cfg["notify"] = notify
    path = write_config(tmp_path / "f.yaml", cfg)
    for command in (["run", "-y"], ["prune", "--dry-run"]):
        ran = cli(*command, "-c", path, "--endpoint-url", mock.endpoint_url)
        assert ran.code == 2, ran.output
        assert len(ran.stderr.strip().splitlines()) == 1 and says in ran.stderr, ran.stderr
        assert str(path) in ran.stderr
    assert mock.count() == 0  # nothing sent: not even STS


@pytest.mark.parametrize(
    ("item", "says"),
    [
        (
            {"organization_unit": "ou-BAD"},
            "targets[0].accounts[0].organization_unit: 'ou-BAD' is not an organizational unit id",
        ),
        (
            {"organization_unit": "ou-ab12-cd345678", "exclude": ["12345"]},
            "targets[0].accounts[0].exclude[0]: '12345' is not a 12-digit AWS account id",
        ),
        (
            {"organization_unit": "ou-ab12-cd345678", "role_name": "a b"},
            "targets[0].accounts[0].role_name",
        ),
    ],
)
def test_bad_ou_input_is_exit_2_and_sends_nothing(
    mock_thread: MockFactory, tmp_path: Path, item: dict[str, Any], says: str
) -> None:
    mock = mock_thread(regions=("us-east-1",), instances_per_region=2)
    cfg = fleet_config(("us-east-1",))
    cfg["targets"][0]["accounts"] = [item]
    ran = cli(
        "plan", "-c", write_config(tmp_path / "f.yaml", cfg), "--endpoint-url", mock.endpoint_url
    )
    assert ran.code == 2, ran.output
    assert len(ran.stderr.strip().splitlines()) == 1 and says in ran.stderr, ran.stderr
    assert mock.count() == 0


def test_plan_shows_the_accounts_an_ou_resolved_to(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    top, sub = "ou-mock-topunit1", "ou-mock-subunit1"
    accounts = ("100000000001", "100000000002", "100000000003", "100000000004")
    tree = OrgTree(
        units={top: "r-mock", sub: top},
        accounts=(
            OrgAccount(accounts[0], top),
            OrgAccount(accounts[1], sub),
            OrgAccount(accounts[2], sub, "SUSPENDED"),
            OrgAccount(accounts[3], sub),
        ),
    )
    mock = mock_thread(
        regions=("us-east-1",),
        accounts=("123456789012", *accounts),
        instances_per_region=1,
        organization=tree,
    )
    cfg = fleet_config(("us-east-1",))
    cfg["targets"][0]["accounts"] = [{"organization_unit": top, "exclude": [accounts[3]]}]
    path = write_config(tmp_path / "f.yaml", cfg)
    ran = cli("plan", "-c", path, "--endpoint-url", mock.endpoint_url)
    assert ran.code == 0, ran.output
    assert (
        f"{top}: 2 accounts in 2 OUs; skipped: 1 suspended; 1 excluded ({accounts[3]}): "
        f"{accounts[0]}, {accounts[1]}"
    ) in ran.stdout
    # prune covers the same accounts (its plan table has one row per account and region)
    pruned = cli("prune", "-c", path, "--endpoint-url", mock.endpoint_url, "--dry-run")
    assert pruned.code == 0, pruned.output
    assert accounts[0] in pruned.stderr and accounts[1] in pruned.stderr
    assert accounts[2] not in pruned.stderr and accounts[3] not in pruned.stderr
    assert mock.count("CreateImage") == 0 and mock.count("DeregisterImage") == 0


def _actions(policy: dict[str, Any]) -> dict[str, Any]:
    return {s["Sid"]: s for s in policy["Statement"]}


def test_permissions_add_organizations_and_sns_only_when_used(tmp_path: Path) -> None:
    plain = json.loads(
        cli("permissions", "-c", write_config(tmp_path / "p.yaml", fleet_config())).stdout
    )
    assert not {"ListOrganizationUnits", "Notify"} & set(_actions(plain))
    cfg = fleet_config(("us-east-1",))
    cfg["targets"][0]["accounts"] = [
        {"organization_unit": "ou-ab12-cd345678", "role_name": "imager"},
        {"role_arn": "arn:aws:iam::111111111111:role/fleetimage"},
    ]
    cfg["notify"] = {"sns_topic_arn": TOPIC}
    ran = cli("permissions", "-c", write_config(tmp_path / "o.yaml", cfg))
    assert ran.code == 0, ran.output
    stmts = _actions(json.loads(ran.stdout))
    assert stmts["ListOrganizationUnits"]["Action"] == [
        "organizations:ListAccountsForParent",
        "organizations:ListChildren",
    ]
    assert stmts["Notify"] == {
        "Sid": "Notify",
        "Effect": "Allow",
        "Action": "sns:Publish",
        "Resource": TOPIC,
    }
    assert stmts["AssumeFleetRoles"]["Resource"] == [
        "arn:aws:iam::111111111111:role/fleetimage",
        "arn:aws:iam::*:role/imager",
    ]
    assert "organizations:* and sns:Publish statements belong to the identity" in ran.stderr


def test_resume_notifies_from_the_runs_own_config(
    mock_thread: MockFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journaled config says where to notify; its webhook variable is checked first."""
    mock = mock_thread(regions=("us-east-1",), instances_per_region=3)
    monkeypatch.setenv("HOOK_URL", refused_url())
    cfg = notified(sns_topic_arn=TOPIC, webhook_url_env="HOOK_URL", attempts=1)
    path = write_config(tmp_path / "f.yaml", cfg)
    journal = tmp_path / "j.sqlite3"
    ran = cli(
        "run", "-c", path, "--endpoint-url", mock.endpoint_url, "--journal", journal, "--no-wait"
    )
    assert ran.code == 0, ran.output
    run_id = ran.stdout.split("run id: ")[1].split()[0]
    assert mock.count("Publish", "ok") == 1

    monkeypatch.delenv("HOOK_URL")
    again = cli("resume", run_id, "--journal", journal, "--endpoint-url", mock.endpoint_url)
    assert again.code == 2 and "HOOK_URL is not set" in again.stderr, again.output
    assert mock.count("Publish") == 1 and mock.count("DescribeImages") == 0  # nothing sent

    monkeypatch.setenv("HOOK_URL", refused_url())
    again = cli("resume", run_id, "--journal", journal, "--endpoint-url", mock.endpoint_url)
    assert again.code == 0, again.output
    assert mock.count("Publish", "ok") == 2
    last = mock.call(lambda m: m.sns_messages[-1].message)
    assert last.startswith(f"✅ fleetimage run {run_id} of fleet f finished: ok")
    assert "notification run_finished via webhook failed after 1 attempt" in again.stderr
