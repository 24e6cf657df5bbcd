"""The backbone comparison: the same samples however many workers make them, and every network runs."""

import numpy as np
import pytest
import skimage.data
from PIL import Image

from experiments import compare_backbones
from experiments.compare_backbones import ComparisonOptions
from pixelperfect_daemon.labels import DEFECTS
from pixelperfect_daemon.training import dataset


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pristine")
    for name in ("astronaut", "coffee", "chelsea"):
        Image.fromarray(getattr(skimage.data, name)()).save(folder / f"{name}.jpg", quality=95)
    return folder


def test_views_do_not_depend_on_the_number_of_workers(photo_folder):
    sources = dataset.find_pristine(photo_folder)
    options = ComparisonOptions(crop=32, levels_per_class=1)
    x1, y1, val1 = compare_backbones.build_views(sources, options)
    x2, y2, val2 = compare_backbones.build_views(sources, ComparisonOptions(crop=32, levels_per_class=1, workers=2))

    assert x1.shape == (len(sources) * len(DEFECTS), 32, 32, 3) and x1.dtype == np.uint8
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(val1, val2)
    assert sorted(set(y1)) == list(range(len(DEFECTS)))
    assert val1.any() and not val1.all()  # split by photo: both sides have one


def test_every_network_trains_and_is_measured(photo_folder):
    options = ComparisonOptions(crop=32, levels_per_class=1, epochs=1, batch=8)
    results = compare_backbones.compare(photo_folder, options)

    assert results["train_samples"] + results["val_samples"] == 3 * len(DEFECTS)
    x, y, val = compare_backbones.build_views(dataset.find_pristine(photo_folder), options)
    assert results["samples_sha256"] == compare_backbones.samples_digest(x, y, val)
    for name in compare_backbones.NETWORKS:
        assert 0.0 <= results[name]["val_top1"] <= 1.0
        assert results[name]["train_seconds"] > 0


def test_samples_digest_tells_different_samples_apart(photo_folder):
    sources = dataset.find_pristine(photo_folder)
    x, y, val = compare_backbones.build_views(sources, ComparisonOptions(crop=32, levels_per_class=1))
    digest = compare_backbones.samples_digest(x, y, val)

    assert digest == compare_backbones.samples_digest(x.copy(), y.copy(), val.copy())
    changed = x.copy()
    changed[0, 0, 0, 0] ^= 1
    assert compare_backbones.samples_digest(changed, y, val) != digest
    assert compare_backbones.samples_digest(x, y, ~val) != digest


def test_working_copies_keep_names_and_splits_and_shrink_to_the_working_size(photo_folder, tmp_path):
    large = photo_folder.parent / "large"
    (large / "sub").mkdir(parents=True)
    Image.fromarray(np.tile(skimage.data.coffee(), (3, 3, 1))).save(large / "sub" / "coffee.jpg", quality=95)
    Image.fromarray(skimage.data.chelsea()).save(large / "chelsea.jpg", quality=95)

    assert compare_backbones.write_working_copies(large, tmp_path / "copies") == 2

    copies = dataset.find_pristine(tmp_path / "copies")
    assert [c.path.relative_to(tmp_path / "copies") for c in copies] == [
        s.path.relative_to(large) for s in dataset.find_pristine(large)
    ]
    shrunk = np.asarray(Image.open(tmp_path / "copies" / "sub" / "coffee.jpg"))
    assert max(shrunk.shape[:2]) == compare_backbones.WORKING_LONG_SIDE
    small = np.asarray(Image.open(tmp_path / "copies" / "chelsea.jpg"))
    assert small.shape == skimage.data.chelsea().shape  # never enlarged
    originals = {s.path.name: dataset.split_of(s, 0) for s in dataset.find_pristine(large)}
    assert {c.path.name: dataset.split_of(c, 0) for c in copies} == originals
