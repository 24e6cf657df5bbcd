"""The review UI's SQL: filters, effective verdicts, sorting, paging, counts, and index use, on a SQLite
file and on a real PostgreSQL server (the same SQL serves both)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from pixelperfect_daemon.index import ImageIndex
from pixelperfect_daemon.labels import DEFECTS
from review_ui import queries
from review_ui.queries import ImageFilter, IndexReader, QueryError, defect_counts, search_images, verdict_counts


def _row(path: str, *, verdict="poor", defect="blur", quality=0.3, analyzed_at="2024-05-01T10:00:00+00:00",
         reviewed_verdict=None, reviewed_defect=None, status="ok"):  # fmt: skip
    return {
        "path": path, "folder": str(Path(path).parent), "file_name": Path(path).name, "blake3": path,
        "verdict": verdict, "defect": defect, "quality": quality, "status": status,
        "defect_scores": json.dumps({d: 1 / 7 for d in DEFECTS}), "model_version": "m1",
        "analyzed_at": analyzed_at, "reviewed_verdict": reviewed_verdict, "reviewed_defect": reviewed_defect,
        "reviewed_by": "ann" if reviewed_verdict else None, "reviewed_at": "2024-05-02" if reviewed_verdict else None,
    }  # fmt: skip


@pytest.fixture
def conn(index_database):
    """A real index database (schema and indexes from ImageIndex) with a small known set of rows,
    read through the UI's read-only connection."""
    database = index_database
    rows = [
        _row("/photos/a/blurry1.jpg", quality=0.10),
        _row("/photos/a/blurry2.jpg", quality=0.20, analyzed_at="2024-05-03T09:00:00+00:00"),
        _row("/photos/a/noisy.jpg", defect="noise", quality=0.25),
        _row("/photos/b/good1.jpg", verdict="good", defect=None, quality=0.90),
        _row("/photos/b/sub/good2.jpg", verdict="good", defect=None, quality=0.80, analyzed_at="2024-06-01T00:00:00+00:00"),
        # The model said Poor/Blur, a reviewer said Good: it is Good now, and has no defect.
        _row("/photos/b/overruled.jpg", quality=0.45, reviewed_verdict="good"),
        # The model said Good, a reviewer said Poor/Noise.
        _row("/photos/c/missed_100%_x.jpg", verdict="good", defect=None, quality=0.70, reviewed_verdict="poor",
             reviewed_defect="noise"),
        _row("/photos/c/broken.jpg", verdict=None, defect=None, quality=None, status="error"),
        _row("/photos/ab/other.jpg", quality=0.15),  # /photos/ab is not inside /photos/a
        # Analysed as Good, but its tags could not be written: an error until they are.
        _row("/photos/d/untagged.jpg", verdict="good", defect=None, quality=0.85, status="tag_error"),
    ]  # fmt: skip
    with ImageIndex(database) as index:
        index.insert_rows(rows)
    connection = IndexReader(database).connection()
    yield connection
    connection.close()


@pytest.fixture
def sqlite_conn(conn):
    if conn.name != "sqlite":
        pytest.skip("SQLite's query plans; PostgreSQL's indexes end in rowid for the same orders (index_backends)")
    return conn


def names(page) -> list[str]:
    return [r["file_name"] for r in page.rows]


def test_empty_filter_lists_everything_worst_first(conn):
    page = search_images(conn)
    assert page.total == 10
    # An unreadable image (no quality) is the worst of all; then by quality.
    assert names(page)[:4] == ["broken.jpg", "blurry1.jpg", "other.jpg", "blurry2.jpg"]
    assert names(search_images(conn, sort="quality_desc"))[-1] == "broken.jpg"


def test_verdict_filter_uses_the_reviewers_verdict_over_the_models(conn):
    poor = names(search_images(conn, ImageFilter(verdict="poor")))
    good = names(search_images(conn, ImageFilter(verdict="good")))
    assert "overruled.jpg" not in poor and "overruled.jpg" in good
    assert "missed_100%_x.jpg" in poor and "missed_100%_x.jpg" not in good
    assert names(search_images(conn, ImageFilter(verdict="error"))) == ["broken.jpg", "untagged.jpg"]
    assert "untagged.jpg" not in good


def test_defect_filter_uses_the_reviewers_defect_and_good_reviews_have_none(conn):
    blur = names(search_images(conn, ImageFilter(verdict="poor", defect="blur")))
    assert sorted(blur) == ["blurry1.jpg", "blurry2.jpg", "other.jpg"]  # not "overruled.jpg"
    noise = names(search_images(conn, ImageFilter(defect="noise")))
    assert sorted(noise) == ["missed_100%_x.jpg", "noisy.jpg"]


def test_quality_range_reviewed_and_name_filters(conn):
    assert names(search_images(conn, ImageFilter(quality_min=0.2, quality_max=0.3))) == ["blurry2.jpg", "noisy.jpg"]
    # The full range is no filter: the error row (no quality) stays.
    assert search_images(conn, ImageFilter(quality_min=0.0, quality_max=1.0)).total == 10
    assert sorted(names(search_images(conn, ImageFilter(reviewed=True)))) == ["missed_100%_x.jpg", "overruled.jpg"]
    assert search_images(conn, ImageFilter(reviewed=False)).total == 8
    assert names(search_images(conn, ImageFilter(name="BLURRY1"))) == ["blurry1.jpg"]
    # LIKE wildcards in the search text are literal characters.
    assert names(search_images(conn, ImageFilter(name="100%_"))) == ["missed_100%_x.jpg"]
    assert search_images(conn, ImageFilter(name="_")).total == 1


def test_folder_filter_includes_subfolders_but_not_name_prefixes(conn):
    assert sorted(names(search_images(conn, ImageFilter(folder="/photos/a")))) == [
        "blurry1.jpg",
        "blurry2.jpg",
        "noisy.jpg",
    ]
    assert sorted(names(search_images(conn, ImageFilter(folder="/photos/b/")))) == [
        "good1.jpg",
        "good2.jpg",
        "overruled.jpg",
    ]


def test_date_range_is_inclusive_of_whole_days(conn):
    assert names(search_images(conn, ImageFilter(date_from="2024-05-03", date_to="2024-05-03"))) == ["blurry2.jpg"]
    assert names(search_images(conn, ImageFilter(date_from="2024-05-02"))) == ["blurry2.jpg", "good2.jpg"]
    with pytest.raises(QueryError, match="YYYY-MM-DD"):
        ImageFilter(date_from="03/05/2024")


def test_sort_orders_and_paging(conn):
    assert names(search_images(conn, ImageFilter(verdict="good"), sort="quality_desc")) == [
        "good1.jpg", "good2.jpg", "overruled.jpg"
    ]  # fmt: skip
    assert names(search_images(conn, sort="date_desc"))[0] == "good2.jpg"
    assert names(search_images(conn, sort="name"))[0] == "blurry1.jpg"
    first, second, third = (search_images(conn, page=p, page_size=4) for p in (1, 2, 3))
    assert (first.total, first.pages) == (10, 3)
    assert len({*names(first), *names(second), *names(third)}) == 10  # no row twice, none lost
    assert search_images(conn, page=99, page_size=4).page == 3  # clamped to the last page
    with pytest.raises(QueryError, match="sort"):
        search_images(conn, sort="random")


def test_counts_per_defect_ignore_the_defect_choice_and_follow_other_filters(conn):
    counts = defect_counts(conn, ImageFilter(verdict="poor", defect="noise"))
    assert counts == {**dict.fromkeys(DEFECTS, 0), "blur": 3, "noise": 2}
    assert defect_counts(conn, ImageFilter(folder="/photos/a"))["blur"] == 2
    assert verdict_counts(conn, ImageFilter(verdict="poor")) == {"poor": 5, "good": 3, "error": 2}


def test_bad_filter_values_are_one_line_errors():
    with pytest.raises(QueryError, match="unknown verdict"):
        ImageFilter(verdict="bad")
    with pytest.raises(QueryError, match="unknown defect"):
        ImageFilter(defect="Blur")
    with pytest.raises(QueryError, match=r"\[0, 1\]"):
        ImageFilter(quality_min=2)


def test_row_summary_reports_effective_and_model_verdicts(conn):
    overruled = queries.row_to_summary(queries.get_row(conn, "/photos/b/overruled.jpg"))
    assert overruled["verdict"] == "good" and overruled["defect"] is None and overruled["reviewed"] is True
    assert (overruled["model_verdict"], overruled["model_defect"]) == ("poor", "blur")
    broken = queries.row_to_summary(queries.get_row(conn, "/photos/c/broken.jpg"))
    assert broken["verdict"] == "error" and broken["reviewed"] is False
    untagged = queries.row_to_summary(queries.get_row(conn, "/photos/d/untagged.jpg"))
    assert (untagged["verdict"], untagged["model_verdict"], untagged["status"]) == ("error", "good", "tag_error")


def test_filters_are_served_by_the_schemas_indexes(sqlite_conn):
    """With 100 000 rows a full scan per keystroke would be felt: the plans must use the indexes."""

    def plan(image_filter, include_defect=True):
        where, params = queries.where_clause(image_filter, include_defect=include_defect)
        rows = sqlite_conn.execute(f"EXPLAIN QUERY PLAN SELECT COUNT(*) FROM images WHERE {where}", params).fetchall()
        return " ".join(r["detail"] for r in rows)

    assert "idx_images_verdict" in plan(ImageFilter(verdict="poor"))
    assert "idx_images_folder" in plan(ImageFilter(folder="/photos/a"))
    assert "idx_images_analyzed_at" in plan(ImageFilter(date_from="2024-05-02"))
    assert "idx_images_reviewed_verdict" in plan(ImageFilter(reviewed=True))
    assert "idx_images_status" in plan(ImageFilter(verdict="error"))
    # A page is read in index order and stops after it: no sort of every row.
    where, params = queries.where_clause(ImageFilter())
    for sort in ("quality_asc", "quality_desc", "date_desc"):
        details = " ".join(r["detail"] for r in sqlite_conn.execute(
            f"EXPLAIN QUERY PLAN SELECT path FROM images WHERE {where} ORDER BY {queries.SORT_ORDERS[sort]} LIMIT 48",
            params,
        ))  # fmt: skip
        assert "TEMP B-TREE" not in details, (sort, details)


def test_index_reader_is_read_only(tmp_path, conn):
    reader = IndexReader(conn.database)
    assert search_images(reader.connection()).total == 10
    with pytest.raises(Exception, match="(?i)read-?only"):
        reader.connection().execute("DELETE FROM images")
    with pytest.raises(QueryError, match="not found"):
        IndexReader(tmp_path / "missing.sqlite").connection()


def test_a_large_index_answers_a_filtered_page_quickly(tmp_path):
    """The 100 000-row case in miniature (20 000 rows) to keep the suite fast; bench/bench_ui.py does 100 000."""
    import time

    database = tmp_path / "big.sqlite"
    ImageIndex(database).close()
    rng = np.random.default_rng(1)
    connection = sqlite3.connect(database)
    connection.executemany(
        "INSERT INTO images (path, folder, file_name, verdict, defect, quality, status, analyzed_at) "
        "VALUES (?, ?, ?, ?, ?, ?, 'ok', ?)",
        [
            (f"/p/{i % 50}/{i}.jpg", f"/p/{i % 50}", f"{i}.jpg", v, d, float(q), f"2024-05-{1 + i % 28:02d}")
            for i, (v, d, q) in enumerate(
                zip(rng.choice(["good", "poor"], 20_000), rng.choice(DEFECTS, 20_000), rng.random(20_000))
            )
        ],
    )
    connection.commit()
    connection.close()
    connection = IndexReader(database).connection()
    started = time.perf_counter()
    page = search_images(connection, ImageFilter(verdict="poor", defect="blur", folder="/p/7"), page=2, page_size=48)
    defect_counts(connection, ImageFilter(verdict="poor"))
    elapsed = time.perf_counter() - started
    assert page.total > 0 and all(r["defect"] == "blur" for r in page.rows)
    assert elapsed < 0.5, f"filtered search took {elapsed:.3f} s"


def test_postgresql_reads_a_page_in_index_order(postgres_server):
    """As on SQLite: the sort orders walk an index and stop after the page, no sort of every row."""
    url = postgres_server.new_index_url()
    rng = np.random.default_rng(2)
    with ImageIndex(url) as index:
        index.insert_rows(
            [
                {
                    "path": f"/p/{i % 20}/{i}.jpg",
                    "folder": f"/p/{i % 20}",
                    "file_name": f"{i}.jpg",
                    "status": "ok",
                    "verdict": "poor",
                    "defect": "blur",
                    "quality": None if i % 97 == 0 else float(q),
                    "analyzed_at": f"2024-05-{1 + i % 28:02d}",
                }
                for i, q in enumerate(rng.random(5000))
            ]
        )
        index.backend.execute("ANALYZE images")
    conn = IndexReader(url).connection()
    where, params = queries.where_clause(ImageFilter(), like=conn.case_insensitive_like)
    for sort in ("quality_asc", "quality_desc", "date_desc", "date_asc"):
        order = conn.sort_order(queries.SORT_ORDERS[sort])
        plan = " ".join(row[0] for row in conn.execute(
            f"EXPLAIN SELECT path FROM images WHERE {where} ORDER BY {order} LIMIT 48", params
        ))  # fmt: skip
        assert "Index Scan" in plan and "Sort" not in plan, (sort, plan)
    worst = search_images(conn, sort="quality_asc", page_size=3).rows
    assert [r["quality"] for r in worst[:2]] == [None, None]  # no quality (errors) first, as on SQLite
    best = search_images(conn, sort="quality_desc", page_size=3).rows
    assert all(r["quality"] is not None for r in best)
