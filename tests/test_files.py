from pixelperfect_daemon.files import is_image_name, iter_image_files


def test_walks_folders_recursively_for_images_in_sorted_order(tmp_path):
    for name in ("b.JPG", "a.png", "sub/c.cr2", "notes.txt", ".hidden.jpg", ".cache/d.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in iter_image_files([tmp_path])] == ["a.png", "b.JPG", "sub/c.cr2"]


def test_files_named_directly_are_always_yielded(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    assert list(iter_image_files([tmp_path / "notes.txt"])) == [tmp_path / "notes.txt"]


def test_raw_and_heic_names_are_images():
    assert all(is_image_name(n) for n in ("x.NEF", "x.cr3", "x.heic", "x.dng", "x.tiff", "x.webp"))
    assert not is_image_name("x.xmp")
