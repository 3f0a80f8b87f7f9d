"""Bad ``copy:`` input: one line naming the field, exit 2, nothing sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_helpers import MockFactory, cli, fleet_config, one_line_error, write_config


@pytest.mark.parametrize(
    ("copy", "expected"),
    [
        ({"regions": ["eu-wset-1"]}, "copy.regions[0]: 'eu-wset-1' is not an AWS region"),
        (
            {"regions": ["eu-west-1"], "snapshot_copy_completion_minutes": 20},
            "copy.snapshot_copy_completion_minutes: must be a multiple of 15",
        ),
        (
            {"regions": ["eu-west-1"], "encrypted": True, "kms_key_id": {"eu-west-1": "key 1"}},
            "copy.kms_key_id['eu-west-1']: 'key 1' is not a KMS key reference",
        ),
        (
            {"regions": ["eu-west-1"], "kms_key_id": {"eu-west-1": "alias/dr"}},
            "copy: kms_key_id needs encrypted: true",
        ),
        (
            {"regions": ["eu-west-1"], "name_template": "dr-{source_region}"},
            "copy.name_template: template 'dr-{source_region}' must contain {instance_id}",
        ),
        (  # a copy carries 6 tags of ours: 44 left of AWS's 50
            {"regions": ["eu-west-1"], "tags": {f"k{i}": "v" for i in range(45)}},
            "copy.tags: at most 44 tags (AWS allows 50; fleetimage uses 6 on a copy)",
        ),
    ],
)
def test_bad_copy_config_is_one_line_exit_2_nothing_sent(
    mock_thread: MockFactory, tmp_path: Path, copy: dict[str, Any], expected: str
) -> None:
    mock = mock_thread()
    config = write_config(tmp_path / "fleet.yaml", fleet_config(copy=copy))
    for command, *extra in (("run", "--yes"), ("plan",)):
        ran = cli(command, "-c", config, "--endpoint-url", mock.endpoint_url, *extra)
        assert ran.code == 2, ran.output
        line = one_line_error(ran)
        assert expected in line and "fleet.yaml" in line, line
    assert mock.count() == 0
