"""``/_mock/copy_stats``: the mock's own account of CopyImage per destination (the bucket's
decisions, the cap's refusals, the most copies pending), through the real client."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from botocore.exceptions import ClientError
from test_mock_copy import ACCOUNT, DST, SRC, source_image

from fleetimage.mock import MockConfig, load_default_limits
from fleetimage.mock.copy_config import CopyConfig


async def test_copy_stats_count_bucket_cap_and_peak(mock_ec2: Any, ec2_client: Any) -> None:
    # CopyImage: 3 at once, then 1 per AWS second (at time scale 1: nothing refills in the
    # test's few milliseconds); 2 copies pending at most, each pending for an AWS hour.
    mock = await mock_ec2(
        MockConfig(
            regions=(SRC, DST),
            instances_per_region=0,
            pending_s=0.0,
            time_scale=1.0,
            limits={**load_default_limits(), "CopyImage": (3.0, 1.0)},
            copies=CopyConfig(pending_s=3600.0, max_concurrent=2),
        )
    )
    sources = [await source_image(mock, ec2_client, f"src-{i}") for i in range(2)]
    codes: list[str] = []
    async with ec2_client(mock, DST) as ec2:
        for i in range(4):
            try:
                await ec2.copy_image(
                    SourceRegion=SRC, SourceImageId=sources[i % 2], Name=f"copy-{i}"
                )
                codes.append("ok")
            except ClientError as exc:
                codes.append(str(exc.response["Error"]["Code"]))
    # two copies made, the third refused by the cap (it took a token), the fourth by the bucket
    assert codes == ["ok", "ok", "ResourceLimitExceeded", "RequestLimitExceeded"]

    url = f"{mock.endpoint_url}/_mock/copy_stats"
    async with aiohttp.ClientSession() as http, http.get(url) as answer:
        assert answer.status == 200
        [stats] = await answer.json()
    assert stats == {**stats, "account": ACCOUNT, "region": DST}
    assert stats["bucket"] == {"burst": 3.0, "rate_per_s": pytest.approx(1.0)}
    assert len(stats["passed_at_s"]) == 3 and len(stats["throttled_at_s"]) == 1
    assert stats["passed_at_s"] == sorted(stats["passed_at_s"])
    assert 0 <= stats["passed_at_s"][0] <= stats["throttled_at_s"][0] <= mock.aws_now()
    assert (stats["throttled"], stats["made"], stats["limit_refused"]) == (1, 2, 1)
    assert (stats["peak_pending"], stats["max_concurrent"]) == (2, 2)
    assert mock.copy_stats() == [stats]  # the same, in process

    mock.reset()
    assert mock.copy_stats() == []
