"""Reading a fleet config: YAML (``yaml.safe_load`` only) or already-parsed data.

``load_config(path)`` and ``parse_config(data)`` raise nothing but
:class:`~fleetimage.core.errors.ConfigError`, in one line naming the file, the field and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from fleetimage.config.errors import describe_value, one_line
from fleetimage.config.models import FleetConfig, validate
from fleetimage.core.errors import ConfigError

__all__ = ["load_config", "parse_config"]


def load_config(path: str | os.PathLike[str]) -> FleetConfig:
    """Read and validate a YAML fleet config; every problem is a one-line ConfigError."""
    file = os.fspath(path)
    try:
        text = Path(file).read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=file) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", file=file) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=file) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(one_line(f"invalid YAML{where}: {problem}"), file=file) from None
    if isinstance(data, dict) and "name" not in data:
        # The fleet's name defaults to the file's stem: fleet.yaml -> "fleet".
        data = {"name": Path(file).stem, **data}
    return parse_config(data, source=file)


def parse_config(data: object, *, source: str = "<config>") -> FleetConfig:
    """Validate already-parsed config data (a mapping); raise ConfigError naming ``source``."""
    if data is None:
        raise ConfigError("config is empty; expected a mapping with a 'targets' key", file=source)
    if not isinstance(data, dict):
        raise ConfigError(
            f"top level must be a mapping with a 'targets' key, got {describe_value(data)}",
            file=source,
        )
    if "source" in data:
        raise ConfigError("unknown key 'source'", file=source)
    return validate({**data, "source": source}, source=source)
