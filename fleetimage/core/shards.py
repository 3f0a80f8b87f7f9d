"""Shards: which (account, region) lanes one of N machines images.

A shard owns whole lanes — a lane's buckets, caps and waiter are never split — so shards share
nothing and two shards never hold the same lane. Two ways to split:

- **by hash** (``--shard I/N``): lane ``(account, region)`` belongs to shard
  ``sha256("account/region") mod N``. Stable across machines, Python versions and runs (never
  Python's ``hash()``, which is salted per process), and needs nothing but the lane's key.
- **by plan** (``--shard I/N --plan FILE``): every shard reads the same saved plan and deals
  its lanes out by target count (largest first, to the least loaded shard, ties to the lower
  index), so shards get about the same number of images even when lanes differ in size.

Without ``--shard``, :func:`shard_from_env` reads a Kubernetes Indexed Job's
``JOB_COMPLETION_INDEX`` (with ``FLEETIMAGE_SHARD_COUNT``, which the Job sets from its
``completions``) or an AWS Batch array child's ``AWS_BATCH_JOB_ARRAY_INDEX`` (with
``AWS_BATCH_JOB_ARRAY_SIZE``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fleetimage.core.models import LaneKey

__all__ = ["ENV_PAIRS", "Shard", "balance_lanes", "lane_shard", "parse_shard", "shard_from_env"]

_SHARD_RE = re.compile(r"^\s*(\d{1,6})\s*/\s*(\d{1,6})\s*$")
# (index variable, count variable): Kubernetes Indexed Job, then AWS Batch array job.
ENV_PAIRS = (
    ("JOB_COMPLETION_INDEX", "FLEETIMAGE_SHARD_COUNT"),
    ("AWS_BATCH_JOB_ARRAY_INDEX", "AWS_BATCH_JOB_ARRAY_SIZE"),
)


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count`` (from 0). ``lanes``: the lanes dealt to it from a saved
    plan (by target count); None: lanes are owned by hash."""

    index: int
    count: int
    lanes: frozenset[LaneKey] | None = None

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"the shard count must be at least 1, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(
                f"shard index {self.index} is out of range for {self.count} shards "
                f"(0 to {self.count - 1})"
            )

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def mode(self) -> str:
        return "hash" if self.lanes is None else "plan"

    def owns(self, key: LaneKey) -> bool:
        if self.lanes is not None:
            return key in self.lanes
        return lane_shard(key, self.count) == self.index

    def to_dict(self) -> dict[str, object]:
        lanes = (
            None if self.lanes is None else [[k.account, k.region] for k in sorted_keys(self.lanes)]
        )
        return {"index": self.index, "count": self.count, "mode": self.mode, "lanes": lanes}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Shard:
        raw = data.get("lanes")
        lanes = None
        if isinstance(raw, list):
            lanes = frozenset(LaneKey(str(a), str(r)) for a, r in raw)
        index, count = data["index"], data["count"]
        assert isinstance(index, int) and isinstance(count, int)
        return cls(index, count, lanes)


def sorted_keys(keys: Iterable[LaneKey]) -> list[LaneKey]:
    return sorted(keys, key=lambda k: (k.account, k.region))


def lane_shard(key: LaneKey, count: int) -> int:
    """The shard (0 to count - 1) that owns lane ``key`` when lanes are split by hash."""
    digest = hashlib.sha256(f"{key.account}/{key.region}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def balance_lanes(targets: Mapping[LaneKey, int], count: int) -> dict[LaneKey, int]:
    """Deal lanes to ``count`` shards by target count: largest lane first, to the least
    loaded shard (ties: the lower index). Deterministic: every shard computes the same deal."""
    loads = [0] * count
    owner: dict[LaneKey, int] = {}
    for key in sorted(targets, key=lambda k: (-targets[k], k.account, k.region)):
        shard = min(range(count), key=lambda i: (loads[i], i))
        owner[key] = shard
        loads[shard] += targets[key]
    return owner


def parse_shard(text: str, *, what: str = "--shard") -> tuple[int, int]:
    """``"I/N"`` → (I, N); ValueError naming ``what`` if malformed or out of range."""
    found = _SHARD_RE.match(text)
    if found is None:
        raise ValueError(f"{what}: {text!r} is not I/N (e.g. 0/4: the first of 4 shards)")
    index, count = int(found.group(1)), int(found.group(2))
    _check(index, count, what)
    return index, count


def _check(index: int, count: int, what: str) -> None:
    if count < 1:
        raise ValueError(f"{what}: the shard count must be at least 1, got {count}")
    if index >= count:
        raise ValueError(
            f"{what}: shard index {index} is out of range for {count} shards (0 to {count - 1})"
        )


def shard_from_env(env: Mapping[str, str]) -> tuple[int, int] | None:
    """The shard an Indexed Job or a Batch array job gives this process, or None.

    ValueError (naming the variable) when an index is set without its count or either is not
    a number."""
    for index_var, count_var in ENV_PAIRS:
        raw_index = env.get(index_var)
        if raw_index is None or raw_index == "":
            continue
        raw_count = env.get(count_var)
        if not raw_count:
            raise ValueError(
                f"{index_var} is set ({raw_index!r}) but {count_var} is not: set it to the "
                "number of shards (the Job's completions, the array size)"
            )
        numbers = {}
        for var, raw in ((index_var, raw_index), (count_var, raw_count)):
            if not raw.strip().isdigit():
                raise ValueError(f"{var}={raw!r} is not a whole number")
            numbers[var] = int(raw)
        index, count = numbers[index_var], numbers[count_var]
        _check(index, count, f"{index_var}/{count_var}")
        return index, count
    return None
