"""Name templates: validation, AWS name rules, determinism and uniqueness (property-based)."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetimage.core.naming import (
    is_valid_ami_name,
    new_run_id,
    render_description,
    render_name,
    sanitize_name_part,
    validate_template,
)

START = datetime(2026, 11, 27, 15, 52, 0, tzinfo=UTC)
RUN = "20261127T155200Z-3f9a1c"
DEFAULT = "{tag:Name}-{instance_id}-{run_id}"

instance_ids = st.one_of(
    st.text("0123456789abcdef", min_size=8, max_size=8),
    st.text("0123456789abcdef", min_size=17, max_size=17),
).map(lambda h: f"i-{h}")
run_ids = st.builds(
    lambda ts, h: f"{ts:%Y%m%dT%H%M%SZ}-{h}",
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1)),
    st.text("0123456789abcdef", min_size=6, max_size=6),
)
tag_values = st.one_of(
    st.text(max_size=40),
    # Long values built by repetition: drawing 500 random characters is slow for hypothesis.
    st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=10), st.integers(10, 50)),
    st.sampled_from(["", "Zürich ☃ prod", "a:b*c?d", "x" * 500, "\n\t", "日本語", "--"]),
)
tag_maps = st.dictionaries(st.sampled_from(["Name", "Team", "Env"]), tag_values, max_size=3)
templates = st.sampled_from(
    [
        DEFAULT,
        "{instance_id}-{run_id}",
        "{tag:Name}{tag:Team}{instance_id}{run_id}",
        "backup ({tag:Env}) {region} {account} {instance_id} {date} {time}",
        "{tag:Name}/{tag:Team}/{tag:Env}/{instance_id}/{run_id}/" + "x" * 60,
        "{instance_id}" + "L" * 120 + "{run_id}",  # only hashing can make this fit
        "{tag:Name}-{tag:Name}-{instance_id}-{run_id}",
    ]
)


def _render(template: str, instance_id: str, run_id: str, tags: dict[str, str]) -> str:
    return render_name(
        template,
        instance_id=instance_id,
        region="eu-west-1",
        account="111111111111",
        run_id=run_id,
        started_at=START,
        tags=tags,
    )


# --- validate_template ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [DEFAULT, "{instance_id}-{date}-{time}", "ami {instance_id} [{region}] ({run_id}) @x'y_z."],
)
def test_valid_templates(template: str) -> None:
    validate_template(template)


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{instance_id}-{run_id}-{foo}", "unknown placeholder {foo}"),
        ("{instance_id}-{run_id}-{}", "unknown placeholder"),
        ("{instance_id}-{run_id}-{0}", "unknown placeholder {0}"),
        ("{instance_id}-{run_id}-{tag:}", "bad tag placeholder"),
        ("{instance_id}-{run_id}-{region:>20}", "no format spec"),
        ("{instance_id}-{run_id}-{region!r}", "no format spec"),
        ("{instance_id}-{run_id", "bad template syntax"),
        ("{instance_id}}-{run_id}", "bad template syntax"),
        ("{instance_id}:{run_id}", "':'"),
        ("{instance_id}-{run_id}-é", "'é'"),
        ("{run_id}", "must contain {instance_id}"),
        ("{instance_id}", "must contain {run_id}"),
        ("{instance_id}-{date}", "must contain {run_id}"),
    ],
)
def test_invalid_templates(template: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        validate_template(template)


# --- rendering --------------------------------------------------------------------------------


def test_render_example() -> None:
    name = _render(DEFAULT, "i-0123456789abcdef0", RUN, {"Name": "web 01: frontend"})
    assert name == f"web 01-frontend-i-0123456789abcdef0-{RUN}"


def test_date_time_are_run_start_utc() -> None:
    paris = timezone(timedelta(hours=1))
    name = render_name(
        "{instance_id}-{date}-{time}",
        instance_id="i-01234567",
        region="us-east-1",
        account="1",
        run_id=RUN,
        started_at=datetime(2026, 1, 1, 0, 30, 5, tzinfo=paris),
        tags={},
    )
    assert name == "i-01234567-2025-12-31-233005"


def test_missing_tag_is_empty() -> None:
    assert _render(DEFAULT, "i-01234567", RUN, {}) == f"-i-01234567-{RUN}"


def test_sanitize() -> None:
    assert sanitize_name_part("Zürich ☃ prod") == "Zurich prod"
    assert sanitize_name_part("a:b**c") == "a-b-c"
    assert sanitize_name_part("::x::") == "x"
    assert sanitize_name_part("日本") == ""


def test_long_literal_gets_hash_and_keeps_ids() -> None:
    template = "{instance_id}" + "L" * 120 + "{run_id}"
    name = _render(template, "i-0123456789abcdef0", RUN, {})
    assert len(name) == 128
    assert name.startswith("i-0123456789abcdef0")
    assert RUN in name
    assert re.search(r"-[0-9a-f]{8}$", name)


def test_long_tag_is_cut_not_ids() -> None:
    name = _render(DEFAULT, "i-0123456789abcdef0", RUN, {"Name": "n" * 300})
    assert len(name) == 128
    assert name.endswith(f"-i-0123456789abcdef0-{RUN}")


@settings(max_examples=300)
@given(templates, instance_ids, run_ids, tag_maps)
def test_rendered_names_are_valid_and_deterministic(
    template: str, instance_id: str, run_id: str, tags: dict[str, str]
) -> None:
    name = _render(template, instance_id, run_id, tags)
    assert is_valid_ami_name(name), name
    assert name == _render(template, instance_id, run_id, dict(tags))
    assert instance_id in name  # resume and humans can find the instance in the name
    assert run_id in name or "{run_id}" not in template


@settings(max_examples=300)
@given(templates, instance_ids, instance_ids, run_ids, tag_maps)
def test_distinct_instances_get_distinct_names(
    template: str, a: str, b: str, run_id: str, tags: dict[str, str]
) -> None:
    if a != b:
        assert _render(template, a, run_id, tags) != _render(template, b, run_id, tags)


@settings(max_examples=300)
@given(templates, instance_ids, run_ids, run_ids, tag_maps)
def test_distinct_runs_get_distinct_names(
    template: str, instance_id: str, r1: str, r2: str, tags: dict[str, str]
) -> None:
    if r1 != r2 and "{run_id}" in template:
        assert _render(template, instance_id, r1, tags) != _render(template, instance_id, r2, tags)


def test_render_rejects_invalid_template() -> None:
    with pytest.raises(ValueError):
        _render("{instance_id}", "i-01234567", RUN, {})


# --- descriptions, run ids, name rules --------------------------------------------------------


@given(tag_values)
def test_description_is_bounded_and_clean(value: str) -> None:
    text = render_description(
        "image of {instance_id} named {tag:Name} " * 3,
        instance_id="i-01234567",
        region="us-east-1",
        account="1",
        run_id=RUN,
        started_at=START,
        tags={"Name": value},
    )
    assert len(text) <= 255
    assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in text)


def test_new_run_id() -> None:
    run_id = new_run_id(START)
    assert re.fullmatch(r"20261127T155200Z-[0-9a-f]{6}", run_id)
    assert is_valid_ami_name(run_id)


@pytest.mark.parametrize(
    ("name", "ok"),
    [("abc", True), ("ab", False), ("a" * 128, True), ("a" * 129, False), ("a:b", False)],
)
def test_is_valid_ami_name(name: str, ok: bool) -> None:
    assert is_valid_ami_name(name) is ok
