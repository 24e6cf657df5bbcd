"""Where to draw the verdict's noise line (``verdict.POOR_ABOVE_NOISE``), and what it does.

The noise meter (``screen_noise.py``) reads the noise in a photo's flattest parts at screen size.
The line is chosen on good photos of training's split only: the ``--keep`` quantile (0.99) of
their readings, rounded up to half a grey level. Good photos are the training pristine photos,
as files and as 768 x 512 working copies (``moderate_damage.working_copy``), and the training
CLIVE photos people scored 65 or more. Then, at that line, on photos training never saw:

* the unseen pristine photos, clean (kept Good by the meter) and with white noise at PSNR 33, 30
  and 26 dB at 768 x 512 (``moderate_damage``'s rows: flagged by the meter);
* JPEG 2000 fast fading at 768 x 512: how often the meter fires on it (its noise is not uniform);
* the unseen CLIVE photos by their score, and real_dev's real noise and low-light photos;
* with ``--held-out`` (predictions saved by ``experiments.cross_validate_authentic``), the verdict
  with and without the line on all 587 scored photos, cross-validated.

Every reading is the one the engine makes: files through ``file_views.load_views``, pixels through
``views.views_and_reduced_copy``.

Run: python -m experiments.noise_line --data ../shared/data [--held-out held-out.npz]
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import numpy as np

from experiments.moderate_damage import SEED, fast_fading, white_noise, working_copy
from pixelperfect_daemon.file_views import load_views
from pixelperfect_daemon.screen_noise import screen_noise_sigma
from pixelperfect_daemon.training import dataset
from pixelperfect_daemon.verdict import POOR_BELOW_QUALITY, POOR_THRESHOLD, is_poor
from pixelperfect_daemon.views import views_and_reduced_copy

NOISE_ROWS = (33.0, 30.0, 26.0)  # PSNR, dB
FADING_ROWS = (1e-5, 3e-5, 1e-4)  # bit error rate


def reading_of_pixels(pixels: np.ndarray) -> float:
    return screen_noise_sigma(views_and_reduced_copy(pixels)[1])


def reading_of_file(path: Path) -> float:
    return load_views(path).screen_noise


def choose_line(good_readings: np.ndarray, keep: float) -> float:
    """The ``keep`` quantile of the good photos' readings, rounded up to half a grey level."""
    measured = good_readings[~np.isnan(good_readings)]
    return math.ceil(np.quantile(measured, keep) * 2) / 2


def share_over(readings, line: float) -> float:
    """The share of ``readings`` at or above ``line``; unmeasured readings (NaN) never are."""
    readings = np.asarray(readings, dtype=float)
    return float(np.mean(np.nan_to_num(readings, nan=-1.0) >= line))


def manifest_rows(data: Path, subset: str) -> list[Path]:
    with open(data / "manifest.csv", newline="", encoding="utf-8") as handle:
        return [data / row["file"] for row in csv.DictReader(handle) if row["set"] == subset]


def measure(data: Path, limit: int | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Readings per set, for training's split ("train") and the unseen photos ("val")."""
    from tqdm import tqdm

    pristine = dataset.find_pristine(data / "pristine")[:limit]
    authentic = dataset.read_mos_csv(data / "manifest.csv")
    authentic = authentic[:limit] if limit else authentic
    splits = dataset.assign_splits(dataset.find_pristine(data / "pristine") + authentic, SEED)
    sets: dict[str, dict[str, list]] = {"train": {}, "val": {}}

    def add(split: str, name: str, value: float) -> None:
        sets[split].setdefault(name, []).append(value)

    for number, source in enumerate(tqdm(pristine, unit="photo", file=sys.stderr)):
        split = splits[source.path]
        add(split, "pristine files", reading_of_file(source.path))
        copy = working_copy(source.path)
        add(split, "pristine 768 x 512", reading_of_pixels(copy))
        if split == "val":
            for row, psnr in enumerate(NOISE_ROWS):
                noisy = white_noise(copy, psnr, np.random.default_rng([number, 100 + row]))
                add(split, f"white noise PSNR {psnr:g} dB", reading_of_pixels(noisy))
            for row, rate in enumerate(FADING_ROWS):
                try:
                    faded = fast_fading(copy, rate, np.random.default_rng([number, 200 + row]))
                except Exception:  # noqa: BLE001 - an undecodable stream has no pixels to read
                    continue
                add(split, f"fast fading BER {rate:g}", reading_of_pixels(faded))
    for source in tqdm(authentic, unit="photo", file=sys.stderr):
        split = splits[source.path]
        band = "MOS >= 65" if source.mos >= 65 else "MOS 50-65" if source.mos >= 50 else "MOS < 50"
        add(split, f"CLIVE {band}", reading_of_file(source.path))
    for subset in ("real_dev/noise_RNI6", "real_dev/lowlight_LIME"):
        for path in manifest_rows(data, subset)[:limit]:
            add("val", subset, reading_of_file(path))
    return {split: {name: np.array(values) for name, values in named.items()} for split, named in sets.items()}


def good_training_readings(sets: dict) -> np.ndarray:
    train = sets["train"]
    return np.concatenate([train["pristine files"], train["pristine 768 x 512"], train.get("CLIVE MOS >= 65", [])])


def report(sets: dict, line: float) -> str:
    lines = [f"line: {line:g} grey levels", "", "| split | set | photos | median reading | at or over the line |"]
    lines.append("|---|---|---|---|---|")
    for split in ("train", "val"):
        for name, readings in sets[split].items():
            lines.append(
                f"| {split} | {name} | {len(readings)} | {np.nanmedian(readings):.2f} | {share_over(readings, line):.3f} |"
            )
    return "\n".join(lines)


def held_out_report(held_out: Path, data: Path, line: float) -> str:
    """The cross-validated verdict on the scored photos, without and with the line."""
    predictions = np.load(held_out)
    authentic = dataset.read_mos_csv(data / "manifest.csv")
    splits = dataset.assign_splits(dataset.find_pristine(data / "pristine") + authentic, SEED)
    # The predictions are in training's order: the training split's photos, then the validation split's.
    authentic = [s for s in authentic if splits[s.path] == "train"] + [s for s in authentic if splits[s.path] == "val"]
    mos = np.array([source.mos for source in authentic])
    if mos.shape != predictions["mos"].shape or not np.allclose(mos, predictions["mos"], atol=1e-3):
        raise SystemExit(f"{held_out} was saved for other photos than {data / 'manifest.csv'} lists")
    readings = np.array([reading_of_file(source.path) for source in authentic])
    models = is_poor(predictions["p_poor"], predictions["quality"], POOR_THRESHOLD, POOR_BELOW_QUALITY)
    with_line = models | (np.nan_to_num(readings, nan=-1.0) >= line)
    good, poor = mos >= 65, mos <= 40
    rows = ["| verdict | MOS >= 65 kept Good | MOS 50-65 kept Good | MOS <= 40 flagged | clear balanced accuracy |"]
    rows.append("|---|---|---|---|---|")
    for name, flagged in (("the models", models), (f"the models + noise line {line:g}", with_line)):
        kept, middle, caught = (
            1 - flagged[good].mean(),
            1 - flagged[(mos >= 50) & (mos < 65)].mean(),
            flagged[poor].mean(),
        )
        rows.append(f"| {name} | {kept:.3f} | {middle:.3f} | {caught:.3f} | {(kept + caught) / 2:.3f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the shared data folder (manifest.csv, pristine/)")
    parser.add_argument("--keep", type=float, default=0.99, help="share of good training photos under the line")
    parser.add_argument(
        "--held-out", type=Path, default=None, help="predictions of experiments.cross_validate_authentic"
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos of each set")
    args = parser.parse_args(argv)
    sets = measure(args.data, args.limit)
    line = choose_line(good_training_readings(sets), args.keep)
    print(report(sets, line))
    if args.held_out:
        print()
        print(held_out_report(args.held_out, args.data, line))


if __name__ == "__main__":
    main()
