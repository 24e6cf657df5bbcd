"""The analysis engine: decoded pixels in, an ``AnalysisResult`` out.

Three LiteRT models from ``models/`` run on every image:

1. ``features.tflite``: the ImageNet-pretrained EfficientNet-Lite0 backbone, run once on each of
   the two views (``views.make_views``), giving multi-level mean/std feature vectors;
2. ``stage1.tflite``: P(poor) and a quality score in [0, 1] from those features and the views'
   measured statistics (``view_statistics.py``: exposure, colour cast, noise level, blocking);
3. ``stage2.tflite``: the probabilities of the seven defects.

TensorFlow is never imported here: LiteRT starts in milliseconds and keeps the daemon small.
LiteRT interpreters are not thread-safe, so each thread gets its own set.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .adaptation import learn_inputs
from .config import AnalysisSettings
from .file_views import FileViews, load_views, views_of_pixels
from .jpeg_dct import keep_freed_memory_for_reuse
from .labels import DEFECTS
from .loading import DecodedImage, ImageLoadError
from .result import AnalysisResult
from .verdict import POOR_ABOVE_NOISE, is_noisy, is_poor
from .view_statistics import STATISTIC_NAMES, STATISTICS_PER_VIEW, head_inputs
from .views import VIEW_SIZE

log = logging.getLogger(__name__)

MODEL_FILES = ("features.tflite", "stage1.tflite", "stage2.tflite", "labels.json")
# How strongly a decoder's corruption finding outweighs the pixels' own defect scores.
DECODER_EVIDENCE_WEIGHT = 0.9
# A black-and-white image has no colour to distort: Color Distortion is ruled out for it. Grey
# means the channels differ by at most this much (JPEG rounding) in 99 % of the views' pixels.
MONOCHROME_CHANNEL_SPREAD = 3


class ModelsNotFoundError(RuntimeError):
    """models/ lacks the trained models."""


@dataclass(frozen=True)
class ModelOutputs:
    p_poor: float
    quality: float
    defect_scores: dict[str, float]
    statistics: np.ndarray | None = None  # both views' measured statistics (a library adaptation reads them)


def _interpreter(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    # One thread per interpreter: parallelism comes from analysing several images at once.
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


def _run(interpreter, batch: np.ndarray) -> np.ndarray:
    """Each of our models has one input and one output tensor."""
    input_detail = interpreter.get_input_details()[0]
    if tuple(input_detail["shape"]) != batch.shape:
        interpreter.resize_tensor_input(input_detail["index"], batch.shape)
        interpreter.allocate_tensors()
    interpreter.set_tensor(input_detail["index"], batch.astype(input_detail["dtype"], copy=False))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


def is_monochrome(views: np.ndarray) -> bool:
    """True when the views (uint8 RGB) are grey: a black-and-white photo, however it was stored."""
    red, green, blue = cv2.split(views.reshape(-1, views.shape[-2], 3))
    # Element-wise over the three channels: a reduction over an axis of 3 is many times slower.
    spread = cv2.subtract(cv2.max(cv2.max(red, green), blue), cv2.min(cv2.min(red, green), blue))
    return cv2.countNonZero(cv2.threshold(spread, MONOCHROME_CHANNEL_SPREAD, 255, cv2.THRESH_BINARY)[1]) <= (
        0.01 * spread.size
    )


class Analyzer:
    """Loads the models once; ``analyze_path`` is safe to call from several threads."""

    def __init__(
        self,
        models_dir: Path,
        *,
        max_pixels: int = 250_000_000,
        poor_threshold: float | None = None,
        poor_below_quality: float | None = None,
        poor_above_noise: float = POOR_ABOVE_NOISE,
    ):
        self.models_dir = Path(models_dir)
        missing = [name for name in MODEL_FILES if not (self.models_dir / name).is_file()]
        if missing:
            raise ModelsNotFoundError(
                f"{self.models_dir} lacks {', '.join(missing)}: train the models with `pixelperfect train` "
                "or point [analysis] models_dir at a folder that has them"
            )
        self.card = json.loads((self.models_dir / "labels.json").read_text())
        if tuple(self.card["defects"]) != DEFECTS:
            raise ModelsNotFoundError(f"{self.models_dir}/labels.json lists other defects than this version knows")
        if tuple(self.card.get("view_statistics", ())) != STATISTIC_NAMES:
            raise ModelsNotFoundError(
                f"the models in {self.models_dir} were trained with other view statistics than this version "
                "computes: use the models shipped with this version, or retrain them with `pixelperfect train`"
            )
        self.model_version: str = self.card["model_version"]
        self.max_pixels = max_pixels
        self.poor_threshold = poor_threshold if poor_threshold is not None else self.card.get("poor_threshold", 0.5)
        # Models trained before the quality test was part of the verdict (verdict.py) carry no value: off.
        self.poor_below_quality = (
            poor_below_quality if poor_below_quality is not None else self.card.get("poor_below_quality", 0.0)
        )
        self.poor_above_noise = poor_above_noise
        self._local = threading.local()
        keep_freed_memory_for_reuse()
        self.adaptation = None  # a library's adaptation of the verdict (adaptation.py), when one is in use

    def use_adaptation(self, adaptation) -> None:
        """Decide verdicts with ``adaptation`` (``adaptation.LibraryAdaptation``) from now on."""
        self.adaptation = adaptation
        self.model_version = f"{self.card['model_version']}+lib-{adaptation.digest}"

    @classmethod
    def from_settings(cls, settings: AnalysisSettings) -> Analyzer:
        return cls(
            settings.models_dir,
            max_pixels=settings.max_pixels,
            poor_threshold=settings.poor_threshold,
            poor_below_quality=settings.poor_below_quality,
            poor_above_noise=settings.poor_above_noise,
        )

    def _models(self):
        models = getattr(self._local, "models", None)
        if models is None:
            models = tuple(_interpreter(self.models_dir / name) for name in MODEL_FILES[:3])
            self._local.models = models
        return models

    def head_inputs_of(self, views: np.ndarray) -> np.ndarray:
        """What both heads read for a batch of view pairs (N, 2, 224, 224, 3) uint8: the backbone
        features of both views, then their statistics."""
        features_model = self._models()[0]
        return head_inputs(_run(features_model, views.reshape(-1, VIEW_SIZE, VIEW_SIZE, 3).astype(np.float32)), views)

    def predict_views(self, views: np.ndarray) -> list[ModelOutputs]:
        """Run the models on a batch of view pairs, shape (N, 2, 224, 224, 3) uint8."""
        _, stage1_model, stage2_model = self._models()
        n = views.shape[0]
        features = self.head_inputs_of(views)
        stage1 = _run(stage1_model, features)  # columns: P(poor), quality
        defect_probs = _run(stage2_model, features)
        return [
            ModelOutputs(
                p_poor=float(stage1[i, 0]),
                quality=float(np.clip(stage1[i, 1], 0.0, 1.0)),
                defect_scores={key: float(value) for key, value in zip(DEFECTS, defect_probs[i])},
                statistics=features[i, -2 * STATISTICS_PER_VIEW :],
            )
            for i in range(n)
        ]

    def analyze_decoded(self, path: Path | str, decoded: DecodedImage) -> AnalysisResult:
        return self.analyze_views(
            path, views_of_pixels(decoded.image, decoded.original_size, decoded.format, decoded.corruption)
        )

    def analyze_views(self, path: Path | str, loaded: FileViews) -> AnalysisResult:
        return self._analyze(path, loaded.views, loaded.corruption, loaded.screen_noise)

    def _analyze(
        self, path: Path | str, views: np.ndarray, corruption: str | None, screen_noise: float
    ) -> AnalysisResult:
        (outputs,) = self.predict_views(views[None])
        return self._result(str(path), outputs, corruption, monochrome=is_monochrome(views), screen_noise=screen_noise)

    def analyze_path(self, path: Path | str) -> AnalysisResult:
        """Decode and analyse one file; bad input gives an "error" result, never an exception."""
        try:
            loaded = load_views(path, max_pixels=self.max_pixels)
        except ImageLoadError as error:
            return AnalysisResult.failed(str(path), str(error), self.model_version)
        return self.analyze_views(path, loaded)

    def _result(
        self,
        path: str,
        outputs: ModelOutputs,
        corruption: str | None,
        *,
        monochrome: bool = False,
        screen_noise: float = float("nan"),
    ) -> AnalysisResult:
        scores = outputs.defect_scores
        if monochrome and scores["color_distortion"] < 1.0:
            scores = {**scores, "color_distortion": 0.0}
        if corruption:
            # The decoder has certain evidence of damaged data: it outweighs what the pixels suggest.
            scores = {
                key: (1 - DECODER_EVIDENCE_WEIGHT) * value
                + (DECODER_EVIDENCE_WEIGHT if key == "transmission_errors" else 0.0)
                for key, value in scores.items()
            }
        total = sum(scores.values())
        scores = {key: round(value / total, 6) for key, value in scores.items()}
        signals = learn_inputs(outputs.p_poor, outputs.quality, scores, outputs.statistics)
        if self.adaptation is not None and signals is not None:
            model_says_poor = self.adaptation.is_poor(np.asarray(signals)[None])[0]
        else:
            model_says_poor = is_poor(outputs.p_poor, outputs.quality, self.poor_threshold, self.poor_below_quality)
        poor = corruption is not None or bool(model_says_poor)
        defect = max(scores, key=scores.get) if poor else None
        if not poor and is_noisy(screen_noise, self.poor_above_noise):
            poor, defect = True, "noise"  # the meter, not the models, found it: Noise is why
        return AnalysisResult(
            path=path,
            verdict="poor" if poor else "good",
            quality=round(outputs.quality, 4),
            defect=defect,
            defect_scores=scores,
            model_version=self.model_version,
            error=corruption,
            screen_noise=round(screen_noise, 2) if math.isfinite(screen_noise) else None,
            learn_inputs=signals,
        )
