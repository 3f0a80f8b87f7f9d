"""The Recycle Bin service (``rbin``, REST-JSON): ``ListRules`` only, per (account, region).

The server hands it every request whose SigV4 scope names the ``rbin`` service. Rules are
set with :meth:`~fleetimage.mock.lifecycle.LifecycleControls.add_rbin_rule`.
"""

from __future__ import annotations

import json

from fleetimage.mock.fleet import Fleet

__all__ = ["answer"]


def _error(status: int, code: str, message: str) -> tuple[int, bytes, dict[str, str]]:
    body = json.dumps({"message": message}).encode()
    return status, body, {"x-amzn-ErrorType": code}


def answer(
    fleet: Fleet, account: str, region: str, method: str, path: str, body: bytes
) -> tuple[int, bytes, dict[str, str]]:
    """(HTTP status, JSON body, extra headers) for one rbin request."""
    if method != "POST" or path != "/list-rules":
        return _error(404, "ResourceNotFoundException", f"no route for {method} {path}")
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return _error(400, "ValidationException", "request body is not JSON")
    rtype = request.get("ResourceType") if isinstance(request, dict) else None
    if rtype not in ("EC2_IMAGE", "EBS_SNAPSHOT"):
        return _error(400, "ValidationException", "ResourceType must be EC2_IMAGE or EBS_SNAPSHOT")
    rules = [
        {k: v for k, v in rule.items() if k != "ResourceType"}
        for rule in fleet.state(account, region).rbin_rules
        if rule["ResourceType"] == rtype
    ]
    return 200, json.dumps({"Rules": rules}).encode(), {}
