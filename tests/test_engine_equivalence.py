"""The engine's faster computations give what its earlier ones gave (``reference_computations.py``):
the same detail crop, the same greyness, the same decoded pixels for small JPEGs, statistics equal
up to float rounding, and so the same model outputs and verdicts, on either route a file takes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from pixelperfect_daemon import file_views, jpeg_dct, view_statistics, views
from pixelperfect_daemon.engine import Analyzer, is_monochrome
from pixelperfect_daemon.loading import load_image
from pixelperfect_daemon.view_statistics import STATISTIC_NAMES
from pixelperfect_daemon.views import make_views, reduced_copy

from . import reference_computations as reference
from .fixtures_images import _exif_bytes, photo

# The statistics that average steps between neighbours now sum them in double precision.
STATISTIC_TOLERANCE = 1e-5
OUTPUT_TOLERANCE = 1e-4  # P(poor), quality and each defect probability
SIZES = [(500, 500), (640, 480), (480, 640), (800, 600), (1023, 681), (300, 200), (225, 900), (1300, 950), (1800, 1400)]
SIZES += [(4000, 3000)]  # detail search windows of 224, 112, 75 and 37 pixels: float64 and float32 sums


def grainy(size, variant=0, sigma=3.0, seed=0) -> np.ndarray:
    pixels = photo(size, variant).astype(np.float32)
    return np.clip(pixels + np.random.default_rng(seed).normal(0, sigma, pixels.shape), 0, 255).astype(np.uint8)


def varied_images() -> list[np.ndarray]:
    """Photos of many sizes and aspect ratios, and the flat, noisy and tiny cases around them."""
    rng = np.random.default_rng(7)
    images = [grainy(size, variant, seed=variant) for variant, size in enumerate(SIZES)]
    images += [photo(size, variant + 1) for variant, size in enumerate(SIZES[:4])]  # smooth, no grain
    gradient = np.linspace(0, 255, 640, dtype=np.float32)[None, :, None] * np.ones((480, 1, 3), np.float32)
    images += [
        rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
        np.zeros((500, 500, 3), np.uint8),
        np.full((400, 700, 3), 255, np.uint8),
        np.full((300, 300, 3), 128, np.uint8),
        gradient.astype(np.uint8),
        rng.integers(0, 256, (1, 1, 3), dtype=np.uint8),
        rng.integers(0, 256, (10, 300, 3), dtype=np.uint8),
        rng.integers(0, 256, (3000, 40, 3), dtype=np.uint8),
    ]
    return images


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return varied_images()


def test_the_detail_search_picks_the_same_crop(images):
    for pixels in images:
        small, scale = reduced_copy(pixels)
        expected = reference.detail_origin_in(pixels.shape[:2], small, scale)
        assert views.detail_origin_in(pixels.shape[:2], small, scale) == expected, pixels.shape


def test_statistics_match_up_to_float_rounding(images):
    checked = 0
    for pixels in images:
        for view in make_views(pixels):
            expected, actual = reference.view_statistics(view), view_statistics.view_statistics(view)
            assert actual.dtype == np.float32
            difference = np.abs(actual.astype(np.float64) - expected)
            worst = int(np.argmax(difference))
            assert difference[worst] <= STATISTIC_TOLERANCE, (STATISTIC_NAMES[worst], actual[worst], expected[worst])
            checked += 1
    assert checked == 2 * len(images)


def test_greyness_is_judged_the_same(images):
    rng = np.random.default_rng(3)
    pairs = [make_views(pixels) for pixels in images]
    grey = [np.repeat(cv2.cvtColor(p, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2) for p in images[:6]]
    pairs += [make_views(g) for g in grey]
    # Channel spreads about the threshold, on about the share of pixels that decides.
    for spread in (3, 4, 5):
        for share in (0.005, 0.01, 0.02):
            pair = np.repeat(make_views(grey[0])[..., :1], 3, axis=3).copy()
            chosen = rng.random(pair.shape[:3]) < share
            pair[..., 0][chosen] = np.clip(pair[..., 0][chosen].astype(int) + spread, 0, 255)
            pairs.append(pair)
    verdicts = [(is_monochrome(pair), reference.is_monochrome(pair)) for pair in pairs]
    assert all(new == old for new, old in verdicts)
    assert {new for new, _ in verdicts} == {True, False}  # both answers were exercised


def save_jpeg(path, pixels, **options):
    if options.pop("chroma_halved_vertically", False):  # 4:4:0, which Pillow does not write
        flags = [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_440]
        path.write_bytes(cv2.imencode(".jpg", pixels[..., ::-1], flags)[1].tobytes())
        return path
    image = Image.fromarray(pixels)
    if options.pop("grey", False):
        image = image.convert("L")
    image.save(path, "JPEG", quality=options.pop("quality", 90), **options)
    return path


SMALL_JPEGS = {
    "500x500": dict(size=(500, 500)),
    "640x480 4:4:4": dict(size=(640, 480), subsampling="4:4:4", quality=95),
    "480x640 4:2:2": dict(size=(480, 640), subsampling="4:2:2"),
    "4:4:0": dict(size=(600, 450), chroma_halved_vertically=True),
    "odd size": dict(size=(803, 601)),
    "progressive": dict(size=(800, 600), progressive=True),
    "restart markers": dict(size=(700, 500), restart_marker_rows=1),
    "greyscale": dict(size=(600, 400), grey=True),
    **{f"orientation {n}": dict(size=(640, 480), exif=_exif_bytes(n)) for n in range(2, 9)},
    "tiny": dict(size=(120, 90)),
    "low quality": dict(size=(500, 500), quality=8),
}


@pytest.fixture(scope="module")
def small_jpegs(tmp_path_factory) -> list:
    folder = tmp_path_factory.mktemp("small_jpegs")
    paths = []
    for number, (name, options) in enumerate(SMALL_JPEGS.items()):
        options = dict(options)
        pixels = grainy(options.pop("size"), number, seed=number)
        paths.append(save_jpeg(folder / f"{number:02d} {name}.jpg", pixels, **options))
    paths.append(folder / "png.png")
    Image.fromarray(grainy((500, 500), 2)).save(paths[-1])
    return paths


@pytest.mark.skipif(not jpeg_dct.available(), reason="libturbojpeg0 is not installed")
def test_small_clean_jpegs_decode_to_the_pixels_pillow_gives(small_jpegs, monkeypatch):
    decoded_whole = []
    decode_whole = jpeg_dct.decode_whole

    def counted(data, layout):
        pixels = decode_whole(data, layout)
        decoded_whole.append(layout)
        return pixels

    monkeypatch.setattr(jpeg_dct, "decode_whole", counted)
    for path in small_jpegs:
        loaded = file_views.load_views(path)
        decoded = load_image(path)
        assert not loaded.from_coefficients
        assert np.array_equal(loaded.views, make_views(decoded.image)), path.name
        assert (loaded.original_size, loaded.format, loaded.corruption) == (
            decoded.original_size,
            decoded.format,
            decoded.corruption,
        )
    assert len(decoded_whole) == sum(path.suffix == ".jpg" for path in small_jpegs)  # all but the PNG took the route


def decoded_by_pillow(data, layout):
    raise jpeg_dct.NotForDctPath("the engine before decoded small JPEGs with Pillow")


def reference_outputs(analyzer: Analyzer, path):
    """The model outputs and greyness as the engine computed them before: small JPEGs decoded by
    Pillow, the box-filter detail search and the earlier statistics; and the noise meter's reading,
    which is no part of that comparison."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(views, "detail_origin_in", reference.detail_origin_in)
        patch.setattr(file_views, "detail_origin_in", reference.detail_origin_in)
        patch.setattr(view_statistics, "view_statistics", reference.view_statistics)
        patch.setattr(jpeg_dct, "decode_whole", decoded_by_pillow)
        loaded = file_views.load_views(path)
        (outputs,) = analyzer.predict_views(loaded.views[None])
    return outputs, reference.is_monochrome(loaded.views), loaded.screen_noise


def assert_same_analysis(analyzer: Analyzer, path):
    expected, monochrome, screen_noise = reference_outputs(analyzer, path)
    (actual,) = analyzer.predict_views(file_views.load_views(path).views[None])
    assert abs(actual.p_poor - expected.p_poor) <= OUTPUT_TOLERANCE, path
    assert abs(actual.quality - expected.quality) <= OUTPUT_TOLERANCE, path
    for defect, probability in expected.defect_scores.items():
        assert abs(actual.defect_scores[defect] - probability) <= OUTPUT_TOLERANCE, (path, defect)
    result = analyzer.analyze_path(path)
    before = analyzer._result(str(path), expected, None, monochrome=monochrome, screen_noise=screen_noise)
    assert (result.verdict, result.defect, result.error) == (before.verdict, before.defect, before.error), path
    assert abs(result.quality - before.quality) <= 1e-3, path
    return result


def test_small_photos_get_the_same_outputs_and_verdicts(trained_models_dir, small_jpegs):
    analyzer = Analyzer(trained_models_dir)
    verdicts = {assert_same_analysis(analyzer, path).verdict for path in small_jpegs}
    assert verdicts <= {"good", "poor"}


def shared_photos(shared_data, limit: int) -> list:
    """Real photos of the sizes this path serves: the pristine set's and the LIVE challenge's 500 x 500."""
    pristine = sorted((shared_data / "pristine").rglob("*.jpg"))
    challenge = sorted(p for p in (shared_data / "clive_train").iterdir() if p.suffix.lower() in (".jpg", ".png"))
    limit = limit or None  # 0: all of them
    return pristine[:limit] + challenge[:limit]


def test_shared_photos_get_the_same_outputs_and_verdicts(shared_data, trained_models_dir):
    analyzer = Analyzer(trained_models_dir)
    photos = shared_photos(shared_data, 12)
    assert photos
    for path in photos:
        assert_same_analysis(analyzer, path)


@pytest.mark.slow
def test_every_shared_photo_gets_the_same_outputs_and_verdicts(shared_data, trained_models_dir):
    analyzer = Analyzer(trained_models_dir)
    for path in shared_photos(shared_data, 0) + sorted((shared_data / "real_dev").rglob("*.jpg")):
        assert_same_analysis(analyzer, path)
