"""``pixelperfect learn``: the adaptation's arithmetic, its checks, and the command end to end on a
small index of real CLIVE photos (real SQLite, real models, real ExifTool) with a simulated reviewer."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT
from pixelperfect_daemon.adaptation import (
    FEATURES,
    LEARN_INPUTS,
    TASTE_DEFECTS,
    AdaptationError,
    LibraryAdaptation,
    adaptation_file,
    base_margin,
    held_poor,
    load_adaptation,
    most_likely_defect,
    pack,
    unpack,
)
from pixelperfect_daemon.config import load_settings
from pixelperfect_daemon.index import ImageIndex
from pixelperfect_daemon.labels import DEFECTS
from pixelperfect_daemon.learning import (
    CROWD_CHECK,
    Reviews,
    fit_adaptation,
    guard_failures,
    load_validation,
    reset_library,
    validation_measures,
)
from pixelperfect_daemon.verdict import is_poor


def random_inputs(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    inputs = rng.uniform(0, 1, size=(count, len(LEARN_INPUTS)))
    inputs[:, 0] = rng.choice([0.0, 0.2, 0.4999, 0.5, 0.5001, 0.9, 1.0], size=count)
    inputs[:, 1] = rng.choice([0.0, 0.3, 0.3499, 0.35, 0.3501, 0.8, 1.0], size=count)
    return inputs


@pytest.mark.parametrize("threshold, below", [(0.5, 0.35), (0.5, 0.0), (0.6, 0.4), (0.0, 0.35), (1.0, 0.0)])
def test_base_margin_is_the_shipped_verdict_exactly(threshold, below):
    inputs = random_inputs(2000)
    expected = is_poor(inputs[:, 0], inputs[:, 1], threshold, below)
    assert np.array_equal(base_margin(inputs, threshold, below) >= 0, expected)


def neutral_adaptation(**changes) -> LibraryAdaptation:
    values = dict(
        base_model_version="m-1",
        poor_threshold=0.5,
        poor_below_quality=0.35,
        scale=1.0,
        bias=0.0,
        weights=(0.0,) * len(FEATURES),
        feature_mean=(0.0,) * len(FEATURES),
        feature_std=(1.0,) * len(FEATURES),
        reviews=12,
        learnt_at="2026-12-06T00:00:00Z",
    )
    return LibraryAdaptation(**{**values, **changes})


def test_a_neutral_adaptation_keeps_the_shipped_verdicts_and_a_bias_makes_it_stricter():
    inputs = random_inputs(500, seed=1)
    shipped = is_poor(inputs[:, 0], inputs[:, 1])
    assert np.array_equal(neutral_adaptation().is_poor(inputs), shipped)
    stricter = neutral_adaptation(bias=1.0).is_poor(inputs)
    assert stricter[shipped].all() and stricter.sum() > shipped.sum()


def with_most_likely_defect(inputs: np.ndarray, defect: str) -> np.ndarray:
    inputs = inputs.copy()
    scores = [LEARN_INPUTS.index(f"score_{name}") for name in DEFECTS]
    inputs[:, scores] = 0.05
    inputs[:, LEARN_INPUTS.index(f"score_{defect}")] = 0.7
    return inputs


@pytest.mark.parametrize("defect", DEFECTS)
def test_an_adaptation_keeps_good_only_what_is_flagged_for_exposure_or_colour(defect):
    """However lenient the library, a photo flagged for damage stays Poor; exposure and colour are its taste."""
    inputs = with_most_likely_defect(random_inputs(500, seed=2), defect)
    shipped = is_poor(inputs[:, 0], inputs[:, 1])
    lenient = neutral_adaptation(bias=-100.0).is_poor(inputs)
    if defect in TASTE_DEFECTS:
        assert not lenient.any()
    else:
        assert np.array_equal(lenient, shipped) and shipped.any() and not shipped.all()
    assert np.array_equal(held_poor(inputs, 0.5, 0.35), shipped & (defect not in TASTE_DEFECTS))


def test_adaptation_file_round_trip_digest_and_refusals(tmp_path):
    adaptation = neutral_adaptation(bias=0.25)
    adaptation_file(tmp_path).write_text(adaptation.to_json())
    loaded = load_adaptation(tmp_path, "m-1")
    assert loaded == adaptation and loaded.digest == adaptation.digest
    # What decides the verdicts names it; when and from how many reviews does not.
    assert neutral_adaptation(bias=0.26).digest != adaptation.digest
    assert neutral_adaptation(bias=0.25, reviews=99, learnt_at="x").digest == adaptation.digest
    assert load_adaptation(tmp_path, "other-models") is None  # learnt on other models: not used
    adaptation_file(tmp_path).write_text("{not json")
    assert load_adaptation(tmp_path, "m-1") is None
    with pytest.raises(AdaptationError):
        LibraryAdaptation.from_json(json.dumps({**json.loads(adaptation.to_json()), "weights": [1.0]}))


def test_learn_inputs_pack_to_228_bytes_and_back():
    values = np.arange(len(LEARN_INPUTS), dtype=float) / 7
    blob = pack(values)
    assert len(blob) == 4 * 57 == 228
    assert np.allclose(unpack(blob), values, atol=1e-6)
    assert unpack(b"short") is None and unpack(None) is None


def test_config_learn_section(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[index]\ndatabase = "lib/index.sqlite"\n')
    assert load_settings(config).learn_folder == tmp_path / "lib" / "index-learn"
    config.write_text('[learn]\nfolder = "adapt"\nevery_reviews = 20\n')
    settings = load_settings(config)
    assert settings.learn_folder == tmp_path / "adapt" and settings.learn.every_reviews == 20
    config.write_text('[index]\ndatabase = "postgresql://pp@db/pixelperfect"\n')
    assert load_settings(config).learn_folder == tmp_path / "pixelperfect-learn"  # a server has no folder
    config.write_text("[learn]\nevery_reviews = -1\n")
    with pytest.raises(ValueError, match=r"config.toml: \[learn\] every_reviews must be at least 0"):
        load_settings(config)


def test_analyzer_for_uses_a_saved_adaptation_of_these_models_only(tmp_path, trained_models_dir):
    from pixelperfect_daemon.adaptation import analyzer_for

    config = tmp_path / "config.toml"
    config.write_text(
        f'[index]\ndatabase = "{tmp_path / "index.sqlite"}"\n[analysis]\nmodels_dir = "{trained_models_dir}"\n'
    )
    settings = load_settings(config)
    base = json.loads((trained_models_dir / "labels.json").read_text())["model_version"]
    assert analyzer_for(settings).model_version == base
    settings.learn_folder.mkdir()
    adaptation = neutral_adaptation(base_model_version=base, bias=0.5)
    adaptation_file(settings.learn_folder).write_text(adaptation.to_json())
    analyzer = analyzer_for(settings)
    assert analyzer.model_version == f"{base}+lib-{adaptation.digest}" and analyzer.adaptation == adaptation
    adaptation_file(settings.learn_folder).write_text(neutral_adaptation(base_model_version="older").to_json())
    assert analyzer_for(settings).model_version == base


def test_reset_removes_only_the_adaptation(tmp_path):
    folder = tmp_path / "lib-learn"
    folder.mkdir()
    adaptation_file(folder).write_text(neutral_adaptation().to_json())
    (folder / "notes.txt").write_text("the user's own file")
    assert "removed" in reset_library(folder)
    assert not adaptation_file(folder).exists() and (folder / "notes.txt").read_text() == "the user's own file"
    assert "no adaptation" in reset_library(folder)


# --- with the real models' shipped validation data -------------------------------------------


@pytest.fixture(scope="module")
def validation(trained_models_dir):
    card = json.loads((trained_models_dir / "labels.json").read_text())
    return load_validation(trained_models_dir, card["model_version"])


def test_a_reviewer_who_keeps_blurred_photos_good_cannot_hide_blur(validation):
    """Reviews that call heavy synthetic blur Good would hide damage: the photos flagged for blur stay
    Poor, and an adaptation allowed to relax blur is refused by the checks."""
    blur = DEFECTS.index("blur")
    chosen = np.flatnonzero(
        ((validation.synthetic_defect == blur) & (validation.synthetic_level >= 3)) | (validation.synthetic_level == 0)
    )[::2]
    poor = np.isin(validation.synthetic_defect[chosen], [DEFECTS.index(d) for d in ("noise", "compression")])
    # Good for clean and blurred, and a few noisy ones Poor so both verdicts occur.
    noisy = np.flatnonzero((validation.synthetic_defect == DEFECTS.index("noise")) & (validation.synthetic_level >= 3))
    rows = np.concatenate([chosen, noisy[:20]])
    poor = np.concatenate([poor, np.ones(20, bool)])
    reviews = Reviews(inputs=validation.synthetic_inputs[rows], poor=poor, paths=[])
    adaptation, agreement = fit_adaptation(reviews, validation, validation.model_version, 0.5, 0.35)
    assert adaptation is not None and agreement["chosen"] > agreement["shipped"]
    shipped = validation_measures(validation, lambda x: is_poor(x[:, 0], x[:, 1]))
    after = validation_measures(validation, adaptation.is_poor, lambda x: is_poor(x[:, 0], x[:, 1]))
    assert after["blur damage (levels 3-5) flagged"] >= shipped["blur damage (levels 3-5) flagged"]
    relaxing_blur = dataclasses.replace(adaptation, taste_defects=(*TASTE_DEFECTS, "blur"))
    unguarded = validation_measures(validation, relaxing_blur.is_poor, lambda x: is_poor(x[:, 0], x[:, 1]))
    assert unguarded["blur damage (levels 3-5) flagged"] < shipped["blur damage (levels 3-5) flagged"] - 0.01
    assert any(failure.startswith("blur damage") for failure in guard_failures(shipped, unguarded))


def test_the_crowd_check_leaves_exposure_and_colour_to_the_library(validation):
    """Keeping Good every authentic photo flagged for exposure or colour moves the crowd's balanced
    accuracy, not the enforced one; flagging the other photos moves both and is refused."""
    inputs = validation.authentic_inputs
    taste = np.isin(most_likely_defect(inputs), TASTE_DEFECTS)
    shipped_rule = lambda x: np.asarray(is_poor(x[:, 0], x[:, 1]))  # noqa: E731
    shipped = validation_measures(validation, shipped_rule)
    flagged = shipped_rule(inputs)
    assert (taste & flagged).any() and (~taste & ~flagged).any()

    def rule(keep_taste_good: bool, flag_others: bool):
        def poor(x):
            result = shipped_rule(x)
            if x is inputs:
                result = np.where(taste, result & ~keep_taste_good, result | flag_others)
            return result

        return poor

    night = validation_measures(validation, rule(True, False), shipped_rule)
    assert night[CROWD_CHECK] >= shipped[CROWD_CHECK]
    assert night["clear Good/Poor balanced accuracy"] != shipped["clear Good/Poor balanced accuracy"]
    assert not guard_failures(shipped, night)
    everything_poor = validation_measures(validation, rule(False, True), shipped_rule)
    assert any(failure.startswith(CROWD_CHECK) for failure in guard_failures(shipped, everything_poor))


def test_reviews_that_agree_with_the_shipped_verdict_teach_nothing(validation):
    inputs = validation.authentic_inputs
    reviews = Reviews(inputs=inputs, poor=np.asarray(is_poor(inputs[:, 0], inputs[:, 1])), paths=[])
    adaptation, agreement = fit_adaptation(reviews, validation, validation.model_version, 0.5, 0.35)
    assert adaptation is None and agreement["shipped"] == 1.0


# --- end to end -------------------------------------------------------------------------------

REVIEWED = 60
NEW_FILES = 4


def clive_photos(shared_data: Path, count: int, offset: int = 0) -> list[Path]:
    """``count`` CLIVE photos spread over the manifest (a fixed choice: every ninth from ``offset``)."""
    with open(shared_data / "manifest.csv", newline="", encoding="utf-8") as handle:
        rows = [
            shared_data / row["file"] for row in csv.DictReader(handle) if row["set"] == "clive_train" and row["mos"]
        ]
    return rows[offset::9][:count]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from pixelperfect_daemon.cli import main; main()", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def reviewed_library(
    tmp_path: Path,
    shared_data: Path,
    reviewed_count: int,
    other_count: int,
    extra_config: str = "",
    review: bool = True,
):
    """A library of real CLIVE photos scanned into a real index, ``reviewed_count`` of them reviewed by
    a simulated reviewer with a stricter bar on the models' own scale (Poor below a quality score
    of 0.5; the shipped verdict's is 0.35, or P(poor) >= 0.5); the other photos wait in ``later``."""
    from pixelperfect_daemon.daemon import scan_folder

    library, later = tmp_path / "library", tmp_path / "later"
    library.mkdir(), later.mkdir()
    photos = clive_photos(shared_data, reviewed_count) + clive_photos(shared_data, other_count, offset=4)
    for number, source in enumerate(photos):
        shutil.copyfile(source, (library if number < reviewed_count else later) / f"{number:03d}-{source.name}")
    config = tmp_path / "config.toml"
    config.write_text(f'[index]\ndatabase = "{tmp_path / "index.sqlite"}"\n[analysis]\nworkers = 2\n{extra_config}')
    settings = load_settings(config)
    scan_folder(settings, library, progress=False)
    reviewed = sorted(str(path) for path in library.iterdir())
    if review:
        review_as_a_stricter_reviewer(settings, reviewed)
    return config, settings, reviewed, later


def review_as_a_stricter_reviewer(settings, reviewed: list[str]) -> None:
    with ImageIndex(settings.index.database) as index:
        assert index.reviewed_rows() == []
        for path in reviewed:
            row = index.get(Path(path))
            assert row["learn_inputs"] is not None and len(row["learn_inputs"]) == 228
            poor = row["quality"] < 0.5
            index.record_review(
                Path(path),
                verdict="poor" if poor else "good",
                defect="blur" if poor else None,
                reviewed_by="sim",
                reviewed_at="2026-12-06T00:00:00Z",
            )
        shipped_disagreements = sum((row["reviewed_verdict"] != row["verdict"]) for row in index.reviewed_rows())
    assert shipped_disagreements >= 3  # the reviewer is stricter than the models: something to learn


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")
def test_learn_end_to_end_with_a_stricter_reviewer(tmp_path, shared_data, trained_models_dir):
    from pixelperfect_daemon.daemon import scan_folder

    config, settings, reviewed, later = reviewed_library(tmp_path, shared_data, REVIEWED, NEW_FILES)
    with ImageIndex(settings.index.database) as index:
        # A row analysed before the index kept learn inputs: learn decodes its file again.
        index.db.conn.execute("UPDATE images SET learn_inputs = NULL WHERE path = ?", (reviewed[0],))
        index.db.conn.commit()

    dry = run_cli("learn", "--config", str(config), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"{REVIEWED} reviews used, 1 of them decoded again" in dry.stdout
    assert f"agreement with the {REVIEWED} reviews" in dry.stdout and "clear Good/Poor balanced accuracy" in dry.stdout
    assert not settings.learn_folder.exists(), dry.stdout
    with ImageIndex(settings.index.database) as index:
        assert index.get(Path(reviewed[0]))["learn_inputs"] is not None  # kept after decoding again

    learnt = run_cli("learn", "--config", str(config))
    assert learnt.returncode == 0, learnt.stderr
    assert "saved" in learnt.stdout.splitlines()[-1], learnt.stdout
    table = {line.split("  ")[0].strip(): line.split()[-2:] for line in learnt.stdout.splitlines() if "  " in line}
    agreement_row = next(key for key in table if key.startswith("agreement"))
    shipped_agreement, adapted_agreement = (float(v) for v in table[agreement_row])
    assert adapted_agreement > shipped_agreement
    adaptation = load_adaptation(
        settings.learn_folder, json.loads((trained_models_dir / "labels.json").read_text())["model_version"]
    )
    assert adaptation is not None and adaptation.reviews == REVIEWED

    # analyze uses it: the adapted model version, and verdicts by the adaptation.
    analysed = run_cli("analyze", "--json", "--config", str(config), str(later))
    results = [json.loads(line) for line in analysed.stdout.splitlines()]
    assert len(results) == NEW_FILES
    assert all(r["model_version"].endswith(f"+lib-{adaptation.digest}") for r in results)

    # scan tags new files with it; the reviewed ones keep their reviews.
    scan_folder(settings, later, progress=False)
    tag = subprocess.run(
        ["exiftool", "-s3", "-XMP-pixelperfect:ModelVersion", sorted(later.iterdir())[0]],
        capture_output=True,
        text=True,
    )
    assert tag.stdout.strip().endswith(f"+lib-{adaptation.digest}")
    with ImageIndex(settings.index.database) as index:
        assert all(r["reviewed_by"] == "sim" for r in index.reviewed_rows()) and len(index.reviewed_rows()) == REVIEWED

    reset = run_cli("learn", "--config", str(config), "--reset")
    assert reset.returncode == 0 and "removed" in reset.stdout
    assert not settings.learn_folder.exists() and (tmp_path / "index.sqlite").is_file()
    again = run_cli("analyze", "--json", "--config", str(config), str(later))
    assert all("+lib-" not in json.loads(line)["model_version"] for line in again.stdout.splitlines())


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")
def test_the_daemon_learns_again_after_n_reviews_and_retags_only_unreviewed_files(
    tmp_path, shared_data, trained_models_dir
):
    from pixelperfect_daemon.adaptation import analyzer_for
    from pixelperfect_daemon.daemon import scan_folder
    from pixelperfect_daemon.metadata import MetadataWriter
    from pixelperfect_daemon.relearning import Relearner

    _config, settings, reviewed, later = reviewed_library(
        tmp_path, shared_data, REVIEWED, 16, "[learn]\nevery_reviews = 50\n"
    )
    scan_folder(settings, later, progress=False)
    analyzer = analyzer_for(settings)
    writer = MetadataWriter(settings.metadata)
    with ImageIndex(settings.index.database) as index:
        before = {row["path"]: row for row in index.db["images"].rows}
        relearner = Relearner(settings, analyzer, writer, index, settings.learn.every_reviews)
        assert relearner.check() is False  # no new reviews since it started
        relearner.reviews_at_last_learn = 0  # as if the 60 reviews had arrived while the daemon ran
        assert relearner.check() is True
        assert "+lib-" in analyzer.model_version and settings.learn_folder.joinpath("adaptation.json").is_file()
        after = {row["path"]: row for row in index.db["images"].rows}
    try:
        changed = [path for path in after if after[path]["verdict"] != before[path]["verdict"]]
        assert changed, "the stricter adaptation changed no unreviewed verdict"
        assert not any(path in reviewed for path in changed)  # a review always wins
        for path in changed:
            tags = writer.read_verdict(Path(path))
            assert after[path]["model_version"] == analyzer.model_version == tags["ModelVersion"]
            assert tags["Verdict"].lower() == after[path]["verdict"], tags
        for path in reviewed:
            assert after[path]["reviewed_verdict"] == before[path]["reviewed_verdict"]
            assert after[path]["model_version"] == before[path]["model_version"]
        # The re-tagged files are not analysed again by the next scan.
        stats = scan_folder(settings, later, analyzer=analyzer, progress=False)
        assert stats.outcomes["analysed"] == 0
    finally:
        writer.close()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")
def test_a_running_daemon_with_every_reviews_learns_from_new_reviews(
    tmp_path, shared_data, trained_models_dir, monkeypatch
):
    import threading
    import time

    from pixelperfect_daemon import relearning
    from pixelperfect_daemon.daemon import run_daemon, scan_folder

    monkeypatch.setattr(relearning, "CHECK_SECONDS", 0.2)
    extra = (
        f'[learn]\nevery_reviews = 50\n[watch]\nfolders = ["{tmp_path / "later"}"]\n'
        "stable_seconds = 0.3\nrescan_interval = 0\n"
    )
    _config, settings, reviewed, later = reviewed_library(tmp_path, shared_data, REVIEWED, 16, extra, review=False)
    scan_folder(settings, later, progress=False)
    stop = threading.Event()
    daemon = threading.Thread(target=run_daemon, args=(settings,), kwargs={"stop": stop})
    daemon.start()
    try:
        time.sleep(1.0)  # the daemon counts the reviews it starts with: none
        review_as_a_stricter_reviewer(settings, reviewed)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with ImageIndex(settings.index.database) as index:
                relabelled = index.count("model_version LIKE '%+lib-%'")
            if relabelled:
                break
            time.sleep(0.3)
        assert relabelled, "the daemon did not learn again, or changed no verdict"
        assert settings.learn_folder.joinpath("adaptation.json").is_file()
        with ImageIndex(settings.index.database) as index:
            assert index.count("model_version LIKE '%+lib-%' AND reviewed_verdict IS NOT NULL") == 0
    finally:
        stop.set()
        daemon.join(timeout=60)
    assert not daemon.is_alive()


def test_relearning_never_retags_a_file_poor_for_noise_good():
    """The noise meter's finding is not among the learn inputs: an adaptation that would call the
    file Good from them must not undo it (nor a Poor for Noise the models found: noise is no taste)."""
    from types import SimpleNamespace

    from pixelperfect_daemon.adaptation import LEARN_INPUTS, pack
    from pixelperfect_daemon.relearning import Relearner

    def row(path, verdict, defect):
        scores = json.dumps({key: 1 / len(DEFECTS) for key in DEFECTS})
        return {
            "path": path, "verdict": verdict, "defect": defect, "error": None, "defect_scores": scores,
            "learn_inputs": pack(np.zeros(len(LEARN_INPUTS))), "model_version": "base", "quality": 0.7,
            "analyzed_at": "2026-12-07T00:00:00+00:00",
        }  # fmt: skip

    rows = [row("/photos/grainy.jpg", "poor", "noise"), row("/photos/dark.jpg", "poor", "luminance_contrast")]
    changed = []
    index = SimpleNamespace(
        unreviewed_rows_with_learn_inputs=lambda: rows,
        set_model_verdict=lambda path, **verdict: changed.append((str(path), verdict["verdict"])),
        count=lambda where: 0,
    )
    adaptation = SimpleNamespace(base_model_version="base", is_poor=lambda inputs: np.array([False]))
    analyzer = SimpleNamespace(adaptation=adaptation, model_version="base+lib-0123")
    relearner = Relearner(None, analyzer, None, index, every_reviews=10)
    assert relearner.retag() == 1
    assert changed == [("/photos/dark.jpg", "good")]
