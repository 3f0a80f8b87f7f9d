"""``python -m benchmarks`` (from a checkout): run the scenarios, write the results.

python -m benchmarks                           # every scenario, every contender, 3 runs each
python -m benchmarks --scenario hot-region     # one scenario (repeatable)
python -m benchmarks --contenders fleetimage,boto3-batch-adaptive --repeats 5
python -m benchmarks --quick                   # the CI smoke test: small fleets, one run
python -m benchmarks --scenario prune-10k      # prune: results/prune-10k.md (not latest.*)
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.contenders import CONTENDERS, OPT_IN
from benchmarks.copy_bench import run_copy_scenario, write_copy_results
from benchmarks.harness import run_scenario
from benchmarks.prune_bench import run_prune_scenario, write_prune_results
from benchmarks.report import write_results
from benchmarks.scenarios import SCENARIOS_FILE, load_scenarios

__all__ = ["main"]

RESULTS_DIR = Path(__file__).with_name("results")
QUICK_CONTENDERS = ("fleetimage", "boto3-batch-standard")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--scenario", action="append", help="scenario name (repeatable; default all)")
    p.add_argument(
        "--quick", action="store_true", help="small fleets, fleetimage + boto3-batch-standard"
    )
    p.add_argument("--contenders", help=f"comma-separated, from: {', '.join(CONTENDERS)}")
    p.add_argument("--scenarios-file", type=Path, default=SCENARIOS_FILE)
    p.add_argument(
        "--out",
        type=Path,
        help="results directory (default: benchmarks/results, or a temporary one with --quick)",
    )
    p.add_argument("--name", help="results file stem (default: latest, or quick)")
    p.add_argument("--repeats", type=int, help="runs per contender (overrides scenarios.yaml)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    scenarios = load_scenarios(args.scenarios_file)
    if args.scenario:
        unknown = [s for s in args.scenario if s not in scenarios]
        if unknown:
            print(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(scenarios)}")
            return 2
        chosen = [scenarios[s] for s in args.scenario]
    elif args.quick:
        chosen = [s for s in scenarios.values() if s.quick]
    else:  # copy scenarios are run by name: they measure another phase, alone
        chosen = [s for s in scenarios.values() if not s.copy]
    if args.quick:
        chosen = [s.for_quick() for s in chosen]
    if args.repeats:
        chosen = [replace(s, repeats=args.repeats, sample_repeats=args.repeats) for s in chosen]
    default = QUICK_CONTENDERS if args.quick else tuple(CONTENDERS)
    contenders = args.contenders.split(",") if args.contenders else list(default)
    named = set(contenders) if args.contenders else set()
    bad = [c for c in contenders if c not in CONTENDERS]
    if bad:
        print(f"unknown contender(s): {', '.join(bad)}; known: {', '.join(CONTENDERS)}")
        return 2
    out = args.out
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="fleetimage-bench-")) if args.quick else RESULTS_DIR

    argv_used = sys.argv[1:] if argv is None else argv
    results: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "benchmarks", *argv_used]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "host": f"{platform.node()} ({platform.machine()}, {_cores()} cores)",
        "python": platform.python_version(),
        "scenarios": {},
    }
    t0 = time.perf_counter()
    failed = False
    for sc in [s for s in chosen if s.kind == "prune"]:  # each its own results file
        print(f"{sc.name}: {sc.description} (time scale {sc.time_scale:g})", flush=True)
        outcome = run_prune_scenario(sc, log=lambda line: print(line, flush=True))
        results["scenarios"][sc.name] = {
            "description": sc.description,
            "time_scale": sc.time_scale,
            "settings": _settings(sc),
            **outcome,
        }
        path = write_prune_results(results, sc.name, out)
        del results["scenarios"][sc.name]
        failed = failed or bool(outcome["summary"]["errors"])
        print(f"{sc.name} done: {path}")
    chosen = [s for s in chosen if s.kind != "prune"]
    copies = [sc for sc in chosen if sc.copy]
    chosen = [sc for sc in chosen if not sc.copy]
    copy_failed = False
    for sc in copies:  # written to <out>/<scenario>.md, never over latest.*
        print(f"{sc.name}: {sc.description} (time scale {sc.time_scale:g})", flush=True)
        outcome = run_copy_scenario(sc, log=lambda line: print(line, flush=True))
        path = write_copy_results(sc.name, sc, outcome, results["command"], out)
        print(f"copy scenario {sc.name}: {path}", flush=True)
        copy_failed |= any(r["efficiency"] is None for r in outcome["runs"])
    if not chosen:
        return 1 if failed or copy_failed else 0
    for sc in chosen:
        print(f"{sc.name}: {sc.description} (time scale {sc.time_scale:g})", flush=True)
        mine = _contenders_for(sc, contenders, named)
        outcome = run_scenario(sc, mine, log=lambda line: print(line, flush=True))
        targets = max((r.get("targets", 0) for r in outcome["rows"]), default=0)
        results["scenarios"][sc.name] = {
            "description": sc.description,
            "time_scale": sc.time_scale,
            "targets": targets,
            "settings": _settings(sc),
            **outcome,
        }
    results["total_wall_s"] = round(time.perf_counter() - t0, 1)
    paths = write_results(results, out, args.name or ("quick" if args.quick else "latest"))
    print(f"done in {results['total_wall_s']:.0f} s: " + ", ".join(str(p) for p in paths.values()))
    failed = failed or any(
        "error" in r for s in results["scenarios"].values() for rs in s["runs"].values() for r in rs
    )
    return 1 if failed else 0


def _contenders_for(sc: Any, contenders: list[str], named: set[str]) -> list[str]:
    """The contenders a scenario runs: its own list if it has one; otherwise all, less the
    opt-in ones that ``--contenders`` did not name."""
    if sc.contenders is not None:
        return [c for c in contenders if c in sc.contenders]
    return [c for c in contenders if c not in OPT_IN or c in named]


def _settings(sc: Any) -> dict[str, Any]:
    from dataclasses import asdict

    data = asdict(sc)
    data.pop("quick", None)
    return data


def _cores() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    sys.exit(main())
