"""Image name templates and AWS's AMI name rules.

The AMI name is fleetimage's idempotency key (CreateImage has no ClientToken; a name is unique
per account and region), so :func:`render_name` is a pure function: the same (template,
instance, run) always yields the same valid name, which is how resume finds images created
before a crash. Templates use ``str.format`` syntax with these placeholders::

    {instance_id} {region} {account} {run_id} {date} {time} {tag:KEY}

``date`` is ``YYYY-MM-DD`` and ``time`` is ``HHMMSS``, both the run's start in UTC (``:`` is not
allowed in AMI names). A missing tag renders as the empty string.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import string
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "AMI_NAME_MAX",
    "AMI_NAME_MIN",
    "DESCRIPTION_MAX",
    "PLACEHOLDERS",
    "is_valid_ami_name",
    "new_run_id",
    "render_description",
    "render_name",
    "sanitize_name_part",
    "validate_description_template",
    "validate_run_id",
    "validate_template",
]

AMI_NAME_MIN = 3
AMI_NAME_MAX = 128
DESCRIPTION_MAX = 255
PLACEHOLDERS = ("instance_id", "region", "account", "run_id", "date", "time", "tag:KEY")

# Characters CreateImage accepts in a name (EC2 API reference, CreateImage.Name).
_AMI_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "()[] ./-'@_")
_AMI_NAME_RE = re.compile(r"^[A-Za-z0-9()\[\] ./\-'@_]{3,128}$")
_FORBIDDEN_RUN_RE = re.compile(r"[^A-Za-z0-9()\[\] ./\-'@_]+")
# A dash with any spaces/dashes around it is one dash ("web 01: x" -> "web 01- x" -> "web 01-x").
_DASHES_RE = re.compile(r"[- ]*-[- ]*")
_SPACES_RE = re.compile(r" {2,}")
_SIMPLE_FIELDS = frozenset({"instance_id", "region", "account", "run_id", "date", "time"})
# Parts that make a name unique; truncation never touches them.
_PROTECTED_FIELDS = frozenset({"instance_id", "run_id"})
_HASH_LEN = 8
_PAD_CHAR = "_"


@dataclass(frozen=True, slots=True)
class _Part:
    """A literal run of text (``field is None``) or one placeholder."""

    literal: str = ""
    field: str | None = None  # "instance_id", ..., or "tag"
    tag_key: str = ""


@functools.lru_cache(maxsize=64)
def _parse(template: str) -> tuple[_Part, ...]:
    """Split a template into parts; ValueError on bad syntax or an unknown placeholder."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:  # unbalanced braces and the like
        raise ValueError(f"bad template syntax in {template!r}: {exc}") from None
    parts: list[_Part] = []
    for literal, field, spec, conversion in parsed:
        if literal:
            parts.append(_Part(literal=literal))
        if field is None:
            continue
        if field == "tag":
            key = spec or ""
            if not key or conversion is not None or "{" in key or "}" in key:
                raise ValueError(
                    f"bad tag placeholder in {template!r}: write {{tag:KEY}}, e.g. {{tag:Name}}"
                )
            parts.append(_Part(field="tag", tag_key=key))
            continue
        if field not in _SIMPLE_FIELDS:
            shown = field if field else "{}"
            raise ValueError(
                f"unknown placeholder {{{shown}}} in {template!r} "
                f"(allowed: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})"
            )
        if spec or conversion is not None:
            # Format specs (padding, !r) would make names depend on Python formatting rules.
            raise ValueError(
                f"placeholder {{{field}}} in {template!r} takes no format spec or conversion"
            )
        parts.append(_Part(field=field))
    return tuple(parts)


def validate_description_template(template: str) -> None:
    """Check syntax and placeholders of a description template; raise ValueError if bad."""
    _parse(template)


def validate_template(template: str) -> None:
    """Check that a name template renders only valid, unique AMI names; raise ValueError if not.

    Unique per instance needs ``{instance_id}``; unique per run needs ``{run_id}`` or both
    ``{date}`` and ``{time}`` — without it a second run collides with the first run's images.
    """
    parts = _parse(template)
    bad = sorted(
        {c for p in parts if p.field is None for c in p.literal if c not in _AMI_NAME_CHARS}
    )
    if bad:
        raise ValueError(
            f"template {template!r} contains characters AMI names refuse: "
            f"{' '.join(repr(c) for c in bad)} "
            "(allowed: letters, digits, ( ) [ ] space . / - ' @ _)"
        )
    fields = {p.field for p in parts if p.field is not None}
    if "instance_id" not in fields:
        raise ValueError(
            f"template {template!r} must contain {{instance_id}}: names must be unique per instance"
        )
    if "run_id" not in fields and not {"date", "time"} <= fields:
        raise ValueError(
            f"template {template!r} must contain {{run_id}} (or both {{date}} and {{time}}): "
            "otherwise a second run collides with the first run's image names"
        )


def is_valid_ami_name(name: str) -> bool:
    """True if EC2 accepts ``name`` as an AMI name (3-128 chars of the allowed set)."""
    return _AMI_NAME_RE.fullmatch(name) is not None


def sanitize_name_part(value: str) -> str:
    """Make a free-form value (a tag value) safe inside an AMI name.

    Unicode is folded to ASCII (NFKD, then non-ASCII dropped: "Zürich" -> "Zurich"); every run
    of refused characters becomes one ``-``; runs of dashes (with spaces around them) and of
    spaces collapse to one; edge dashes and spaces go.
    """
    ascii_only = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    spaced = _SPACES_RE.sub(" ", _FORBIDDEN_RUN_RE.sub("-", ascii_only))
    dashed = _DASHES_RE.sub("-", spaced)
    return dashed.strip("- ")


def _utc(started_at: datetime) -> datetime:
    # A naive datetime is taken to be UTC already (documented); an aware one is converted.
    return (
        started_at.replace(tzinfo=UTC) if started_at.tzinfo is None else started_at.astimezone(UTC)
    )


RUN_ID_MAX = 40
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9-]{1,40}$")


def validate_run_id(run_id: str) -> None:
    """A run id a user gives (``--run-id``): letters, digits and ``-``, at most 40 characters,
    so it fits in AMI names and tags as is. ValueError says what is wrong."""
    if not _RUN_ID_RE.fullmatch(run_id):
        if not run_id:
            why = "it is empty"
        elif len(run_id) > RUN_ID_MAX:
            why = f"it has {len(run_id)} characters (at most {RUN_ID_MAX})"
        else:
            bad = sorted({c for c in run_id if not (c.isascii() and (c.isalnum() or c == "-"))})
            why = f"it contains {' '.join(repr(c) for c in bad)}"
        raise ValueError(
            f"run id {run_id!r} is not valid: {why}; use letters, digits and -, at most "
            f"{RUN_ID_MAX} characters"
        )


def new_run_id(started_at: datetime) -> str:
    """A new run id like ``20261127T155200Z-3f9a1c``: UTC start plus 6 random hex digits."""
    return f"{_utc(started_at):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _values(
    *,
    instance_id: str,
    region: str,
    account: str,
    run_id: str,
    started_at: datetime,
) -> dict[str, str]:
    start = _utc(started_at)
    return {
        "instance_id": instance_id,
        "region": region,
        "account": account,
        "run_id": run_id,
        "date": f"{start:%Y-%m-%d}",
        "time": f"{start:%H%M%S}",
    }


def _water_fill(lengths: list[int], budget: int) -> list[int]:
    """Largest per-part cap L with sum(min(len, L)) <= budget; returns the capped lengths.

    Shrinking the longest parts first keeps short tag values readable and is deterministic.
    """
    if sum(lengths) <= budget:
        return lengths
    lo, hi = 0, max(lengths)
    while lo < hi:  # binary search for the largest cap that fits
        mid = (lo + hi + 1) // 2
        if sum(min(n, mid) for n in lengths) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return [min(n, lo) for n in lengths]


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_HASH_LEN]


def render_name(
    template: str,
    *,
    instance_id: str,
    region: str,
    account: str,
    run_id: str,
    started_at: datetime,
    tags: Mapping[str, str],
) -> str:
    """Render a valid, deterministic AMI name; raise ValueError if the template is invalid.

    Too long: tag-derived parts shrink first (longest first); if that is not enough, the other
    non-unique parts shrink too and ``-<8 hex of sha256(full name)>`` is appended, so names
    that differed only in the cut-off text stay distinct. ``{instance_id}`` and ``{run_id}``
    are never cut. Too short (cannot happen with a valid template): padded with ``_``.
    """
    validate_template(template)
    values = _values(
        instance_id=instance_id,
        region=region,
        account=account,
        run_id=run_id,
        started_at=started_at,
    )
    texts: list[str] = []
    kinds: list[str] = []  # "protected", "tag" or "other"
    for part in _parse(template):
        if part.field is None:
            texts.append(part.literal)
            kinds.append("other")
        elif part.field == "tag":
            texts.append(sanitize_name_part(tags.get(part.tag_key, "")))
            kinds.append("tag")
        else:
            # Sanitising is a no-op for well-formed ids; it guards against odd inputs.
            texts.append(_FORBIDDEN_RUN_RE.sub("-", values[part.field]))
            kinds.append("protected" if part.field in _PROTECTED_FIELDS else "other")

    full = "".join(texts)
    if len(full) > AMI_NAME_MAX:
        texts = _shrink(texts, kinds, "tag", AMI_NAME_MAX)
        if len("".join(texts)) > AMI_NAME_MAX:
            suffix = "-" + _short_hash(full)
            texts = _shrink(texts, kinds, "other", AMI_NAME_MAX - len(suffix))
            # Only absurd ids (run_id > ~100 chars) get here still too long: hard cut.
            texts = ["".join(texts)[: AMI_NAME_MAX - len(suffix)], suffix]
    name = "".join(texts)
    return name.ljust(AMI_NAME_MIN, _PAD_CHAR)


def _shrink(texts: list[str], kinds: list[str], kind: str, budget: int) -> list[str]:
    """Cut the parts of ``kind`` (water-filling) so the whole fits in ``budget`` if possible."""
    fixed = sum(len(t) for t, k in zip(texts, kinds, strict=True) if k != kind)
    idx = [i for i, k in enumerate(kinds) if k == kind]
    caps = _water_fill([len(texts[i]) for i in idx], max(0, budget - fixed))
    out = list(texts)
    for i, cap in zip(idx, caps, strict=True):
        out[i] = texts[i][:cap]
    return out


def render_description(
    template: str,
    *,
    instance_id: str,
    region: str,
    account: str,
    run_id: str,
    started_at: datetime,
    tags: Mapping[str, str],
) -> str:
    """Render an image description: control characters dropped, at most 255 characters."""
    values = _values(
        instance_id=instance_id,
        region=region,
        account=account,
        run_id=run_id,
        started_at=started_at,
    )
    out: list[str] = []
    for part in _parse(template):
        if part.field is None:
            out.append(part.literal)
        elif part.field == "tag":
            out.append(tags.get(part.tag_key, ""))
        else:
            out.append(values[part.field])
    text = "".join(out)
    if not text.isprintable():  # printable text has no Cc/Cf character: the common case
        text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf"))
    return text[:DESCRIPTION_MAX]
