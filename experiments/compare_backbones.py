"""Backbone comparison on the same data: does the pretrained backbone earn its place?

Four networks learn the same task — the stage-2 defect (seven classes) from the 100 % detail
view — on the same photos, split by source photo, with the same number of epochs:

* **EfficientNet-Lite0, ImageNet-pretrained, frozen** + the stage-2 head (what PixelPerfect ships);
* **the same, fine-tuned end to end** (the pretrained backbone and the head trained together; its
  batch normalisation keeps the ImageNet statistics);
* **EfficientNet-Lite0 from scratch** (random initialisation, trained end to end);
* **VGG16 from scratch** with its classifier head (the original design; its ImageNet weights cannot
  be had here), trained end to end.

The defaults fit a 2-core CPU: centre crops of 112 x 112 at full resolution, two random levels per
class, 80 photos. The full comparison (every photo, every level, 224 x 224, 25 epochs) needs an
accelerator: on 2 CPU cores one epoch of one end-to-end network takes about 7 minutes. It was run
on a lent H100 (``models/backbone_comparison_full.json``), where only PyTorch is installed, as

    python -m experiments.compare_backbones --pristine ../shared/data/pristine \\
        --write-working-copies copies/     # 768-px JPEGs: the photos fit the transfer
    KERAS_BACKEND=torch python -m experiments.compare_backbones --pristine copies/ \\
        --max-photos 194 --levels-per-class 5 --crop 224 --epochs 25 --batch 128 --workers 16 \\
        --networks lite0_imagenet_frozen vgg16_from_scratch lite0_from_scratch lite0_imagenet_fine_tuned

Each result is written to ``--out`` as soon as its network finishes, so a run cut short keeps
what it finished. ``samples_sha256`` identifies the samples, so runs on different machines or
library versions can be checked to have seen the same data.

The numbers compare the networks under one budget; they are not the accuracy of the shipped
models (the model card has those).

Run: python -m experiments.compare_backbones --pristine DIR --out models/backbone_comparison.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pixelperfect_daemon.labels import DEFECTS
from pixelperfect_daemon.loading import load_image
from pixelperfect_daemon.training import dataset, distortions

CROP = 112
EPOCHS = 6
LEVELS_PER_CLASS = 2
BATCH = 32
MAX_PHOTOS = 80
WORKING_LONG_SIDE = 768
HEAD_LEARNING_RATE = 1e-3  # the frozen backbone's head, as in training
END_TO_END_LEARNING_RATE = 1e-4  # every network trained end to end, pretrained or not


@dataclass(frozen=True)
class ComparisonOptions:
    seed: int = 0
    max_photos: int = MAX_PHOTOS
    epochs: int = EPOCHS
    crop: int = CROP
    levels_per_class: int = LEVELS_PER_CLASS
    batch: int = BATCH
    workers: int = 1  # processes synthesising the distortions


# --- data -------------------------------------------------------------------------------------


def photo_views(number: int, path: Path, seed: int, crop: int, levels_per_class: int) -> tuple[list, list]:
    """One photo's detail crops and defect labels: ``levels_per_class`` random levels per class."""
    rng = np.random.default_rng(seed * 100_003 + number)
    pixels = dataset._resize_long_side(load_image(path).pixels, WORKING_LONG_SIDE)
    crops, labels = [], []
    for defect_index, defect in enumerate(DEFECTS):
        for level in rng.choice(dataset.LEVELS, levels_per_class, replace=False):
            _, image = distortions.random_distortion(pixels, defect, int(level), rng)
            detail = dataset.make_views(image)[1]
            offset = (detail.shape[0] - crop) // 2
            crops.append(detail[offset : offset + crop, offset : offset + crop])
            labels.append(defect_index)
    return crops, labels


def build_views(sources, options: ComparisonOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detail crops (N, crop, crop, 3), labels (N,), split flags (N,) = 1 for validation.

    Each photo's random draws depend on its number only, so any number of workers gives the
    same samples.
    """
    splits = dataset.assign_splits(sources, options.seed)
    jobs = [(n, s.path, options.seed, options.crop, options.levels_per_class) for n, s in enumerate(sources)]
    if options.workers > 1:
        # Spawned, not forked: the parent may hold a GPU context, which a forked child must not inherit.
        with ProcessPoolExecutor(options.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            per_photo = list(pool.map(photo_views, *zip(*jobs)))
    else:
        per_photo = [photo_views(*job) for job in jobs]
    crops, labels, is_val = [], [], []
    for source, (photo_crops, photo_labels) in zip(sources, per_photo):
        crops += photo_crops
        labels += photo_labels
        is_val += [splits[source.path] == "val"] * len(photo_labels)
    return np.stack(crops), np.array(labels), np.array(is_val)


def samples_digest(x: np.ndarray, y: np.ndarray, is_val: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in (x, y.astype(np.int64), is_val.astype(np.uint8)):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def write_working_copies(pristine: Path, destination: Path) -> int:
    """The photos shrunk to the comparison's working size, as quality-95 JPEGs under the same
    names (a copy small enough to send to a borrowed machine; ``photo_views`` leaves them as they
    are). Returns the number written."""
    from PIL import Image

    sources = dataset.find_pristine(pristine)
    for source in sources:
        target = destination / source.path.relative_to(pristine)
        target.parent.mkdir(parents=True, exist_ok=True)
        pixels = dataset._resize_long_side(load_image(source.path).pixels, WORKING_LONG_SIDE)
        Image.fromarray(pixels).save(target, "JPEG", quality=95)
    return len(sources)


# --- the networks -----------------------------------------------------------------------------


def _end_to_end(model, x_train, y_train, x_val, y_val, options: ComparisonOptions) -> dict:
    """Train ``model`` (softmax outputs) end to end; validation top-1 and seconds."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(END_TO_END_LEARNING_RATE),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=options.batch, epochs=options.epochs, verbose=2, shuffle=True)
    seconds = time.perf_counter() - start
    predicted = model.predict(x_val, batch_size=options.batch, verbose=0).argmax(axis=1)
    return {"val_top1": float(np.mean(predicted == y_val)), "train_seconds": seconds}


def frozen_imagenet(x_train, y_train, x_val, y_val, options: ComparisonOptions) -> dict:
    """Features once through the frozen backbone, then the stage-2 backbone head (the networks are
    compared, so the measured view statistics are left out)."""
    import keras

    from pixelperfect_daemon.training.backbone import build_feature_extractor
    from pixelperfect_daemon.training.heads import build_stage2_backbone_head

    extractor = build_feature_extractor(weights="imagenet")
    start = time.perf_counter()
    f_train = extractor.predict(x_train, batch_size=options.batch, verbose=0)
    f_val = extractor.predict(x_val, batch_size=options.batch, verbose=0)
    head = build_stage2_backbone_head(f_train.shape[1], f_train.mean(axis=0), f_train.var(axis=0), statistics_dim=0)
    head.compile(
        optimizer=keras.optimizers.Adam(HEAD_LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    head.fit(f_train, y_train, batch_size=options.batch, epochs=options.epochs, verbose=0, shuffle=True)
    predicted = head.predict(f_val, verbose=0).argmax(axis=1)
    return {"val_top1": float(np.mean(predicted == y_val)), "train_seconds": time.perf_counter() - start}


def fine_tuned_imagenet(x_train, y_train, x_val, y_val, options: ComparisonOptions) -> dict:
    """The frozen row's network (backbone features + stage-2 head), trained end to end."""
    import keras

    from pixelperfect_daemon.training.backbone import build_feature_extractor
    from pixelperfect_daemon.training.heads import build_stage2_backbone_head

    extractor = build_feature_extractor(weights="imagenet")
    # Batch normalisation keeps ImageNet's statistics (Keras 3 runs a non-trainable
    # BatchNormalization in inference mode): batches of one task's crops would drift them.
    for layer in extractor.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    # The head's standardisation starts from the pretrained features, as in the frozen row.
    f_train = extractor.predict(x_train, batch_size=options.batch, verbose=0)
    head = build_stage2_backbone_head(f_train.shape[1], f_train.mean(axis=0), f_train.var(axis=0), statistics_dim=0)
    inputs = keras.Input((options.crop, options.crop, 3))
    probabilities = keras.layers.Softmax()(head(extractor(inputs)))
    return _end_to_end(keras.Model(inputs, probabilities), x_train, y_train, x_val, y_val, options)


def lite0_from_scratch(x_train, y_train, x_val, y_val, options: ComparisonOptions) -> dict:
    import keras

    from pixelperfect_daemon.training.backbone import build_efficientnet_lite0

    lite0 = build_efficientnet_lite0(include_top=False, weights=None)
    inputs = keras.Input((options.crop, options.crop, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(lite0(inputs))
    model = keras.Model(inputs, keras.layers.Dense(len(DEFECTS), activation="softmax")(pooled))
    return _end_to_end(model, x_train, y_train, x_val, y_val, options)


def vgg16_from_scratch(x_train, y_train, x_val, y_val, options: ComparisonOptions) -> dict:
    import keras

    vgg = keras.applications.VGG16(weights=None, input_shape=(options.crop, options.crop, 3), classes=len(DEFECTS))
    inputs = keras.Input((options.crop, options.crop, 3))
    model = keras.Model(inputs, vgg(keras.applications.vgg16.preprocess_input(inputs)))
    return _end_to_end(model, x_train, y_train, x_val, y_val, options)


NETWORKS = {
    "lite0_imagenet_frozen": frozen_imagenet,
    "lite0_imagenet_fine_tuned": fine_tuned_imagenet,
    "lite0_from_scratch": lite0_from_scratch,
    "vgg16_from_scratch": vgg16_from_scratch,
}


def device_description() -> str:
    import keras

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
        return f"Keras {keras.__version__} on torch {torch.__version__}, {device}, {os.cpu_count()} CPU cores"
    return f"Keras {keras.__version__} on {backend}, {platform.machine()}, {os.cpu_count()} CPU cores"


def compare(pristine: Path, options: ComparisonOptions, networks=tuple(NETWORKS), on_result=None) -> dict:
    """The data, then each network in turn; ``on_result(results)`` after each (a long run on a
    borrowed machine keeps what it finished)."""
    import keras

    sources = dataset.find_pristine(pristine)[: options.max_photos]
    start = time.perf_counter()
    x, y, val = build_views(sources, options)
    x_train, y_train, x_val, y_val = x[~val].astype(np.float32), y[~val], x[val].astype(np.float32), y[val]
    results = {
        **asdict(options),
        "photos": len(sources),
        "train_samples": int(len(y_train)),
        "val_samples": int(len(y_val)),
        # Runs on other machines (or library versions) compare only if they saw the same samples.
        "samples_sha256": samples_digest(x, y, val),
        "data_seconds": time.perf_counter() - start,
        "device": device_description(),
        "chance": float(np.max(np.bincount(y_val)) / len(y_val)),
    }
    for name in networks:
        keras.utils.set_random_seed(options.seed)  # each network starts from the same state
        results[name] = NETWORKS[name](x_train, y_train, x_val, y_val, options)
        if on_result is not None:
            on_result(results)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pristine", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("models/backbone_comparison.json"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-photos", type=int, default=MAX_PHOTOS)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--crop", type=int, default=CROP, help="side of the detail crop (at most 224)")
    parser.add_argument("--levels-per-class", type=int, default=LEVELS_PER_CLASS, choices=range(1, 6))
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--workers", type=int, default=1, help="processes synthesising the distortions")
    parser.add_argument(
        "--networks",
        nargs="+",
        choices=list(NETWORKS),
        default=list(NETWORKS),
        help="which networks, in this order (each result is saved as it finishes)",
    )
    parser.add_argument(
        "--write-working-copies",
        type=Path,
        metavar="DIR",
        help="only write the photos, shrunk to the working size, to DIR, and stop",
    )
    args = parser.parse_args()
    if args.write_working_copies:
        count = write_working_copies(args.pristine, args.write_working_copies)
        print(f"{count} photos written to {args.write_working_copies}")
        return
    options = ComparisonOptions(
        args.seed, args.max_photos, args.epochs, args.crop, args.levels_per_class, args.batch, args.workers
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save(results: dict) -> None:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results), flush=True)

    compare(args.pristine, options, args.networks, on_result=save)


if __name__ == "__main__":
    main()
