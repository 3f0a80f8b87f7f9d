"""The mutants an independent review found the suite blind to, applied by hand:
``python -m tests.mutation.named``. Each is applied to a scratch copy of the checkout and the
tests meant to catch it must fail; mutmut does not generate these (they remove a whole
mechanism, or touch module-level data it never mutates), so they are checked here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Named:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


NAMED = (
    Named(
        "limiter: on_throttle() is a no-op",
        "fleetimage/engine/bucket.py",
        "        now = self._clock()\n        self._refill(now)\n        self._throttle_share +=",
        "        return self._rate\n        now = self._clock()\n        self._refill(now)\n"
        "        self._throttle_share +=",
        ("tests/unit/test_ratelimit.py", "tests/unit/test_limiter_edges.py"),
    ),
    Named(
        "lanerun: no max_pending_images_per_region semaphore",
        "fleetimage/engine/lanerun.py",
        "anyio.Semaphore(config.concurrency.max_pending_images_per_region)",
        "anyio.Semaphore(10**9)",
        (
            "tests/integration/test_engine.py::test_pending_images_cap_is_reached_and_never_exceeded",
        ),
    ),
    Named(
        "waiter: polls only the first chunk of 200",
        "fleetimage/engine/wait.py",
        "for start in range(0, len(ids), CHUNK):",
        "for start in range(0, min(len(ids), 1), CHUNK):",
        ("tests/integration/test_waiter.py::test_every_chunk_of_a_large_lane_is_polled",),
    ),
    Named(
        "waiter: _expire does nothing",
        "fleetimage/engine/wait.py",
        "    def _expire(self, t: float) -> None:\n",
        "    def _expire(self, t: float) -> None:\n        return\n",
        (
            "tests/integration/test_waiter.py"
            "::test_images_time_out_while_describe_images_keeps_failing",
        ),
    ),
    Named(
        "waiter: CHUNK = 1000 (one chunk for any test fleet)",
        "fleetimage/engine/wait.py",
        "CHUNK = 200",
        "CHUNK = 1000",
        ("tests/integration/test_waiter.py::test_every_chunk_of_a_large_lane_is_polled",),
    ),
    Named(
        "create: the duplicate's AMI id is not parsed from EC2's message",
        "fleetimage/engine/create.py",
        r'_AMI_ID = re.compile(r"\bami-[0-9a-f]{8,17}\b")',
        r'_AMI_ID = re.compile(r"\bami-[0-9a-f]{18}\b")',
        ("tests/integration/test_create.py",),
    ),
)


def check(named: Named) -> bool:
    work = Path(tempfile.mkdtemp(prefix="named-mutant-"))
    try:
        for name in ("fleetimage", "tests", "config", "pyproject.toml"):
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(
                    source,
                    work / name,
                    symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"),
                )
            else:
                shutil.copy2(source, work / name)
        target = work / named.path
        text = target.read_text(encoding="utf-8")
        if text.count(named.old) != 1:
            print(f"  cannot apply (the code changed?): {named.name}")
            return False
        target.write_text(text.replace(named.old, named.new), encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": str(work), "PYTHONDONTWRITEBYTECODE": "1"}
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *named.tests],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        return run.returncode == 1  # tests ran and failed: killed
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    survived = 0
    for named in NAMED:
        killed = check(named)
        survived += not killed
        print(f"{'killed  ' if killed else 'SURVIVED'} {named.name}", flush=True)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
