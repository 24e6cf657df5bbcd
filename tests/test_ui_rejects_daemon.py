"""Moving rejects while the real daemon watches the ingest folder: nothing is analysed again."""

from __future__ import annotations

import time

import pytest

from pixelperfect_daemon.index import ImageIndex
from pixelperfect_daemon.metadata import MetadataWriter
from review_ui.queries import ImageFilter
from review_ui.service import ReviewService
from tests.test_daemon_integration import RunningDaemon, make_small_jpegs

# Slow lane: a real daemon beside the UI (scripts/test.sh --fast leaves it out; CI runs it).
pytestmark = pytest.mark.slow


def test_moved_rejects_keep_their_rows_and_are_not_analysed_again(tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    sources = make_small_jpegs(staging, 2)
    with RunningDaemon(tmp_path, ui={"reject_folder": str(tmp_path / "rejects")}) as daemon:
        time.sleep(0.5)  # the initial scan is done
        for source in sources:
            (daemon.ingest / source.name).write_bytes(source.read_bytes())
        assert len(daemon.wait_for_rows(2, timeout=30)) == 2
        reject = daemon.ingest / sources[0].name
        with ImageIndex(daemon.settings.index.database) as index:
            metadata = MetadataWriter(daemon.settings.metadata)
            service = ReviewService(daemon.settings, index=index, metadata=metadata)
            try:
                service.override([str(reject)], verdict="poor", defect="noise", reviewer="ann")
                result = service.export_rejects(ImageFilter(name=reject.name), move=True)
            finally:
                service.close()
        moved = tmp_path / "rejects" / reject.name
        assert result["done"] == [[str(reject), str(moved)]] and moved.is_file() and not reject.exists()
        time.sleep(3.0)  # the daemon sees the tag write and the move go by
        rows = {row["file_name"]: row for row in daemon.rows()}
    assert len(rows) == 2 and rows[reject.name]["path"] == str(moved)
    assert (rows[reject.name]["reviewed_verdict"], rows[reject.name]["reviewed_defect"]) == ("poor", "noise")
    assert all(count == 1 for count in daemon.analyzer.counts.values()), daemon.analyzer.counts
