"""Synthetic distortions: the contract every sub-type keeps, severity rising with the level,
the properties that make each sub-type what its name says, and the contact-sheet command."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

cv2 = pytest.importorskip("cv2")
skimage_data = pytest.importorskip("skimage.data")

from pixelperfect_daemon.labels import DEFECTS  # noqa: E402
from pixelperfect_daemon.training.contact_sheet import (  # noqa: E402
    GAP,
    HEADER_HEIGHT,
    LABEL_WIDTH,
    fit_within,
    make_contact_sheet,
)
from pixelperfect_daemon.training.distortions import (  # noqa: E402
    DEFECT_CLASSES,
    DISTORTIONS,
    LEVELS,
    distort,
    random_distortion,
)

# Slow lane: synthesises every distortion on real photos (scripts/test.sh --fast leaves it out; CI runs it).
pytestmark = pytest.mark.slow

ALL_SUBTYPES = [(defect, subtype) for defect in DISTORTIONS for subtype in DISTORTIONS[defect]]
EXPECTED_SUBTYPES = {
    "blur": {"gaussian", "defocus", "motion"},
    "color_distortion": {
        "saturation_up",
        "saturation_down",
        "color_cast",
        "color_quantization",
        "chromatic_aberration",
    },
    "compression": {"jpeg", "jpeg2000", "webp"},
    "luminance_contrast": {
        "brighten",
        "darken",
        "low_light",
        "mean_shift",
        "contrast_up",
        "contrast_down",
        "gamma",
        "overexposure_clip",
        "underexposure_clip",
    },
    "noise": {"white_gaussian", "color_noise", "impulse", "speckle", "high_iso"},
    "transmission_errors": {
        "jpeg_bitstream_errors",
        "truncated",
        "lost_blocks",
        "packet_loss_streaks",
        "jpeg2000_errors",
    },
    "other": {
        "pixelation",
        "posterization",
        "non_eccentricity_patches",
        "jitter",
        "color_blocks",
        "sparse_sampling",
    },
}


def _photo(size: tuple[int, int]) -> np.ndarray:
    """scikit-image's astronaut photo at (width, height), read-only so in-place writes fail."""
    photo = cv2.resize(skimage_data.astronaut(), size, interpolation=cv2.INTER_AREA)
    photo.setflags(write=False)
    return photo


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return _photo((256, 256))


@pytest.fixture(scope="module")
def severities(photo) -> dict[tuple[str, str], list[float]]:
    """Per sub-type, its severity measure at levels 1..5, averaged over two seeds."""
    return {
        (defect, subtype): [
            float(
                np.mean(
                    [_severity(defect, subtype, photo, distort(photo, defect, subtype, level, seed)) for seed in (0, 1)]
                )
            )
            for level in LEVELS
        ]
        for defect, subtype in ALL_SUBTYPES
    }


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def _laplacian_variance(image: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def _severity(defect: str, subtype: str, original: np.ndarray, distorted: np.ndarray) -> float:
    """A measure that grows with the damage, suited to the class."""
    difference = distorted.astype(np.float64) - original
    if defect == "blur":  # fine detail lost, on a log scale (it never quite reaches zero)
        return float(np.log(_laplacian_variance(original) / _laplacian_variance(distorted)))
    if defect == "noise":  # strength of what was added
        return float(difference.std())
    if defect == "transmission_errors":  # share of the picture visibly wrong
        return float((np.abs(difference).max(axis=2) > 24).mean())
    if subtype == "pixelation":  # share of pixels equal to their right-hand neighbour
        return float(np.all(distorted[:, 1:] == distorted[:, :-1], axis=2).mean())
    return float(np.mean(difference**2))


# --------------------------------------------------------------------------------------------
# the catalogue


def test_classes_are_the_label_vocabulary_with_the_specified_subtypes():
    assert DEFECT_CLASSES == DEFECTS
    assert tuple(DISTORTIONS) == DEFECTS
    assert {defect: set(subtypes) for defect, subtypes in DISTORTIONS.items()} == EXPECTED_SUBTYPES


# --------------------------------------------------------------------------------------------
# the contract of every sub-type


@pytest.mark.parametrize("defect, subtype", ALL_SUBTYPES)
def test_keeps_shape_and_dtype_leaves_input_alone_and_repeats_for_a_seed(photo, defect, subtype):
    before = photo.copy()
    for level in LEVELS:
        distorted = distort(photo, defect, subtype, level, seed=11)
        assert distorted.shape == photo.shape
        assert distorted.dtype == np.uint8
        assert not np.shares_memory(distorted, photo)
        assert np.array_equal(distort(photo, defect, subtype, level, seed=11), distorted)
    assert np.array_equal(photo, before)


@pytest.mark.parametrize("defect, subtype", ALL_SUBTYPES)
def test_changes_the_image_visibly_from_level_3(photo, defect, subtype):
    assert not np.array_equal(distort(photo, defect, subtype, 1, seed=0), photo)
    assert _psnr(distort(photo, defect, subtype, 3, seed=0), photo) < 40
    assert _psnr(distort(photo, defect, subtype, 5, seed=0), photo) < 32


@pytest.mark.parametrize("defect, subtype", ALL_SUBTYPES)
def test_severity_rises_with_the_level(severities, defect, subtype):
    measures = severities[(defect, subtype)]
    assert all(later > earlier for earlier, later in zip(measures, measures[1:])), measures
    assert measures[4] > 2 * measures[0], measures


@pytest.mark.parametrize("defect, subtype", ALL_SUBTYPES)
def test_works_on_odd_sized_non_square_images(defect, subtype):
    odd = _photo((317, 203))
    assert distort(odd, defect, subtype, 5, seed=0).shape == (203, 317, 3)


@pytest.mark.parametrize("level", [0, 6, -1, 2.5, "3", True, None])
@pytest.mark.parametrize("defect, subtype", ALL_SUBTYPES)
def test_rejects_a_level_outside_1_to_5(photo, defect, subtype, level):
    with pytest.raises(ValueError, match="level must be an integer from 1 to 5"):
        DISTORTIONS[defect][subtype](photo, level, np.random.default_rng(0))


def test_numpy_integer_levels_are_accepted(photo):
    assert distort(photo, "blur", "gaussian", np.int64(2), seed=0).shape == photo.shape


@pytest.mark.parametrize(
    "bad_image, message",
    [
        (np.zeros((64, 64), np.uint8), "H x W x 3"),
        (np.zeros((64, 64, 4), np.uint8), "H x W x 3"),
        (np.zeros((64, 64, 3), np.float32), "uint8"),
        (np.zeros((8, 64, 3), np.uint8), "too small"),
    ],
)
def test_rejects_images_that_are_not_rgb_uint8(bad_image, message):
    with pytest.raises(ValueError, match=message):
        distort(bad_image, "noise", "impulse", 3, seed=0)


def test_unknown_names_raise_one_line_errors(photo):
    with pytest.raises(ValueError, match="unknown defect 'smudge'; expected one of blur,"):
        distort(photo, "smudge", "gaussian", 1, seed=0)
    with pytest.raises(ValueError, match="unknown blur sub-type 'zoom'; expected one of gaussian,"):
        distort(photo, "blur", "zoom", 1, seed=0)


def test_random_distortion_picks_every_subtype_of_the_class_and_repeats_for_a_seed():
    small = _photo((64, 64))
    picked = {random_distortion(small, "blur", 2, np.random.default_rng(seed))[0] for seed in range(30)}
    assert picked == set(DISTORTIONS["blur"])
    first = random_distortion(small, "noise", 4, np.random.default_rng(5))
    second = random_distortion(small, "noise", 4, np.random.default_rng(5))
    assert first[0] in DISTORTIONS["noise"]
    assert first[0] == second[0] and np.array_equal(first[1], second[1])


# --------------------------------------------------------------------------------------------
# each sub-type does what its name says


@pytest.mark.parametrize("subtype", ["gaussian", "defocus"])
def test_blur_looks_alike_at_any_resolution(subtype):
    """Blurring a large image then shrinking it matches shrinking first, then blurring."""
    large, small = _photo((512, 512)), _photo((256, 256))
    blurred_then_shrunk = cv2.resize(
        distort(large, "blur", subtype, 3, seed=2), (256, 256), interpolation=cv2.INTER_AREA
    )
    assert _psnr(blurred_then_shrunk, distort(small, "blur", subtype, 3, seed=2)) > 38
    assert _psnr(blurred_then_shrunk, small) < 30  # while both are clearly blurred


def _point_spread(defect: str, subtype: str, seed: int) -> np.ndarray:
    """Eigenvalues (small, large) of the spread of the pixels a blurred bright dot lights up."""
    dot = np.zeros((256, 256, 3), np.uint8)
    dot[128, 128] = 255
    lit = np.argwhere(distort(dot, defect, subtype, 5, seed).max(axis=2) > 0).astype(np.float64)
    return np.linalg.eigvalsh(np.cov(lit.T))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_motion_blur_smears_a_point_into_a_line(seed):
    across, along = _point_spread("blur", "motion", seed)
    assert along > 10 * across


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_defocus_blur_spreads_a_point_into_a_disc(seed):
    small, large = _point_spread("blur", "defocus", seed)
    assert large < 1.2 * small
    assert small > 4  # wider than a few pixels at level 5


def test_color_cast_shifts_the_balance_and_keeps_the_brightness(photo):
    cast = distort(photo, "color_distortion", "color_cast", 5, seed=0).astype(np.float64)
    original = photo.astype(np.float64)
    ratio_before = original[:, :, 0].mean() / original[:, :, 2].mean()
    ratio_after = cast[:, :, 0].mean() / cast[:, :, 2].mean()
    assert abs(np.log2(ratio_after / ratio_before)) > 0.4
    assert abs(cast.mean() - original.mean()) < 12


def test_color_quantization_leaves_at_most_the_palette(photo):
    quantized = distort(photo, "color_distortion", "color_quantization", 4, seed=0)
    assert len(np.unique(quantized.reshape(-1, 3), axis=0)) <= 8


def test_chromatic_aberration_moves_red_and_blue_but_not_green(photo):
    fringed = distort(photo, "color_distortion", "chromatic_aberration", 5, seed=0)
    assert np.array_equal(fringed[:, :, 1], photo[:, :, 1])
    assert not np.array_equal(fringed[:, :, 0], photo[:, :, 0])
    assert not np.array_equal(fringed[:, :, 2], photo[:, :, 2])


def test_jpeg_leaves_8x8_block_edges(photo):
    compressed = distort(photo, "compression", "jpeg", 4, seed=0).astype(np.float64)
    steps = np.abs(np.diff(compressed, axis=1)).mean(axis=(0, 2))  # step between column c and c+1
    at_block_edges = steps[7::8].mean()
    inside_blocks = np.delete(steps, np.s_[7::8]).mean()
    assert at_block_edges > 1.3 * inside_blocks


def test_overexposure_burns_highlights_and_underexposure_crushes_shadows(photo):
    over = distort(photo, "luminance_contrast", "overexposure_clip", 4, seed=0)
    under = distort(photo, "luminance_contrast", "underexposure_clip", 4, seed=0)
    assert (over == 255).mean() > (photo == 255).mean() + 0.1
    assert (under == 0).mean() > (photo == 0).mean() + 0.1


def test_darken_and_brighten_move_the_mean_the_right_way(photo):
    assert distort(photo, "luminance_contrast", "darken", 3, seed=0).mean() < photo.mean() - 25
    assert distort(photo, "luminance_contrast", "brighten", 3, seed=0).mean() > photo.mean() + 25


def test_contrast_down_narrows_and_contrast_up_widens_the_spread(photo):
    assert distort(photo, "luminance_contrast", "contrast_down", 3, seed=0).std() < 0.6 * photo.std()
    assert distort(photo, "luminance_contrast", "contrast_up", 3, seed=0).std() > 1.1 * photo.std()


def test_white_gaussian_noise_is_grey_and_color_noise_is_not(photo):
    grey_noise = distort(photo, "noise", "white_gaussian", 3, seed=0).astype(np.int16) - photo
    colour_noise = distort(photo, "noise", "color_noise", 3, seed=0).astype(np.int16) - photo
    unclipped = (photo > 60).all(axis=2) & (photo < 195).all(axis=2)
    assert np.abs(grey_noise[unclipped][:, 0] - grey_noise[unclipped][:, 1]).max() <= 1  # rounding
    assert np.abs(colour_noise[unclipped][:, 0] - colour_noise[unclipped][:, 1]).mean() > 5


def test_impulse_noise_sets_about_the_level_fraction_to_black_or_white(photo):
    noisy = distort(photo, "noise", "impulse", 5, seed=0)
    changed = np.any(noisy != photo, axis=2)
    assert 0.08 < changed.mean() < 0.13
    assert set(np.unique(noisy[changed])) <= {0, 255}


def test_high_iso_noise_is_strongest_in_the_shadows():
    ramp = np.tile(np.linspace(0, 255, 256, dtype=np.float64), (256, 1))
    grey = np.repeat(ramp[:, :, None], 3, axis=2).astype(np.uint8)
    noisy = distort(grey, "noise", "high_iso", 4, seed=0).astype(np.float64)
    residual = noisy - grey
    shadows, highlights = residual[:, 40:90].std(), residual[:, 180:230].std()
    assert shadows > highlights > 0


def test_truncated_jpeg_is_filled_grey_at_the_bottom(photo):
    cut = distort(photo, "transmission_errors", "truncated", 5, seed=0)
    assert np.all(np.abs(cut[-16:].astype(np.int16) - 128) <= 2)
    assert _psnr(cut[:64], photo[:64]) > 28  # the top decoded fine


def test_lost_blocks_replace_whole_blocks_of_the_grid(photo):
    damaged = distort(photo, "transmission_errors", "lost_blocks", 5, seed=0)
    changed = np.any(damaged != photo, axis=2)
    block = 8  # 16 px blocks at 512 px are 8 px at 256
    changed_share = changed.reshape(256 // block, block, 256 // block, block).mean(axis=(1, 3))
    touched = changed_share > 0
    assert 0.05 < touched.mean() < 0.3
    # A touched block is replaced whole, but for pixels the fill happens to match.
    assert changed_share[touched].mean() > 0.85


def test_packet_loss_streaks_are_horizontal_bands(photo):
    damaged = distort(photo, "transmission_errors", "packet_loss_streaks", 3, seed=0)
    changed_rows = np.any(damaged != photo, axis=(1, 2))
    changed_columns = np.any(damaged != photo, axis=(0, 2))
    assert 0 < changed_rows.mean() < 0.5
    assert changed_columns.mean() > changed_rows.mean()


def test_posterization_keeps_few_tones_per_channel(photo):
    posterized = distort(photo, "other", "posterization", 4, seed=0)
    assert max(len(np.unique(posterized[:, :, channel])) for channel in range(3)) <= 5


def test_sparse_sampling_fills_from_kept_pixels_only(photo):
    sampled = distort(photo, "other", "sparse_sampling", 5, seed=0)
    original_colours = {tuple(colour) for colour in photo.reshape(-1, 3)}
    assert all(tuple(colour) in original_colours for colour in np.unique(sampled.reshape(-1, 3), axis=0))
    assert len(np.unique(sampled.reshape(-1, 3), axis=0)) < 0.5 * len(original_colours)


# --------------------------------------------------------------------------------------------
# the contact sheet and its command


def test_contact_sheet_has_a_row_per_subtype_and_the_original_first(photo):
    sheet = make_contact_sheet(photo, levels=(1, 5), tile=64, seed=0)
    assert sheet.size == (LABEL_WIDTH + 3 * (64 + GAP), HEADER_HEIGHT + len(ALL_SUBTYPES) * (64 + GAP))
    shrunk = fit_within(photo, 64)
    assert shrunk.shape == (64, 64, 3)
    first_cell = np.asarray(sheet)[HEADER_HEIGHT : HEADER_HEIGHT + 64, LABEL_WIDTH : LABEL_WIDTH + 64]
    assert np.array_equal(first_cell, shrunk)
    level_5 = distort(shrunk, *ALL_SUBTYPES[-1], 5, 0)
    top = HEADER_HEIGHT + (len(ALL_SUBTYPES) - 1) * (64 + GAP)
    left = LABEL_WIDTH + 2 * (64 + GAP)
    assert np.array_equal(np.asarray(sheet)[top : top + 64, left : left + 64], level_5)


def test_distortions_command_writes_a_png_sheet(tmp_path):
    from pixelperfect_daemon.cli import main

    source = tmp_path / "photo.png"
    Image.fromarray(_photo((96, 64))).save(source)
    cell_height = fit_within(_photo((96, 64)), 64).shape[0]
    out = tmp_path / "sheets" / "distortions.png"
    result = CliRunner().invoke(
        main, ["distortions", "--image", str(source), "--out", str(out), "--seed", "3", "--tile", "64"]
    )
    assert result.exit_code == 0, result.output
    assert str(out) in result.output
    with Image.open(out) as written:
        assert written.format == "PNG"
        assert written.size == (LABEL_WIDTH + 4 * (64 + GAP), HEADER_HEIGHT + len(ALL_SUBTYPES) * (cell_height + GAP))
    assert [path.name for path in out.parent.iterdir()] == ["distortions.png"]  # no temporary left


def test_distortions_command_defaults_to_the_bundled_sample(tmp_path):
    from pixelperfect_daemon.cli import main

    out = tmp_path / "sheet.png"
    result = CliRunner().invoke(main, ["distortions", "--out", str(out), "--tile", "64"])
    assert result.exit_code == 0, result.output
    with Image.open(out) as written:
        assert written.size[0] == LABEL_WIDTH + 4 * (64 + GAP)


def test_distortions_command_reports_an_unreadable_image_in_one_line(tmp_path):
    from pixelperfect_daemon.cli import main

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    result = CliRunner().invoke(main, ["distortions", "--image", str(broken), "--out", str(tmp_path / "s.png")])
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot read") and result.output.count("\n") == 1
    assert not (tmp_path / "s.png").exists()


def test_distortions_command_never_overwrites_its_input(tmp_path):
    from pixelperfect_daemon.cli import main

    source = tmp_path / "photo.png"
    Image.fromarray(_photo((64, 64))).save(source)
    before = source.read_bytes()
    result = CliRunner().invoke(main, ["distortions", "--image", str(source), "--out", str(source)])
    assert result.exit_code == 1
    assert "refusing to overwrite" in result.output
    assert source.read_bytes() == before


def test_contact_sheet_refuses_an_image_too_thin_to_distort():
    from pixelperfect_daemon.training.contact_sheet import ContactSheetError

    with pytest.raises(ContactSheetError, match="too thin"):
        make_contact_sheet(np.zeros((20, 400, 3), np.uint8), tile=64)


def test_washed_out_colours_never_become_black_and_white(photo):
    """A B&W photo is a choice, not a defect: the strongest desaturation keeps some colour."""
    strongest = distort(photo, "color_distortion", "saturation_down", 5, seed=0).astype(float)
    chroma = np.abs(strongest - strongest.mean(axis=2, keepdims=True)).mean()
    original_chroma = np.abs(photo - photo.astype(float).mean(axis=2, keepdims=True)).mean()
    assert 0.1 * original_chroma < chroma < 0.3 * original_chroma


def test_low_light_is_dark_and_darker_by_level(photo):
    means = [distort(photo, "luminance_contrast", "low_light", level, seed=0).mean() for level in LEVELS]
    assert means == sorted(means, reverse=True)
    assert means[-1] < 0.25 * photo.mean()
