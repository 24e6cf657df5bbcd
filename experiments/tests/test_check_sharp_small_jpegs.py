"""The stand-in for the blur pairs' missing sharp halves shrinks photos to the size asked for."""

from PIL import Image

from experiments.check_sharp_small_jpegs import BLUR_PAIRS_FORMAT, resized_to_long_side


def test_a_large_photo_is_shrunk_to_the_long_side_with_its_aspect_kept():
    portrait = resized_to_long_side(Image.new("RGB", (3000, 4000)), 667)
    assert portrait.size == (500, 667)
    landscape = resized_to_long_side(Image.new("RGB", (4000, 3000)), 667)
    assert landscape.size == (667, 500)


def test_a_small_photo_is_never_enlarged_and_none_keeps_the_size():
    assert resized_to_long_side(Image.new("RGB", (400, 300)), 667).size == (400, 300)
    assert resized_to_long_side(Image.new("RGB", (4000, 3000)), None).size == (4000, 3000)


def test_the_blur_pairs_format_is_that_of_the_blurred_photos(shared_data, tmp_path):
    long_side, quality = BLUR_PAIRS_FORMAT
    blurred = sorted((shared_data / "real_dev" / "blur_pairs").glob("*.jpg"))[:5]
    assert blurred
    Image.new("RGB", (8, 8)).save(tmp_path / "reference.jpg", quality=quality)
    with Image.open(tmp_path / "reference.jpg") as reference:
        tables = reference.quantization
    for path in blurred:
        with Image.open(path) as photo:
            assert max(photo.size) == long_side, path.name
            assert photo.quantization == tables, path.name
