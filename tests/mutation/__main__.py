"""Mutation testing of the engine's core, one module at a time: ``python -m tests.mutation``.

For each module it copies the checkout into a scratch directory, points mutmut (pinned in the
``test`` extra) at that one module and at the fast tests that own it, runs it, and prints the
score (killed / all mutants; a mutant that makes a test hang counts as killed) and every
survivor. The copy keeps the work tree clean and lets mutmut's ``mutants/`` and its
``[tool.mutmut]`` section (which it reads only from ``pyproject.toml``) differ per module.

    python -m tests.mutation                       # every module below
    python -m tests.mutation limiter wait          # some of them
    python -m tests.mutation --changed-since main  # those a change touches (none: exits 0)
    python -m tests.mutation --json scores.json    # also write the scores
    python -m tests.mutation wait --sample 10      # every 10th mutant only (time-bounded)

Each module's tests are chosen for speed: mutmut runs, per mutant, only the selected tests
that executed the mutated function. Expect minutes per module on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Module:
    path: str
    tests: tuple[str, ...]


MODULES: dict[str, Module] = {
    "limiter": Module(
        "fleetimage/engine/bucket.py",
        (
            "tests/unit/test_ratelimit.py",
            "tests/unit/test_limiter_edges.py",
            "tests/unit/test_limiter_refill.py",
            "tests/unit/test_confirm_share.py",
        ),
    ),
    "retry": Module(
        "fleetimage/engine/retry.py",
        ("tests/unit/test_retry.py", "tests/unit/test_retry_budget.py"),
    ),
    "breaker": Module(
        "fleetimage/engine/breaker.py",
        ("tests/unit/test_breaker.py", "tests/unit/test_breaker_edges.py"),
    ),
    # The waiter and CreateImage have their own fast files (one lane on the mock); the
    # engine tests reach them too but take minutes per mutant.
    "wait": Module(
        "fleetimage/engine/wait.py",
        ("tests/integration/test_waiter.py", "tests/unit/test_wait_census.py"),
    ),
    "create": Module("fleetimage/engine/create.py", ("tests/integration/test_create.py",)),
    "states": Module("fleetimage/core/states.py", ("tests/unit/test_states.py",)),
    "ledger": Module("fleetimage/core/ledger.py", ("tests/unit/test_journal.py",)),
    "plan": Module(
        "fleetimage/engine/plan.py",
        (
            "tests/unit/test_plan.py",
            "tests/integration/test_plan_lanes.py",
            "tests/integration/test_plan_accounts.py",
        ),
    ),
    "discovery": Module("fleetimage/engine/discovery.py", ("tests/integration/test_discovery.py",)),
}

# What the scratch copy needs to import and test the package.
_COPY = ("fleetimage", "tests", "config", "benchmarks", "pyproject.toml", "README.md")
_RESULT = re.compile(r"^\s*(?P<key>\S+__mutmut_\d+): (?P<status>[a-z ]+?)\s*$")


def _changed(since: str) -> list[str]:
    out = subprocess.run(
        ["git", "diff", "--name-only", since, "--"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return [name for name, module in MODULES.items() if module.path in out]


def _scratch(module: Module, into: Path) -> None:
    for name in _COPY:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(
                source,
                into / name,
                symlinks=True,
                ignore=shutil.ignore_patterns("__pycache__", "mutants", "results"),
            )
        elif source.exists():
            shutil.copy2(source, into / name)
    # A node id (path::test) counts when its file exists. Never let the selection go empty:
    # mutmut would then collect the whole suite, whose stats run fails in mutants/.
    selected = [t for t in module.tests if (ROOT / t.partition("::")[0]).exists()]
    if not selected:
        raise SystemExit(f"none of {module.path}'s tests exist: {', '.join(module.tests)}")
    tests = ", ".join(json.dumps(t) for t in selected)
    with (into / "pyproject.toml").open("a", encoding="utf-8") as f:
        f.write(
            "\n[tool.mutmut]\n"
            'source_paths = ["fleetimage"]\n'
            f"only_mutate = [{json.dumps(module.path)}]\n"
            f"pytest_add_cli_args_test_selection = [{tests}]\n"
            # One process: mutmut's trampolines and stats live in this process, not in workers.
            'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-n", "0"]\n'
            "use_git_change_detection = false\n"
        )


# mutmut's own generator, run in the scratch copy (it reads [tool.mutmut] from there): the
# names of every mutant of one file, in mutmut's order, without running anything.
_LIST_MUTANTS = """
import sys
from pathlib import Path
from mutmut.mutation.file_mutation import mutate_file_contents
from mutmut.utils.format_utils import get_mutant_name
path = Path(sys.argv[1])
for name in mutate_file_contents(str(path), path.read_text(), None, None).mutant_names:
    print(get_mutant_name(path, name))
"""


def _sample(module: Module, work: Path, every: int) -> list[str]:
    """Every ``every``-th mutant (the 1st, the 1+every-th, ...): deterministic, so a sampled
    score can be repeated and compared."""
    names = subprocess.run(
        [sys.executable, "-c", _LIST_MUTANTS, module.path],
        cwd=work,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return names[::every]


def run_module(
    name: str,
    *,
    children: int,
    keep: bool,
    only: list[str] | None = None,
    sample: int | None = None,
) -> dict[str, object]:
    module = MODULES[name]
    work = Path(tempfile.mkdtemp(prefix=f"mutation-{name}-"))
    try:
        _scratch(module, work)
        if sample is not None:
            sampled = _sample(module, work, sample)
            only = sampled if only is None else [k for k in sampled if k in only]
        started = time.monotonic()
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        mutmut = [sys.executable, "-m", "mutmut"]
        subprocess.run(
            [*mutmut, "run", "--max-children", str(children), *(only or [])],
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        listing = subprocess.run(
            [*mutmut, "results", "--all", "true"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        elapsed = time.monotonic() - started
    finally:
        if keep:
            print(f"  scratch copy kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    statuses: dict[str, str] = {}
    for line in listing.splitlines():
        match = _RESULT.match(line)
        if match and (only is None or match["key"] in only):
            statuses[match["key"]] = match["status"]
    killed = sum(s in {"killed", "timeout"} for s in statuses.values())
    survivors = sorted(k for k, s in statuses.items() if s not in {"killed", "timeout"})
    total = len(statuses)
    return {
        "module": module.path,
        "tests": list(module.tests),
        "mutants": total,
        "killed": killed,
        "score": round(100.0 * killed / total, 1) if total else None,
        "survivors": {k: statuses[k] for k in survivors},
        "seconds": round(elapsed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__)
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=", ".join(MODULES))
    parser.add_argument("--changed-since", metavar="GIT_REF")
    parser.add_argument("--children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--json", type=Path, metavar="FILE")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies")
    parser.add_argument(
        "--retest",
        type=Path,
        metavar="FILE",
        help="run only the mutants named in FILE (one per line; e.g. an earlier run's survivors)",
    )
    parser.add_argument(
        "--sample",
        type=int,
        metavar="N",
        help="run only every N-th mutant, in mutmut's order (a deterministic sample)",
    )
    parser.add_argument(
        "--fail-under", type=float, default=0.0, help="exit 1 if a module scores below this"
    )
    args = parser.parse_args(argv)
    if args.sample is not None and args.sample < 1:
        parser.error("--sample must be >= 1")
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown module {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    names = list(args.modules) or list(MODULES)
    if args.changed_since:
        names = [n for n in names if n in _changed(args.changed_since)]
        if not names:
            print("no core module changed: nothing to mutate")
            return 0
    results = []
    for name in names:
        print(f"{name}: mutating {MODULES[name].path} ...", flush=True)
        only = args.retest.read_text(encoding="utf-8").split() if args.retest else None
        result = run_module(
            name, children=args.children, keep=args.keep, only=only, sample=args.sample
        )
        results.append(result)
        print(
            f"{name}: {result['killed']}/{result['mutants']} killed "
            f"({result['score']} %) in {result['seconds']} s"
        )
        for key, status in dict(result["survivors"]).items():  # type: ignore[call-overload]
            print(f"  {status}: {key}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    low = [r for r in results if r["score"] is None or r["score"] < args.fail_under]  # type: ignore[operator]
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
