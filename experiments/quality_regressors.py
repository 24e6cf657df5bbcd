"""Regressions for the quality score, cross-validated by photo over every photo with a human score.

The shipped quality score is a ridge regression on 1 900 of the heads' inputs
(``train.QUALITY_SKIPPED_TAPS``), lowered by P(poor). This fits other regressions on the same
cached features with ``cross_validate_authentic``'s folds, so each photo is predicted by a fit that
never saw it, and prints SRCC / PLCC against MOS of the regression alone and, with
``--held-out`` (``cross_validate_authentic --save-predictions``), of the score as shipped
(``ridge × (1 − 0.5 · P(poor))`` with each photo's held-out P(poor)).

Run: python -m experiments.quality_regressors --pristine DIR --mos-csv CSV [--held-out NPZ]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from experiments.cross_validate_authentic import FOLDS, photo_folds, scored_photos
from pixelperfect_daemon.metrics import plcc, srcc
from pixelperfect_daemon.training import train
from pixelperfect_daemon.training.heads import QUALITY_POOR_PENALTY, RIDGE_ALPHAS, RIDGE_FOLDS, fit_ridge_quality

# fit(x_train, y_train, photo_of_train_row, x_test) -> predictions for x_test
Fitter = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _standardised(train_x: np.ndarray, test_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, scale = train_x.mean(axis=0), train_x.std(axis=0) + 1e-6
    return (train_x - mean) / scale, (test_x - mean) / scale


def ridge_fitter(alphas=RIDGE_ALPHAS) -> Fitter:
    """The shipped regression (``heads.fit_ridge_quality``): α by grouped cross-validated SRCC."""

    def fit(x, y, groups, test):
        return fit_ridge_quality(x, y, groups, alphas=alphas).predict(test)

    return fit


def rbf_kernel_fitter(gammas=(0.05, 0.1, 0.2, 0.5), alphas=(0.03, 0.1, 0.3, 1.0)) -> Fitter:
    """Kernel ridge regression with a Gaussian kernel on the standardised inputs (γ per input)."""

    def kernel(a, b, gamma):
        squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
        return np.exp(-gamma * squared / a.shape[1])

    def fit(x, y, groups, test):
        z, z_test = _standardised(x, test)
        inner = np.unique(groups, return_inverse=True)[1] % RIDGE_FOLDS
        scores = {}
        for gamma in gammas:
            k = kernel(z, z, gamma)
            for alpha in alphas:
                predicted = np.empty(len(z))
                for fold in range(RIDGE_FOLDS):
                    out = inner == fold
                    fitted = np.linalg.solve(
                        k[np.ix_(~out, ~out)] + alpha * np.eye((~out).sum()), y[~out] - y[~out].mean()
                    )
                    predicted[out] = k[np.ix_(out, ~out)] @ fitted + y[~out].mean()
                scores[(gamma, alpha)] = srcc(predicted, y)
        gamma, alpha = max(scores, key=scores.get)
        fitted = np.linalg.solve(kernel(z, z, gamma) + alpha * np.eye(len(z)), y - y.mean())
        return kernel(z_test, z, gamma) @ fitted + y.mean()

    return fit


def held_out_predictions(x: np.ndarray, y: np.ndarray, photo: np.ndarray, fit: Fitter, seed: int = 0) -> np.ndarray:
    """One prediction per photo (its own row, not its mirror image), each by a fit on the other folds."""
    fold_of_row = photo_folds(photo.max() + 1, FOLDS, seed)[photo]
    first_row = np.r_[True, photo[1:] != photo[:-1]]
    predictions = np.empty(len(x))
    for fold in range(FOLDS):
        training = fold_of_row != fold
        predictions[~training] = fit(x[training], y[training], photo[training], x[~training])
    return predictions[first_row]


def transformed(x: np.ndarray, how: str) -> np.ndarray:
    if how == "sqrt":
        return np.sqrt(np.maximum(x, 0.0))
    if how == "log":
        return np.log(np.maximum(x, 0.0) + 1e-3)
    return x


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pristine", type=Path, required=True)
    parser.add_argument("--mos-csv", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path(".cache/pixelperfect-train"))
    parser.add_argument("--held-out", type=Path, default=None, help="cross_validate_authentic --save-predictions")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    options = train.TrainOptions(out=Path(os.devnull), pristine=args.pristine, mos_csv=args.mos_csv, work=args.work)
    _, data, _ = train.sources_and_features(options)
    authentic, photo = scored_photos(data)
    columns = train.without_taps(train.stage1_columns(authentic["features"].shape[1]), train.QUALITY_SKIPPED_TAPS)
    x, y = authentic["features"][:, columns].astype(np.float64), authentic["quality"]
    mos = y[np.r_[True, photo[1:] != photo[:-1]]] * 100
    p_poor = np.load(args.held_out)["p_poor"] if args.held_out else None
    variants = {
        "ridge (shipped)": ("plain", ridge_fitter()),
        "ridge, α on a finer grid": ("plain", ridge_fitter((500.0, 700.0, 1000.0, 1500.0, 2000.0, 3000.0, 5000.0))),
        "ridge on square roots of the inputs": ("sqrt", ridge_fitter()),
        "ridge on logarithms of the inputs": ("log", ridge_fitter()),
        "Gaussian kernel ridge": ("plain", rbf_kernel_fitter()),
    }
    print(f"{len(mos)} scored photos, {FOLDS}-fold cross-validated by photo, {len(columns)} inputs:")
    print(
        "| regression | SRCC | PLCC |"
        + (" SRCC of the shipped score (with held-out P(poor)) |" if p_poor is not None else "")
    )
    print("|---|---|---|" + ("---|" if p_poor is not None else ""))
    for name, (how, fit) in variants.items():
        predicted = held_out_predictions(transformed(x, how), y, photo, fit)
        line = f"| {name} | {srcc(predicted, mos):.4f} | {plcc(predicted, mos):.4f} |"
        if p_poor is not None:
            line += f" {srcc(np.clip(predicted, 0, 1) * (1 - QUALITY_POOR_PENALTY * p_poor), mos):.4f} |"
        print(line)


if __name__ == "__main__":
    main()
