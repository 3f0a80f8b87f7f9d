"""kill -9 at random points of a long day (hours of AWS time at 1200×), resuming each time:
0 duplicates, 0 lost. Two accounts through AssumeRole with 900-second sessions, images that
pend 1-2 hours: every resume starts with new credentials and images still pending."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from cli_helpers import MockFactory, cli_process, journal_rows, write_config
from test_crash import _kill, _wait_for

OWN = "123456789012"
ACCOUNTS = ("111111111111", "222222222222")
REGIONS = ("us-east-1", "eu-west-1")
KILLS = 5


def test_five_kills_in_a_long_day_then_resume_images_each_instance_once(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    mock = mock_thread(
        regions=REGIONS,
        accounts=(OWN, *ACCOUNTS),
        instances_per_region=10,
        state_mix={"running": 1.0},
        seed=2027,
        time_scale=1200.0,
        pending_s=5000,
        pending_sigma=0.2,
        # CreateImage at 1 per 100 AWS seconds per lane (12/s wall): creating takes a while,
        # so kills land mid-create too
        limits={"CreateImage": (2, 0.01)},
    )
    roles = [{"role_arn": f"arn:aws:iam::{a}:role/fleetimage", "duration_s": 900} for a in ACCOUNTS]
    config = write_config(
        tmp_path / "fleet.yaml",
        {
            "targets": [{"regions": list(REGIONS), "all_instances": True, "accounts": roles}],
            "time_scale": 1200,
            "limits": {"CreateImage": {"burst": 2, "rate_per_s": 0.01}},
            "wait": {"timeout_s": 4 * 3600},
            "max_errors": "100%",
        },
    )
    journal = tmp_path / "journal.sqlite3"
    common = ["--endpoint-url", mock.endpoint_url, "--journal", journal, "--yes"]
    expected = {
        (a, r, i["instance_id"])
        for a in ACCOUNTS
        for r in REGIONS
        for i in mock.call(lambda m, a=a, r=r: m.instances(a, r))
    }
    rng = random.Random(11)

    proc = cli_process("run", "-c", config, *common)
    _wait_for(
        "the run to be journaled", lambda: bool(journal_rows(journal, "SELECT 1 FROM runs")), proc
    )
    ((run_id,),) = journal_rows(journal, "SELECT run_id FROM runs")
    n = len(expected)

    def states() -> dict[str, int]:
        sql = "SELECT state, COUNT(*) FROM targets WHERE run_id = ? GROUP BY state"
        return dict(journal_rows(journal, sql, run_id))

    def sent(share: float) -> bool:
        s = states()
        return s.get("pending", 0) + s.get("available", 0) >= share * n

    # Each kill comes at a random moment after the run reached a phase: mid-create (twice),
    # every image created, mid-wait, and late in the wait.
    phases = [
        ("the first images", lambda: sent(0.05)),
        ("a third of the images", lambda: sent(0.33)),
        ("every image created", lambda: sent(1.0)),
        ("some images available", lambda: states().get("available", 0) >= 0.1 * n),
        ("most images available", lambda: states().get("available", 0) >= 0.6 * n),
    ]
    kills: list[str] = []
    for what, reached in phases[:KILLS]:
        _wait_for(what, reached, proc, timeout=120)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is not None:
            break
        _kill(proc)
        kills.append(f"after {what}, at {mock.call(lambda m: round(m.aws_now()))} s: {states()}")
        proc = cli_process("resume", run_id, *common)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-2000:] + err[-2000:]
    assert len(kills) == KILLS, kills  # every kill landed mid-run

    per_instance = mock.call(lambda m: m.images_per_instance())
    assert mock.call(lambda m: m.duplicates()) == {}
    assert set(per_instance) == expected and set(per_instance.values()) == {1}
    report = json.loads((tmp_path / f"fleetimage-{run_id}.json").read_text())
    assert report["counts"]["available"] == len(expected) == report["counts"]["total"]
    assert journal_rows(journal, "SELECT status FROM runs WHERE run_id = ?", run_id) == [
        ("finished",)
    ]
    print("long-day kills at (AWS time: journal states):", *kills, sep="\n  ")
