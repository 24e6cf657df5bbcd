"""Synthetic image distortions for training the defect classifier.

Every distortion is ``f(image, level, rng) -> image``: ``image`` is an H x W x 3 uint8 RGB array,
``level`` runs from 1 (subtle, often invisible) to 5 (severe), and all randomness comes from
``rng``, so a seed reproduces a result exactly. Inputs are never modified.

Each level owns a band of parameter values (for example JPEG quality 28..36 at level 1, 1..3 at
level 5) and a distortion draws its parameter inside that band: training sees variety within a
level while the levels still never overlap. Spatial sizes (blur radii, block sizes, shifts,
sampling density, the JPEG 2000 file size) are given for a ~512 px image and scaled with the
image, so level 3 looks alike at any resolution. Sensor noise and salt and pepper are per pixel,
as in a real camera, and JPEG/WebP keep their quality setting, as real encoders do: those look
stronger on images much smaller than 512 px and weaker on much larger ones once shrunk.

The sub-types follow TID2013 and KADID-10k, plus the defects real cameras and broken files show
(low-light underexposure, high-ISO sensor noise, corrupt and truncated JPEGs).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image

from ..labels import DEFECTS

DEFECT_CLASSES = DEFECTS
LEVELS = (1, 2, 3, 4, 5)
REFERENCE_SIZE = 512  # the image size the spatial parameters below are tuned for

Distortion = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

# defect class -> sub-type name -> distortion, filled in by @_distortion below.
DISTORTIONS: dict[str, dict[str, Distortion]] = {defect: {} for defect in DEFECT_CLASSES}


# --------------------------------------------------------------------------------------------
# public entry points


def distort(image: np.ndarray, defect: str, subtype: str, level: int, seed: int) -> np.ndarray:
    """Apply one named distortion at ``level`` with a generator seeded from ``seed``."""
    return distortion_function(defect, subtype)(image, level, np.random.default_rng(seed))


def random_distortion(image: np.ndarray, defect: str, level: int, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """Apply a sub-type of ``defect`` picked uniformly; returns (sub-type name, distorted image)."""
    subtypes = _subtypes_of(defect)
    name = list(subtypes)[int(rng.integers(len(subtypes)))]
    return name, subtypes[name](image, level, rng)


def distortion_function(defect: str, subtype: str) -> Distortion:
    subtypes = _subtypes_of(defect)
    try:
        return subtypes[subtype]
    except KeyError:
        raise ValueError(f"unknown {defect} sub-type {subtype!r}; expected one of {', '.join(subtypes)}") from None


def _subtypes_of(defect: str) -> dict[str, Distortion]:
    try:
        return DISTORTIONS[defect]
    except KeyError:
        raise ValueError(f"unknown defect {defect!r}; expected one of {', '.join(DEFECT_CLASSES)}") from None


def _distortion(defect: str, subtype: str):
    """Register a distortion under DISTORTIONS[defect][subtype], validating image and level."""

    def register(function):
        @functools.wraps(function)
        def checked(image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
            _check_image(image)
            _check_level(level)
            return function(image, int(level), rng)

        DISTORTIONS[defect][subtype] = checked
        return checked

    return register


def _check_image(image) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 numpy image, got {getattr(image, 'dtype', type(image))}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
    if min(image.shape[:2]) < 16:
        raise ValueError(f"image too small to distort: {image.shape[1]}x{image.shape[0]}")


def _check_level(level) -> None:
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 1 <= level <= 5:
        raise ValueError(f"level must be an integer from 1 to 5, got {level!r}")


# --------------------------------------------------------------------------------------------
# small helpers


def _band(rng: np.random.Generator, bands, level: int) -> float:
    """A value drawn uniformly from this level's (low, high) band."""
    low, high = bands[level - 1]
    return float(rng.uniform(low, high))


def _int_band(rng: np.random.Generator, bands, level: int) -> int:
    """An integer drawn uniformly from this level's inclusive (low, high) band."""
    low, high = bands[level - 1]
    return int(rng.integers(low, high + 1))


def _size_scale(image: np.ndarray) -> float:
    """How much larger than the 512 px reference this image is (geometric mean of its sides)."""
    return float(np.sqrt(image.shape[0] * image.shape[1])) / REFERENCE_SIZE


def _to_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) * np.float32(1 / 255)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """[0, 1] floats to uint8, clipping (as a camera or codec does) and rounding."""
    return np.clip(values * 255 + 0.5, 0, 255).astype(np.uint8)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=rgb.dtype)


def _srgb_to_linear_values(srgb: np.ndarray) -> np.ndarray:
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb_values(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0, 1)
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)


_SRGB8_TO_LINEAR = _srgb_to_linear_values(np.arange(256, dtype=np.float64) / 255).astype(np.float32)
# 16-bit linear -> 8-bit sRGB by table lookup: several times faster than the power function.
_LINEAR16_TO_SRGB8 = _to_uint8(_linear_to_srgb_values(np.arange(65536, dtype=np.float64) / 65535))


def _to_linear(image: np.ndarray) -> np.ndarray:
    """uint8 sRGB to float32 linear light."""
    return _SRGB8_TO_LINEAR[image]


def _from_linear(linear: np.ndarray) -> np.ndarray:
    """float linear light (clipped to [0, 1]) to uint8 sRGB."""
    index = np.clip(linear * 65535 + 0.5, 0, 65535).astype(np.uint16)
    return _LINEAR16_TO_SRGB8[index]


def _apply_tone_curve(image: np.ndarray, curve: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply a [0, 1] -> [0, 1] curve to each channel through a 256-entry table."""
    table = _to_uint8(curve(np.arange(256, dtype=np.float64) / 255))
    return cv2.LUT(image, table)


def _apply_luma_curve(image: np.ndarray, curve: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply a curve to luma only (YCrCb), keeping chroma, as photo editors' exposure tools do."""
    ycrcb = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
    table = _to_uint8(curve(np.arange(256, dtype=np.float64) / 255))
    ycrcb[:, :, 0] = cv2.LUT(ycrcb[:, :, 0], table)
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)


def _gaussian_noise_field(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    """Unit-variance gaussian noise, spatially correlated by a blur of ``sigma`` pixels."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    if sigma <= 0:
        return noise
    noise = cv2.GaussianBlur(noise, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return noise / max(float(noise.std()), 1e-6)


def _encode_jpeg(image: np.ndarray, quality: int, restart_interval: int = 0) -> bytes:
    """Baseline JPEG with 4:2:0 chroma, as cameras and the web write it."""
    params = [
        cv2.IMWRITE_JPEG_QUALITY,
        int(quality),
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
    ]
    if restart_interval:
        params += [cv2.IMWRITE_JPEG_RST_INTERVAL, int(restart_interval)]
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return buffer.tobytes()


def _decode(data: bytes) -> np.ndarray:
    """Decode with Pillow, which (unlike OpenCV's libjpeg) prints no warning per damaged file.

    Raises OSError when the data is beyond decoding.
    """
    with Image.open(io.BytesIO(data)) as decoded:
        return np.asarray(decoded.convert("RGB"))


def _decoded_like(data: bytes, image: np.ndarray) -> np.ndarray | None:
    """The decoded image when it decodes at all and to the size of ``image``, else None."""
    try:
        decoded = _decode(data)
    except Exception:  # deliberately broken data: decoders fail in many ways, all mean "no"
        return None
    return decoded if decoded.shape == image.shape else None


def _jpeg_entropy_range(data: bytes) -> tuple[int, int]:
    """Byte range of the entropy-coded data of a baseline JPEG: after the SOS header, before EOI."""
    sos = data.find(b"\xff\xda")
    header_length = int.from_bytes(data[sos + 2 : sos + 4], "big")
    end = data.rfind(b"\xff\xd9")
    return sos + 2 + header_length, end


def _safe_byte_positions(data: bytes, start: int, end: int) -> np.ndarray:
    """Positions in [start, end) that are neither 0xFF nor right after one (markers, stuffing):
    damaging those would only make the file undecodable, not show an error."""
    view = np.frombuffer(data, dtype=np.uint8)
    safe = (view[start:end] != 0xFF) & (view[start - 1 : end - 1] != 0xFF)
    return np.flatnonzero(safe) + start


def _corrupt_bytes(data: bytes, positions: np.ndarray, rng: np.random.Generator) -> bytes:
    """Replace the bytes at ``positions`` by different random bytes, never 0xFF."""
    corrupted = np.frombuffer(data, dtype=np.uint8).copy()
    offsets = rng.integers(1, 255, size=len(positions))
    corrupted[positions] = (corrupted[positions].astype(np.int64) + offsets) % 255
    return corrupted.tobytes()


def _damaged_share(damaged: np.ndarray, clean: np.ndarray, visible: int) -> float:
    """The share of pixels that an error changed by more than ``visible`` in some channel."""
    return float((np.abs(damaged.astype(np.int16) - clean).max(axis=2) > visible).mean())


def _damage_within(
    rng: np.random.Generator,
    image: np.ndarray,
    data: bytes,
    damage: tuple[float, float],
    draw_positions: Callable[[], np.ndarray],
    visible: int = 24,
    decodes: int = 10,
) -> np.ndarray:
    """Decoded ``data`` after corrupting it, batch by batch, until a share of the image within
    ``damage`` is visibly wrong.

    One damaged byte can ruin anything from one block to the whole picture, so the severity is
    set by the damage seen, not by the number of errors: a batch that overshoots or leaves the
    file undecodable is thrown away and another drawn, at most ``decodes`` times.
    """
    low, high = damage
    clean = _decode(data)
    kept, kept_image, kept_damage = data, clean, 0.0
    overshoot, overshoot_damage = None, 2.0
    for _decode_attempt in range(decodes):
        candidate = _corrupt_bytes(kept, draw_positions(), rng)
        decoded = _decoded_like(candidate, image)
        if decoded is None:
            continue
        share = _damaged_share(decoded, clean, visible)
        if share > high:
            if share < overshoot_damage:
                overshoot, overshoot_damage = decoded, share
            continue
        kept, kept_image, kept_damage = candidate, decoded, share
        if share >= low:
            break
    if kept_damage == 0 and overshoot is not None:
        return overshoot  # too much damage beats none at all
    return kept_image  # may fall short of ``low`` after every try (a few percent of calls)


def _blocks_view(image: np.ndarray, block: int) -> np.ndarray:
    """(rows, cols, block, block, 3) view of the whole blocks of ``image`` (edges left out)."""
    rows, cols = image.shape[0] // block, image.shape[1] // block
    cropped = image[: rows * block, : cols * block]
    return cropped.reshape(rows, block, cols, block, 3).swapaxes(1, 2)


def _pixel_block_size(image: np.ndarray, base: int = 16) -> int:
    """A codec block size scaled with the image, kept a multiple of 8 as codecs' blocks are."""
    return max(8, 8 * int(round(base * _size_scale(image) / 8)))


# --------------------------------------------------------------------------------------------
# blur


@_distortion("blur", "gaussian")
def gaussian_blur(image, level, rng):
    sigma = _band(rng, [(0.5, 0.7), (1.0, 1.3), (1.8, 2.3), (3.0, 3.7), (4.8, 6.0)], level)
    # Below ~0.4 px a blur changes nothing: small images get at least that, rising by level.
    sigma = max(0.4 + 0.05 * level, sigma * _size_scale(image))
    return cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def _disc_kernel(radius: float, ring: float) -> np.ndarray:
    """An anti-aliased disc (a lens's defocus PSF); ``ring`` > 0 brightens its rim, as the
    'soap-bubble' bokeh of many lenses does."""
    half = int(np.ceil(radius)) + 1
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    distance = np.hypot(x, y)
    kernel = np.clip(radius + 0.5 - distance, 0, 1)
    kernel *= 1 + ring * np.clip(distance / max(radius, 1e-6), 0, 1) ** 4
    return kernel / kernel.sum()


@_distortion("blur", "defocus")
def defocus_blur(image, level, rng):
    radius = _band(rng, [(1.1, 1.5), (2.0, 2.6), (3.4, 4.2), (5.5, 6.8), (8.5, 10.5)], level)
    radius = max(0.6 + 0.1 * level, radius * _size_scale(image))  # as for gaussian
    kernel = _disc_kernel(radius, ring=float(rng.uniform(0, 0.6)))
    # Blurring happens in the lens, on linear light: highlights spread into bright discs.
    blurred = cv2.filter2D(_to_linear(image), -1, kernel, borderType=cv2.BORDER_REFLECT)
    return _from_linear(blurred)


def _motion_kernel(length: float, angle_degrees: float) -> np.ndarray:
    """A straight, anti-aliased line of ``length`` pixels (drawn 4x larger, then shrunk)."""
    oversample = 4
    size = int(np.ceil(length)) | 1
    canvas = np.zeros((size * oversample, size * oversample), np.float32)
    centre = (size * oversample - 1) / 2
    dx, dy = np.cos(np.radians(angle_degrees)), np.sin(np.radians(angle_degrees))
    half = (length * oversample - oversample) / 2
    start = (int(round(centre - dx * half)), int(round(centre - dy * half)))
    end = (int(round(centre + dx * half)), int(round(centre + dy * half)))
    cv2.line(canvas, start, end, 1.0, thickness=oversample, lineType=cv2.LINE_AA)
    kernel = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    return kernel / kernel.sum()


@_distortion("blur", "motion")
def motion_blur(image, level, rng):
    length = _band(rng, [(3, 4), (5.5, 7), (9, 11.5), (15, 18), (24, 29)], level)
    length = max(1.5 + 0.5 * level, length * _size_scale(image))  # as for gaussian
    kernel = _motion_kernel(length, float(rng.uniform(0, 180)))
    blurred = cv2.filter2D(_to_linear(image), -1, kernel, borderType=cv2.BORDER_REFLECT)
    return _from_linear(blurred)


# --------------------------------------------------------------------------------------------
# color_distortion


def _scale_saturation(image: np.ndarray, factor: float) -> np.ndarray:
    pixels = _to_float(image)
    grey = _luma(pixels)[:, :, None]
    return _to_uint8(grey + (pixels - grey) * factor)


@_distortion("color_distortion", "saturation_up")
def saturation_up(image, level, rng):
    factor = _band(rng, [(1.25, 1.4), (1.55, 1.75), (1.95, 2.2), (2.5, 2.9), (3.3, 4.0)], level)
    return _scale_saturation(image, factor)


@_distortion("color_distortion", "saturation_down")
def saturation_down(image, level, rng):
    """Washed-out colours. Some colour always remains: a black-and-white photo is a choice the
    photographer made, not a defect, and must not look like this distortion's strongest level."""
    factor = _band(rng, [(0.72, 0.8), (0.55, 0.62), (0.4, 0.46), (0.27, 0.32), (0.15, 0.2)], level)
    return _scale_saturation(image, factor)


@_distortion("color_distortion", "color_cast")
def color_cast(image, level, rng):
    """A white-balance error: per-channel gains in linear light, mostly along the blue-amber
    (colour temperature) axis with some green-magenta tint, brightness kept."""
    stops = _band(rng, [(0.12, 0.16), (0.25, 0.32), (0.42, 0.52), (0.65, 0.8), (1.0, 1.2)], level)
    temperature = float(rng.choice([-1.0, 1.0]))
    tint = float(rng.normal(0, 0.5))
    direction = temperature * np.array([1.0, 0.0, -1.0]) + tint * np.array([-0.5, 1.0, -0.5])
    direction /= np.linalg.norm(direction)
    log_gains = stops * direction
    log_gains -= log_gains @ np.array([0.2126, 0.7152, 0.0722])  # keep luminance
    gains = (2.0**log_gains).astype(np.float32)
    return _from_linear(_to_linear(image) * gains)


@_distortion("color_distortion", "color_quantization")
def color_quantization(image, level, rng):
    """An adaptive palette of few colours, mapped with Floyd-Steinberg dither (TID2013 #18)."""
    colours = _int_band(rng, [(48, 64), (24, 32), (12, 16), (6, 8), (3, 4)], level)
    picture = Image.fromarray(image)
    # Octree keeps small saturated areas that median cut merges into grey, and is fast.
    palette = picture.quantize(colours, method=Image.Quantize.FASTOCTREE)
    dithered = picture.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)
    return np.asarray(dithered.convert("RGB"))


@_distortion("color_distortion", "chromatic_aberration")
def chromatic_aberration(image, level, rng):
    """Lateral chromatic aberration: red and blue magnified differently about the centre
    (colour fringes growing towards the corners), plus a small shift of both."""
    corner_pixels = _band(rng, [(1.0, 1.5), (2.0, 2.8), (3.6, 4.6), (5.8, 7.0), (9.0, 11.0)], level)
    corner_pixels *= _size_scale(image)
    height, width = image.shape[:2]
    half_diagonal = np.hypot(width, height) / 2
    sign = float(rng.choice([-1.0, 1.0]))
    shift_angle = rng.uniform(0, 2 * np.pi)
    shift = 0.3 * corner_pixels * np.array([np.cos(shift_angle), np.sin(shift_angle)])
    centre = ((width - 1) / 2, (height - 1) / 2)
    result = image.copy()
    for channel, direction in ((0, sign), (2, -sign)):
        scale = 1 + direction * corner_pixels / 2 / half_diagonal
        matrix = cv2.getRotationMatrix2D(centre, 0, scale)
        matrix[:, 2] += direction * shift / 2
        result[:, :, channel] = cv2.warpAffine(
            image[:, :, channel],
            matrix,
            (width, height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
    return result


# --------------------------------------------------------------------------------------------
# compression


@_distortion("compression", "jpeg")
def jpeg_compression(image, level, rng):
    quality = _int_band(rng, [(28, 36), (14, 18), (8, 10), (4, 6), (1, 3)], level)
    return _decode(_encode_jpeg(image, quality))


@_distortion("compression", "jpeg2000")
def jpeg2000_compression(image, level, rng):
    """JPEG 2000 at a low bit rate: blur and ringing around edges. The rate is set for a 512 px
    image and the file size kept at any image size, so a level looks alike once shrunk."""
    bits_per_pixel = _band(rng, [(0.8, 1.0), (0.4, 0.5), (0.2, 0.25), (0.1, 0.125), (0.05, 0.062)], level)
    bits_per_pixel = float(np.clip(bits_per_pixel / _size_scale(image) ** 2, 0.005, 8.0))
    buffer = io.BytesIO()
    Image.fromarray(image).save(
        buffer,
        "JPEG2000",
        no_jp2=True,
        irreversible=True,
        quality_mode="rates",
        quality_layers=[24 / bits_per_pixel],
    )
    return _decode(buffer.getvalue())


@_distortion("compression", "webp")
def webp_compression(image, level, rng):
    """Lossy WebP: smeared detail and blocky flat areas. Even quality 0 stays mild on one pass,
    so the top levels re-encode (the generation loss of images re-shared through apps)."""
    quality = _int_band(rng, [(14, 20), (6, 9), (2, 4), (0, 1), (0, 0)], level)
    result = image
    for _generation in range((1, 1, 1, 2, 4)[level - 1]):
        buffer = io.BytesIO()
        Image.fromarray(result).save(buffer, "WEBP", quality=quality, method=4)
        result = _decode(buffer.getvalue())
    return result


# --------------------------------------------------------------------------------------------
# luminance_contrast


@_distortion("luminance_contrast", "brighten")
def brighten(image, level, rng):
    """Lifted mid-tones with black and white points kept (KADID-10k 'brighten')."""
    power = _band(rng, [(1.15, 1.25), (1.4, 1.55), (1.75, 2.0), (2.3, 2.7), (3.2, 3.8)], level)
    return _apply_luma_curve(image, lambda x: 1 - (1 - x) ** power)


@_distortion("luminance_contrast", "darken")
def darken(image, level, rng):
    """Underexposure as in real low-light photos: exposure dropped in linear light, then the
    shadows crushed by the camera's black level."""
    stops = _band(rng, [(0.45, 0.6), (0.9, 1.1), (1.4, 1.7), (2.0, 2.4), (2.8, 3.3)], level)
    black = _band(rng, [(0.0, 0.01), (0.01, 0.02), (0.02, 0.035), (0.035, 0.05), (0.05, 0.07)], level)

    def curve(x):
        darker = _linear_to_srgb_values(_srgb_to_linear_values(x) * 2.0**-stops)
        return np.clip((darker - black) / (1 - black), 0, 1)

    return _apply_tone_curve(image, curve)


@_distortion("luminance_contrast", "low_light")
def low_light(image, level, rng):
    """A scene shot in too little light: several stops under, the sensor's shot and read noise
    at that low signal (lifted by the camera's gain, so mild next to the darkness), in-camera JPEG.
    """
    stops = _band(rng, [(1.0, 1.4), (1.8, 2.2), (2.6, 3.0), (3.3, 3.8), (4.0, 4.6)], level)
    linear = _to_linear(image) * np.float32(2.0**-stops)
    gain = 2.0 ** (stops - 1)  # the ISO boost that makes the noise of a dim signal visible
    shot = float(rng.uniform(0.0001, 0.0003)) * gain
    deviation = np.sqrt(shot * linear + 0.02 * shot * shot)
    noisy = linear + deviation * _gaussian_noise_field(rng, image.shape, 0.6)
    return _decode(_encode_jpeg(_from_linear(noisy), int(rng.integers(85, 95))))


@_distortion("luminance_contrast", "mean_shift")
def mean_shift(image, level, rng):
    """The same offset added to every pixel, up or down (TID2013 #16), clipping at the ends."""
    offset = _band(rng, [(0.035, 0.05), (0.07, 0.09), (0.12, 0.15), (0.18, 0.22), (0.26, 0.32)], level)
    offset *= float(rng.choice([-1.0, 1.0]))
    return _apply_tone_curve(image, lambda x: x + offset)


@_distortion("luminance_contrast", "contrast_up")
def contrast_up(image, level, rng):
    """An S-curve: a sigmoid through mid-grey, normalised to keep black and white."""
    steepness = _band(rng, [(2.8, 3.4), (4.6, 5.4), (7.0, 8.0), (10.0, 12.0), (15.0, 18.0)], level)
    low, high = 1 / (1 + np.exp(steepness / 2)), 1 / (1 + np.exp(-steepness / 2))
    return _apply_tone_curve(image, lambda x: (1 / (1 + np.exp(-steepness * (x - 0.5))) - low) / (high - low))


@_distortion("luminance_contrast", "contrast_down")
def contrast_down(image, level, rng):
    """Flat, hazy tones: values pulled towards the image's mean."""
    factor = _band(rng, [(0.74, 0.8), (0.55, 0.62), (0.4, 0.46), (0.26, 0.31), (0.13, 0.18)], level)
    mean = float(image.mean()) / 255
    return _apply_tone_curve(image, lambda x: mean + (x - mean) * factor)


@_distortion("luminance_contrast", "gamma")
def gamma(image, level, rng):
    """A wrong display gamma, darker (> 1) or lighter (< 1) mid-tones."""
    exponent = _band(rng, [(1.22, 1.3), (1.45, 1.6), (1.8, 2.0), (2.3, 2.6), (3.0, 3.5)], level)
    if rng.random() < 0.5:
        exponent = 1 / exponent
    return _apply_tone_curve(image, lambda x: x**exponent)


@_distortion("luminance_contrast", "overexposure_clip")
def overexposure_clip(image, level, rng):
    """Exposure pushed in linear light; each channel clips, so highlights burn out to white."""
    stops = _band(rng, [(0.4, 0.55), (0.8, 1.0), (1.3, 1.6), (1.9, 2.3), (2.7, 3.2)], level)
    return _apply_tone_curve(image, lambda x: _linear_to_srgb_values(_srgb_to_linear_values(x) * 2.0**stops))


@_distortion("luminance_contrast", "underexposure_clip")
def underexposure_clip(image, level, rng):
    """Exposure dropped and a high black point: shadows block up into featureless black."""
    stops = _band(rng, [(0.2, 0.3), (0.4, 0.55), (0.7, 0.85), (1.0, 1.2), (1.4, 1.7)], level)
    black = _band(rng, [(0.04, 0.06), (0.08, 0.1), (0.13, 0.16), (0.19, 0.23), (0.27, 0.32)], level)

    def curve(x):
        darker = _linear_to_srgb_values(_srgb_to_linear_values(x) * 2.0**-stops)
        return np.clip((darker - black) / (1 - black), 0, 1)

    return _apply_tone_curve(image, curve)


# --------------------------------------------------------------------------------------------
# noise

_NOISE_SIGMAS = [(3.0, 4.5), (6.5, 8.5), (11.0, 13.5), (17.0, 20.0), (26.0, 31.0)]  # of 255


@_distortion("noise", "white_gaussian")
def white_gaussian_noise(image, level, rng):
    """Additive gaussian noise, the same in all channels (luminance grain)."""
    sigma = _band(rng, _NOISE_SIGMAS, level) / 255
    noise = rng.standard_normal(image.shape[:2], dtype=np.float32)[:, :, None] * sigma
    return _to_uint8(_to_float(image) + noise)


@_distortion("noise", "color_noise")
def color_noise(image, level, rng):
    """Additive gaussian noise drawn independently per channel (coloured grain); stronger than
    white_gaussian because the eye sees less of noise that is mostly chroma (as in TID2013)."""
    sigma = 1.4 * _band(rng, _NOISE_SIGMAS, level) / 255
    noise = rng.standard_normal(image.shape, dtype=np.float32) * sigma
    return _to_uint8(_to_float(image) + noise)


@_distortion("noise", "impulse")
def impulse_noise(image, level, rng):
    """Salt and pepper: a fraction of pixels set to black or white."""
    fraction = _band(rng, [(0.002, 0.004), (0.008, 0.012), (0.02, 0.028), (0.045, 0.06), (0.09, 0.12)], level)
    draw = rng.random(image.shape[:2], dtype=np.float32)
    result = image.copy()
    result[draw < fraction / 2] = 0
    result[(draw >= fraction / 2) & (draw < fraction)] = 255
    return result


@_distortion("noise", "speckle")
def speckle_noise(image, level, rng):
    """Multiplicative noise: each channel value times (1 + gaussian)."""
    sigma = _band(rng, [(0.04, 0.06), (0.08, 0.11), (0.14, 0.18), (0.22, 0.27), (0.33, 0.4)], level)
    noise = 1 + rng.standard_normal(image.shape, dtype=np.float32) * sigma
    return _to_uint8(_to_float(image) * noise)


@_distortion("noise", "high_iso")
def high_iso_noise(image, level, rng):
    """Sensor noise as a camera at high ISO leaves it.

    Poisson-Gaussian (signal-dependent shot noise plus read noise) in linear light, so the
    shadows are the noisiest after the tone curve; luminance grain made slightly coarse by
    demosaicing; chroma blotches at a lower spatial frequency; then in-camera JPEG.
    """
    shot = _band(
        rng,
        [(0.0006, 0.0009), (0.0018, 0.0024), (0.0042, 0.0054), (0.009, 0.011), (0.017, 0.021)],
        level,
    )
    read = shot * float(rng.uniform(0.02, 0.06))
    linear = _to_linear(image)
    deviation = np.sqrt(shot * linear + read)
    luminance = _gaussian_noise_field(rng, image.shape[:2], 0.6)[:, :, None]
    chroma = _gaussian_noise_field(rng, image.shape, float(rng.uniform(1.2, 2.0)))
    chroma -= chroma.mean(axis=2, keepdims=True)  # zero-luminance colour noise
    chroma_weight = float(rng.uniform(0.8, 1.3))
    noisy = linear + deviation * (0.8 * luminance + chroma_weight * chroma)
    return _decode(_encode_jpeg(_from_linear(noisy), int(rng.integers(82, 93))))


# --------------------------------------------------------------------------------------------
# transmission_errors


@_distortion("transmission_errors", "jpeg_bitstream_errors")
def jpeg_bitstream_errors(image, level, rng):
    """Bytes of a JPEG's entropy-coded data damaged, as by bit rot or a bad transfer.

    Half the time the file has a restart marker per MCU row (as some cameras and streams write
    it) and scattered errors each ruin part of a stripe; otherwise a burst garbles everything
    after it (shifted blocks, wrong colours, grey), and the level sets how far up it strikes.
    """
    with_restarts = bool(rng.random() < 0.5)
    mcus_per_row = (image.shape[1] + 15) // 16
    data = _encode_jpeg(image, int(rng.integers(75, 93)), mcus_per_row if with_restarts else 0)
    start, end = _jpeg_entropy_range(data)
    positions = _safe_byte_positions(data, start, end)
    from_end = [(0.02, 0.06), (0.06, 0.14), (0.14, 0.3), (0.3, 0.5), (0.5, 0.8)][level - 1]

    def draw_positions():
        if with_restarts:  # each error ruins at most the rest of its stripe
            return rng.choice(positions, size=(1, 1, 2, 4, 6)[level - 1])
        first = int(len(positions) * (1 - rng.uniform(*from_end)))
        return positions[first : first + int(rng.integers(1, 5))]

    damage = [(0.003, 0.03), (0.02, 0.08), (0.06, 0.2), (0.15, 0.4), (0.3, 0.8)][level - 1]
    return _damage_within(rng, image, data, damage, draw_positions)


@_distortion("transmission_errors", "truncated")
def truncated(image, level, rng):
    """An incompletely written or transferred JPEG: decoders fill the missing bottom grey."""
    missing = _band(rng, [(0.04, 0.08), (0.1, 0.16), (0.2, 0.3), (0.38, 0.5), (0.6, 0.75)], level)
    data = _encode_jpeg(image, int(rng.integers(75, 93)))
    start, end = _jpeg_entropy_range(data)
    cut = end - int((end - start) * missing)
    return _decode(data[:cut] + b"\xff\xd9")  # a fake end marker lets the decoder finish


@_distortion("transmission_errors", "lost_blocks")
def lost_blocks(image, level, rng):
    """Lost macroblocks, in runs along the raster order as lost packets lose them, each run
    concealed by grey, the block above, random garbage or a block from elsewhere."""
    fraction = _band(rng, [(0.004, 0.008), (0.012, 0.02), (0.03, 0.045), (0.06, 0.09), (0.12, 0.18)], level)
    block = _pixel_block_size(image)
    result = image.copy()
    blocks = _blocks_view(result, block)
    rows, cols = blocks.shape[:2]
    total = rows * cols
    if total < 4:
        return result
    lost = _lost_runs(rng, total, max(1, int(round(fraction * total))), mean_run=3.0)
    run_of_block = np.repeat(np.arange(len(lost)), [len(run) for run in lost])
    indices = np.concatenate(lost)
    mode = rng.integers(0, 4, size=len(lost))[run_of_block]
    row, col = np.divmod(indices, cols)
    original = _blocks_view(image, block)
    fills = np.empty((len(indices), block, block, 3), np.uint8)
    fills[mode == 0] = 128  # grey: what a decoder shows for a missing block
    above = mode == 1
    fills[above] = original[np.maximum(row[above] - 1, 0), col[above]]
    garbage = mode == 2
    fills[garbage] = rng.integers(0, 256, size=(int(garbage.sum()), 1, 1, 3), dtype=np.uint8) // 2 + (
        rng.integers(0, 128, size=(int(garbage.sum()), block, block, 1), dtype=np.uint8)
    )
    elsewhere = mode == 3
    fills[elsewhere] = original[
        rng.integers(0, rows, size=int(elsewhere.sum())), rng.integers(0, cols, size=int(elsewhere.sum()))
    ]
    blocks[row, col] = fills
    return result


def _lost_runs(rng: np.random.Generator, total: int, count: int, mean_run: float) -> list[np.ndarray]:
    """Runs of consecutive block indices in [0, total), about ``count`` blocks in all."""
    runs, lost = [], 0
    while lost < count:
        length = min(int(rng.geometric(1 / mean_run)), count - lost)
        first = int(rng.integers(0, total))
        run = np.arange(first, min(first + length, total))
        runs.append(run)
        lost += len(run)
    return runs


@_distortion("transmission_errors", "packet_loss_streaks")
def packet_loss_streaks(image, level, rng):
    """Horizontal streaks as in broken video or damaged streams: a band of rows that is, over
    part of its width, smeared down, smeared across, shifted sideways or robbed of its colour."""
    count = _int_band(rng, [(1, 1), (1, 2), (2, 3), (4, 5), (6, 8)], level)
    height, width = image.shape[:2]
    row_unit = _pixel_block_size(image) // 2
    result = image.copy()
    for _streak in range(count):
        rows = row_unit * _int_band(rng, [(1, 1), (1, 1), (1, 2), (1, 3), (2, 4)], level)
        top = int(rng.integers(1, max(2, height - rows)))
        extent = _band(rng, [(0.15, 0.35), (0.25, 0.5), (0.35, 0.75), (0.5, 1.0), (0.7, 1.0)], level)
        length = max(1, int(width * extent))
        left = int(rng.integers(0, width - length + 1))
        band = result[top : top + rows, left : left + length]
        effect = int(rng.integers(0, 4))
        if effect == 0:  # the last good row repeated down (the decoder kept the previous line)
            band[:] = result[top - 1, left : left + length][None]
        elif effect == 1:  # each row's first pixel smeared across
            band[:] = band[:, :1]
        elif effect == 2:  # data landed in the wrong place: shifted, with a brightness jump
            shifted = np.roll(band, int(rng.integers(length // 8, length // 2 + 2)), axis=1)
            band[:] = np.clip(shifted.astype(np.int16) + int(rng.integers(-40, 41)), 0, 255)
        else:  # chroma lost: zeroed YCbCr chroma decodes green
            ycrcb = cv2.cvtColor(np.ascontiguousarray(band), cv2.COLOR_RGB2YCrCb)
            ycrcb[:, :, 1:] = rng.integers(0, 40, size=2, dtype=np.uint8)
            band[:] = cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)
    return result


@_distortion("transmission_errors", "jpeg2000_errors")
def jpeg2000_errors(image, level, rng):
    """Damaged bytes in a JPEG 2000 codestream (TID2013 #11): a hit in a code block decodes as a
    smudge or ringing patch of wrong wavelet detail, a hit in a packet header or a coarse band
    as colour washes over large areas."""
    bits_per_pixel = float(np.clip(rng.uniform(1.2, 2.0) / _size_scale(image), 0.3, 3.0))
    buffer = io.BytesIO()
    Image.fromarray(image).save(
        buffer,
        "JPEG2000",
        no_jp2=True,
        irreversible=True,
        quality_mode="rates",
        quality_layers=[24 / bits_per_pixel],
    )
    data = buffer.getvalue()
    start = data.find(b"\xff\x93") + 2  # after the first start-of-data marker
    positions = _safe_byte_positions(data, start, len(data) - 2)
    damage = [(0.002, 0.015), (0.01, 0.04), (0.03, 0.1), (0.08, 0.25), (0.2, 0.6)][level - 1]
    batch = (1, 1, 2, 3, 5)[level - 1]
    return _damage_within(
        rng,
        image,
        data,
        damage,
        lambda: rng.choice(positions, size=batch),
        visible=12,  # wrong wavelet detail is faint but plain to see: a lower bar than for JPEG
    )


# --------------------------------------------------------------------------------------------
# other


@_distortion("other", "pixelation")
def pixelation(image, level, rng):
    factor = _band(rng, [(1.7, 2.1), (2.6, 3.2), (4.0, 4.8), (6.3, 7.6), (10.0, 12.5)], level)
    # Blocks under 1.5 px only jumble pixels: small images get at least that, rising by level.
    factor = max(1.2 + 0.3 * level, factor * _size_scale(image))
    height, width = image.shape[:2]
    small = cv2.resize(
        image,
        (max(1, round(width / factor)), max(1, round(height / factor))),
        interpolation=cv2.INTER_AREA,
    )
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)


@_distortion("other", "posterization")
def posterization(image, level, rng):
    """Few tone levels per channel, without dither: banding and flat areas."""
    steps = _int_band(rng, [(20, 26), (11, 14), (6, 8), (4, 5), (2, 3)], level)
    return _apply_tone_curve(image, lambda x: np.round(x * (steps - 1)) / (steps - 1))


@_distortion("other", "non_eccentricity_patches")
def non_eccentricity_patches(image, level, rng):
    """Small patches copied over from nearby locations (TID2013 #15)."""
    count = _int_band(rng, [(15, 25), (40, 60), (100, 140), (220, 280), (450, 550)], level)
    height, width = image.shape[:2]
    size = max(3, int(round(12 * _size_scale(image))))
    if min(height, width) <= 3 * size:
        size = max(2, min(height, width) // 4)
    result = image.copy()
    top = rng.integers(0, height - size + 1, size=count)
    left = rng.integers(0, width - size + 1, size=count)
    distance = rng.uniform(0.5, 2.0, size=count) * size
    angle = rng.uniform(0, 2 * np.pi, size=count)
    source_top = np.clip(top + np.round(distance * np.sin(angle)), 0, height - size).astype(int)
    source_left = np.clip(left + np.round(distance * np.cos(angle)), 0, width - size).astype(int)
    for y, x, sy, sx in zip(top, left, source_top, source_left):
        result[y : y + size, x : x + size] = image[sy : sy + size, sx : sx + size]
    return result


@_distortion("other", "jitter")
def jitter(image, level, rng):
    """Every pixel displaced by a small random offset (KADID-10k 'jitter')."""
    amplitude = _band(rng, [(0.35, 0.5), (0.7, 0.9), (1.2, 1.5), (2.0, 2.5), (3.2, 4.0)], level)
    amplitude *= _size_scale(image)
    height, width = image.shape[:2]
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    offsets = rng.standard_normal((2, height, width), dtype=np.float32) * amplitude
    return cv2.remap(image, x + offsets[0], y + offsets[1], cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT)


@_distortion("other", "color_blocks")
def color_blocks(image, level, rng):
    """Solid rectangles of random colours pasted over the picture (KADID-10k 'color block')."""
    count = _int_band(rng, [(1, 2), (3, 4), (6, 8), (11, 14), (18, 24)], level)
    height, width = image.shape[:2]
    side = 0.06 * np.sqrt(height * width)
    result = image.copy()
    for _block in range(count):
        block_height = max(2, int(side * rng.uniform(0.6, 1.4)))
        block_width = max(2, int(side * rng.uniform(0.6, 1.4)))
        top = int(rng.integers(0, max(1, height - block_height)))
        left = int(rng.integers(0, max(1, width - block_width)))
        result[top : top + block_height, left : left + block_width] = rng.integers(0, 256, size=3)
    return result


@_distortion("other", "sparse_sampling")
def sparse_sampling(image, level, rng):
    """A random fraction of pixels kept and every other pixel filled from its nearest kept one:
    a mosaic of irregular cells that grows coarser as fewer samples survive. The fraction is
    for a 512 px image, so the cells keep their size relative to the picture."""
    kept = _band(rng, [(0.5, 0.6), (0.3, 0.37), (0.15, 0.19), (0.07, 0.09), (0.025, 0.035)], level)
    # Small images cannot keep more than all pixels: there the fraction is capped per level.
    kept = min((0.9, 0.75, 0.6, 0.45, 0.3)[level - 1], kept / _size_scale(image) ** 2)
    sampled = rng.random(image.shape[:2], dtype=np.float32) < kept
    sampled.flat[int(rng.integers(sampled.size))] = True  # at least one sample
    # Label every pixel with its nearest sample (labels number the samples in raster order).
    _distance, labels = cv2.distanceTransformWithLabels(
        np.where(sampled, 0, 255).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    return image[sampled][labels - 1]
