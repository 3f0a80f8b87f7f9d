"""EC2's service model cut to what fleetimage calls and reads (see :class:`LeanLoader`).

A client builds a method per operation of its model, and botocore parses an answer member by
member along the output shape: with the model cut to our operations, and the shapes we read
cut to the members we read, a client costs a fraction to create and an answer to parse, and
the full model (~20 MB of objects) is not kept for the run's life.

Reading the full model costs ~0.16 s of CPU (a 1 MB gzipped JSON), and it is read before a
lane's first request: the cut model (~0.1 MB) is kept once per process and on disk, in the
user cache directory (``$FLEETIMAGE_CACHE_DIR`` overrides it; set it empty to keep nothing on
disk), under a name derived from everything the cut depends on: botocore's version, the full
model's file (path, size, modification time) and the cut itself. A cache that cannot be read
or written is ignored: the model is then cut from botocore's file, as without a cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import botocore
import platformdirs
from botocore.loaders import Loader

__all__ = [
    "CACHE_DIR_ENV",
    "DESCRIBED_IMAGE_MEMBERS",
    "DESCRIBED_INSTANCE_MEMBERS",
    "LeanLoader",
    "model_cache_dir",
]

CACHE_DIR_ENV = "FLEETIMAGE_CACHE_DIR"
# Part of every cached model's name: bump it when _cut_ec2_model changes what it keeps.
_CUT_VERSION = 1

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
        # By model name: its cache key (None: no file to name) and its key in _LEAN_MODELS.
        # Worked out once: every client made asks for its model again.
        self._keys: dict[str, tuple[str | None, str]] = {}

    def load_service_model(
        self, service_name: str, type_name: str, api_version: str | None = None
    ) -> Any:
        if service_name == "ec2" and type_name == "examples-1":
            return {"version": "1.0", "examples": {}}  # only botocore's docs read them
        if service_name != "ec2" or type_name != "service-2":
            return super().load_service_model(service_name, type_name, api_version)
        if api_version is None:
            api_version = self.determine_latest_version(service_name, type_name)
        name = f"{service_name}/{api_version}/{type_name}"
        if name not in self._keys:
            source = self._model_file(name)
            # None: a model file we cannot name; it is cut once per process, never kept on disk.
            key = _cut_key(source, self.operations) if source is not None else None
            self._keys[name] = (key, key or f"{name}:{sorted(self.operations)}")
        key, memo = self._keys[name]
        # Models are loaded in worker threads (aws/loading.py), one per loader: with several
        # loaders (sessions made apart), one thread cuts, the others wait for its model.
        with _CUTTING:
            lean = _LEAN_MODELS.get(memo)
            if lean is None and key is not None:
                lean = _read_cached(key, self.operations)
            if lean is None:
                model = super().load_service_model(service_name, type_name, api_version)
                lean = _cut_ec2_model(model, self.operations)
                # botocore's instance cache holds the full model (as the file's data and as
                # the model): only the lean one is read from now on, so let the full one go.
                for cached in [k for k, v in list(self._cache.items()) if _is_full(k, v, model)]:
                    self._cache.pop(cached, None)
                if key is not None:
                    _write_cached(key, lean)
            _LEAN_MODELS[memo] = lean
            return lean

    def _model_file(self, name: str) -> Path | None:
        """The file botocore would read ``name`` from (its search paths in order, ``.json``
        before ``.json.gz``, as its JSONFileLoader), or None if there is none."""
        for root in self.search_paths:
            for suffix in (".json", ".json.gz"):
                path = Path(root, name + suffix)
                if path.is_file():
                    return path
        return None


# The cut models of this process: every session's loader reads the same one.
_LEAN_MODELS: dict[str, Any] = {}
_CUTTING = threading.Lock()


def model_cache_dir() -> Path | None:
    """Where cut models are kept: ``$FLEETIMAGE_CACHE_DIR`` (empty: nowhere), else the user
    cache directory's ``models``."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override is not None:
        return Path(override).expanduser() if override else None
    return Path(platformdirs.user_cache_dir("fleetimage")) / "models"


def _cut_key(source: Path, operations: frozenset[str]) -> str | None:
    try:
        stat = source.stat()
    except OSError:
        return None
    what = [
        _CUT_VERSION,
        botocore.__version__,
        str(source.resolve()),
        stat.st_size,
        stat.st_mtime_ns,
        sorted(operations),
        sorted(DESCRIBED_INSTANCE_MEMBERS),
        sorted(_DESCRIBED_RESERVATION_MEMBERS),
        sorted(DESCRIBED_IMAGE_MEMBERS),
    ]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:32]


def _read_cached(key: str, operations: frozenset[str]) -> Any:
    directory = model_cache_dir()
    if directory is None:
        return None
    try:
        model = json.loads((directory / f"ec2-{key}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    # The name says what it was cut from; a file that is not such a model is ignored.
    if not (
        isinstance(model, dict)
        and isinstance(model.get("shapes"), dict)
        and isinstance(model.get("operations"), dict)
        and set(model["operations"]) <= operations
    ):
        return None
    return model


def _write_cached(key: str, model: Any) -> None:
    directory = model_cache_dir()
    if directory is None:
        return
    with contextlib.suppress(OSError):
        directory.mkdir(parents=True, exist_ok=True)
        # Written whole, then renamed into place: a reader never sees half a file, and two
        # processes writing the same model at once each rename a complete one.
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".ec2-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(model, out, separators=(",", ":"))
            os.replace(tmp, directory / f"ec2-{key}.json")
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


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
