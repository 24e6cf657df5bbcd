"""Unit tests of training decisions in ``training/dataset.py`` and ``training/train.py`` (no backbone needed)."""

import numpy as np
from skimage import data as skimage_data

from pixelperfect_daemon.training import dataset
from pixelperfect_daemon.training.dataset import monochrome


def test_monochrome_is_grey_in_three_channels_and_keeps_the_brightness():
    photo = skimage_data.astronaut()
    grey = monochrome(photo)
    assert grey.shape == photo.shape and grey.dtype == np.uint8
    assert np.array_equal(grey[:, :, 0], grey[:, :, 1]) and np.array_equal(grey[:, :, 1], grey[:, :, 2])
    assert abs(float(grey.mean()) - float(photo.mean())) < 10


def test_a_head_resumes_only_the_run_it_was_checkpointed_in():
    from pixelperfect_daemon.training.train import _run_fingerprint

    x = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
    y = np.arange(100) % 7
    same = _run_fingerprint(x, y, seed=0, epochs=80)
    assert _run_fingerprint(x.copy(), y.copy(), seed=0, epochs=80) == same
    assert _run_fingerprint(x + 1, y, seed=0, epochs=80) != same  # other features (e.g. new synthesis)
    assert _run_fingerprint(x, (y + 1) % 7, seed=0, epochs=80) != same  # other labels
    assert _run_fingerprint(x, y, seed=1, epochs=80) != same


def test_extra_damaged_rounds_leave_the_samples_stage1_learns_from_unchanged():
    from pixelperfect_daemon.labels import DEFECTS
    from pixelperfect_daemon.training.dataset import LEVELS, samples_from_pristine

    photo = skimage_data.astronaut()[::2, ::2]  # 256 x 256: quick to distort
    without = samples_from_pristine(photo, np.random.default_rng(7), clean_variants=1, extra_damaged_rounds=0)
    with_extra = samples_from_pristine(photo, np.random.default_rng(7), clean_variants=1, extra_damaged_rounds=1)
    first = len(without.defect)
    assert first == 1 + len(DEFECTS) * len(LEVELS) and len(with_extra.defect) == first + len(DEFECTS) * len(LEVELS)
    assert np.array_equal(with_extra.views[:first], without.views)
    assert with_extra.subtype[:first] == without.subtype
    assert not without.stage2_only.any()
    assert not with_extra.stage2_only[:first].any() and with_extra.stage2_only[first:].all()
    # The extra round is another draw of every class and level, not a copy of the first.
    assert sorted(with_extra.defect[first:].tolist()) == sorted(without.defect[1:].tolist())
    assert not np.array_equal(with_extra.views[first:], without.views[1:])


def test_well_scored_authentic_photos_are_also_pristine_sources_on_the_same_side_of_the_split(tmp_path):
    from PIL import Image

    from pixelperfect_daemon.training.dataset import SourceImage, split_of
    from pixelperfect_daemon.training.train import (
        AUTHENTIC_AS_PRISTINE_MIN_MOS,
        TrainOptions,
        gather_sources,
        source_counts,
    )

    pristine = tmp_path / "pristine"
    pristine.mkdir()
    Image.new("RGB", (64, 48), "grey").save(pristine / "p.jpg")
    scores = {
        "great.jpg": AUTHENTIC_AS_PRISTINE_MIN_MOS + 5,
        "edge.jpg": AUTHENTIC_AS_PRISTINE_MIN_MOS,
        "fair.jpg": AUTHENTIC_AS_PRISTINE_MIN_MOS - 0.5,
        "bad.jpg": 20.0,
    }
    lines = ["file,set,mos"] + [f"clive/{name},clive_train,{mos}" for name, mos in scores.items()]
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")

    sources = gather_sources(TrainOptions(out=tmp_path / "out", pristine=pristine, mos_csv=tmp_path / "manifest.csv"))

    as_pristine = {s.path.name for s in sources if s.kind == "pristine"} - {"p.jpg"}
    assert as_pristine == {"great.jpg", "edge.jpg"}
    assert {s.path.name for s in sources if s.kind == "authentic"} == set(scores)
    assert source_counts(sources) == {"pristine": 1, "authentic": 4, "authentic_as_pristine": 2}
    # The split is decided by the file, not its use, so a photo's two uses are on the same side.
    for source in sources:
        assert split_of(SourceImage(source.path, "pristine"), seed=0) == split_of(
            SourceImage(source.path, "authentic", 50.0), seed=0
        )


MODULE_SOURCE = '''"""A module."""
LEVEL = 3  # the first Poor level


def scale(x):
    """Docstring."""
    return x * LEVEL
'''


def test_code_fingerprint_ignores_comments_docstrings_and_layout():
    reworded = '''"""The same module, documented differently."""

# a new comment
LEVEL = 3  # another comment


def scale(x):
    """Another docstring,
    on two lines."""
    return (x
            * LEVEL)
'''
    assert dataset.code_fingerprint(reworded) == dataset.code_fingerprint(MODULE_SOURCE)


def test_code_fingerprint_changes_with_the_code():
    fingerprint = dataset.code_fingerprint(MODULE_SOURCE)
    assert dataset.code_fingerprint(MODULE_SOURCE.replace("LEVEL = 3", "LEVEL = 4")) != fingerprint
    assert dataset.code_fingerprint(MODULE_SOURCE.replace("x * LEVEL", "x + LEVEL")) != fingerprint
    # A string that is not a docstring is code.
    with_string = MODULE_SOURCE.replace("    return x * LEVEL", '    name = "level"\n    return x * LEVEL')
    assert dataset.code_fingerprint(with_string) != fingerprint
    # A function whose body was only its docstring still differs from one that does something.
    empty = '''def f():\n    """Only a docstring."""\n'''
    assert dataset.code_fingerprint(empty) == dataset.code_fingerprint("def f():\n    pass\n")
    assert dataset.code_fingerprint(empty) != dataset.code_fingerprint("def f():\n    return 1\n")
