"""Moderate damage at the strengths of the classic IQA databases, on the shared pristine photos.

Every pristine photo is centre-cropped to 3:2 and resized to 768 x 512 (512 x 768 when portrait),
LIVE's size, and damaged once per row:

* Gaussian blur, sigma 1, 1.5, 2 and 3 px (LIVE's gblur spans 0.4-15 px, TID2013's and
  KADID-10k's first levels 0.5-2 px);
* additive white Gaussian noise, the same in all channels, at PSNR 33, 30 and 26 dB against the
  original (sigma 255 / 10^(PSNR / 20): 5.7, 8.1 and 12.8 grey levels);
* JPEG 2000 "fast fading": the photo encoded by OpenJPEG (through Pillow) at 2.4 bits per pixel,
  as LIVE's fast-fading images were, and independent random bit errors at a bit error rate of
  1e-5, 3e-5 and 1e-4 in the codestream after its first start-of-data marker (LIVE simulated a
  Rayleigh fading channel, whose errors come in bursts; OpenJPEG has no channel simulator, so this
  is the nearest we can do); the damaged stream is decoded back to pixels, as LIVE stored them;
  a stream OpenJPEG refuses to decode is counted apart (the engine would report it from the file);
  a second table says how visible the bit errors are: the PSNR of each image's worst 32 x 32
  tile against the same stream decoded without errors;
* very dark: the exposure lowered in linear light until the mean luma is 0.12 and 0.07 (of 1;
  the issue's "below about 0.15"), 8-bit quantisation losing the shadows' detail.

Each image goes through the shipped engine (``Analyzer.analyze_decoded``: the views and models,
no file). Per row: flagged Poor, and flagged Poor with the right defect (Blur, Noise, Transmission
Errors, Luminance/Contrast). Clean 768 x 512 originals give "good photos kept Good". The photos the
models were trained on (training's split) are reported apart from the 38 they never saw.

Run: python -m experiments.moderate_damage --pristine ../shared/data/pristine --mos-csv ../shared/data/manifest.csv
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pixelperfect_daemon.config import PACKAGE_MODELS_DIR
from pixelperfect_daemon.engine import Analyzer
from pixelperfect_daemon.loading import DecodedImage
from pixelperfect_daemon.training import dataset
from pixelperfect_daemon.verdict import POOR_ABOVE_NOISE

SEED = 0  # the shipped models' training seed (their split)
SIZE = (768, 512)
J2K_BITS_PER_PIXEL = 2.4


class Undecodable(Exception):
    """OpenJPEG refused the damaged stream."""


def working_copy(path: Path) -> np.ndarray:
    image = Image.open(path).convert("RGB")
    width, height = image.size
    target = SIZE if width >= height else SIZE[::-1]
    ratio = target[0] / target[1]
    if width / height > ratio:  # too wide: crop the sides
        crop = round(height * ratio)
        image = image.crop(((width - crop) // 2, 0, (width - crop) // 2 + crop, height))
    else:
        crop = round(width / ratio)
        image = image.crop((0, (height - crop) // 2, width, (height - crop) // 2 + crop))
    return np.asarray(image.resize(target, Image.LANCZOS))


def mean_luma(image: np.ndarray) -> float:
    return float(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).mean() / 255)


def gaussian_blur(image, sigma, rng):
    return cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def white_noise(image, psnr, rng):
    sigma = 255 / 10 ** (psnr / 20)
    noise = rng.standard_normal(image.shape[:2])[:, :, None] * sigma
    return np.clip(np.round(image + noise), 0, 255).astype(np.uint8)


def jpeg2000_stream(image) -> bytes:
    """The photo as LIVE's fast-fading codestreams were encoded, before any bit error."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(
        buffer,
        "JPEG2000",
        no_jp2=True,
        irreversible=True,
        quality_mode="rates",
        quality_layers=[24 / J2K_BITS_PER_PIXEL],
    )
    return buffer.getvalue()


def error_free_decode(image) -> np.ndarray:
    """What the fast-fading rows would show without bit errors: the reference for their damage."""
    return np.asarray(Image.open(io.BytesIO(jpeg2000_stream(image))).convert("RGB"))


def worst_block_psnr(image, reference, block: int = 32) -> float:
    """PSNR of the block x block tile that differs most: where local damage (a bit error's) shows."""
    squared = ((image.astype(float) - reference) ** 2).mean(axis=2)
    height, width = squared.shape[0] // block * block, squared.shape[1] // block * block
    tiles = squared[:height, :width].reshape(height // block, block, width // block, block).mean(axis=(1, 3))
    return float(10 * np.log10(255**2 / max(tiles.max(), 1e-9)))


def fast_fading(image, bit_error_rate, rng):
    data = bytearray(jpeg2000_stream(image))
    start = data.find(b"\xff\x93") + 2
    bits = (len(data) - 2 - start) * 8  # the end-of-codestream marker stays
    for bit in rng.choice(bits, size=rng.binomial(bits, bit_error_rate), replace=False):
        data[start + bit // 8] ^= 1 << (bit % 8)
    try:
        return np.asarray(Image.open(io.BytesIO(bytes(data))).convert("RGB"))
    except Exception as error:  # OpenJPEG's errors have no common type
        raise Undecodable(str(error)) from None


def _srgb_to_linear(values):
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(values):
    return np.where(values <= 0.0031308, values * 12.92, 1.055 * np.power(values, 1 / 2.4) - 0.055)


def very_dark(image, target_luma, rng):
    linear = _srgb_to_linear(image / 255.0)
    small = linear[::4, ::4]  # the exposure factor is found on a quarter-size copy, then applied
    low, high = 0.0, 1.0
    for _ in range(30):  # bisect the exposure factor
        factor = (low + high) / 2
        dark = np.round(_linear_to_srgb(small * factor) * 255).astype(np.uint8)
        low, high = (factor, high) if mean_luma(dark) < target_luma else (low, factor)
    return np.round(_linear_to_srgb(linear * (low + high) / 2) * 255).astype(np.uint8)


ROWS = [  # (name, function, strength, the right defect)
    ("clean 768 x 512", None, None, None),
    ("Gaussian blur sigma 1 px", gaussian_blur, 1.0, "blur"),
    ("Gaussian blur sigma 1.5 px", gaussian_blur, 1.5, "blur"),
    ("Gaussian blur sigma 2 px", gaussian_blur, 2.0, "blur"),
    ("Gaussian blur sigma 3 px", gaussian_blur, 3.0, "blur"),
    ("white noise PSNR 33 dB", white_noise, 33.0, "noise"),
    ("white noise PSNR 30 dB", white_noise, 30.0, "noise"),
    ("white noise PSNR 26 dB", white_noise, 26.0, "noise"),
    ("JPEG 2000 fast fading BER 1e-5", fast_fading, 1e-5, "transmission_errors"),
    ("JPEG 2000 fast fading BER 3e-5", fast_fading, 3e-5, "transmission_errors"),
    ("JPEG 2000 fast fading BER 1e-4", fast_fading, 1e-4, "transmission_errors"),
    ("very dark, mean luma 0.12", very_dark, 0.12, "luminance_contrast"),
    ("very dark, mean luma 0.07", very_dark, 0.07, "luminance_contrast"),
]


def measure(
    pristine: Path,
    mos_csv: Path,
    models_dir: Path,
    limit: int | None = None,
    unseen_only: bool = False,
    poor_above_noise: float = POOR_ABOVE_NOISE,
) -> list[dict]:
    """One record per (photo, row): the verdict, the defect, P(poor) and the quality score."""
    analyzer = Analyzer(models_dir, poor_above_noise=poor_above_noise)
    sources = dataset.find_pristine(pristine)
    splits = dataset.assign_splits(sources + dataset.read_mos_csv(mos_csv), SEED)
    if unseen_only:
        sources = [source for source in sources if splits[source.path] == "val"]
    from tqdm import tqdm

    records = []
    for number, source in enumerate(tqdm(sources[:limit], unit="photo", file=sys.stderr)):
        original = working_copy(source.path)
        stream_reference = None
        for row_number, (name, damage, strength, _) in enumerate(ROWS):
            rng = np.random.default_rng([number, row_number])
            record = {"photo": source.path.name, "row": name, "unseen": splits[source.path] == "val"}
            try:
                image = original if damage is None else damage(original, strength, rng)
            except Undecodable:
                records.append({**record, "undecodable": True})
                continue
            decoded = DecodedImage(Image.fromarray(image), image.shape[1::-1], "PNG", None)
            result = analyzer.analyze_decoded(source.path, decoded)
            record.update(
                verdict=result.verdict,
                defect=result.defect,
                most_likely=result.most_likely_defect,
                quality=result.quality,
                luma=mean_luma(image),
                undecodable=False,
                learn_inputs=list(result.learn_inputs),
                psnr=float(10 * np.log10(255**2 / max(np.mean((image.astype(float) - original) ** 2), 1e-9))),
            )
            if damage is fast_fading:  # how visible the bit errors are, apart from the compression
                if stream_reference is None:
                    stream_reference = error_free_decode(original)
                record["worst_block_psnr"] = worst_block_psnr(image, stream_reference)
            records.append(record)
    return records


def table(records: list[dict], unseen: bool | None) -> str:
    lines = [
        "| row | photos | flagged Poor | flagged with the right defect | most likely defect right | "
        "median PSNR (dB) | undecodable |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, _, _, right in ROWS:
        rows = [r for r in records if r["row"] == name and (unseen is None or r["unseen"] == unseen)]
        decoded = [r for r in rows if not r["undecodable"]]
        if not decoded:
            continue
        flagged = np.mean([r["verdict"] == "poor" for r in decoded])
        if right is None:
            lines.append(f"| {name} (kept Good: {1 - flagged:.3f}) | {len(decoded)} | {flagged:.3f} | – | – | – | – |")
            continue
        right_flag = np.mean([r["verdict"] == "poor" and r["defect"] == right for r in decoded])
        top1 = np.mean([r["most_likely"] == right for r in decoded])
        psnr = np.median([r["psnr"] for r in decoded])
        lines.append(
            f"| {name} | {len(decoded)} | {flagged:.3f} | {right_flag:.3f} | {top1:.3f} | {psnr:.1f} | "
            f"{len(rows) - len(decoded)} |"
        )
    return "\n".join(lines)


def fading_visibility_table(records: list[dict], unseen: bool | None, line: float = 30.0) -> str:
    """Fast-fading rows against the error-free stream: is the damage the models miss visible at all?"""
    lines = [
        f"| row | photos | worst 32 x 32 block PSNR, median (dB) | a block under {line:.0f} dB | "
        f"flagged Poor, of those | flagged Poor, the others |",
        "|---|---|---|---|---|---|",
    ]
    for name, damage, _, _ in ROWS:
        if damage is not fast_fading:
            continue
        rows = [
            r
            for r in records
            if r["row"] == name and not r["undecodable"] and (unseen is None or r["unseen"] == unseen)
        ]
        if not rows:
            continue
        visible = [r for r in rows if r["worst_block_psnr"] < line]
        others = [r for r in rows if r["worst_block_psnr"] >= line]

        def flagged(group):
            return f"{np.mean([r['verdict'] == 'poor' for r in group]):.3f}" if group else "–"

        median = np.median([r["worst_block_psnr"] for r in rows])
        lines.append(
            f"| {name} | {len(rows)} | {median:.1f} | {len(visible)} | {flagged(visible)} | {flagged(others)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pristine", type=Path, required=True)
    parser.add_argument("--mos-csv", type=Path, required=True, help="for training's split (which photos are unseen)")
    parser.add_argument("--models", type=Path, default=PACKAGE_MODELS_DIR)
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos")
    parser.add_argument("--unseen-only", action="store_true", help="only the photos the models were not trained on")
    parser.add_argument("--save", type=Path, default=None, help="also write every record as JSON lines")
    parser.add_argument(
        "--poor-above-noise",
        type=float,
        default=POOR_ABOVE_NOISE,
        help="the verdict's noise line (0: the models alone)",
    )
    args = parser.parse_args(argv)
    records = measure(args.pristine, args.mos_csv, args.models, args.limit, args.unseen_only, args.poor_above_noise)
    if args.save:
        args.save.write_text("".join(json.dumps(r) + "\n" for r in records))
    for title, unseen in (
        ("all photos", None),
        ("the photos the models never saw", True),
        ("the photos the models were trained on", False),
    ):
        print(f"{title}:\n{table(records, unseen)}\n\n{fading_visibility_table(records, unseen)}\n")


if __name__ == "__main__":
    main()
