from pixelperfect_daemon.commands.demo import seed_demo_folder
from pixelperfect_daemon.files import iter_image_files


def test_seeds_an_empty_folder_with_good_and_damaged_files(tmp_path):
    written = seed_demo_folder(tmp_path / "ingest")
    names = {p.name for p in written}
    assert {"chelsea.jpg", "chelsea_out_of_focus.jpg", "astronaut_truncated.jpg", "not_a_photo.jpg"} <= names
    assert set(iter_image_files([tmp_path / "ingest"])) == set(written)


def test_never_touches_a_folder_that_has_files(tmp_path):
    (tmp_path / "mine.jpg").write_bytes(b"my photo")
    assert seed_demo_folder(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == ["mine.jpg"]
