"""What the mock's request counters say about a run (``/_mock/counters`` and
``/_mock/request_kinds``, read by :class:`benchmarks.mockproc.MockProcess`)."""

from __future__ import annotations

from typing import Any

__all__ = ["count", "describe_images_split"]


def count(counters: list[dict[str, Any]], action: str, outcome: str | None = None) -> int:
    return sum(
        c["count"]
        for c in counters
        if c["action"] == action and (outcome is None or c["outcome"] == outcome)
    )


def describe_images_split(kinds: list[dict[str, Any]]) -> dict[str, int]:
    """DescribeImages by what it was for and how it ended (the mock's request kinds):

    * ``describe_images_polls``: polls by id (``ImageIds`` or the ``image-id`` filter) that the
      mock answered: the waiter's status polls, what issue 16's per-image budget counts;
    * ``describe_images_lookups``: by-name lookups, however they ended (the engine's, after an
      ambiguous or lost CreateImage answer or a duplicate name);
    * ``describe_images_listings``: listings by owner or tag, however they ended (adoption);
    * ``describe_images_throttled``: any kind, refused by the bucket (RequestLimitExceeded);
    * ``describe_images_failed``: any kind, not answered with data for another reason: an
      injected fault (5xx, injected throttle, reset), a lost answer, an error answer (an
      unknown id in ``ImageIds``), an outage or expired credentials.
    """

    def total(kind: str | None = None, outcomes: tuple[str, ...] | None = None) -> int:
        return sum(
            c["count"]
            for c in kinds
            if c["action"] == "DescribeImages"
            and (kind is None or c["kind"] == kind)
            and (outcomes is None or c["outcome"] in outcomes)
        )

    every = total()
    ok, throttled = total(outcomes=("ok",)), total(outcomes=("throttled",))
    return {
        "describe_images_polls": total("poll", ("ok",)),
        "describe_images_lookups": total("lookup"),
        "describe_images_listings": total("listing"),
        "describe_images_throttled": throttled,
        "describe_images_failed": every - ok - throttled,
    }
