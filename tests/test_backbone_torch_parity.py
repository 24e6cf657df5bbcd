"""Dev-only: the Keras EfficientNet-Lite0 gives the same logits as a PyTorch reference on the same file.

`scripts/setup.sh --dev` installs PyTorch's CPU build where pip has it without an index, as on our development machines;
elsewhere this skips (`.venv/bin/pip install torch==2.13.0` takes that build where it lies on disk).
The reference is written here from the lukemelas EfficientNet-PyTorch design (the layout the
state dict's names come from), with TensorFlow-style dynamic "same" padding, so any input size
is checked, not only the 224x224 for which lukemelas precomputes its static padding.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
functional = torch.nn.functional

tf = pytest.importorskip("tensorflow")
skimage_data = pytest.importorskip("skimage.data")
skimage_transform = pytest.importorskip("skimage.transform")

from pixelperfect_daemon.training.backbone import (  # noqa: E402
    BN_EPSILON,
    INPUT_MEAN,
    INPUT_STD,
    STAGES,
    build_efficientnet_lite0,
    imagenet_weights_path,
)
from pixelperfect_daemon.training.torch_state_dict import load_legacy_state_dict  # noqa: E402

# Slow lane: TensorFlow against PyTorch (scripts/test.sh --fast leaves it out; CI runs it).
pytestmark = pytest.mark.slow

# The block arguments written out as lukemelas' block strings decode them, independent of STAGES.
REFERENCE_BLOCK_ARGS = [  # (kernel, repeats, filters_in, filters_out, expand, stride)
    (3, 1, 32, 16, 1, 1),
    (3, 2, 16, 24, 6, 2),
    (5, 2, 24, 40, 6, 2),
    (3, 3, 40, 80, 6, 2),
    (5, 3, 80, 112, 6, 1),
    (5, 4, 112, 192, 6, 2),
    (3, 1, 192, 320, 6, 1),
]


class SamePaddingConv2d(nn.Conv2d):
    """TensorFlow SAME: pad total max((ceil(n/s)-1)*s + k - n, 0), the odd pixel bottom/right."""

    def forward(self, x):
        pads = []
        for size, kernel, stride in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        x = functional.pad(x, [left, right, top, bottom])
        return functional.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def batch_norm(channels):
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class MBConvBlock(nn.Module):
    def __init__(self, kernel, filters_in, filters_out, expand, stride):
        super().__init__()
        hidden = filters_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SamePaddingConv2d(filters_in, hidden, 1, bias=False)
            self._bn0 = batch_norm(hidden)
        self._depthwise_conv = SamePaddingConv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = batch_norm(hidden)
        self._project_conv = SamePaddingConv2d(hidden, filters_out, 1, bias=False)
        self._bn2 = batch_norm(filters_out)
        self.residual = stride == 1 and filters_in == filters_out

    def forward(self, inputs):
        x = inputs
        if self.expand:
            x = functional.relu6(self._bn0(self._expand_conv(x)))
        x = functional.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.residual else x


class ReferenceEfficientNetLite0(nn.Module):
    def __init__(self):
        super().__init__()
        self._conv_stem = SamePaddingConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = batch_norm(32)
        blocks = []
        for kernel, repeats, filters_in, filters_out, expand, stride in REFERENCE_BLOCK_ARGS:
            blocks.append(MBConvBlock(kernel, filters_in, filters_out, expand, stride))
            blocks += [MBConvBlock(kernel, filters_out, filters_out, expand, 1) for _ in range(repeats - 1)]
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SamePaddingConv2d(320, 1280, 1, bias=False)
        self._bn1 = batch_norm(1280)
        self._fc = nn.Linear(1280, 1000)

    def forward(self, pixels_nchw):
        x = (pixels_nchw - 127.0) / 128.0
        x = functional.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = functional.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))


def sample_image(name: str, size: tuple[int, int]) -> np.ndarray:
    image = getattr(skimage_data, name)()
    return skimage_transform.resize(image, size, anti_aliasing=True, preserve_range=True).astype(np.float32)


@pytest.fixture(scope="module")
def torch_model():
    model = ReferenceEfficientNetLite0()
    state = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)  # strict: the reference uses every tensor, exactly
    return model.eval()


@pytest.fixture(scope="module")
def keras_model():
    return build_efficientnet_lite0(include_top=True, weights="imagenet")


def test_reference_constants_agree_with_the_keras_builder():
    assert [(s.kernel_size, s.repeats, s.filters_out, s.expand_ratio, s.strides) for s in STAGES] == [
        (k, r, fout, e, s) for k, r, _fin, fout, e, s in REFERENCE_BLOCK_ARGS
    ]
    assert (INPUT_MEAN, INPUT_STD, BN_EPSILON) == (127.0, 128.0, 1e-3)


def test_reader_matches_torch_load_on_the_packaged_file():
    path = imagenet_weights_path()
    expected = torch.load(path, map_location="cpu", weights_only=True)
    loaded = load_legacy_state_dict(path)
    assert list(loaded) == list(expected)
    for key, tensor in expected.items():
        assert loaded[key].dtype == tensor.numpy().dtype, key
        np.testing.assert_array_equal(loaded[key], tensor.numpy(), err_msg=key)


@pytest.mark.parametrize("zip_format", [True, False])
def test_reader_matches_torch_load_on_views_dtypes_and_both_formats(tmp_path, zip_format):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {
        "plain": base,
        "strided_view": base[1:3, ::2],
        "transposed": base.t(),
        "half": torch.tensor([0.5, -1.25], dtype=torch.float16),
        "bfloat16": torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
        "scalar_long": torch.tensor(7),
        "bool": torch.tensor([True, False]),
    }
    path = tmp_path / "state.pt"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    loaded = load_legacy_state_dict(path)
    for key, tensor in state.items():
        expected = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
        assert loaded[key].dtype == expected.dtype, key
        np.testing.assert_array_equal(loaded[key], expected, err_msg=key)


@pytest.mark.parametrize(
    "name, size",
    [("chelsea", (224, 224)), ("coffee", (224, 224)), ("rocket", (224, 224)), ("astronaut", (237, 301))],
)
def test_keras_logits_equal_torch_logits(torch_model, keras_model, name, size):
    pixels = sample_image(name, size)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(pixels.transpose(2, 0, 1)[None].copy())).numpy()[0]
    got = keras_model(pixels[None], training=False).numpy()[0]
    assert np.abs(got - expected).max() < 1e-4 * max(1.0, np.abs(expected).max())
    assert got.argmax() == expected.argmax()
    assert list(np.argsort(-got)[:5]) == list(np.argsort(-expected)[:5])
