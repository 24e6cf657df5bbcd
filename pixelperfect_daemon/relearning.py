"""The daemon's ``[learn] every_reviews``: learn again once that many new reviews arrived, and re-tag
the files whose verdict the new adaptation changes (never a reviewed one: a review always wins).

Re-tagging needs no decoding: the index keeps each file's learn inputs, so the new verdict is a few
multiplications. The quality score and defect probabilities stay as analysed; a file that becomes
Poor gets its most likely defect.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from .adaptation import unpack
from .common import file_hash, one_line
from .learning import LearnError, learn_library

log = logging.getLogger(__name__)

# How often the daemon counts the reviews.
CHECK_SECONDS = 30.0


class Relearner:
    def __init__(self, settings, analyzer, writer, index, every_reviews: int):
        self.settings, self.analyzer, self.writer, self.index = settings, analyzer, writer, index
        self.every_reviews = every_reviews
        self.reviews_at_last_learn = self._reviews()

    def _reviews(self) -> int:
        return self.index.count("reviewed_verdict IS NOT NULL")

    def check(self) -> bool:
        """Learn again when enough new reviews arrived; True when a new adaptation is in use."""
        reviews = self._reviews()
        if reviews - self.reviews_at_last_learn < self.every_reviews:
            return False
        self.reviews_at_last_learn = reviews
        try:
            outcome = learn_library(self.settings, analyzer=self.analyzer)
        except LearnError as error:
            log.error("learning again after %d reviews failed: %s", reviews, error)
            return False
        if not outcome.saved:
            log.info("learnt again from %d reviews, kept the verdicts as they are: %s", reviews, outcome.reason)
            return False
        self.analyzer.use_adaptation(outcome.adaptation)
        changed = self.retag()
        log.info(
            "learnt again from %d reviews: %s; %d unreviewed file(s) changed verdict",
            reviews,
            self.analyzer.model_version,
            changed,
        )
        return True

    def retag(self) -> int:
        """Give every unreviewed file the verdict the adaptation in use gives it; returns how many changed."""
        adaptation, version = self.analyzer.adaptation, self.analyzer.model_version
        changed = 0
        for row in self.index.unreviewed_rows_with_learn_inputs():
            inputs = unpack(row["learn_inputs"])
            if inputs is None or row["error"]:  # a decoder finding keeps the file Poor
                continue
            if row["verdict"] == "poor" and row["defect"] == "noise":
                continue  # noise is damage, not taste; the noise meter's finding is not in the learn inputs
            if (row["model_version"] or "").split("+lib-")[0] != adaptation.base_model_version:
                continue  # analysed by other models: their outputs are not what the adaptation corrects
            verdict = "poor" if adaptation.is_poor(inputs[None])[0] else "good"
            if verdict == row["verdict"]:
                continue
            scores = json.loads(row["defect_scores"]) if row["defect_scores"] else {}
            defect = max(scores, key=scores.get) if verdict == "poor" and scores else None
            if verdict == "poor" and defect is None:
                continue
            path = Path(row["path"])
            try:
                if self.writer is not None:
                    tagged = self.writer.write_verdict(
                        path,
                        verdict=verdict,
                        defect=defect,
                        quality=row["quality"],
                        model_version=version,
                        analyzed_at=row["analyzed_at"],
                    )
                    if tagged == path:  # the file itself changed: its row must describe it as it is now
                        st = os.lstat(path)
                        self.index.record_stat(path, size=st.st_size, mtime=st.st_mtime, blake3=file_hash(path))
                self.index.set_model_verdict(path, verdict=verdict, defect=defect, model_version=version)
                changed += 1
            except Exception as error:  # a vanished or locked file: the others still get theirs
                log.error("cannot re-tag %s: %s", path, one_line(error))
        return changed


def relearn_periodically(relearner: Relearner, stop: threading.Event) -> None:
    while not stop.wait(CHECK_SECONDS):
        try:
            relearner.check()
        except Exception as error:  # the daemon goes on with the verdicts it has
            log.error("learning again failed: %s", one_line(error))
