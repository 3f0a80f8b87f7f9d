"""EC2 handlers for an image's end of life, and the test controls that set the stage.

- ``DeregisterImage`` (with ``DeleteAssociatedSnapshots`` and per-snapshot
  ``DeleteSnapshotResults``: a snapshot another registered AMI uses is ``skipped``; a
  protected image, or one in its protection cooldown, cannot be deregistered);
- ``DeleteSnapshot`` (refused while a registered image uses the snapshot);
- ``DescribeImageReferences`` (≤ 10 image ids; instances (``state-name`` option), launch
  template versions (``version-depth``, default 10 latest) and SSM parameters; paged);
- ``Enable/DisableImageDeregistrationProtection`` (``WithCooldown``: protection lasts 24 h
  after disabling, scaled by ``time_scale``).

:class:`LifecycleControls` is mixed into :class:`~fleetimage.mock.server.MockEC2`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from fleetimage.core.errors import MockError
from fleetimage.core.tags import INSTANCE_TAG
from fleetimage.mock.fleet import Fleet, Image, RegionState, Snapshot
from fleetimage.mock.protocol import ApiError, Params, bool_param, indexed, items, struct_list
from fleetimage.mock.query import Ctx, Handler, dry_run, next_token_xml, paginate, require

__all__ = ["COOLDOWN_S", "HANDLERS", "LifecycleControls", "is_protected", "protection_text"]

COOLDOWN_S = 86400.0  # AWS seconds
MAX_REFERENCE_IDS = 10
_RESOURCE_TYPES = ("ec2:Instance", "ec2:LaunchTemplate", "ssm:Parameter")
_ALL_TYPES = (*_RESOURCE_TYPES, "imagebuilder:ImageRecipe", "imagebuilder:ContainerRecipe")


def is_protected(image: Image, now: float) -> bool:
    if image.protection != "disabled":
        return True
    return image.protected_until is not None and now < image.protected_until


def protection_text(image: Image, now: float, wall: float) -> str:
    """``DescribeImages``'s ``deregistrationProtection``."""
    if image.protection != "disabled":
        return image.protection
    if image.protected_until is not None and now < image.protected_until:
        until = wall + (image.protected_until - now)
        return f"disabled-until {time.strftime('%Y-%m-%dT%H:%M:%S.000Z', time.gmtime(until))}"
    return "disabled"


def _image(st: RegionState, image_id: str) -> Image:
    if not image_id.startswith("ami-"):
        raise ApiError("InvalidAMIID.Malformed", f'Invalid id: "{image_id}" (expecting "ami-...")')
    image = st.images.get(image_id)
    if image is None:
        raise ApiError("InvalidAMIID.NotFound", f"The image id '[{image_id}]' does not exist")
    if image.deregistered:  # EC2: "deregistered or in an invalid state" (moto agrees)
        raise ApiError(
            "InvalidAMIID.Unavailable", f"The image id '[{image_id}]' is no longer available"
        )
    return image


def _forget(st: RegionState, snap: Snapshot) -> None:
    del st.snapshots[snap.snapshot_id]
    st.snapshot_list.remove(snap)


# --- DeregisterImage / DeleteSnapshot -------------------------------------------------------


def deregister_image(ctx: Ctx, params: Params) -> str:
    image_id = require(params, "ImageId")
    ctx.st.deregister_calls[image_id] = ctx.st.deregister_calls.get(image_id, 0) + 1
    image = _image(ctx.st, image_id)
    delete_snapshots = bool_param(params, "DeleteAssociatedSnapshots")
    if is_protected(image, ctx.now):
        raise ApiError(
            "InvalidParameterValue",
            f"The image {image.image_id} cannot be deregistered because deregistration "
            "protection is enabled (or in its cooldown period).",
        )
    dry_run(params)
    st = ctx.st
    st.deregister(image)
    st.deregistered_at.append(ctx.now)
    if not delete_snapshots:
        return "<return>true</return>"
    results = []
    for snap_id in image.snapshot_ids():
        snap = st.snapshots.get(snap_id)
        if snap is None:
            continue
        if snap.in_use_by():
            code = "skipped"  # shared with another registered AMI
        elif snap.delete_fails is not None:
            code, snap.delete_fails = snap.delete_fails, None
        else:
            code = "success"
            _forget(st, snap)
        results.append(f"<snapshotId>{snap_id}</snapshotId><returnCode>{code}</returnCode>")
    return f"<return>true</return>{items('deleteSnapshotResultSet', results)}"


def delete_snapshot(ctx: Ctx, params: Params) -> str:
    snap_id = require(params, "SnapshotId")
    if not snap_id.startswith("snap-"):
        raise ApiError(
            "InvalidSnapshotID.Malformed", f'Invalid id: "{snap_id}" (expecting "snap-...")'
        )
    snap = ctx.st.snapshots.get(snap_id)
    if snap is None:
        raise ApiError("InvalidSnapshot.NotFound", f"The snapshot '{snap_id}' does not exist.")
    users = snap.in_use_by()
    if users:
        raise ApiError(
            "InvalidSnapshot.InUse",
            f"The snapshot {snap_id} is currently in use by {users[0].image_id}",
        )
    dry_run(params)
    _forget(ctx.st, snap)
    return "<return>true</return>"


# --- DescribeImageReferences ----------------------------------------------------------------


def _wanted(params: Params) -> dict[str, dict[str, list[str]]]:
    """resource type -> {option name: values}."""
    if bool_param(params, "IncludeAllResourceTypes"):
        return {t: {} for t in _ALL_TYPES}
    wanted: dict[str, dict[str, list[str]]] = {}
    for member in struct_list(params, "ResourceType"):
        rtype = member.get("ResourceType", "")
        if rtype not in _ALL_TYPES:
            raise ApiError("InvalidParameterValue", f"Unsupported resource type '{rtype}'.")
        options: dict[str, list[str]] = {}
        for opt in struct_list(member, "ResourceTypeOption"):
            name = opt.get("OptionName", "")
            options[name] = indexed(opt, "OptionValue")
        wanted[rtype] = options
    if not wanted:
        raise ApiError(
            "MissingParameter", "Either IncludeAllResourceTypes or ResourceTypes must be specified."
        )
    return wanted


def _references(
    ctx: Ctx, ids: Sequence[str], wanted: dict[str, dict[str, list[str]]]
) -> list[tuple[str, str, str]]:
    st, arn = ctx.st, f"{ctx.region}:{ctx.account}"
    idset = set(ids)
    out: list[tuple[str, str, str]] = []
    if "ec2:Instance" in wanted:
        states = wanted["ec2:Instance"].get("state-name")
        for inst in st.instance_list:
            if inst.image_id in idset and (not states or inst.state in states):
                out.append(
                    (
                        inst.image_id,
                        "ec2:Instance",
                        f"arn:aws:ec2:{arn}:instance/{inst.instance_id}",
                    )
                )
    if "ec2:LaunchTemplate" in wanted:
        depth_values = wanted["ec2:LaunchTemplate"].get("version-depth") or ["10"]
        try:
            depth = int(depth_values[0])
        except ValueError:
            raise ApiError("InvalidParameterValue", "version-depth must be a number") from None
        for lt_id, versions in st.launch_templates.items():
            recent = set(versions[-depth:])
            for image_id in sorted(recent & idset):
                out.append(
                    (image_id, "ec2:LaunchTemplate", f"arn:aws:ec2:{arn}:launch-template/{lt_id}")
                )
    if "ssm:Parameter" in wanted:
        for name, image_id in st.ssm_parameters.items():
            if image_id in idset:
                out.append((image_id, "ssm:Parameter", f"arn:aws:ssm:{arn}:parameter/{name}"))
    return out


def describe_image_references(ctx: Ctx, params: Params) -> str:
    ids = indexed(params, "ImageId")
    if not ids:
        raise ApiError("MissingParameter", "The request must contain the parameter ImageId")
    if len(ids) > MAX_REFERENCE_IDS:
        raise ApiError(
            "InvalidParameterValue",
            f"You can specify at most {MAX_REFERENCE_IDS} image IDs per request ({len(ids)}).",
        )
    for image_id in ids:
        _image(ctx.st, image_id)
    wanted = _wanted(params)
    dry_run(params)
    refs = _references(ctx, ids, wanted)
    chosen, token = paginate(refs, params, lambda _r: True, "iref")
    body = items(
        "imageReferenceSet",
        (
            f"<imageId>{i}</imageId><resourceType>{t}</resourceType><arn>{a}</arn>"
            for i, t, a in chosen
        ),
    )
    return body + next_token_xml(token)


# --- deregistration protection --------------------------------------------------------------


def enable_protection(ctx: Ctx, params: Params) -> str:
    image = _image(ctx.st, require(params, "ImageId"))
    dry_run(params)
    image.protection = "enabled-with-cooldown" if bool_param(params, "WithCooldown") else "enabled"
    image.protected_until = None
    return "<return>true</return>"


def disable_protection(ctx: Ctx, params: Params) -> str:
    image = _image(ctx.st, require(params, "ImageId"))
    dry_run(params)
    if image.protection == "enabled-with-cooldown":
        image.protected_until = ctx.now + ctx.fleet.config.scaled(COOLDOWN_S)
    image.protection = "disabled"
    return "<return>true</return>"


HANDLERS: dict[str, Handler] = {
    "DeregisterImage": deregister_image,
    "DeleteSnapshot": delete_snapshot,
    "DescribeImageReferences": describe_image_references,
    "EnableImageDeregistrationProtection": enable_protection,
    "DisableImageDeregistrationProtection": disable_protection,
}


# --- test controls --------------------------------------------------------------------------


class LifecycleControls:
    """Test controls for references, launches, protection, shared snapshots, Recycle Bin."""

    fleet: Fleet

    def _lc_image(self, account: str, region: str, image_id: str) -> Image:
        image = self.fleet.state(account, region).images.get(image_id)
        if image is None:
            raise MockError(f"no image {image_id} in {account}/{region}")
        return image

    def launch_from_image(
        self, account: str, region: str, image_id: str, state: str = "running"
    ) -> str:
        """An instance launched from ``image_id`` (it references it); sets LastLaunchedTime."""
        image = self._lc_image(account, region, image_id)
        st = self.fleet.state(account, region)
        inst = st.new_instance(state=state, volumes=1)
        inst.image_id = image_id
        st.add_instance(inst)
        image.last_launched = time.time()
        return inst.instance_id

    def set_last_launched(self, account: str, region: str, image_id: str, wall: float) -> None:
        self._lc_image(account, region, image_id).last_launched = wall

    def add_launch_template(self, account: str, region: str, versions: Sequence[str]) -> str:
        """A launch template whose version N uses ``versions[N-1]``; returns its id."""
        st = self.fleet.state(account, region)
        lt_id = f"lt-{self.fleet.new_id('x')[2:]}"
        st.launch_templates[lt_id] = list(versions)
        return lt_id

    def add_ssm_parameter(self, account: str, region: str, name: str, image_id: str) -> None:
        self.fleet.state(account, region).ssm_parameters[name] = image_id

    def protect_image(
        self, account: str, region: str, image_id: str, *, cooldown: bool = False
    ) -> None:
        image = self._lc_image(account, region, image_id)
        image.protection = "enabled-with-cooldown" if cooldown else "enabled"

    def register_image(
        self,
        account: str,
        region: str,
        snapshot_ids: Sequence[str],
        name: str,
        tags: dict[str, str] | None = None,
    ) -> str:
        """A hand-made AMI registered from existing snapshots (which it then shares)."""
        st = self.fleet.state(account, region)
        snaps = [st.snapshots[s] for s in snapshot_ids]
        now, wall = time.monotonic(), time.time()
        image = Image(
            image_id=self.fleet.new_id("ami"),
            name=name,
            description="registered by hand",
            owner=account,
            region=region,
            source_instance_id="",
            created_at=wall,
            ready_at=now,
            visible_at=now,
            fails=False,
            devices=[
                (f"/dev/sd{'fghij'[n]}", s.snapshot_id, s.size_gib) for n, s in enumerate(snaps)
            ],
            tags=dict(tags or {}),
            root_device="/dev/sdf",
            no_reboot=True,
        )
        st.add_image(image)
        for snap in snaps:
            snap.users.append(image)
        return image.image_id

    def fail_snapshot_deletion(
        self, account: str, region: str, snapshot_id: str, code: str = "internal-error"
    ) -> None:
        """The next DeregisterImage(DeleteAssociatedSnapshots) answers ``code`` for it."""
        self.fleet.state(account, region).snapshots[snapshot_id].delete_fails = code

    def add_rbin_rule(
        self, account: str, region: str, resource_type: str = "EC2_IMAGE", days: int = 7
    ) -> None:
        """A Recycle Bin retention rule (``rbin`` ListRules serves it)."""
        rules = self.fleet.state(account, region).rbin_rules
        rules.append(
            {
                "Identifier": f"rule{len(rules) + 1:08d}",
                "ResourceType": resource_type,
                "RetentionPeriod": {"RetentionPeriodValue": days, "RetentionPeriodUnit": "DAYS"},
                "LockState": "unlocked",
            }
        )

    def seed_images(
        self,
        account: str,
        region: str,
        count: int,
        tags: dict[str, str],
        *,
        age_s: float = 30 * 86400.0,
        size_gib: int = 8,
    ) -> list[str]:
        """``count`` available images made ``age_s`` ago (wall clock), each with one snapshot
        and ``tags`` plus ``fleetimage:instance-id`` (instances that no longer exist): a big
        fleet's history in one call, for prune tests and benchmarks."""
        st = self.fleet.state(account, region)
        now, wall = time.monotonic(), time.time() - age_s
        made = []
        for n in range(count):
            image_id = self.fleet.new_id("ami")
            instance_id = f"i-{n:017x}"
            snap = Snapshot(
                snapshot_id=self.fleet.new_id("snap"),
                volume_id=f"vol-{n:017x}",
                size_gib=size_gib,
                owner=account,
                description=f"Created by CreateImage({instance_id}) for {image_id}",
                started_at=wall,
                image=None,
            )
            image = Image(
                image_id=image_id,
                name=f"seeded-{image_id}",
                description="seeded",
                owner=account,
                region=region,
                source_instance_id=instance_id,
                created_at=wall,
                ready_at=now,
                visible_at=now,
                fails=False,
                devices=[("/dev/xvda", snap.snapshot_id, size_gib)],
                tags={**tags, INSTANCE_TAG: instance_id},
                root_device="/dev/xvda",
                no_reboot=True,
            )
            snap.image = image
            st.add_snapshot(snap)
            st.add_image(image)
            made.append(image_id)
        return made

    def deregister_calls(self, account: str, region: str) -> dict[str, int]:
        """DeregisterImage calls per image id that reached (account, region)."""
        return dict(self.fleet.state(account, region).deregister_calls)

    def deregistered_at(self, account: str, region: str) -> list[float]:
        """When (monotonic s) each DeregisterImage that deregistered an image arrived."""
        return list(self.fleet.state(account, region).deregistered_at)

    def snapshot_ids(self, account: str, region: str) -> set[str]:
        """The snapshots that exist now in (account, region)."""
        return set(self.fleet.state(account, region).snapshots)
