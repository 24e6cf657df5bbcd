"""How much the views taken from DCT coefficients (file_views.load_views) change the models' outputs
against the full decode's views (loading.load_image + views.make_views), on the shared photos.

    .venv/bin/python -m experiments.compare_dct_views [--data ../shared/data]

Prints, over the photos that take the DCT route (the others get identical views), the max and mean
absolute difference in P(poor) and quality, defect top-1 agreement and verdict flips.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pixelperfect_daemon.engine import Analyzer
from pixelperfect_daemon.file_views import load_views
from pixelperfect_daemon.labels import DEFECTS
from pixelperfect_daemon.loading import ImageLoadError, load_image
from pixelperfect_daemon.verdict import is_poor
from pixelperfect_daemon.views import make_views

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--models", type=Path, default=REPO / "models")
    args = parser.parse_args()
    analyzer = Analyzer(args.models)
    files = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    rows, total = [], 0
    for path in files:
        try:
            fast = load_views(path)
        except ImageLoadError:
            continue
        total += 1
        if not fast.from_coefficients:
            continue
        full = make_views(load_image(path).image)
        a, b = analyzer.predict_views(np.stack([fast.views, full]))
        verdict = [
            bool(is_poor(o.p_poor, o.quality, analyzer.poor_threshold, analyzer.poor_below_quality)) for o in (a, b)
        ]
        top = [max(DEFECTS, key=o.defect_scores.get) for o in (a, b)]
        rows.append(
            (
                abs(a.p_poor - b.p_poor),
                abs(a.quality - b.quality),
                top[0] == top[1],
                verdict[0] != verdict[1],
                str(path.relative_to(args.data)),
            )
        )
    p_poor, quality = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    print(f"{total} photos read, {len(rows)} took the DCT route (the rest: identical views)")
    print(f"P(poor): max |diff| {p_poor.max():.4f}, mean {p_poor.mean():.4f}")
    print(f"quality: max |diff| {quality.max():.4f}, mean {quality.mean():.4f}")
    print(f"defect top-1 agreement: {sum(r[2] for r in rows)}/{len(rows)}")
    print(f"verdict flips: {sum(r[3] for r in rows)}/{len(rows)} {[r[4] for r in rows if r[3]]}")
    worst = max(rows, key=lambda r: r[0])
    print(f"largest P(poor) change: {worst[4]} ({worst[0]:.4f})")


if __name__ == "__main__":
    main()
