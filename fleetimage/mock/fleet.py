"""The mock's world: instances, images and snapshots per (account, region).

The synthetic fleet is generated lazily per (account, region) from a ``random.Random`` seeded
with ``(seed, account, region)``, so ids and tags are stable whatever the order of access.
Image state is computed from timestamps when asked (:meth:`Image.state`): no timer per image,
so 50k pending images cost nothing.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TypedDict

from fleetimage.mock.config import DEFAULT_STATE_MIX, MockConfig

__all__ = [
    "Fleet",
    "Image",
    "ImageRecord",
    "Instance",
    "InstanceRecord",
    "RegionState",
    "Snapshot",
    "Volume",
]

_ROLES = ("web", "api", "db", "worker", "cache", "batch", "queue", "search")
_ENVS = ("prod", "staging", "dev")
_ENV_WEIGHTS = (0.6, 0.25, 0.15)
_TEAMS = ("platform", "payments", "search", "data", "identity", "growth")
_TYPES = ("t3.micro", "t3.large", "m6i.large", "m6i.xlarge", "c6i.2xlarge", "r6i.large")
_DEVICES = ("/dev/xvda", "/dev/sdf", "/dev/sdg", "/dev/sdh", "/dev/sdi", "/dev/sdj")
STATE_CODES = {
    "pending": 0,
    "running": 16,
    "shutting-down": 32,
    "terminated": 48,
    "stopping": 64,
    "stopped": 80,
}


def hex_id(rng: random.Random, prefix: str) -> str:
    return f"{prefix}-{rng.getrandbits(68):017x}"


class InstanceRecord(TypedDict):
    """A copy of one instance, as :meth:`MockEC2.instances` returns it."""

    instance_id: str
    state: str
    tags: dict[str, str]
    volumes: list[dict[str, str | int]]  # {"device", "volume_id", "size_gib"}
    availability_zone: str
    instance_type: str


class ImageRecord(TypedDict):
    """A copy of one image (state computed now), as :meth:`MockEC2.images` returns it."""

    image_id: str
    name: str
    description: str
    state: str
    state_reason: tuple[str, str] | None
    owner: str
    region: str
    source_instance_id: str
    created_at: float
    no_reboot: bool
    block_devices: list[tuple[str, str]]  # (device name, snapshot id)
    snapshot_ids: list[str]
    tags: dict[str, str]
    deregistered: bool
    source_region: str  # CopyImage: where the copy came from ("" for CreateImage's)
    source_image_id: str


@dataclass(slots=True)
class Volume:
    device: str
    volume_id: str
    size_gib: int


@dataclass(slots=True)
class Instance:
    instance_id: str
    state: str
    tags: dict[str, str]
    volumes: list[Volume]
    availability_zone: str
    instance_type: str
    launch_time: float
    image_id: str
    private_ip: str
    reservation_id: str

    def record(self) -> InstanceRecord:
        return InstanceRecord(
            instance_id=self.instance_id,
            state=self.state,
            tags=dict(self.tags),
            volumes=[
                {"device": v.device, "volume_id": v.volume_id, "size_gib": v.size_gib}
                for v in self.volumes
            ],
            availability_zone=self.availability_zone,
            instance_type=self.instance_type,
        )


@dataclass(slots=True)
class Image:
    image_id: str
    name: str
    description: str
    owner: str
    region: str
    source_instance_id: str
    created_at: float  # wall clock (creationDate)
    ready_at: float  # monotonic: pending until then
    visible_at: float  # monotonic: invisible to DescribeImages until then
    fails: bool
    devices: list[tuple[str, str | None, int]]  # (device, snapshot id or None=NoDevice, size)
    tags: dict[str, str]
    root_device: str
    no_reboot: bool
    state_override: str | None = None
    reason_override: tuple[str, str] | None = None
    deregistered: bool = False
    deregistered_at: float = 0.0  # monotonic; listed until + deregistered_listed_s
    # Retention (mock/lifecycle.py): deregistration protection, last launch (wall clock).
    protection: str = "disabled"  # disabled | enabled | enabled-with-cooldown
    protected_until: float | None = None  # monotonic end of a cooldown after disabling
    last_launched: float | None = None
    # CopyImage: where the copy came from, and why it fails if it does (e.g. its KMS key).
    source_region: str = ""
    source_image_id: str = ""
    fail_reason: tuple[str, str] | None = None

    def state(self, now: float) -> str:
        if self.deregistered:
            return "deregistered"
        if self.state_override is not None:
            return self.state_override
        if now < self.ready_at:
            return "pending"
        return "failed" if self.fails else "available"

    def state_reason(self, now: float) -> tuple[str, str] | None:
        if self.reason_override is not None:
            return self.reason_override
        if self.state(now) == "failed":
            if self.fail_reason is not None:
                return self.fail_reason
            return ("Server.InternalError", "Internal error: snapshot creation failed")
        return None

    def snapshot_ids(self) -> list[str]:
        return [snap for _, snap, _ in self.devices if snap is not None]

    def record(self, now: float) -> ImageRecord:
        return ImageRecord(
            image_id=self.image_id,
            name=self.name,
            description=self.description,
            state=self.state(now),
            state_reason=self.state_reason(now),
            owner=self.owner,
            region=self.region,
            source_instance_id=self.source_instance_id,
            created_at=self.created_at,
            no_reboot=self.no_reboot,
            block_devices=[(dev, snap) for dev, snap, _ in self.devices if snap is not None],
            snapshot_ids=self.snapshot_ids(),
            tags=dict(self.tags),
            deregistered=self.deregistered,
            source_region=self.source_region,
            source_image_id=self.source_image_id,
        )


@dataclass(slots=True)
class Snapshot:
    snapshot_id: str
    volume_id: str
    size_gib: int
    owner: str
    description: str
    started_at: float  # wall clock
    image: Image | None
    tags: dict[str, str] = field(default_factory=dict)
    # Other images registered from this snapshot (hand-made AMIs): it is shared with them.
    users: list[Image] = field(default_factory=list)
    # A DeregisterImage(DeleteAssociatedSnapshots) return code to give once instead of success.
    delete_fails: str | None = None

    def in_use_by(self) -> list[Image]:
        """The registered images that use this snapshot."""
        owners = [self.image] if self.image is not None else []
        return [i for i in (*owners, *self.users) if not i.deregistered]

    def state(self, now: float) -> str:
        if self.image is None or self.image.deregistered:
            return "completed"
        image_state = self.image.state(now)
        if image_state == "pending":
            return "pending"
        return "error" if image_state == "failed" else "completed"


@dataclass(slots=True)
class RegionState:
    """Everything one (account, region) holds. Lists keep creation order for pagination."""

    account: str
    region: str
    rng: random.Random
    instances: dict[str, Instance] = field(default_factory=dict)
    instance_list: list[Instance] = field(default_factory=list)
    images: dict[str, Image] = field(default_factory=dict)
    image_list: list[Image] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # name -> image id (not deregistered)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    snapshot_list: list[Snapshot] = field(default_factory=list)
    # Image references (mock/lifecycle.py): launch template id -> image id per version
    # (version N at index N-1), SSM parameter name -> image id; Recycle Bin rules.
    launch_templates: dict[str, list[str]] = field(default_factory=dict)
    ssm_parameters: dict[str, str] = field(default_factory=dict)
    rbin_rules: list[dict[str, object]] = field(default_factory=list)
    # DeregisterImage calls that reached this region, per image id (a test's "deleted once").
    deregister_calls: dict[str, int] = field(default_factory=dict)
    deregistered_at: list[float] = field(default_factory=list)  # monotonic, per deregistration

    def add_instance(self, instance: Instance) -> None:
        self.instances[instance.instance_id] = instance
        self.instance_list.append(instance)

    def add_image(self, image: Image) -> None:
        self.images[image.image_id] = image
        self.image_list.append(image)
        self.names[image.name] = image.image_id

    def add_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshots[snapshot.snapshot_id] = snapshot
        self.snapshot_list.append(snapshot)

    def deregister(self, image: Image) -> None:
        image.deregistered, image.deregistered_at = True, time.monotonic()
        if self.names.get(image.name) == image.image_id:
            del self.names[image.name]

    def new_instance(
        self,
        *,
        instance_id: str | None = None,
        state: str = "running",
        tags: dict[str, str] | None = None,
        volumes: int = 2,
        instance_type: str | None = None,
    ) -> Instance:
        rng = self.rng
        iid = instance_id or hex_id(rng, "i")
        devices = _DEVICES[: max(0, volumes)]
        vols = [
            Volume(dev, hex_id(rng, "vol"), 8 if i == 0 else rng.choice((20, 50, 100, 200)))
            for i, dev in enumerate(devices)
        ]
        return Instance(
            instance_id=iid,
            state=state,
            tags=dict(tags or {}),
            volumes=vols,
            availability_zone=self.region + "abc"[rng.randrange(3)],
            instance_type=instance_type or rng.choice(_TYPES),
            launch_time=time.time() - rng.uniform(3600, 3600 * 24 * 400),
            image_id=hex_id(rng, "ami"),
            private_ip=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            reservation_id=hex_id(rng, "r"),
        )


@dataclass(slots=True)
class CopyLedger:
    """What CopyImage made, for the tests' "0 duplicates": copies created per ClientToken,
    per (account, region, name) and per source image and destination; and the tokens."""

    by_token: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    by_name: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    by_source: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    # (account, destination, token) -> (the request's parameters, the copy's image id)
    tokens: dict[tuple[str, str, str], tuple[tuple[tuple[str, str], ...], str]] = field(
        default_factory=dict
    )
    # Per (account, destination), for /_mock/copy_stats: ResourceLimitExceeded answers, and
    # the most copies pending at once.
    limit_refused: Counter[tuple[str, str]] = field(default_factory=Counter)
    peak_pending: Counter[tuple[str, str]] = field(default_factory=Counter)


class Fleet:
    """All (account, region) states plus the run-wide RNG for ids and failures (pending times
    are per instance, see :meth:`pending_aws_s`)."""

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self._states: dict[tuple[str, str], RegionState] = {}
        self.rng = random.Random(f"{config.seed}:images")
        self.images_created: Counter[tuple[str, str, str]] = Counter()
        self.copies = CopyLedger()

    def state(self, account: str, region: str) -> RegionState:
        key = (account, region)
        st = self._states.get(key)
        if st is None:
            st = RegionState(account, region, random.Random(f"{self.config.seed}:{key}"))
            if account in self.config.accounts and region in self.config.regions:
                self._populate(st)
            self._states[key] = st
        return st

    def states(self) -> list[RegionState]:
        return list(self._states.values())

    def _populate(self, st: RegionState) -> None:
        cfg = self.config
        mix = cfg.state_mix if cfg.state_mix is not None else DEFAULT_STATE_MIX
        states = list(mix)
        weights = [mix[s] for s in states]
        rng = st.rng
        for n in range(1, cfg.instances_per_region + 1):
            state = rng.choices(states, weights)[0]
            role = _ROLES[n % len(_ROLES)]
            tags = {
                "Name": f"{role}-{n:03d}",
                "Env": rng.choices(_ENVS, _ENV_WEIGHTS)[0],
                "Team": rng.choice(_TEAMS),
            }
            volumes = 0 if state == "terminated" else rng.randint(1, cfg.max_volumes)
            st.add_instance(st.new_instance(state=state, tags=tags, volumes=volumes))

    def pending_delay(self, account: str, region: str, instance_id: str) -> float:
        """Wall seconds an image of ``instance_id`` stays pending (log-normal around
        pending_s if sigma > 0): :meth:`pending_aws_s` under the time scale."""
        return self.config.scaled(self.pending_aws_s(account, region, instance_id))

    def pending_aws_s(self, account: str, region: str, instance_id: str) -> float:
        """AWS seconds an image of this instance stays pending: a pure function of
        (seed, account, region, instance id), whoever asks and in whatever order, so every
        client of a fleet gets the same work and the bound can be computed without one."""
        cfg = self.config
        aws_s = cfg.pending_s
        if cfg.pending_sigma > 0 and aws_s > 0:
            rng = random.Random(f"{cfg.seed}:pending:{account}:{region}:{instance_id}")
            aws_s = rng.lognormvariate(0.0, cfg.pending_sigma) * aws_s
        return aws_s

    def copy_pending_aws_s(
        self, account: str, source_region: str, source: str, destination: str
    ) -> float:
        """AWS seconds a copy stays pending: like :meth:`pending_aws_s`, a pure function of
        (seed, account, source region, ``source``, destination), ``source`` being the source
        image's instance id (its image id for an image not made by CreateImage): the same
        for every client and run, so a copy phase's bound is computed from the fleet alone."""
        cfg = self.config.copies
        aws_s = cfg.pending_s
        if cfg.pending_sigma > 0 and aws_s > 0:
            key = f"{self.config.seed}:copy:{account}:{source_region}:{source}:{destination}"
            aws_s = random.Random(key).lognormvariate(0.0, cfg.pending_sigma) * aws_s
        return aws_s

    def fails(self, account: str, region: str, instance_id: str) -> bool:
        """Whether the next image of this instance ends ``failed``: a pure function of (seed,
        instance, how many images it already has), like the pending time, so a test's share of
        failures does not depend on the order requests arrive in (retries, load), and an image
        re-created after a failure gets a fresh draw."""
        rate = self.config.failure_rate
        if rate <= 0:
            return False
        nth = self.images_created[(account, region, instance_id)]
        rng = random.Random(f"{self.config.seed}:fails:{account}:{region}:{instance_id}:{nth}")
        return rng.random() < rate

    def new_id(self, prefix: str) -> str:
        return hex_id(self.rng, prefix)

    def reset(self) -> None:
        self._states.clear()
        self.rng = random.Random(f"{self.config.seed}:images")
        self.images_created.clear()
        self.copies = CopyLedger()
