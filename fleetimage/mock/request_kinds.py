"""What a counted request asked for, where one action serves several purposes.

Issue 16's budget for DescribeImages is about the waiter's status polls; the lookups a client
makes by name after an ambiguous or lost CreateImage answer (or a duplicate name) are another
cost, and so is listing a run's images before it starts. The benchmarks must tell them apart,
so the mock counts DescribeImages requests by kind as well as by outcome
(:attr:`~fleetimage.mock.server.MockEC2.request_kinds`, ``GET /_mock/request_kinds``):

``poll``     by id: ``ImageId.N`` or an ``image-id`` filter (a waiter polling images it made)
``lookup``   by name: a ``name`` filter, whatever else the request carries
``listing``  neither: owner or tag filters only (adoption's listing of a run's images, prune's
             census). A client that polled by its run's tags alone would land here too.

Classifying reads a handful of keys of the already parsed form, never the id lists: the mock's
CPU is shared with the contenders it serves.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["describe_images_kind", "request_kind"]

# A request with more filters than this is not one any client here sends; only these are read.
_MAX_FILTERS = 50


def describe_images_kind(params: Mapping[str, str]) -> str:
    """``poll``, ``lookup`` or ``listing`` for a DescribeImages request's form."""
    by_id = "ImageId.1" in params
    for n in range(1, _MAX_FILTERS + 1):
        name = params.get(f"Filter.{n}.Name")
        if name is None:
            break
        if name == "name":
            return "lookup"
        by_id = by_id or name == "image-id"
    return "poll" if by_id else "listing"


def request_kind(action: str, params: Mapping[str, str]) -> str | None:
    """The request's kind, or None for an action counted by outcome only."""
    if action == "DescribeImages":
        return describe_images_kind(params)
    return None
