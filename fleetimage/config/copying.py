"""``copy:``, cross-region copies of each image (CopyImage): the config model.

Every key is checked at load time, so a bad value is a one-line error naming its field and
nothing is sent: an unknown region, a completion time that is not a multiple of 15 minutes
within 15..2,880, a malformed KMS key reference, a ``kms_key_id`` without ``encrypted``.
"""

from __future__ import annotations

import difflib
import functools
import re
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from fleetimage.config.checks import MAX_COPY_TAGS, Region, StrictBool, TagKey, TagValue
from fleetimage.core import naming

__all__ = ["COPY_PLACEHOLDER", "CopyOptions", "KmsKeyRef", "copy_template", "known_regions"]

#: The placeholder a copy's name template adds to the image's.
COPY_PLACEHOLDER = "{source_region}"
# A key id (a UUID, or mrk- and 32 hex for a multi-Region key), a key ARN, an alias name
# (alias/...) or an alias ARN — the four forms CopyImage's KmsKeyId takes.
_KEY_ID = r"(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})"
_ALIAS = r"alias/[A-Za-z0-9/_-]{1,250}"
_KMS_REF_RE = re.compile(
    rf"^(?:{_KEY_ID}|{_ALIAS}|arn:aws[a-z-]*:kms:[a-z]{{2}}(?:-[a-z]+)+-\d+:\d{{12}}:"
    rf"(?:key/{_KEY_ID}|{_ALIAS}))$"
)


def _check_kms_ref(value: str) -> str:
    if not _KMS_REF_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a KMS key reference (a key id, key ARN, alias/NAME or alias ARN)"
        )
    return value


KmsKeyRef = Annotated[str, AfterValidator(_check_kms_ref)]


@functools.cache
def known_regions() -> frozenset[str]:
    """Every EC2 region of every partition the installed botocore knows."""
    import botocore.session  # only when a config copies: it takes a while to load

    session = botocore.session.get_session()
    return frozenset(
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("ec2", partition)
    )


def _check_known(value: str) -> str:
    # A destination is a region CopyImage is sent to: a typo would only show as an
    # endpoint that never answers, after retry.max_outage_s. Sources are discovered, so
    # their typos show at once; destinations are checked here.
    known = known_regions()
    if value not in known:
        close = difflib.get_close_matches(value, sorted(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{value!r} is not an AWS region this botocore knows{hint}")
    return value


def copy_template(template: str, source_region: str) -> str:
    """The image name template a copy's ``name_template`` is once its source region is known."""
    return template.replace(COPY_PLACEHOLDER, source_region)


class CopyOptions(BaseModel):
    """Where each image is copied, and how (see the README's "Copies").

    ``regions`` are the destinations; a destination equal to an image's own region is
    skipped for that image. ``kms_key_id`` maps a destination to its key (needs
    ``encrypted``). ``max_concurrent_per_region`` caps the copies pending per destination.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    regions: tuple[Annotated[Region, AfterValidator(_check_known)], ...] = ()
    name_template: str | None = None  # None: the source image's name
    encrypted: StrictBool = False
    kms_key_id: dict[Region, KmsKeyRef] = Field(default_factory=dict)
    copy_tags: StrictBool = False
    tags: dict[TagKey, TagValue] = Field(default_factory=dict)
    max_concurrent_per_region: Annotated[int, Field(strict=True, ge=1, le=10_000)] = 100
    snapshot_copy_completion_minutes: Annotated[int, Field(strict=True)] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.regions)

    @field_validator("regions")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("lists a region twice; list each destination once")
        return value

    @field_validator("name_template")
    @classmethod
    def _name_template(cls, value: str | None) -> str | None:
        if value is not None:
            rendered = copy_template(value, "us-east-1")
            try:
                naming.validate_template(rendered)
            except ValueError as exc:
                raise ValueError(str(exc).replace(repr(rendered), repr(value))) from None
        return value

    @field_validator("snapshot_copy_completion_minutes")
    @classmethod
    def _minutes(cls, value: int | None) -> int | None:
        if value is not None and (not 15 <= value <= 2880 or value % 15):
            raise ValueError(f"must be a multiple of 15 between 15 and 2880 (minutes), got {value}")
        return value

    @field_validator("tags")
    @classmethod
    def _tag_count(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_COPY_TAGS:
            raise ValueError(
                f"at most {MAX_COPY_TAGS} tags (AWS allows 50; fleetimage uses "
                f"{50 - MAX_COPY_TAGS} on a copy)"
            )
        return value

    @model_validator(mode="after")
    def _keys(self) -> Self:
        if self.kms_key_id and not self.encrypted:
            raise ValueError("kms_key_id needs encrypted: true (CopyImage refuses a key otherwise)")
        stray = sorted(set(self.kms_key_id) - set(self.regions))
        if stray:
            raise ValueError(
                f"kms_key_id names {', '.join(stray)}, which is not in copy.regions; "
                "give a key per destination region"
            )
        return self
