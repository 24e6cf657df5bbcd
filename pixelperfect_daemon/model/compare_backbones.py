"""Backbone comparison on the same data: does the pretrained backbone earn its place?

Three networks learn the same task — the stage-2 defect (seven classes) from the 100 % detail
view — on the same photos, split by source photo, with the same number of epochs:

* **EfficientNet-Lite0, ImageNet-pretrained, frozen** + the stage-2 head (what PixelPerfect ships);
* **EfficientNet-Lite0 from scratch** (random initialisation, trained end to end);
* **VGG16 from scratch** with its classifier head (the original design; its ImageNet weights cannot
  be had here), trained end to end.

To fit a 2-core CPU the views are centre crops of 112 x 112 at full resolution and the set is
small; the numbers are therefore a fair comparison of the three under one budget, not the
accuracy of the shipped models (the model card has those).

Run: python -m pixelperfect_daemon.model.compare_backbones --pristine DIR --out models/backbone_comparison.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ..labels import DEFECTS
from ..loading import load_image
from . import dataset, distortions

CROP = 112
EPOCHS = 6
LEVELS_PER_CLASS = 2
BATCH = 32


def build_views(sources, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detail crops (N, 112, 112, 3), labels (N,), split flags (N,) = 1 for validation."""
    splits = dataset.assign_splits(sources, seed)
    crops, labels, is_val = [], [], []
    for number, source in enumerate(sources):
        rng = np.random.default_rng(seed * 100_003 + number)
        pixels = dataset._resize_long_side(load_image(source.path).pixels, 768)
        for defect_index, defect in enumerate(DEFECTS):
            for level in rng.choice(dataset.LEVELS, LEVELS_PER_CLASS, replace=False):
                _, image = distortions.random_distortion(pixels, defect, int(level), rng)
                detail = dataset.make_views(image)[1]
                offset = (detail.shape[0] - CROP) // 2
                crops.append(detail[offset : offset + CROP, offset : offset + CROP])
                labels.append(defect_index)
                is_val.append(splits[source.path] == "val")
    return np.stack(crops), np.array(labels), np.array(is_val)


def _end_to_end(model, x_train, y_train, x_val, y_val, epochs):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=BATCH, epochs=epochs, verbose=2, shuffle=True)
    seconds = time.perf_counter() - start
    accuracy = float(np.mean(model.predict(x_val, verbose=0).argmax(axis=1) == y_val))
    return accuracy, seconds


def compare(pristine: Path, seed: int = 0, max_photos: int = 80, epochs: int = EPOCHS) -> dict:
    import keras

    from .backbone import build_efficientnet_lite0, build_feature_extractor
    from .heads import build_stage2_backbone_head

    keras.utils.set_random_seed(seed)
    sources = dataset.find_pristine(pristine)[:max_photos]
    x, y, val = build_views(sources, seed)
    x_train, y_train, x_val, y_val = x[~val].astype(np.float32), y[~val], x[val].astype(np.float32), y[val]
    results = {"train_samples": int(len(y_train)), "val_samples": int(len(y_val)), "crop": CROP, "epochs": epochs}

    # Pretrained, frozen: features once, then the stage-2 backbone head (the network is compared,
    # so the measured view statistics are left out).
    extractor = build_feature_extractor(weights="imagenet")
    start = time.perf_counter()
    f_train, f_val = extractor.predict(x_train, verbose=0), extractor.predict(x_val, verbose=0)
    head = build_stage2_backbone_head(f_train.shape[1], f_train.mean(axis=0), f_train.var(axis=0), statistics_dim=0)
    head.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    head.fit(f_train, y_train, batch_size=BATCH, epochs=epochs, verbose=0, shuffle=True)
    results["lite0_imagenet_frozen"] = {
        "val_top1": float(np.mean(head.predict(f_val, verbose=0).argmax(axis=1) == y_val)),
        "train_seconds": time.perf_counter() - start,
    }

    # The same network from scratch, end to end.
    lite0 = build_efficientnet_lite0(include_top=False, weights=None)
    inputs = keras.Input((CROP, CROP, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(lite0(inputs))
    scratch = keras.Model(inputs, keras.layers.Dense(len(DEFECTS), activation="softmax")(pooled))
    accuracy, seconds = _end_to_end(scratch, x_train, y_train, x_val, y_val, epochs)
    results["lite0_from_scratch"] = {"val_top1": accuracy, "train_seconds": seconds}

    # The original design's VGG16 with its classifier head, from scratch.
    vgg = keras.applications.VGG16(weights=None, input_shape=(CROP, CROP, 3), classes=len(DEFECTS))
    vgg_inputs = keras.Input((CROP, CROP, 3))
    vgg_model = keras.Model(vgg_inputs, vgg(keras.applications.vgg16.preprocess_input(vgg_inputs)))
    accuracy, seconds = _end_to_end(vgg_model, x_train, y_train, x_val, y_val, epochs)
    results["vgg16_from_scratch"] = {"val_top1": accuracy, "train_seconds": seconds}
    results["chance"] = float(np.max(np.bincount(y_val)) / len(y_val))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pristine", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("models/backbone_comparison.json"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-photos", type=int, default=80)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args()
    results = compare(args.pristine, args.seed, args.max_photos, args.epochs)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
