"""The mock's own HTTP surface under ``/_mock/``: introspection (GET) and controls (POST).

Answers are JSON; a bad control request answers HTTP 400 ``{"error": "..."}``. Times are AWS
seconds since the mock started (``/_mock/clock`` tells the current one).

GET  /_mock/counters          per (account, region, action, outcome) request counts
GET  /_mock/request_kinds     the same per request kind too, for the actions that have kinds
                              (DescribeImages: poll, lookup, listing; see request_kinds)
GET  /_mock/images            image states per (account, region)
GET  /_mock/duplicates        instances that got more than one image
GET  /_mock/copy_duplicates   copies made more than once, per ClientToken, name and source
GET  /_mock/copy_stats        CopyImage per (account, destination): when each request passed
                              the bucket, the bucket, throttled, made, ResourceLimitExceeded
                              answers, peak pending copies against the cap
GET  /_mock/stats             total requests, process CPU seconds
GET  /_mock/clock             {"aws_now_s", "time_scale", "start_wall"}
GET  /_mock/credentials       AssumeRole counts per role ARN and per account, issued sessions
POST /_mock/credentials/expire  {"access_key_id": K[, "at_s": T]} | {"all_sessions": true}
                              | {"own_expire_at_s": T | null}
GET  /_mock/outages           the outage windows;  POST one Outage's fields to add one
POST /_mock/outages/clear     remove every outage window
GET  /_mock/instance_events   {"pending": [...], "applied": [...]};  POST one InstanceEvent's
                              fields to add one
GET  /_mock/latency           the latency knobs;  POST {"latency_s", "latency_jitter_s",
                              "region_latency_s"} (any subset) to change them
POST /_mock/reset             back to the initial fleet and clock (see ``MockEC2.reset``)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from fleetimage.core.errors import MockError
from fleetimage.mock.config import InstanceEvent, Outage
from fleetimage.mock.schedule import event_json, outage_json

if TYPE_CHECKING:
    from fleetimage.mock.server import MockEC2

__all__ = ["handle"]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(data).encode(), content_type="application/json"
    )


async def handle(mock: MockEC2, request: web.BaseRequest) -> web.StreamResponse:
    path, method = request.path, request.method
    routes = _POST if method == "POST" else _GET if method == "GET" else {}
    route = routes.get(path)
    if route is None:
        known = path in _GET or path in _POST
        if known:
            return _json({"error": "method not allowed"}, 405)
        return _json({"error": f"unknown path {path}"}, 404)
    body: dict[str, Any] = {}
    if method == "POST" and request.can_read_body:
        try:
            raw = await request.json()
        except ValueError:
            return _json({"error": "the body must be a JSON object"}, 400)
        if not isinstance(raw, dict):
            return _json({"error": "the body must be a JSON object"}, 400)
        body = raw
    try:
        return _json(route(mock, body))
    except (MockError, TypeError) as exc:
        return _json({"error": str(exc)}, 400)


# --- GET ------------------------------------------------------------------------------------


def _counters(mock: MockEC2, _: dict[str, Any]) -> Any:
    return [
        {"account": a, "region": r, "action": act, "outcome": o, "count": n}
        for (a, r, act, o), n in sorted(mock.counters.items())
    ]


def _request_kinds(mock: MockEC2, _: dict[str, Any]) -> Any:
    return [
        {"account": a, "region": r, "action": act, "kind": k, "outcome": o, "count": n}
        for (a, r, act, k, o), n in sorted(mock.request_kinds.items())
    ]


def _images(mock: MockEC2, _: dict[str, Any]) -> Any:
    now = time.monotonic()
    out: list[dict[str, Any]] = []
    for st in mock.fleet.states():
        states: dict[str, int] = {}
        for image in st.image_list:
            s = image.state(now)
            states[s] = states.get(s, 0) + 1
        out.append({"account": st.account, "region": st.region, "states": states})
    return out


def _duplicates(mock: MockEC2, _: dict[str, Any]) -> Any:
    return [
        {"account": a, "region": r, "instance_id": i, "images": n}
        for (a, r, i), n in sorted(mock.duplicates().items())
    ]


def _copy_duplicates(mock: MockEC2, _: dict[str, Any]) -> Any:
    return {kind: [[*k, n] for k, n in d.items()] for kind, d in mock.copy_duplicates().items()}


def _copy_stats(mock: MockEC2, _: dict[str, Any]) -> Any:
    return mock.copy_stats()


def _stats(mock: MockEC2, _: dict[str, Any]) -> Any:
    return {"requests": sum(mock.counters.values()), "cpu_s": time.process_time()}


def _clock(mock: MockEC2, _: dict[str, Any]) -> Any:
    return {
        "aws_now_s": mock.aws_now(),
        "time_scale": mock.config.time_scale,
        "start_wall": mock.clock.start_wall,
    }


def _credentials(mock: MockEC2, _: dict[str, Any]) -> Any:
    return mock.credential_state()


def _outages(mock: MockEC2, _: dict[str, Any]) -> Any:
    return [outage_json(o) for o in mock.schedule.outages]


def _instance_events(mock: MockEC2, _: dict[str, Any]) -> Any:
    mock.schedule.apply_due(mock.aws_now())
    return {
        "pending": [event_json(e) for e in mock.schedule.pending()],
        "applied": list(mock.schedule.applied),
    }


def _latency(mock: MockEC2, _: dict[str, Any]) -> Any:
    return mock.latency.snapshot()


# --- POST -----------------------------------------------------------------------------------


def _reset(mock: MockEC2, _: dict[str, Any]) -> Any:
    mock.reset()
    return {"reset": True}


def _expire(mock: MockEC2, body: dict[str, Any]) -> Any:
    if body.get("all_sessions"):
        return {"expired_sessions": mock.expire_all_session_credentials(body.get("at_s"))}
    if "own_expire_at_s" in body:
        mock.set_own_credentials_expiry(body["own_expire_at_s"])
        return {"own_expire_at_s": body["own_expire_at_s"]}
    key = body.get("access_key_id")
    if not isinstance(key, str) or not key:
        raise MockError("give access_key_id, all_sessions or own_expire_at_s")
    mock.expire_key(key, body.get("at_s"))
    return {"expired": key}


def _add_outage(mock: MockEC2, body: dict[str, Any]) -> Any:
    outage = Outage(**body)
    mock.add_outage(outage)
    return outage_json(outage)


def _clear_outages(mock: MockEC2, _: dict[str, Any]) -> Any:
    mock.clear_outages()
    return {"cleared": True}


def _add_event(mock: MockEC2, body: dict[str, Any]) -> Any:
    if "remove_tags" in body:
        body = {**body, "remove_tags": frozenset(body["remove_tags"])}
    event = InstanceEvent(**body)
    mock.add_instance_event(event)
    return event_json(event)


def _set_latency(mock: MockEC2, body: dict[str, Any]) -> Any:
    mock.set_latency(**body)
    return mock.latency.snapshot()


Route = Callable[["MockEC2", dict[str, Any]], Any]

_GET: dict[str, Route] = {
    "/_mock/counters": _counters,
    "/_mock/request_kinds": _request_kinds,
    "/_mock/images": _images,
    "/_mock/duplicates": _duplicates,
    "/_mock/copy_duplicates": _copy_duplicates,
    "/_mock/copy_stats": _copy_stats,
    "/_mock/stats": _stats,
    "/_mock/clock": _clock,
    "/_mock/credentials": _credentials,
    "/_mock/outages": _outages,
    "/_mock/instance_events": _instance_events,
    "/_mock/latency": _latency,
}
_POST: dict[str, Route] = {
    "/_mock/reset": _reset,
    "/_mock/credentials/expire": _expire,
    "/_mock/outages": _add_outage,
    "/_mock/outages/clear": _clear_outages,
    "/_mock/instance_events": _add_event,
    "/_mock/latency": _set_latency,
}
