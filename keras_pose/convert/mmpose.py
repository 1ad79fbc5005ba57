"""Import MMPose 1.x checkpoints (``.pth``) into keras-pose's ``variant="mmpose"`` models.

Supported (MMPose's COCO top-down heatmap configs): MSPN-50 with 1-4 stages, RSN-18/50 and
n x RSN-50 (``MSPN50(variant="mmpose")``, ``RSN18/RSN50(variant="mmpose")``), CPM
(``CPM(variant="mmpose")``) and the CornerNet-style Hourglass-52 (``Hourglass52``).

Every Keras variable is named by the PyTorch module that holds it (:func:`mmpose_module`), the
tensor is rearranged (conv OIHW -> HWIO, depthwise (C,1,kh,kw) -> (kh,kw,C,1), Linear
transposed; BatchNorm weight/bias/running_mean/running_var -> gamma/beta/moving_mean/
moving_variance) and :func:`keras_pose.convert.mapping.assign` checks that both sides are used
exactly once (``num_batches_tracked`` aside) before anything is written.

The mapping core takes ``{key: numpy array}``; PyTorch is needed only to read a ``.pth`` file
(:func:`keras_pose.convert.read_torch_state_dict`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping

import keras
import numpy as np

from keras_pose.convert._files import read_torch_state_dict
from keras_pose.convert.mapping import assign, is_torch_bookkeeping, torch_assignments

# ---------------------------------------------------------------- MSPN / RSN (shared wrapper)

_STAGE_BLOCK = re.compile(r"stage(\d+)_layer(\d)_block(\d+)/(.+)")
_STAGE_UNIT = re.compile(
    r"stage(\d+)_unit(\d)_(lateral|up_conv|skip1|skip2|head_conv1|head_conv2)/(conv|bn)"
)
_CROSS = re.compile(r"stage(\d+)_cross_conv/(conv|bn)")
_UNIT_PARTS = {
    "lateral": "in_skip",
    "up_conv": "up_conv",
    "skip1": "out_skip1",
    "skip2": "out_skip2",
}
_MSPN_BOTTLENECK = {
    "conv1/conv": "conv1",
    "conv1/bn": "bn1",
    "conv2/conv": "conv2",
    "conv2/bn": "bn2",
    "conv3/conv": "conv3",
    "conv3/bn": "bn3",
    "shortcut/conv": "downsample.conv",
    "shortcut/bn": "downsample.bn",
}
_RSB = re.compile(r"(expand|project|shortcut|step(\d)_(\d))/(conv|bn)")
_RSB_PARTS = {"expand": "conv_bn_relu1", "project": "conv_bn3", "shortcut": "downsample"}
NUM_UNITS = 4


def _rsb_part(rest: str) -> str | None:
    match = _RSB.fullmatch(rest)
    if match is None:
        return None
    part, branch, step, kind = match.groups()
    name = f"conv_bn_relu2_{branch}_{step}" if branch else _RSB_PARTS[part]
    return f"{name}.{kind}"


def multi_stage_module(layer_path: str, family: str) -> str | None:
    """MMPose module of a Keras MSPN/RSN layer (``family`` is ``"mspn"`` or ``"rsn"``).

    ``stage2_layer3_block1/conv2/bn`` -> ``backbone.multi_stage_mspn.1.downsample.layer3.0.bn2``;
    ``stage1_unit4_head_conv2/conv`` -> ``head.predict_layers.3.conv_layers.1.conv``.
    """
    stages = f"backbone.multi_stage_{family}"
    if layer_path in ("stem_conv/conv", "stem_conv/bn"):
        return f"backbone.top.top.0.{layer_path.split('/')[1]}"
    block = _STAGE_BLOCK.fullmatch(layer_path)
    if block:
        stage, layer, index, rest = block.groups()
        part = _MSPN_BOTTLENECK.get(rest) if family == "mspn" else _rsb_part(rest)
        if part is None:
            return None
        return f"{stages}.{int(stage) - 1}.downsample.layer{layer}.{int(index) - 1}.{part}"
    unit = _STAGE_UNIT.fullmatch(layer_path)
    if unit:
        stage, index, part, kind = unit.groups()
        if part.startswith("head_conv"):
            layer = (int(stage) - 1) * NUM_UNITS + int(index) - 1
            return f"head.predict_layers.{layer}.conv_layers.{int(part[-1]) - 1}.{kind}"
        return f"{stages}.{int(stage) - 1}.upsample.up{index}.{_UNIT_PARTS[part]}.{kind}"
    cross = _CROSS.fullmatch(layer_path)
    if cross:
        stage, kind = cross.groups()
        return f"{stages}.{int(stage) - 1}.upsample.up{NUM_UNITS}.cross_conv.{kind}"
    return None


# ---------------------------------------------------------------- CPM

_CPM_STEM = {  # Keras layer -> index in MMPose's ``stem`` / ``middle`` Sequential
    "conv1_stage1": "stem.0",
    "conv2_stage1": "stem.2",
    "conv3_stage1": "stem.4",
    "conv4_stage1": "stem.6",
    "conv5_stage1": "stem.7",
    "conv6_stage1": "stem.8",
    "conv1_stage2": "middle.0",
    "conv2_stage2": "middle.2",
    "conv3_stage2": "middle.4",
}
_CPM_LATER = re.compile(r"(conv4|Mconv1|Mconv2|Mconv3|Mconv4)_stage(\d+)")


def cpm_module(layer_path: str, num_stages: int) -> str | None:
    """MMPose module of a Keras ``CPM(variant="mmpose")`` layer (``conv1_stage1/conv`` ...)."""
    layer, _, kind = layer_path.partition("/")
    if layer == "heatmaps" or re.fullmatch(r"stage\d+", layer):  # a stage's last conv (bias)
        stage = num_stages if layer == "heatmaps" else int(layer[5:])
        if kind:
            return None
        return "backbone.stem.9.conv" if stage == 1 else f"backbone.out_convs.{stage - 2}.1.conv"
    if kind not in ("conv", "bn"):
        return None
    if layer in _CPM_STEM:
        return f"backbone.{_CPM_STEM[layer]}.{kind}"
    later = _CPM_LATER.fullmatch(layer)
    if later is None:
        return None
    part, stage = later.group(1), int(later.group(2))
    if part == "conv4":
        return f"backbone.middle_conv.{stage - 2}.0.{kind}"
    if part == "Mconv4":
        return f"backbone.out_convs.{stage - 2}.0.{kind}"
    return f"backbone.cpm_stages.{stage - 2}.model.{int(part[-1]) - 1}.{kind}"


# ---------------------------------------------------------------- Hourglass-52


_BASIC_BLOCK = {
    "conv1/conv": "conv1",
    "conv1/bn": "bn1",
    "conv2/conv": "conv2",
    "conv2/bn": "bn2",
    "shortcut/conv": "downsample.0",
    "shortcut/bn": "downsample.1",
}


def hourglass52_module(layer_path: str) -> str | None:
    """MMPose module of a :class:`keras_pose.models.hourglass52.Hourglass52Model` layer.

    Its Keras layers are named after MMPose's module paths with ``.`` spelled ``__``
    (``hourglass_modules__0__low1__0/conv1/bn`` -> ``backbone.hourglass_modules.0.low1.0.bn1``);
    ``heatmaps`` is the head's final 1x1 conv.
    """
    layer, _, rest = layer_path.partition("/")
    if layer == "heatmaps":
        return "head.multi_final_layers.0" if rest == "" else None
    module = "backbone." + layer.replace("__", ".")
    if rest in ("conv", "bn"):  # a ConvModule
        return f"{module}.{rest}"
    part = _BASIC_BLOCK.get(rest)
    return None if part is None else f"{module}.{part}"


def _hourglass52_unused(name: str) -> bool:
    """MMPose's ``ResLayer`` builds one ``inters`` block even for one stack; it is never run."""
    return name.startswith("backbone.inters.")


# ---------------------------------------------------------------- entry points


def mmpose_mapping(model: keras.Model) -> tuple[Callable[[str], str | None], Callable[[str], bool]]:
    """``(layer path -> MMPose module, MMPose keys with no counterpart)`` for a model."""
    family, variant = model.spec.family, model.variant
    if family == "hourglass52":
        return hourglass52_module, lambda key: is_torch_bookkeeping(key) or _hourglass52_unused(key)
    if family in ("mspn", "rsn"):
        _require_mmpose_variant(model, variant)
        return (lambda path: multi_stage_module(path, family)), is_torch_bookkeeping
    if family == "cpm":
        _require_mmpose_variant(model, variant)
        num_stages = len(model.spec.outputs)
        return (lambda path: cpm_module(path, num_stages)), is_torch_bookkeeping
    raise ValueError(
        f"{model.name}: no MMPose mapping for a {family!r} model (MMPose has MSPN, RSN, CPM and "
        "the CornerNet-style Hourglass-52, keras_pose.models.hourglass52; it has no CPN and "
        "no Newell stacked hourglass)"
    )


def _require_mmpose_variant(model: keras.Model, variant: str | None) -> None:
    if variant != "mmpose":
        raise ValueError(
            f"{model.name} is the original-faithful graph (variant={variant!r}); MMPose "
            "checkpoints need the MMPose graph: build it with variant='mmpose'"
        )


_PREPROCESSOR_KEYS = ("data_preprocessor.mean", "data_preprocessor.std")


def normalize_mmpose_keys(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """MMPose 1.x's own compatibility step: 0.x checkpoints (the zoo's Hourglass-52 and MSPN
    files) name the head ``keypoint_head``; the data preprocessor's mean/std are constants."""
    return {
        (
            key.replace("keypoint_head.", "head.", 1) if key.startswith("keypoint_head.") else key
        ): value
        for key, value in state_dict.items()
        if key not in _PREPROCESSOR_KEYS
    }


def load_mmpose_weights(
    model: keras.Model, state_dict: Mapping[str, np.ndarray], description: str = "MMPose weights"
) -> int:
    """Load an MMPose state dict (``{key: numpy array}``) into ``model``; returns the count.

    Raises:
        WeightMappingError: unmatched keys on either side or shape mismatches, all listed.
    """
    state_dict = normalize_mmpose_keys(state_dict)
    module_of, ignored = mmpose_mapping(model)
    assignments, unmapped = torch_assignments(model, module_of)
    return assign(
        assignments,
        state_dict,
        ignored=ignored,
        unmapped=unmapped,
        description=description,
    )


def load_mmpose_checkpoint(model: keras.Model, path: str | os.PathLike) -> int:
    """Load an MMPose ``.pth`` checkpoint (or an ``.npz`` of its state dict) into ``model``.

    The state dict may sit at the top level or under ``"state_dict"`` (MMPose's released
    files). Reading ``.pth`` needs PyTorch (``keras-pose[torch]``). Returns the number of
    variables written; raises :class:`WeightMappingError` listing every unmatched key.
    """
    state_dict = read_torch_state_dict(path)
    return load_mmpose_weights(model, state_dict, description=os.fspath(path))
