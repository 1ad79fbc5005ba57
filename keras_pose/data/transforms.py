"""Top-down crop geometry and training augmentation.

**Pixel convention.** Image and crop coordinates are continuous ``(x, y)`` in pixels with the
centre of pixel ``(row i, column j)`` at ``(j, i)`` — the convention of ``cv2.warpAffine`` and
of COCO keypoints. A crop is one 2x3 affine ``matrix`` mapping image coordinates to crop
coordinates: :func:`warp_image` samples the image through it and :func:`transform_points`
moves keypoints with it, so pixels and keypoints always agree. Evaluation maps crop
coordinates back with :func:`invert_matrix`.

:func:`crop_matrix` follows HRNet/MSPN: the box of ``size = (w, h)`` around ``center`` maps onto
``[0, W] x [0, H]`` of the crop, so ``center`` lands on ``(W / 2, H / 2)``.

**Augmentation** composes matrices (one interpolation per crop). :class:`AugmentConfig` holds
every knob; :func:`augment_config_for` gives each family's original recipe, the ``augmentation``
of its :class:`~keras_pose.profiles.FamilyProfile` (the README's family table lists them):
tf-cpn's four crops per draw (a zoom, its crop flip, two rotations), MSPN/RSN's random box
extension and half-body crops, the hourglass' log-normal scale and colour jitter, CPM's image
scale, each with its own border fill (0 for ``variant="mmpose"`` specs, as MMPose).

A flip mirrors ``x -> W - 1 - x`` (``W`` = image width for an image flip, crop width for a crop
flip) and swaps left/right channels. Keypoints that land outside ``[0, W-1] x [0, H-1]`` of the
crop get visibility 0.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from keras_pose.profiles import MMPOSE_BORDER_VALUE, PROFILES, profile_for
from keras_pose.spec import PoseSpec

# COCO-17 half-body split used by MSPN (ids 0-12 are the "upper" body, hips included).
COCO_UPPER_BODY_IDS = tuple(range(13))

# --------------------------------------------------------------------------------------------
# Shared geometry (used by data, evaluation and export)


def box_to_center_size(
    box_xywh: Sequence[float],
    aspect_ratio: float,
    extension: Sequence[float] = (1.25, 1.25),
) -> tuple[np.ndarray, np.ndarray]:
    """Centre and size of the crop window for a person box.

    Args:
        box_xywh: ``x, y, w, h`` in image pixels.
        aspect_ratio: the model input's ``width / height`` (0.75 for 256x192).
        extension: ``(x, y)`` factors the box's width and height are multiplied by first.

    Returns:
        ``center (2,)`` = ``(x + w/2, y + h/2)`` and ``size (2,) = (w, h)`` after extending the
        box and then enlarging its short side to ``aspect_ratio`` (float64).
    """
    x, y, w, h = (float(v) for v in box_xywh)
    center = np.array([x + 0.5 * w, y + 0.5 * h], dtype=np.float64)
    size = np.array([w * extension[0], h * extension[1]], dtype=np.float64)
    return center, fix_aspect_ratio(size, aspect_ratio)


def fix_aspect_ratio(size: Sequence[float], aspect_ratio: float) -> np.ndarray:
    """Enlarge the short side of ``size = (w, h)`` so that ``w / h == aspect_ratio``."""
    w, h = float(size[0]), float(size[1])
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return np.array([w, h], dtype=np.float64)


def crop_matrix(
    center: Sequence[float],
    size: Sequence[float],
    output_size: Sequence[int],
    rotation: float = 0.0,
) -> np.ndarray:
    """The ``(2, 3)`` float64 affine mapping image pixels to crop pixels.

    The box of ``size = (w, h)`` around ``center`` fills the crop of ``output_size = (H, W)``:
    its corners map to ``(0, 0)`` and ``(W, H)``, ``center`` to ``(W / 2, H / 2)``.
    ``rotation`` (degrees) turns the window about ``center`` so the crop's content appears
    rotated counter-clockwise by that angle (``cv2.getRotationMatrix2D``'s sign).
    """
    out_h, out_w = output_size
    scale = np.diag([out_w / float(size[0]), out_h / float(size[1]), 1.0])
    angle = math.radians(rotation)
    cos, sin = math.cos(angle), math.sin(angle)
    rotate = np.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]])
    to_origin = _translation(-float(center[0]), -float(center[1]))
    to_crop_center = _translation(out_w / 2.0, out_h / 2.0)
    return (to_crop_center @ scale @ rotate @ to_origin)[:2]


def warp_image(
    image: np.ndarray,
    matrix: np.ndarray,
    output_size: Sequence[int],
    border_value: float | Sequence[float] = 0.0,
) -> np.ndarray:
    """The ``output_size = (H, W)`` crop ``cv2.warpAffine`` samples through ``matrix``
    (bilinear, constant border ``border_value``, 0 by default)."""
    out_h, out_w = output_size
    if np.isscalar(border_value):
        border_value = (float(border_value),) * 4
    return cv2.warpAffine(
        image,
        np.asarray(matrix, dtype=np.float64),
        (int(out_w), int(out_h)),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=tuple(float(v) for v in border_value),
    )


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a ``(2, 3)`` affine to ``(..., 2)`` points (float64 result)."""
    points = np.asarray(points, dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_matrix(matrix: np.ndarray) -> np.ndarray:
    """The inverse ``(2, 3)`` affine (crop pixels -> image pixels), float64."""
    return np.linalg.inv(to_3x3(matrix))[:2]


def to_3x3(matrix: np.ndarray) -> np.ndarray:
    """A ``(2, 3)`` affine as a ``(3, 3)`` homogeneous matrix, for composing."""
    return np.vstack([np.asarray(matrix, dtype=np.float64), [0.0, 0.0, 1.0]])


def compose(*matrices: np.ndarray) -> np.ndarray:
    """``compose(A, B)`` applies ``B`` first, then ``A`` (like ``A @ B``); ``(2, 3)`` result."""
    result = np.eye(3)
    for matrix in matrices:
        result = result @ to_3x3(matrix)
    return result[:2]


def flip_matrix(width: int) -> np.ndarray:
    """Horizontal mirror of an image or crop ``width`` pixels wide: ``x -> width - 1 - x``."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def flip_keypoints(keypoints: np.ndarray, width: int, flip_indices: Sequence[int]) -> np.ndarray:
    """Mirror ``(K, 3)`` keypoints ``x -> width - 1 - x`` and swap left/right channels."""
    flipped = np.array(keypoints, copy=True)
    flipped[:, 0] = width - 1 - flipped[:, 0]
    return flipped[list(flip_indices)]


def _translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def crop_keypoints(keypoints: np.ndarray, matrix: np.ndarray, output_size: Sequence[int]):
    """``(K, 3)`` image keypoints moved into the crop; those outside get ``v = 0``.

    Outside means beyond ``[0, W-1] x [0, H-1]`` (MSPN's rule); unlabelled keypoints stay 0.
    """
    out_h, out_w = output_size
    result = np.zeros_like(keypoints, dtype=np.float32)
    xy = transform_points(keypoints[:, :2], matrix)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] <= out_w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= out_h - 1)
    result[:, :2] = xy
    result[:, 2] = np.where(inside, keypoints[:, 2], 0.0)
    return result


# --------------------------------------------------------------------------------------------
# Augmentation


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """How training crops are drawn. Get a family's recipe with :func:`augment_config_for`.

    Args:
        scheme: ``"random"`` (one independently augmented sample per annotation draw) or
            ``"cpn"`` (tf-cpn's 4 samples per draw: zoom, its crop flip, two rotations).
        box_extension: fixed ``(x, y)`` factors on the annotated box at training time.
        random_extension: further ``x (1 + U(0,1) * e)`` per axis, drawn independently.
        scale_mode / scale: the box-size factor: ``"uniform"`` ``U(a, b)``; ``"uniform_capped"``
            ``min(1, U(a, b))``; ``"inverse_uniform"`` ``1 / U(a, b)`` (the image is scaled);
            ``"log2_normal"`` ``2 ** clip(N(0, a), -b, b)``.
        rotation_mode / rotation / rotation_prob: degrees: ``"uniform"`` ``U(-r, r)``;
            ``"normal"`` ``clip(N(0, r), -2r, 2r)``; applied with ``rotation_prob``
            (tf-cpn's two rotated copies always rotate).
        flip_prob: probability of a horizontal flip (``"random"`` scheme).
        flip_space: ``"image"`` mirrors the source image (MSPN, CPM), ``"crop"`` the crop.
        half_body_prob / half_body_min_keypoints / upper_body_ids: MSPN's half-body crop,
            tried when more than ``half_body_min_keypoints`` keypoints are labelled;
            ``upper_body_ids=None`` means COCO-17's ids 0-12 when K is 17, else no half-body.
        color_jitter: per-channel factor ``U(1 - c, 1 + c)``, clipped to 0..255 (Hourglass).
        border_value: BGR fill outside the image (tf-cpn: pixel mean; CPM: 128).
    """

    scheme: str = "random"
    box_extension: tuple[float, float] = (1.25, 1.25)
    random_extension: tuple[float, float] = (0.0, 0.0)
    scale_mode: str = "uniform"
    scale: tuple[float, float] = (1.0, 1.0)
    rotation_mode: str = "uniform"
    rotation: float = 0.0
    rotation_prob: float = 0.0
    flip_prob: float = 0.0
    flip_space: str = "image"
    half_body_prob: float = 0.0
    half_body_min_keypoints: int = 3
    upper_body_ids: tuple[int, ...] | None = None
    color_jitter: float = 0.0
    border_value: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        _check_choice("scheme", self.scheme, ("random", "cpn"))
        _check_choice("scale_mode", self.scale_mode, _SCALE_MODES)
        _check_choice("rotation_mode", self.rotation_mode, ("uniform", "normal"))
        _check_choice("flip_space", self.flip_space, ("image", "crop"))

    @property
    def copies(self) -> int:
        """Samples produced per annotation draw."""
        return 4 if self.scheme == "cpn" else 1


_SCALE_MODES = ("uniform", "uniform_capped", "inverse_uniform", "log2_normal")


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"AugmentConfig.{name} must be one of {list(choices)}, got {value!r}")


def augment_config_for(spec: PoseSpec, **overrides: Any) -> AugmentConfig:
    """The original training augmentation of ``spec.family`` (its
    :class:`~keras_pose.profiles.FamilyProfile`), with field ``overrides``.

    Example: ``augment_config_for(spec, rotation=30.0, half_body_prob=0.0)``.
    """
    try:
        profile = profile_for(spec.family)
    except ValueError as error:
        raise ValueError(f"no augmentation recipe: {error}; pass augment=AugmentConfig(...) "
                         "explicitly") from None
    fields = profile.augment_fields(spec.box_extension)
    if spec.final.codec.mmpose:  # variant="mmpose": MMPose's TopdownAffine pads with 0
        fields["border_value"] = MMPOSE_BORDER_VALUE
    return AugmentConfig(**{**fields, **overrides})


def resolve_augment(spec: PoseSpec, augment: Any) -> AugmentConfig | None:
    """``augment`` argument of :func:`keras_pose.data.build_dataset` -> a config or ``None``.

    ``None``/``True``: the family recipe; ``False``: no augmentation (test-time crops);
    an :class:`AugmentConfig`: used as is; a mapping: field overrides of the family recipe.
    """
    if augment is None or augment is True:
        return augment_config_for(spec)
    if augment is False:
        return None
    if isinstance(augment, AugmentConfig):
        return augment
    if isinstance(augment, Mapping):
        return augment_config_for(spec, **augment)
    raise TypeError(f"augment must be None, a bool, an AugmentConfig or a dict, got {augment!r}")


def border_value_for(spec: PoseSpec) -> tuple[float, float, float]:
    """The BGR fill the family's original uses outside the image (also at test time); 0 for
    MMPose's convention (its ``TopdownAffine``)."""
    if spec.final.codec.mmpose:
        return MMPOSE_BORDER_VALUE
    profile = PROFILES.get(spec.family.lower())
    return profile.border_value if profile else (0.0, 0.0, 0.0)


@dataclasses.dataclass(frozen=True)
class CropDraw:
    """One augmented crop: its image->crop matrix and whether it mirrors (channels swap)."""

    matrix: np.ndarray
    flipped: bool


def eval_crop(box_xywh: Sequence[float], spec: PoseSpec) -> CropDraw:
    """The un-augmented crop of a box, as evaluation uses it (``spec.box_extension``)."""
    center, size = box_to_center_size(box_xywh, _aspect(spec), spec.box_extension)
    return CropDraw(crop_matrix(center, size, spec.input_size), False)


def draw_crops(
    box_xywh: Sequence[float],
    keypoints: np.ndarray,
    image_width: int,
    spec: PoseSpec,
    config: AugmentConfig,
    rng: np.random.Generator,
) -> list[CropDraw]:
    """Sample ``config.copies`` augmented crops of one person (matrices only, no pixels)."""
    center, size = _train_window(box_xywh, keypoints, spec, config, rng)
    if config.scheme == "cpn":
        return _cpn_crops(center, size, spec, config, rng)
    return [_random_crop(center, size, image_width, spec, config, rng)]


def _aspect(spec: PoseSpec) -> float:
    return spec.input_size[1] / spec.input_size[0]


def _train_window(box_xywh, keypoints, spec, config, rng):
    """Centre and aspect-fixed size of the training window, before scale and rotation."""
    x, y, w, h = (float(v) for v in box_xywh)
    center = np.array([x + 0.5 * w, y + 0.5 * h])
    size = np.array([w * config.box_extension[0], h * config.box_extension[1]])
    size = size * _random_extension(config, rng)
    size = fix_aspect_ratio(size, _aspect(spec))
    if config.half_body_prob > 0 and rng.random() < config.half_body_prob:
        half = _half_body_window(keypoints, spec, config, rng)
        if half is not None:
            center, size = half
    return center, size


def _random_extension(config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    ext_x, ext_y = config.random_extension
    if ext_x == 0 and ext_y == 0:
        return np.ones(2)
    return np.array([1.0 + rng.random() * ext_x, 1.0 + rng.random() * ext_y])


def _half_body_window(keypoints, spec, config, rng):
    """MSPN's half-body window: the extent of the upper (or lower) body's labelled joints."""
    upper_ids = config.upper_body_ids
    if upper_ids is None:
        upper_ids = COCO_UPPER_BODY_IDS if spec.num_keypoints == 17 else ()
    labelled = keypoints[:, 2] > 0
    if not upper_ids or labelled.sum() <= config.half_body_min_keypoints:
        return None
    is_upper = np.zeros(len(keypoints), bool)
    is_upper[list(upper_ids)] = True
    upper, lower = keypoints[labelled & is_upper, :2], keypoints[labelled & ~is_upper, :2]
    if rng.standard_normal() < 0.5 and len(upper) > 2:  # MSPN draws randn, not rand
        chosen = upper
    else:
        chosen = lower if len(lower) > 2 else upper
    if len(chosen) < 2:
        return None
    low, high = chosen.min(axis=0), chosen.max(axis=0)
    center = chosen.mean(axis=0)
    size = (high - low) * _random_extension(config, rng)
    if not np.all(size > 0):
        return None
    return center.astype(np.float64), fix_aspect_ratio(size, _aspect(spec))


def _scale_factor(config: AugmentConfig, rng: np.random.Generator) -> float:
    a, b = config.scale
    mode = config.scale_mode
    if mode == "uniform":
        return float(rng.uniform(a, b))
    if mode == "uniform_capped":
        return float(min(1.0, rng.uniform(a, b)))
    if mode == "inverse_uniform":
        return float(1.0 / rng.uniform(a, b))
    return float(2.0 ** np.clip(rng.standard_normal() * a, -b, b))  # log2_normal


def _rotation_angle(config: AugmentConfig, rng: np.random.Generator) -> float:
    r = config.rotation
    if config.rotation_mode == "normal":
        return float(np.clip(rng.standard_normal() * r, -2 * r, 2 * r))
    return float(rng.uniform(-r, r))


def _random_crop(center, size, image_width, spec, config, rng) -> CropDraw:
    size = size * _scale_factor(config, rng)
    rotation = 0.0
    if config.rotation_prob > 0 and rng.random() < config.rotation_prob:
        rotation = _rotation_angle(config, rng)
    flipped = config.flip_prob > 0 and rng.random() < config.flip_prob
    if flipped and config.flip_space == "image":
        mirror = flip_matrix(image_width)
        window = crop_matrix(transform_points(center, mirror), size, spec.input_size, rotation)
        return CropDraw(compose(window, mirror), True)
    matrix = crop_matrix(center, size, spec.input_size, rotation)
    if flipped:
        matrix = compose(flip_matrix(spec.input_size[1]), matrix)
    return CropDraw(matrix, flipped)


def _cpn_crops(center, size, spec, config, rng) -> list[CropDraw]:
    """tf-cpn: the zoom crop, its crop flip, and two rotations of it about the crop centre."""
    size = size * _scale_factor(config, rng)
    zoom = crop_matrix(center, size, spec.input_size)
    crops = [CropDraw(zoom, False), CropDraw(compose(flip_matrix(spec.input_size[1]), zoom), True)]
    for _ in range(2):
        angle = _rotation_angle(config, rng)
        crops.append(CropDraw(crop_matrix(center, size, spec.input_size, angle), False))
    return crops


def apply_crop(
    image: np.ndarray,
    keypoints: np.ndarray,
    draw: CropDraw,
    spec: PoseSpec,
    flip_indices: Sequence[int],
    border_value: Sequence[float] = (0.0, 0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Warp the image and move the keypoints for one :class:`CropDraw`.

    Returns the ``(H, W, 3)`` uint8 crop (same channel order as ``image``) and ``(K, 3)``
    float32 crop keypoints (left/right channels swapped if the draw mirrors).
    """
    crop = warp_image(image, draw.matrix, spec.input_size, border_value)
    points = crop_keypoints(keypoints, draw.matrix, spec.input_size)
    if draw.flipped:
        points = points[list(flip_indices)]
    return crop, points


def jitter_colors(crop: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Multiply each channel by ``U(1 - amount, 1 + amount)`` and clip to 0..255 (uint8).

    Per pixel this is ``uint8(clip(float32(v) * factor, 0, 255))``, evaluated once for each of
    the 256 values per channel and applied as a table (``cv2.LUT``).
    """
    factors = rng.uniform(1.0 - amount, 1.0 + amount, size=3).astype(np.float32)
    table = np.clip(np.arange(256, dtype=np.float32)[:, None] * factors, 0, 255).astype(np.uint8)
    return cv2.LUT(crop, table[None])
