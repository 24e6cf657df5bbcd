"""The EfficientNet-Lite0 backbone: the torch-free state-dict reader, weight loading, ImageNet
sanity, the feature extractor and the LiteRT export. Needs TensorFlow (the train extra), not torch."""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile

import numpy as np
import pytest

pytest.importorskip("tensorflow")
skimage_data = pytest.importorskip("skimage.data")
skimage_transform = pytest.importorskip("skimage.transform")

import keras  # noqa: E402

from pixelperfect_daemon.training.backbone import (  # noqa: E402
    DEFAULT_TAPS,
    FEATURE_DIM,
    HEAD_FILTERS,
    TAP_CHANNELS,
    BackboneWeightsError,
    build_efficientnet_lite0,
    build_feature_extractor,
    feature_dim,
    imagenet_weights_path,
    load_torch_weights,
    torch_prefixes_by_layer,
)
from pixelperfect_daemon.training.litert_export import export_tflite  # noqa: E402
from pixelperfect_daemon.training.torch_state_dict import (  # noqa: E402
    LEGACY_MAGIC_NUMBER,
    StateDictError,
    load_legacy_state_dict,
)
from pixelperfect_daemon.training.train import backbone_tap_columns  # noqa: E402

# Slow lane: builds and exports the TensorFlow backbone (scripts/test.sh --fast leaves it out; CI runs it).
pytestmark = pytest.mark.slow

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug
ROCKET_CLASSES = {657, 744, 812}  # missile, projectile, space shuttle


# --- hand-written PyTorch files (torch is not installed here) ---------------------------------


class _Global:
    """Stands for a global such as torch.FloatStorage in a pickle written without torch."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle's save_reduce insists on a callable
        raise AssertionError("never called")


class _Storage:
    def __init__(self, key: str, values: np.ndarray, storage_type: str):
        self.key, self.values, self.storage_type = key, values, storage_type


class _Tensor:
    def __init__(self, storage, offset, size, stride, view=None):
        self.storage, self.offset, self.size, self.stride, self.view = storage, offset, size, stride, view

    def __reduce__(self):
        rebuild = _Global("torch._utils", "_rebuild_tensor_v2")
        return rebuild, (
            _StorageRef(self.storage, self.view),
            self.offset,
            self.size,
            self.stride,
            False,
            collections.OrderedDict(),
        )


class _StorageRef:
    def __init__(self, storage, view):
        self.storage, self.view = storage, view


class _TorchPickler(pickle._Pickler):
    """Writes the pickles torch.save writes: globals by name, storages as persistent ids."""

    def __init__(self, file, zip_format: bool):
        super().__init__(file, protocol=2)
        self.zip_format = zip_format

    def _save_global_by_name(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[_Global] = _save_global_by_name

    def persistent_id(self, obj):
        if not isinstance(obj, _StorageRef):
            return None
        storage = obj.storage
        type_global = _Global("torch", storage.storage_type)
        if self.zip_format:
            return ("storage", type_global, storage.key, "cpu", storage.values.size)
        return ("storage", type_global, storage.key, "cpu", storage.values.size, obj.view)


def _pickle_state(state, zip_format: bool) -> bytes:
    buffer = io.BytesIO()
    _TorchPickler(buffer, zip_format).dump(state)
    return buffer.getvalue()


def write_legacy_file(path, state, storages):
    with open(path, "wb") as file:
        for header in (LEGACY_MAGIC_NUMBER, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(header, file, protocol=2)
        file.write(_pickle_state(state, zip_format=False))
        pickle.dump([s.key for s in storages], file, protocol=2)
        for storage in storages:
            file.write(struct.pack("<q", storage.values.size) + storage.values.tobytes())


def write_zip_file(path, state, storages):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("state/data.pkl", _pickle_state(state, zip_format=True))
        archive.writestr("state/byteorder", "little")
        for storage in storages:
            archive.writestr(f"state/data/{storage.key}", storage.values.tobytes())


def tricky_state():
    """Shared storages, offsets, strides, a view and several dtypes, with the arrays they mean."""
    grid = _Storage("0", np.arange(24, dtype="<f4"), "FloatStorage")
    longs = _Storage("1", np.array([7, -3], dtype="<i8"), "LongStorage")
    halves = _Storage("2", np.array([0.5, -1.25, 3.0], dtype="<f2"), "HalfStorage")
    state = collections.OrderedDict(
        [
            ("grid", _Tensor(grid, 0, (4, 6), (6, 1))),
            ("rows_1_2_every_other_column", _Tensor(grid, 6, (2, 3), (6, 2))),
            ("transposed", _Tensor(grid, 0, (6, 4), (1, 6))),
            ("scalar", _Tensor(longs, 1, (), ())),
            ("halves", _Tensor(halves, 1, (2,), (1,))),
        ]
    )
    grid_values = np.arange(24, dtype=np.float32).reshape(4, 6)
    expected = {
        "grid": grid_values,
        "rows_1_2_every_other_column": grid_values[1:3, ::2],
        "transposed": grid_values.T,
        "scalar": np.array(-3, dtype=np.int64),
        "halves": np.array([-1.25, 3.0], dtype=np.float16),
    }
    return state, [grid, longs, halves], expected


@pytest.mark.parametrize("writer", [write_legacy_file, write_zip_file])
def test_reader_handles_offsets_strides_shared_storages_and_dtypes(tmp_path, writer):
    state, storages, expected = tricky_state()
    path = tmp_path / "state.pth"
    writer(path, state, storages)
    loaded = load_legacy_state_dict(path)
    assert list(loaded) == list(expected)
    for key, value in expected.items():
        assert loaded[key].dtype == value.dtype, key
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)
    loaded["grid"][0, 0] = 99.0  # copies, not views of one shared buffer
    assert loaded["transposed"][0, 0] == 0.0


def test_reader_handles_a_legacy_view_into_a_storage(tmp_path):
    grid = _Storage("0", np.arange(10, dtype="<f4"), "FloatStorage")
    state = {"tail": _Tensor(grid, 1, (3,), (1,), view=("0_view", 4, 6))}
    write_legacy_file(tmp_path / "view.pth", state, [grid])
    np.testing.assert_array_equal(load_legacy_state_dict(tmp_path / "view.pth")["tail"], [5.0, 6.0, 7.0])


def test_reader_refuses_pickled_code_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return _Global("os", "system"), (f"touch {marker}",)

    path = tmp_path / "evil.pth"
    write_legacy_file(path, {"x": Exploit()}, [])
    with pytest.raises(StateDictError, match="refusing to load os.system"):
        load_legacy_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content",
    [b"", b"not a pytorch file at all", pickle.dumps(12345, protocol=2), pickle.dumps(LEGACY_MAGIC_NUMBER, protocol=2)],
    ids=["empty", "text", "wrong-magic", "truncated-after-magic"],
)
def test_reader_gives_a_clear_error_for_other_files(tmp_path, content):
    path = tmp_path / "other.pth"
    path.write_bytes(content)
    with pytest.raises(StateDictError, match="other.pth"):
        load_legacy_state_dict(path)


def test_reader_reports_a_file_cut_inside_a_storage(tmp_path):
    state, storages, _ = tricky_state()
    path = tmp_path / "cut.pth"
    write_legacy_file(path, state, storages)
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(StateDictError, match="ends inside storage"):
        load_legacy_state_dict(path)


# --- the packaged ImageNet weights ----------------------------------------------------------


@pytest.fixture(scope="module")
def imagenet_state_dict():
    return load_legacy_state_dict(imagenet_weights_path())


def test_packaged_state_dict_is_efficientnet_lite0(imagenet_state_dict):
    state = imagenet_state_dict
    assert len(state) == 296
    assert next(iter(state)) == "_conv_stem.weight"
    assert list(state)[-2:] == ["_fc.weight", "_fc.bias"]
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert not any("_se_" in key for key in state)  # Lite: no squeeze-excitation
    learned = sum(
        v.size for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert learned == 4_652_008  # the published 4.65M parameters of EfficientNet-Lite0
    assert all(v.dtype == np.float32 for k, v in state.items() if not k.endswith("num_batches_tracked"))


def test_layer_mapping_covers_exactly_the_state_dict(imagenet_state_dict):
    prefixes = set(torch_prefixes_by_layer().values())
    state_prefixes = {key.rsplit(".", 1)[0] for key in imagenet_state_dict}
    assert prefixes == state_prefixes


# --- the Keras models -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier():
    return build_efficientnet_lite0(include_top=True, weights="imagenet")


@pytest.fixture(scope="module")
def feature_extractor():
    return build_feature_extractor(weights="imagenet")


def sample_pixels(name: str, size=(224, 224)) -> np.ndarray:
    image = getattr(skimage_data, name)()
    return skimage_transform.resize(image, size, anti_aliasing=True, preserve_range=True).astype(np.float32)


def test_classifier_takes_every_imagenet_tensor_with_torch_layouts(classifier, imagenet_state_dict):
    state = imagenet_state_dict
    assert classifier.count_params() == sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    np.testing.assert_array_equal(
        classifier.get_layer("stem_conv").kernel.numpy(), state["_conv_stem.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(
        classifier.get_layer("block6d_dwconv").kernel.numpy(),
        state["_blocks.14._depthwise_conv.weight"].transpose(2, 3, 0, 1),
    )
    np.testing.assert_array_equal(classifier.get_layer("top_bn").moving_variance.numpy(), state["_bn1.running_var"])
    np.testing.assert_array_equal(classifier.get_layer("predictions").kernel.numpy(), state["_fc.weight"].T)


@pytest.mark.parametrize(
    "name, expected_classes",
    [("chelsea", CAT_CLASSES), ("coffee", COFFEE_CLASSES), ("rocket", ROCKET_CLASSES)],
)
def test_imagenet_head_recognises_sample_photos(classifier, name, expected_classes):
    logits = classifier(sample_pixels(name)[None], training=False).numpy()[0]
    top5 = set(np.argsort(-logits)[:5].tolist())
    assert top5 & expected_classes, f"{name}: top-5 {sorted(top5)}"


def test_in_model_preprocessing_matches_the_statistics_the_weights_were_trained_on(classifier, imagenet_state_dict):
    # The stem BatchNorm's running variance records what the stem conv saw in training; with the
    # wrong input normalisation (e.g. torchvision mean/std) the ratio is off by ~5x (|log| ~1.2).
    stem = keras.Model(classifier.input, classifier.get_layer("stem_conv").output)
    photos = np.stack([sample_pixels(name) for name in ("chelsea", "coffee", "rocket", "astronaut")])
    variance = stem(photos).numpy().var(axis=(0, 1, 2))
    running_variance = imagenet_state_dict["_bn0.running_var"]
    alive = running_variance > 1e-6
    assert np.median(np.abs(np.log(variance[alive] / running_variance[alive]))) < 0.75


def test_uint8_and_float_pixels_give_the_same_logits(classifier):
    pixels = sample_pixels("coffee").round().astype(np.uint8)[None]
    np.testing.assert_allclose(
        classifier(pixels).numpy(), classifier(pixels.astype(np.float32)).numpy(), rtol=1e-5, atol=1e-5
    )


def test_random_init_is_not_imagenet(classifier):
    scratch = build_efficientnet_lite0(include_top=False, weights=None)
    kernel = scratch.get_layer("stem_conv").kernel.numpy()
    assert not np.allclose(kernel, classifier.get_layer("stem_conv").kernel.numpy())
    assert scratch.output.shape[-1] == HEAD_FILTERS
    assert "predictions" not in [layer.name for layer in scratch.layers]


def test_notop_model_leaves_only_the_classifier_unused(imagenet_state_dict, tmp_path):
    model = build_efficientnet_lite0(include_top=False, weights=None)
    load_torch_weights(model, imagenet_state_dict)  # must not complain about _fc.*
    np.testing.assert_array_equal(model.get_layer("top_bn").gamma.numpy(), imagenet_state_dict["_bn1.weight"])


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda s: s.update({"_blocks.16._bn0.weight": np.zeros(3, np.float32)}), "unused"),
        (lambda s: s.pop("_blocks.7._bn1.running_var"), "lacks _blocks.7._bn1.running_var"),
        (
            lambda s: s.update({"_blocks.3._depthwise_conv.weight": np.zeros((144, 1, 3, 3), np.float32)}),
            "block3a_dwconv",
        ),
    ],
    ids=["extra-tensor", "missing-tensor", "wrong-shape"],
)
def test_weight_loading_fails_loudly_on_a_mismatched_state_dict(imagenet_state_dict, tamper, message):
    state = dict(imagenet_state_dict)
    tamper(state)
    model = build_efficientnet_lite0(include_top=True, weights=None)
    with pytest.raises(BackboneWeightsError, match=message):
        load_torch_weights(model, state)


def test_feature_vector_is_per_tap_mean_then_std(feature_extractor):
    assert FEATURE_DIM == feature_dim(DEFAULT_TAPS) == 4128
    pixels = np.stack([sample_pixels("chelsea", (171, 250)), sample_pixels("astronaut", (171, 250))])
    features = feature_extractor(pixels, training=False).numpy()
    assert features.shape == (2, FEATURE_DIM)
    assert np.isfinite(features).all()
    taps = keras.Model(
        feature_extractor.input,
        [
            feature_extractor.get_layer("block1a_project_bn").output,
            feature_extractor.get_layer("top_activation").output,
        ],
    )
    stage1, head = (t.numpy() for t in taps(pixels, training=False))
    np.testing.assert_allclose(features[:, :16], stage1.mean(axis=(1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(features[:, 16:32], stage1.std(axis=(1, 2)), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(
        features[:, -2 * HEAD_FILTERS : -HEAD_FILTERS], head.mean(axis=(1, 2)), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(features[:, -HEAD_FILTERS:], head.std(axis=(1, 2)), rtol=1e-3, atol=1e-3)
    assert not np.allclose(features[0], features[1])


def test_feature_extractor_accepts_a_subset_of_taps_and_rejects_unknown_ones():
    model = build_feature_extractor(weights=None, taps=("stage1", "head"))
    assert model.output.shape == (None, 2 * (TAP_CHANNELS["stage1"] + HEAD_FILTERS))
    with pytest.raises(ValueError, match="unknown taps"):
        build_feature_extractor(weights=None, taps=("stage9",))


@pytest.mark.parametrize("taps", [("head",), ("stage2", "stage7"), ("stage1",)])
def test_tap_columns_find_a_taps_features_in_each_view(feature_extractor, taps):
    pixels = np.stack([sample_pixels("chelsea"), sample_pixels("coffee")])
    features = feature_extractor(pixels, training=False).numpy()
    per_tap = keras.Model(
        feature_extractor.input, [feature_extractor.get_layer(f"{tap}_mean_std").output for tap in taps]
    )
    outputs = per_tap(pixels, training=False)
    alone = np.concatenate(
        [np.asarray(t) for t in (outputs if isinstance(outputs, (list, tuple)) else [outputs])], axis=1
    )
    two_views = np.concatenate([features, features[::-1]], axis=1)  # (image, view) side by side

    columns = backbone_tap_columns(taps, views=2)

    assert len(columns) == 2 * feature_dim(taps)
    np.testing.assert_allclose(two_views[:, columns[: feature_dim(taps)]], alone, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(two_views[:, columns[feature_dim(taps) :]], alone[::-1], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown taps"):
        backbone_tap_columns(("stage9",), views=1)


def test_litert_export_matches_keras(feature_extractor, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    path = export_tflite(feature_extractor, tmp_path / "features.tflite", input_shape=(None, 224, 224, 3))
    assert path.stat().st_size > 10_000_000  # the weights are in the file, not left as variables
    assert [p.name for p in tmp_path.iterdir()] == ["features.tflite"]
    pixels = np.stack([sample_pixels("chelsea"), sample_pixels("coffee")])
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    (pixels_input,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(pixels_input["index"], pixels.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(pixels_input["index"], pixels)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    expected = feature_extractor(pixels, training=False).numpy()
    assert got.shape == (2, FEATURE_DIM)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_feature_extractor_survives_a_keras_save_and_load(feature_extractor, tmp_path):
    path = tmp_path / "features.keras"
    feature_extractor.save(path)
    reloaded = keras.saving.load_model(path)
    pixels = sample_pixels("rocket", (96, 128))[None]
    np.testing.assert_allclose(reloaded(pixels).numpy(), feature_extractor(pixels).numpy(), rtol=1e-5, atol=1e-5)
