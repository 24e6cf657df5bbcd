"""The analysis result and its JSON contract (one object per line from ``pixelperfect analyze --json``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from .labels import DEFECTS


@dataclass(frozen=True)
class AnalysisResult:
    path: str
    verdict: str  # "good" | "poor" | "error"
    quality: float | None  # in [0, 1], higher is better; None for errors
    defect: str | None  # a key of labels.DEFECTS, set only when verdict == "poor"
    defect_scores: dict[str, float] | None  # all seven keys, summing to 1; None for errors
    model_version: str
    error: str | None = None  # one-line reason: for "error", or the corruption found in a "poor" file
    screen_noise: float | None = None  # the noise meter's reading (screen_noise.py); None where unmeasured
    # What a library adaptation learns from (adaptation.LEARN_INPUTS), kept in the index; not part of the JSON.
    learn_inputs: tuple[float, ...] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def failed(cls, path: str, reason: str, model_version: str) -> AnalysisResult:
        return cls(
            path=path,
            verdict="error",
            quality=None,
            defect=None,
            defect_scores=None,
            model_version=model_version,
            error=reason,
        )

    def __post_init__(self):
        if self.verdict not in ("good", "poor", "error"):
            raise ValueError(f"bad verdict {self.verdict!r}")
        if self.verdict == "poor" and self.defect not in DEFECTS:
            raise ValueError(f"a poor verdict needs a defect, got {self.defect!r}")
        if self.verdict != "poor" and self.defect is not None:
            raise ValueError("only poor verdicts carry a defect")

    @property
    def most_likely_defect(self) -> str | None:
        """The defect with the highest probability, Good or Poor (None for errors)."""
        if self.defect_scores is None:
            return None
        return max(self.defect_scores, key=self.defect_scores.get)

    def to_dict(self) -> dict:
        record = asdict(self)
        del record["learn_inputs"]
        return record

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)
