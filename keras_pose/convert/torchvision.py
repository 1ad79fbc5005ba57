"""ImageNet initialisation of CPN's ResNet trunk from torchvision-layout ResNet weights.

``keras_pose.models.CPN50(backbone_weights=PATH)`` calls :func:`load_torchvision_resnet`. PATH is
a torchvision ResNet state dict: a ``.pth`` (read with PyTorch) or an ``.npz`` of the same keys
(``conv1.weight``, ``bn1.*``, ``layer{1-4}.{i}.conv{1,2,3}.weight``, ``.bn{1,2,3}.*``,
``layer{l}.0.downsample.{0,1}.*``, ``fc.*``).

The two layouts agree: torchvision's ResNet (v1.5) carries the stride on the 3x3 conv of the
first unit of layers 2-4, like tf-cpn's slim ResNet, and both pad strided convs symmetrically
(torchvision ``padding=1``/``3``, slim ``conv2d_same``; keras-pose's ``ConvBN`` does the same),
and the 3x3/s2 max-pool pads one pixel on every side in both. Every trunk variable takes exactly
one tensor and every tensor but ``fc.*`` (the ImageNet classifier) and ``num_batches_tracked``
fills exactly one variable; GlobalNet and RefineNet keep their initialisation.

torchvision's network saw RGB ``(x/255 - mean)/std``; CPN feeds BGR ``(x - pixel_mean)/255``.
With ``adapt_input=True`` (default) the first conv is rewritten so that it computes on CPN's input
what it computed on torchvision's: input channels reversed (RGB -> BGR), each divided by its
std, and the constant difference of the means folded into ``bn1``'s moving mean (exact away
from the zero-padded border).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import keras
import numpy as np

from keras_pose.convert._files import read_torch_state_dict
from keras_pose.convert.mapping import assign, torch_assignments

IMAGENET_RGB_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_RGB_STD = np.array([0.229, 0.224, 0.225])
_UNIT = re.compile(r"block(\d)_unit_(\d+)/(conv\d|shortcut)/(conv|bn)")


def torchvision_module(layer_path: str) -> str | None:
    """torchvision module of a CPN trunk layer (``block2_unit_1/conv2/bn`` -> ``layer2.0.bn2``)."""
    if layer_path == "conv1/conv":
        return "conv1"
    if layer_path == "conv1/bn":
        return "bn1"
    unit = _UNIT.fullmatch(layer_path)
    if unit is None:
        return None
    block, index, part, kind = unit.groups()
    prefix = f"layer{block}.{int(index) - 1}"
    if part == "shortcut":
        return f"{prefix}.downsample.{0 if kind == 'conv' else 1}"
    return f"{prefix}.{part}" if kind == "conv" else f"{prefix}.bn{part[-1]}"


def is_trunk_layer(layer_path: str) -> bool:
    return layer_path.startswith("conv1/") or layer_path.startswith("block")


def _ignored(name: str) -> bool:
    return name.startswith("fc.") or name.endswith("num_batches_tracked")


def adapt_first_conv(
    state_dict: Mapping[str, np.ndarray],
    pixel_mean_bgr: np.ndarray,
    pixel_std_bgr: np.ndarray,
) -> dict[str, np.ndarray]:
    """Rewrite ``conv1``/``bn1`` for an input ``(bgr - pixel_mean) / pixel_std`` (0..255 scale).

    torchvision's input is ``t_c = (x_c/255 - m_c)/s_c`` (RGB); ours is ``u_c = (x_c - M_c)/S_c``
    (BGR), so ``t_c = u_c * S_c/(255 s_c) + (M_c/255 - m_c)/s_c``: scale the weights per input
    channel and move the constant term into ``bn1.running_mean``.
    """
    weights = np.asarray(state_dict["conv1.weight"], np.float64)[:, ::-1]  # RGB -> BGR inputs
    mean = IMAGENET_RGB_MEAN[::-1]
    std = IMAGENET_RGB_STD[::-1]
    scale = np.asarray(pixel_std_bgr, np.float64) / (255.0 * std)
    offset = (np.asarray(pixel_mean_bgr, np.float64) / 255.0 - mean) / std
    adapted = dict(state_dict)
    adapted["conv1.weight"] = (weights * scale[None, :, None, None]).astype(np.float32)
    constant = np.einsum("oihw,i->o", weights, offset)
    adapted["bn1.running_mean"] = (
        np.asarray(state_dict["bn1.running_mean"], np.float64) - constant
    ).astype(np.float32)
    return adapted


def load_torchvision_resnet(
    model: keras.Model,
    weights: str | os.PathLike | Mapping[str, np.ndarray],
    adapt_input: bool = True,
) -> int:
    """Load torchvision ResNet weights into a CPN's trunk; returns the number of variables set.

    Args:
        model: a :class:`keras_pose.models.CPN` (any depth whose torchvision twin matches).
        weights: a ``.pth``/``.npz`` path or a ``{key: array}`` dict in torchvision's layout.
        adapt_input: rewrite the first conv for CPN's BGR input normalisation (module doc).

    Raises:
        WeightMappingError: trunk variables and tensors do not correspond one-to-one.
    """
    description = "torchvision ResNet weights"
    if isinstance(weights, (str, os.PathLike)):
        description = os.fspath(weights)
        weights = read_torch_state_dict(weights)
    state_dict = dict(weights)
    if adapt_input:
        normalization = model.get_layer("pixel_normalization")
        state_dict = adapt_first_conv(state_dict, normalization.mean, normalization.std)
    assignments, unmapped = torch_assignments(model, torchvision_module)
    trunk = [a for a in assignments if is_trunk_layer(a.variable.path)]
    trunk_unmapped = [u for u in unmapped if is_trunk_layer(u[0])]
    return assign(
        trunk, state_dict, ignored=_ignored, unmapped=trunk_unmapped, description=description
    )
