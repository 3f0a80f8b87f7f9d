"""The cut EC2 model is kept once per process and on disk, and a bad cache is never trusted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.loaders import Loader

from fleetimage.aws import model as model_module
from fleetimage.aws.model import CACHE_DIR_ENV, LeanLoader, model_cache_dir

OPERATIONS = frozenset({"CreateImage", "DescribeImages", "DescribeInstances"})


@pytest.fixture
def full_loads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every read of a full EC2 model from botocore's files, and a process memo emptied
    before and after (as in a new process)."""
    loads: list[str] = []
    real = Loader.load_service_model

    def counted(self: Loader, service: str, type_name: str, api_version: Any = None) -> Any:
        if service == "ec2" and type_name == "service-2":
            loads.append(str(api_version))
        return real(self, service, type_name, api_version)

    monkeypatch.setattr(Loader, "load_service_model", counted)
    model_module._LEAN_MODELS.clear()
    yield loads
    model_module._LEAN_MODELS.clear()


def _load(operations: frozenset[str] = OPERATIONS) -> Any:
    return LeanLoader([], operations=operations).load_service_model("ec2", "service-2")


def _cached_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("ec2-*.json"))


def test_a_new_process_reads_the_cut_model_from_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, full_loads: list[str]
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    first = _load()
    assert len(full_loads) == 1
    [cached] = _cached_files(tmp_path)
    assert set(first["operations"]) == OPERATIONS
    assert "ModifyInstanceAttribute" not in first["operations"]

    model_module._LEAN_MODELS.clear()  # a new process: only the disk knows the model
    second = _load()
    assert len(full_loads) == 1, "the full model was read again despite the cache"
    assert second == json.loads(json.dumps(first))
    assert _cached_files(tmp_path) == [cached]


def test_every_loader_of_a_process_shares_one_cut(
    monkeypatch: pytest.MonkeyPatch, full_loads: list[str]
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, "")  # no disk: the process memo alone
    assert _load() is _load()
    assert len(full_loads) == 1


def test_another_cut_is_another_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, full_loads: list[str]
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    _load()
    other = _load(OPERATIONS | {"DeregisterImage"})
    assert "DeregisterImage" in other["operations"]
    assert len(_cached_files(tmp_path)) == 2
    assert len(full_loads) == 2


@pytest.mark.parametrize(
    "content",
    [
        '{"operations": {"Cre',
        '["not", "a", "model"]',
        '{"operations": {"TerminateInstances": {}}, "shapes": {}}',
    ],
    ids=["truncated", "not-a-model", "foreign-operation"],
)
def test_a_bad_cache_file_is_ignored_and_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, full_loads: list[str], content: str
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    good = _load()
    [cached] = _cached_files(tmp_path)
    cached.write_text(content)
    model_module._LEAN_MODELS.clear()
    assert _load() == json.loads(json.dumps(good))
    assert len(full_loads) == 2
    assert json.loads(cached.read_text()) == json.loads(json.dumps(good))


def test_an_unusable_cache_directory_costs_only_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, full_loads: list[str]
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv(CACHE_DIR_ENV, str(blocker / "models"))
    assert set(_load()["operations"]) == OPERATIONS
    assert list(tmp_path.iterdir()) == [blocker]


def test_cache_directory_knob(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, "")
    assert model_cache_dir() is None
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    assert model_cache_dir() == tmp_path
    monkeypatch.delenv(CACHE_DIR_ENV)
    default = model_cache_dir()
    assert default is not None and default.parts[-2:] == ("fleetimage", "models")


def test_a_model_file_that_cannot_be_named_is_cut_once_and_kept_off_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, full_loads: list[str]
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(LeanLoader, "_model_file", lambda self, name: None)
    assert _load() is _load()
    assert len(full_loads) == 1
    assert _cached_files(tmp_path) == []
