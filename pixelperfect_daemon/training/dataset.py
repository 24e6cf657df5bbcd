"""Training data: which images, which labels, which split, and their backbone features.

Two sources:

* **pristine photos** (``--pristine DIR``): each one gives a few clean variants (label Good) and
  one synthetic distortion per defect class and level (``distortions.py``);
* **authentic photos with human scores** (``--mos-csv``, the LIVE In the Wild Challenge database,
  Ghadiyaram & Bovik, IEEE TIP 2016): stage 1 only, since they carry no defect label.

The split is by source photo (a hash of its path and the seed), so no scene is in both the
training and the validation set. Features are computed once per source photo and cached on disk,
which is what makes training resumable and the heads quick to retrain.
"""

from __future__ import annotations

import ast
import csv
import functools
import hashlib
import io
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..files import IMAGE_EXTENSIONS
from ..labels import DEFECTS
from ..loading import ImageLoadError, load_image
from ..view_statistics import head_inputs
from ..views import make_views
from . import distortions

# ---------------------------------------------------------------- labelling decisions
LEVELS = (1, 2, 3, 4, 5)
# Levels 1 and 2 are often invisible or a matter of taste (a slightly brighter or more saturated
# photo is a style, not a defect): they do not teach stage 1 what Poor means (neither Good nor
# Poor), but stage 2 still learns their defect. Levels 3-5 count as Poor.
POOR_MIN_LEVEL = 3
# Authentic photos: MOS below this counts as Poor; the stage-1 target is softened around it
# because a MOS is a noisy mean of opinions (its standard deviation is ~15-20 points).
MOS_POOR_BELOW = 50.0
MOS_SOFTNESS = 5.0
# Pseudo quality scores for synthetic images, on the MOS/100 scale, so stage 1's quality output
# also ranks synthetic damage; they count less than real human scores (QUALITY_WEIGHT_SYNTHETIC).
QUALITY_CLEAN = 0.75
QUALITY_DROP_PER_LEVEL = 0.1
QUALITY_WEIGHT_SYNTHETIC = 0.25

# ---------------------------------------------------------------- synthesis settings
# Clean variants per photo. With few photos the heads learn to recognise the photos themselves,
# so every variant (clean or distorted) is a different random crop, scale and mirror image.
CLEAN_VARIANTS = 16
# Stage 2 is short of data (a learning curve on half, three quarters and all of the damaged
# samples gave top-1 0.71, 0.73, 0.75), so each photo gives this many more rounds of one
# distortion per class and level, for stage 2 only. Stage 1 does not see them: three times as many
# Poor samples made it flag more clean photos. They are drawn from their own generator after
# the first round, so the samples stage 1 learns from are the same with or without them.
EXTRA_DAMAGED_ROUNDS = 2
CROP_SIDE_FRACTION = (0.5, 1.0)
# Images are synthesised at a random working size like the photos people judge on screen.
WORKING_LONG_SIDE = (384, 1024)
# Black-and-white photos are good photos too: this share of the variants (clean, and damaged by
# any defect but colour distortion, which needs colour) starts from a monochrome copy, so a grey
# photo is not mistaken for washed-out colour and noise in one is still called noise.
MONOCHROME_FRACTION = 0.15
# The last step of most real pipelines is a JPEG encoder (cameras, phones and the web, at quality
# 70-96; 75 is libjpeg's default): this share of the clean variants, and of those damaged by any
# defect but Compression and Transmission Errors (which bring their own codec), is re-encoded, so
# mild JPEG blocking on a blurred, dark or noisy photo is not taken for Compression.
FINAL_JPEG_FRACTION = 0.5
FINAL_JPEG_QUALITY = (70, 97)
OWN_CODEC_DEFECTS = ("compression", "transmission_errors")
VALIDATION_FRACTION = 0.2


@dataclass(frozen=True)
class SourceImage:
    path: Path
    kind: str  # "pristine" or "authentic"
    mos: float | None = None


def split_of(source: SourceImage, seed: int, validation_fraction: float = VALIDATION_FRACTION) -> str:
    digest = hashlib.sha256(f"{seed}:{source.path.name}:{source.path.parent.name}".encode()).digest()
    return "val" if int.from_bytes(digest[:4], "big") / 2**32 < validation_fraction else "train"


def assign_splits(sources: list[SourceImage], seed: int) -> dict[Path, str]:
    """Split by source photo; each kind keeps at least one photo on each side when it has two."""
    splits = {source.path: split_of(source, seed) for source in sources}
    for kind in {source.kind for source in sources}:
        paths = [source.path for source in sources if source.kind == kind]
        if len(paths) >= 2:
            for side, other in (("val", "train"), ("train", "val")):
                if all(splits[p] == other for p in paths):
                    splits[paths[-1] if side == "val" else paths[0]] = side
    return splits


def find_pristine(folder: Path) -> list[SourceImage]:
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    return [SourceImage(path=p, kind="pristine") for p in files]


def read_mos_csv(csv_path: Path) -> list[SourceImage]:
    """Rows of a manifest-format CSV that carry a MOS (0-100); paths are relative to the CSV."""
    sources = []
    with open(csv_path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row.get("mos"):
                sources.append(SourceImage(path=csv_path.parent / row["file"], kind="authentic", mos=float(row["mos"])))
    return sources


# ---------------------------------------------------------------- one source photo -> samples
@dataclass
class Samples:
    """Views and labels for the samples made from one source photo."""

    views: np.ndarray  # (N, 2, 224, 224, 3) uint8
    defect: np.ndarray  # (N,) int, index into DEFECTS, -1 for clean/authentic
    level: np.ndarray  # (N,) int, 0 for clean/authentic
    p_poor: np.ndarray  # (N,) float target, NaN where stage 1 should not learn from it
    quality: np.ndarray  # (N,) float target
    quality_weight: np.ndarray  # (N,) float
    subtype: list[str]
    stage2_only: np.ndarray  # (N,) bool, True for the extra damaged rounds (EXTRA_DAMAGED_ROUNDS)


def _resize_long_side(pixels: np.ndarray, long_side: int) -> np.ndarray:
    height, width = pixels.shape[:2]
    scale = long_side / max(height, width)
    if scale >= 1:
        return pixels
    return cv2.resize(pixels, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)


def _final_jpeg(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Re-encoded as a camera, phone or website would (see FINAL_JPEG_QUALITY)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=int(rng.integers(*FINAL_JPEG_QUALITY)))
    return np.asarray(Image.open(buffer).convert("RGB"))


def monochrome(pixels: np.ndarray) -> np.ndarray:
    """A black-and-white version, still three channels (as B&W JPEGs from cameras are)."""
    grey = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)
    return np.repeat(grey[:, :, None], 3, axis=2)


def samples_from_pristine(
    pixels: np.ndarray,
    rng: np.random.Generator,
    clean_variants: int = CLEAN_VARIANTS,
    extra_damaged_rounds: int = EXTRA_DAMAGED_ROUNDS,
) -> Samples:
    views, defect, level, p_poor, quality, quality_weight, subtype, stage2_only = [], [], [], [], [], [], [], []

    def working_copy(rng: np.random.Generator, may_be_monochrome: bool = True) -> np.ndarray:
        height, width = pixels.shape[:2]
        crop_h = round(height * rng.uniform(*CROP_SIDE_FRACTION))
        crop_w = round(width * rng.uniform(*CROP_SIDE_FRACTION))
        top, left = int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1))
        image = pixels[top : top + crop_h, left : left + crop_w]
        image = _resize_long_side(image, int(rng.integers(*WORKING_LONG_SIDE)))
        image = image[:, ::-1] if rng.random() < 0.5 else image
        if may_be_monochrome and rng.random() < MONOCHROME_FRACTION:
            image = monochrome(image)
        return np.ascontiguousarray(image)

    def damaged_round(rng: np.random.Generator, extra: bool) -> None:
        """One distortion per defect class and level, each on its own working copy."""
        for defect_index, defect_name in enumerate(DEFECTS):
            for lvl in LEVELS:
                source = working_copy(rng, may_be_monochrome=defect_name != "color_distortion")
                name, image = distortions.random_distortion(source, defect_name, lvl, rng)
                if defect_name not in OWN_CODEC_DEFECTS and rng.random() < FINAL_JPEG_FRACTION:
                    image = _final_jpeg(image, rng)
                views.append(make_views(image))
                defect.append(defect_index), level.append(lvl), subtype.append(name), stage2_only.append(extra)
                p_poor.append(np.nan if lvl < POOR_MIN_LEVEL else 1.0)
                (
                    quality.append(QUALITY_CLEAN - QUALITY_DROP_PER_LEVEL * lvl),
                    quality_weight.append(QUALITY_WEIGHT_SYNTHETIC),
                )

    for _ in range(clean_variants):
        image = working_copy(rng)
        if rng.random() < FINAL_JPEG_FRACTION:
            image = _final_jpeg(image, rng)
        views.append(make_views(image))
        defect.append(-1), level.append(0), p_poor.append(0.0), subtype.append("clean"), stage2_only.append(False)
        quality.append(QUALITY_CLEAN), quality_weight.append(QUALITY_WEIGHT_SYNTHETIC)
    damaged_round(rng, extra=False)
    if extra_damaged_rounds:
        extra_rng = np.random.default_rng(int(rng.integers(2**63)))  # drawn last: the rounds above are unchanged
        for _ in range(extra_damaged_rounds):
            damaged_round(extra_rng, extra=True)
    return Samples(
        views=np.stack(views),
        defect=np.array(defect),
        level=np.array(level),
        p_poor=np.array(p_poor, dtype=np.float32),
        quality=np.array(quality, dtype=np.float32),
        quality_weight=np.array(quality_weight, dtype=np.float32),
        subtype=subtype,
        stage2_only=np.array(stage2_only, dtype=bool),
    )


def samples_from_authentic(pixels: np.ndarray, mos: float, flip: bool) -> Samples:
    images = [pixels] + ([np.ascontiguousarray(pixels[:, ::-1])] if flip else [])
    n = len(images)
    soft_poor = 1.0 / (1.0 + np.exp((mos - MOS_POOR_BELOW) / MOS_SOFTNESS))
    return Samples(
        views=np.stack([make_views(image) for image in images]),
        defect=np.full(n, -1),
        level=np.zeros(n, dtype=int),
        p_poor=np.full(n, soft_poor, dtype=np.float32),
        quality=np.full(n, mos / 100.0, dtype=np.float32),
        quality_weight=np.ones(n, dtype=np.float32),
        subtype=["authentic"] * n,
        stage2_only=np.zeros(n, dtype=bool),
    )


# ---------------------------------------------------------------- features, cached per source
FEATURE_FIELDS = ("features", "defect", "level", "p_poor", "quality", "quality_weight", "subtype", "stage2_only")


def code_fingerprint(source: str) -> str:
    """What a module's code does, not how it is written down: its syntax tree without line
    numbers, comments or docstrings. Any change to the code changes it; rewording a comment or
    a docstring, or re-wrapping lines, does not."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


@functools.cache
def code_version() -> str:
    """A hash of the code that decides what a cached sample holds: change any of it and the
    cache is rebuilt, so a rerun can never mix samples made by different code. Comments and
    docstrings are left out (``code_fingerprint``), so documenting the code costs no rebuild."""
    from .. import loading, view_statistics, views
    from . import backbone

    digest = hashlib.sha256()
    for module_file in (
        loading.__file__,
        views.__file__,
        view_statistics.__file__,
        distortions.__file__,
        backbone.__file__,
        __file__,
    ):
        digest.update(code_fingerprint(Path(module_file).read_text()).encode())
    return digest.hexdigest()[:12]


def _cache_file(
    cache_dir: Path, source: SourceImage, seed: int, clean_variants: int, extra_damaged_rounds: int
) -> Path:
    identity = (
        f"{code_version()}:{source.path.resolve()}:{source.kind}:{source.mos}:{seed}:{clean_variants}"
        f":{extra_damaged_rounds}"
    )
    key = hashlib.sha256(identity.encode()).hexdigest()[:20]
    return cache_dir / f"{source.path.stem[:40]}-{key}.npz"


def make_samples(source: SourceImage, split: str, seed: int, clean_variants: int, extra_damaged_rounds: int) -> Samples:
    pixels = load_image(source.path).pixels
    if source.kind == "authentic":
        return samples_from_authentic(pixels, source.mos, flip=(split == "train"))
    # Long pristine photos are first brought to the largest working size once (saves time).
    pixels = _resize_long_side(pixels, WORKING_LONG_SIDE[1])
    digest = hashlib.sha256(f"{seed}:{source.path.name}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    return samples_from_pristine(pixels, rng, clean_variants, extra_damaged_rounds)


def extract_features(
    sources: list[SourceImage],
    embed: Callable[[np.ndarray], np.ndarray],
    cache_dir: Path,
    seed: int,
    clean_variants: int = CLEAN_VARIANTS,
    extra_damaged_rounds: int = EXTRA_DAMAGED_ROUNDS,
    progress: Callable[[int], None] = lambda n: None,
    threads: int = 2,
) -> Iterator[tuple[SourceImage, str, dict[str, np.ndarray]]]:
    """Yield (source, split, arrays) per source photo, computing features only where not cached.

    ``embed`` maps views (M, 224, 224, 3) uint8 to features (M, D); a sample's features are both
    views' backbone features followed by their statistics (``view_statistics.py``). Synthesis runs on a thread pool
    while the main thread runs the backbone, so both cores stay busy.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    splits = assign_splits(sources, seed)
    code_version()  # computed once up front (cached below), not per photo

    def prepare(source: SourceImage):
        split = splits[source.path]
        cache = _cache_file(cache_dir, source, seed, clean_variants, extra_damaged_rounds)
        if cache.exists():
            return source, split, cache, None
        try:
            return source, split, cache, make_samples(source, split, seed, clean_variants, extra_damaged_rounds)
        except ImageLoadError as error:
            return source, split, cache, error

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for source, split, cache, samples in _bounded_map(pool, prepare, sources, ahead=2 * threads):
            if isinstance(samples, ImageLoadError):
                progress(1)
                continue  # unreadable training photos are skipped (and counted by the caller's log)
            if samples is not None:
                n = samples.views.shape[0]
                features = head_inputs(embed(samples.views.reshape(n * 2, *samples.views.shape[2:])), samples.views)
                arrays = {
                    "features": features.astype(np.float16),
                    "defect": samples.defect,
                    "level": samples.level,
                    "p_poor": samples.p_poor,
                    "quality": samples.quality,
                    "quality_weight": samples.quality_weight,
                    "subtype": np.array(samples.subtype),
                    "stage2_only": samples.stage2_only,
                }
                temporary = cache.with_suffix(".partial.npz")
                np.savez(temporary, **arrays)
                temporary.replace(cache)  # atomic: a killed run never leaves a half-written cache file
            with np.load(cache) as data:
                arrays = {name: data[name] for name in FEATURE_FIELDS}
            progress(1)
            yield source, split, arrays


def _bounded_map(pool: ThreadPoolExecutor, function, items, ahead: int):
    """Like pool.map, in order, but at most ``ahead`` results wait in memory."""
    pending = deque()
    for item in items:
        pending.append(pool.submit(function, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def stack(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not parts:
        return {name: np.zeros((0,)) for name in FEATURE_FIELDS}
    return {name: np.concatenate([p[name] for p in parts]) for name in FEATURE_FIELDS}
