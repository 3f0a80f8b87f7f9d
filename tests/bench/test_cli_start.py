"""The CLI start-up benchmark measures real CLI processes: asking nothing, the first
CreateImage comes after each lane's first page (a named run's too); asking first, after
every page."""

from __future__ import annotations

from pathlib import Path

from benchmarks.cli_start import PATHS, first_create, mock_config
from fleetimage.mock.runner import MockEC2Thread


def test_the_streamed_run_creates_before_the_last_pages_the_asking_one_after(
    tmp_path: Path,
) -> None:
    # 2 lanes of 3 pages (1,000 instances a page), each answered after 2 s (real): the next
    # page's request comes when a page is answered
    starts = {}
    for path in PATHS:
        with MockEC2Thread(mock_config(regions=2, accounts=1, instances=2100, page_s=40.0)) as mock:
            starts[path] = first_create(mock, path, tmp_path)
    assert starts["asked first"].pages == 6, starts
    assert starts["streamed"].pages < 6 and starts["named"].pages < 6, starts
