"""EC2's service model cut to what fleetimage calls and reads (see :class:`LeanLoader`).

A client builds a method per operation of its model, and botocore parses an answer member by
member along the output shape: with the model cut to our operations, and the shapes we read
cut to the members we read, a client costs a fraction to create and an answer to parse, and
the full model (~20 MB of objects) is not kept for the run's life.
"""

from __future__ import annotations

import threading
from typing import Any

from botocore.loaders import Loader

__all__ = ["DESCRIBED_IMAGE_MEMBERS", "DESCRIBED_INSTANCE_MEMBERS", "LeanLoader"]

# What discovery reads of an instance (engine/discovery.py) and of a reservation. botocore
# parses an answer member by member along the output shape, and an instance has ~60 members
# (block devices, interfaces, ...): with the shape cut to these, DescribeInstances answers
# cost a fraction of the CPU. Add a member here before reading it there.
DESCRIBED_INSTANCE_MEMBERS = frozenset({"InstanceId", "State", "Tags"})
_DESCRIBED_RESERVATION_MEMBERS = frozenset({"Instances"})
# Likewise what the waiter, the lookups by name and prune read of a DescribeImages image.
DESCRIBED_IMAGE_MEMBERS = frozenset(
    {
        "ImageId",
        "Name",
        "State",
        "StateReason",
        "Tags",
        "CreationDate",
        "BlockDeviceMappings",
        "LastLaunchedTime",
        "DeregistrationProtection",
    }
)


class LeanLoader(Loader):  # type: ignore[misc]
    """botocore's loader, with EC2's model cut to our operations and the shapes they reach, and
    its Instance, Reservation and Image output shapes to what we read (no request of ours sends
    them). The full model (~20 MB of objects for the run's whole life) is not kept."""

    def __init__(self, extra_search_paths: list[str], *, operations: frozenset[str]) -> None:
        super().__init__(extra_search_paths=extra_search_paths)
        self.operations = operations
        self._lean: dict[tuple[str, str, str | None], Any] = {}
        # aiobotocore warms the cache up in worker threads, one per client being created.
        self._cutting = threading.Lock()

    def load_service_model(
        self, service_name: str, type_name: str, api_version: str | None = None
    ) -> Any:
        if service_name == "ec2" and type_name == "examples-1":
            return {"version": "1.0", "examples": {}}  # only botocore's docs read them
        if service_name != "ec2" or type_name != "service-2":
            return super().load_service_model(service_name, type_name, api_version)
        key = (service_name, type_name, api_version)
        with self._cutting:
            if key not in self._lean:
                model = super().load_service_model(service_name, type_name, api_version)
                self._lean[key] = _cut_ec2_model(model, self.operations)
                # botocore's instance cache holds the full model (as the file's data and as
                # the model): only the lean one is read from now on, so let the full one go.
                for cached in [k for k, v in list(self._cache.items()) if _is_full(k, v, model)]:
                    self._cache.pop(cached, None)
            return self._lean[key]


def _is_full(key: tuple[Any, ...], value: Any, model: Any) -> bool:
    if key[0] == "load_data_with_path":
        return isinstance(value, tuple) and bool(value) and value[0] is model
    return key[0] == "load_service_model" and value is model


def _cut_ec2_model(model: Any, keep_operations: frozenset[str]) -> dict[str, Any]:
    shapes = dict(model["shapes"])
    for name, keep in (
        ("Instance", DESCRIBED_INSTANCE_MEMBERS),
        ("Reservation", _DESCRIBED_RESERVATION_MEMBERS),
        ("Image", DESCRIBED_IMAGE_MEMBERS),
    ):
        members = shapes[name]["members"]
        shapes[name] = {**shapes[name], "members": {k: members[k] for k in keep}}
    operations = {k: v for k, v in model["operations"].items() if k in keep_operations}
    # Only the shapes our operations reach (input, output, errors, and what they contain).
    todo = [
        ref["shape"]
        for op in operations.values()
        for ref in (op.get("input"), op.get("output"), *op.get("errors", ()))
        if ref
    ]
    reached: dict[str, Any] = {}
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        shape = reached[name] = shapes[name]
        refs = [*shape.get("members", {}).values(), shape.get("member"), shape.get("key")]
        todo.extend(ref["shape"] for ref in (*refs, shape.get("value")) if ref)
    return {**model, "operations": operations, "shapes": reached}
