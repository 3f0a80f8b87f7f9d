"""pydantic ValidationError → one-line ConfigError naming the file, the field and the fix."""

from __future__ import annotations

import difflib
import re
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from fleetimage.core.errors import ConfigError

__all__ = [
    "TAG_PREFIX",
    "FieldError",
    "describe_value",
    "format_path",
    "one_line",
    "to_config_error",
]

# pydantic puts a tagged union's tag in an error's location; tags start with this (never a
# key a user writes) and are left out of the field path.
TAG_PREFIX = "kind:"


class FieldError(ValueError):
    """A ValueError that knows the sub-path (below the validated value) it is about."""

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.path = path


def one_line(text: str) -> str:
    return " ".join(text.split())


def describe_value(value: object) -> str:
    names = {dict: "a mapping", list: "a list", tuple: "a list", str: "a string", bool: "a boolean"}
    name = names.get(type(value), "an integer" if isinstance(value, int) else None)
    if name is None:
        name = "a number" if isinstance(value, float) else type(value).__name__
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{name} {shown}" if value is not None else "nothing (null)"


def format_path(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for "the dict key itself"
            continue
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif not isinstance(part, str):
            out += f"[{part!r}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional to the interesting type."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin is Union or origin is types.UnionType:
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _keys_at(root: type[BaseModel], loc: tuple[str | int, ...]) -> tuple[str, ...]:
    """The keys the model at ``loc`` accepts (for did-you-mean); () when unknown."""
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return ()
            tp = field.annotation
        elif get_origin(tp) in (tuple, list):
            tp = get_args(tp)[0]
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        else:
            return ()
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tuple(name for name in tp.model_fields if name != "source")
    return ()


def _non_string_key(loc: tuple[Any, ...]) -> tuple[int, object] | None:
    """Where ``loc`` passes through a mapping key YAML read as a bool, null or number.

    pydantic marks a failing dict key with a following ``"[key]"``; list indexes are ints
    without it. Keys that reached us as bool/None/float are never list indexes.
    """
    for index, part in enumerate(loc):
        marked = index + 1 < len(loc) and loc[index + 1] == "[key]"
        if isinstance(part, bool) or part is None or isinstance(part, float):
            return index, part
        if marked and not isinstance(part, str):
            return index, part
    return None


def to_config_error(exc: ValidationError, source: str, root: type[BaseModel]) -> ConfigError:
    """The first validation error as one line naming the file, the dotted field and the fix."""
    errors = exc.errors()
    # The first error in field order is the one to fix first, except that a misspelt key
    # also shows up as "missing": report the unknown key, which names the real mistake.
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc: tuple[str | int, ...] = tuple(
        p for p in err["loc"] if not (isinstance(p, str) and p.startswith(TAG_PREFIX))
    )
    if loc[:1] == ("max_errors",) and len(loc) == 2:
        loc = loc[:1]  # count/percent are internal; the user wrote one scalar
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    odd_key = _non_string_key(loc)
    if odd_key is not None:
        index, key = odd_key
        loc = loc[:index]
        what = {bool: "a boolean", type(None): "null"}.get(type(key), "a number")
        message = (
            f'key {key!r} was read by YAML as {what}; quote it (e.g. "{key}") to use it as a name'
        )
    elif kind == "extra_forbidden":
        key, loc = loc[-1], loc[:-1]
        known = _keys_at(root, loc)
        hint = difflib.get_close_matches(str(key), known, n=1)
        if hint:
            message = f"unknown key {key!r} (did you mean {hint[0]!r}?)"
        else:
            message = f"unknown key {key!r} (allowed: {', '.join(known) or 'none'})"
    elif kind == "missing":
        message = "required key is missing"
    elif kind in ("value_error", "assertion_error"):
        cause = ctx.get("error")
        message = str(cause) if cause is not None else err["msg"]
        if isinstance(cause, FieldError):
            loc = loc + cause.path
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        message = f"expected a mapping, got {describe_value(value)}"
    elif kind in ("tuple_type", "list_type"):
        message = f"expected a list, got {describe_value(value)}"
    elif kind == "string_type":
        message = f"expected a string, got {describe_value(value)}"
    elif kind in ("int_type", "int_from_float", "int_parsing"):
        message = f"expected a whole number, got {describe_value(value)}"
        if isinstance(value, str):
            message += " (remove the quotes)"
    elif kind in ("float_type", "float_parsing", "finite_number"):
        message = f"expected a finite number, got {describe_value(value)}"
        if isinstance(value, str):
            message += " (remove the quotes)"
    elif kind == "bool_type":
        message = f"expected true or false, got {describe_value(value)}"
    elif kind in ("greater_than", "greater_than_equal", "less_than_equal", "less_than"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<"}.get(kind, "<=")
        bound = next(iter(ctx.values()), "?")
        message = f"must be {op} {bound}, got {value!r}"
    else:
        message = f"{err['msg']} (got {describe_value(value)})"
    return ConfigError(one_line(message), file=source, field=format_path(loc) or None)
