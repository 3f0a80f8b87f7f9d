"""A saved plan (``fleetimage plan --out FILE``) that ``fleetimage run --plan FILE`` images.

Every shard given the same file images exactly its share of the same targets, under the same
run id and start (so the same names), and the lanes are dealt to shards by target count
(:func:`~fleetimage.core.shards.balance_lanes`) instead of by hash. The file holds the run id,
the start, a digest of the config it was made from (a run with another config is refused: the
requests would not be the config's) and, per lane, the CreateImage requests, the skips, the
missing instance ids and any planning error (a lane that failed to plan is planned again by
the run).

Format (JSON)::

    {"format": "fleetimage-plan", "version": 1, "run_id": "...", "started_at": "...",
     "config_sha256": "...",
     "lanes": [{"account": "...", "region": "...", "specs": [ImageSpec.to_dict(), ...],
                "skipped": [{"target": {...}, "reason": "..."}], "missing": ["i-..."],
                "collisions": [{"spec": {...}, "other": "i-..."}],
                "error": null | {"action": "...", "code": "...", "message": "..."}}]}
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from fleetimage.config import FleetConfig
from fleetimage.core.errors import AwsError, UsageError
from fleetimage.core.models import ImageSpec, LaneKey, Target
from fleetimage.core.naming import validate_run_id
from fleetimage.core.shards import Shard, balance_lanes
from fleetimage.engine.plan import LanePlan, Plan

__all__ = ["config_digest", "load_plan", "plan_shard", "save_plan"]

FORMAT = "fleetimage-plan"
VERSION = 1


def config_digest(config: FleetConfig) -> str:
    dumped = json.dumps(config.model_dump(mode="json"), sort_keys=True, default=str)
    return hashlib.sha256(dumped.encode()).hexdigest()


def _target(t: Target) -> dict[str, Any]:
    # ImageSpec.to_dict's target part, so one reader serves both.
    spec = ImageSpec(t, "x", "", False, {}, False)
    return dict(spec.to_dict()["target"])


def _target_from(data: dict[str, Any]) -> Target:
    return ImageSpec.from_dict({"target": data, "name": "x", "no_reboot": False}).target


def _lane(lp: LanePlan) -> dict[str, Any]:
    e = lp.error
    return {
        "account": lp.key.account,
        "region": lp.key.region,
        "specs": [s.to_dict() for s in lp.specs],
        "skipped": [{"target": _target(t), "reason": why} for t, why in lp.skipped],
        "missing": list(lp.missing),
        "collisions": [{"spec": s.to_dict(), "other": other} for s, other in lp.collisions],
        "error": None if e is None else {"action": e.action, "code": e.code, "message": e.message},
    }


def _lane_from(data: dict[str, Any]) -> LanePlan:
    e = data.get("error")
    return LanePlan(
        LaneKey(str(data["account"]), str(data["region"])),
        specs=[ImageSpec.from_dict(s) for s in data.get("specs", [])],
        skipped=[(_target_from(x["target"]), str(x["reason"])) for x in data.get("skipped", [])],
        missing=[str(i) for i in data.get("missing", [])],
        collisions=[
            (ImageSpec.from_dict(c["spec"]), str(c["other"])) for c in data.get("collisions", [])
        ],
        error=None if not e else AwsError(e["code"], e["message"], action=e["action"]),
    )


def save_plan(plan: Plan, config: FleetConfig, path: Path) -> None:
    """Write ``plan`` atomically (a reader never sees half a plan)."""
    data = {
        "format": FORMAT,
        "version": VERSION,
        "run_id": plan.run_id,
        "started_at": plan.started_at.isoformat(),
        "config_sha256": config_digest(config),
        "lanes": [
            _lane(plan.lanes[k]) for k in sorted(plan.lanes, key=lambda k: (k.account, k.region))
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_plan(path: Path, config: FleetConfig) -> Plan:
    """Read a saved plan; UsageError (one line naming the file) if it is not one, or was made
    from another config."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--plan {path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"--plan {path}: not a saved plan ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"--plan {path}: not a saved plan (fleetimage plan --out FILE makes one)")
    if data.get("version") != VERSION:
        raise UsageError(
            f"--plan {path}: plan format version {data.get('version')!r} is not {VERSION}"
        )
    if data.get("config_sha256") != config_digest(config):
        raise UsageError(
            f"--plan {path} was made from another config than this one; make the plan again "
            "with this config, or run with the config it was made from"
        )
    try:
        run_id = str(data["run_id"])
        validate_run_id(run_id)
        started_at = datetime.fromisoformat(data["started_at"])
        lanes = [_lane_from(lane) for lane in data["lanes"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"--plan {path}: malformed plan ({type(exc).__name__}: {exc})") from None
    return Plan(run_id, started_at, {lp.key: lp for lp in lanes})


def plan_shard(plan: Plan, index: int, count: int) -> Shard:
    """Shard ``index`` of ``count`` of a saved plan: its lanes dealt by target count."""
    owner = balance_lanes({k: len(lp.specs) for k, lp in plan.lanes.items()}, count)
    return Shard(index, count, frozenset(k for k, i in owner.items() if i == index))
