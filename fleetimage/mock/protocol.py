"""The EC2/STS Query protocol on the wire: form parsing, SigV4 scope, XML answers and errors.

Requests are ``application/x-www-form-urlencoded`` bodies (``Action=...&Version=...``) with
flattened lists (``InstanceId.1``, ``Filter.1.Value.1``). Answers are XML built from string
templates (the hot path must stay lean); every text value goes through :func:`esc`.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

__all__ = [
    "EC2_NS",
    "STS_NS",
    "ApiError",
    "Params",
    "bool_param",
    "ec2_error",
    "ec2_ok",
    "esc",
    "filters",
    "has_wildcard",
    "indexed",
    "iso",
    "items",
    "parse_credential_scope",
    "parse_form",
    "request_id",
    "struct_list",
    "sts_error",
    "sts_ok",
    "tag_set",
    "wildcard",
]

EC2_NS = "http://ec2.amazonaws.com/doc/2016-11-15/"
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"

Params = Mapping[str, str]

_SCOPE_RE = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request")
_REQ_IDS = itertools.count(1)


class ApiError(Exception):
    """An EC2/STS error answer: ``code``, ``message`` and HTTP ``status``."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def parse_form(body: bytes) -> dict[str, str]:
    """Decode a Query-protocol body into a flat dict (later duplicates win)."""
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def parse_credential_scope(authorization: str | None) -> tuple[str, str, str] | None:
    """``(access_key_id, region, service)`` from a SigV4 ``Authorization`` header, or None.

    The signature itself is not verified: the mock does not know the secrets.
    """
    if not authorization or not authorization.startswith("AWS4-HMAC-SHA256"):
        return None
    match = _SCOPE_RE.search(authorization)
    if match is None:
        return None
    return match.group(1), match.group(3), match.group(4)


def request_id() -> str:
    n = next(_REQ_IDS)
    return f"6d0c7a1e-{(n >> 32) & 0xFFFF:04x}-4{(n >> 20) & 0xFFF:03x}-8000-{n:012x}"


def esc(value: object) -> str:
    return escape(str(value))


def iso(ts: float) -> str:
    """EC2's timestamp format: ``2026-11-27T10:00:00.000Z``."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def bool_param(params: Params, name: str) -> bool:
    value = params.get(name)
    if value is None:
        return False
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0", ""):
        return False
    raise ApiError("InvalidParameterValue", f"Value ({value}) for parameter {name} is invalid.")


def indexed(params: Params, prefix: str) -> list[str]:
    """Values of a flattened scalar list ``prefix.1``, ``prefix.2``... ordered by index."""
    dotted = prefix + "."
    found: list[tuple[int, str]] = []
    for key, value in params.items():
        if key.startswith(dotted):
            rest = key[len(dotted) :]
            if rest.isdigit():
                found.append((int(rest), value))
    found.sort()
    return [value for _, value in found]


def struct_list(params: Params, prefix: str) -> list[dict[str, str]]:
    """Members of a flattened list of structures ``prefix.N.Field[.M...]`` ordered by N.

    Each member is a dict of the remaining key (``Field`` or ``Field.M``) to value.
    """
    dotted = prefix + "."
    groups: dict[int, dict[str, str]] = {}
    for key, value in params.items():
        if key.startswith(dotted):
            index, _, sub = key[len(dotted) :].partition(".")
            if index.isdigit() and sub:
                groups.setdefault(int(index), {})[sub] = value
    return [groups[i] for i in sorted(groups)]


def filters(params: Params) -> list[tuple[str, list[str]]]:
    """``Filter.N.Name`` / ``Filter.N.Value.M`` as ``[(name, [values])]``."""
    result: list[tuple[str, list[str]]] = []
    for member in struct_list(params, "Filter"):
        name = member.get("Name")
        if name is None:
            raise ApiError("InvalidParameterValue", "The filter 'null' is invalid")
        result.append((name, indexed(member, "Value")))
    return result


@functools.lru_cache(maxsize=4096)
def wildcard(pattern: str) -> re.Pattern[str]:
    """EC2 filter-value matching: ``*`` any run, ``?`` one char, ``\\`` escapes them."""
    out: list[str] = []
    chars = iter(pattern)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "\\")
            out.append(re.escape(nxt))
        elif ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value or "\\" in value


def tag_set(tags: Mapping[str, str]) -> str:
    if not tags:
        return "<tagSet/>"
    items = "".join(
        f"<item><key>{escape(k)}</key><value>{escape(v)}</value></item>" for k, v in tags.items()
    )
    return f"<tagSet>{items}</tagSet>"


def items(tag: str, parts: Iterable[str]) -> str:
    body = "".join(f"<item>{p}</item>" for p in parts)
    return f"<{tag}>{body}</{tag}>" if body else f"<{tag}/>"


def ec2_ok(action: str, body: str, rid: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{action}Response xmlns="{EC2_NS}">'
        f"<requestId>{rid}</requestId>{body}</{action}Response>"
    ).encode()


def ec2_error(code: str, message: str, rid: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"</Error></Errors><RequestID>{rid}</RequestID></Response>"
    ).encode()


def sts_ok(action: str, body: str, rid: str) -> bytes:
    return (
        f'<{action}Response xmlns="{STS_NS}"><{action}Result>{body}</{action}Result>'
        f"<ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata></{action}Response>"
    ).encode()


def sts_error(code: str, message: str, rid: str, status: int) -> bytes:
    kind = "Receiver" if status >= 500 else "Sender"
    return (
        f'<ErrorResponse xmlns="{STS_NS}"><Error><Type>{kind}</Type>'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
        f"<RequestId>{rid}</RequestId></ErrorResponse>"
    ).encode()
