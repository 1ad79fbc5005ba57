"""Top-down crop geometry in TensorFlow ops, for the end-to-end serving signature.

Mirrors :mod:`keras_pose.data.transforms` exactly: ``box_to_center_size`` (extend the box, then
enlarge its short side to the input's aspect ratio) and ``crop_matrix`` without rotation (the
window's corners map to ``(0, 0)`` and ``(W, H)`` of the crop). The crop is sampled with
``ImageProjectiveTransformV3`` through the inverse matrix (crop -> image), bilinear, which
matches ``cv2.warpAffine`` (same pixel-centre convention); a per-channel border value is
obtained by warping ``image - border`` with fill 0 and adding ``border`` back.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf


def crop_to_image_affines(
    boxes_xywh: tf.Tensor,
    input_size: Sequence[int],
    extension: Sequence[float],
) -> tf.Tensor:
    """``(N, 4)`` person boxes -> ``(N, 2, 3)`` affines mapping crop pixels to image pixels.

    Row form ``[[sx, 0, tx], [0, sy, ty]]`` with ``image = s * crop + t``.
    """
    out_h, out_w = (float(v) for v in input_size)
    aspect = out_w / out_h
    boxes = tf.cast(boxes_xywh, tf.float32)
    x, y, w, h = tf.unstack(boxes, axis=-1)
    center_x, center_y = x + 0.5 * w, y + 0.5 * h
    w = w * float(extension[0])
    h = h * float(extension[1])
    wide = w > aspect * h
    h = tf.where(wide, w / aspect, h)
    w = tf.where(wide, w, h * aspect)
    scale_x, scale_y = w / out_w, h / out_h
    shift_x = center_x - 0.5 * out_w * scale_x
    shift_y = center_y - 0.5 * out_h * scale_y
    zeros = tf.zeros_like(scale_x)
    rows = [tf.stack([scale_x, zeros, shift_x], -1), tf.stack([zeros, scale_y, shift_y], -1)]
    return tf.stack(rows, axis=1)


def crop_image(
    image: tf.Tensor,
    affines: tf.Tensor,
    input_size: Sequence[int],
    border_value: Sequence[float] = (0.0, 0.0, 0.0),
) -> tf.Tensor:
    """``(N, H, W, 3)`` float32 crops of one ``(h, w, 3)`` image through ``(N, 2, 3)`` affines."""
    border = tf.constant(border_value, tf.float32)
    shifted = tf.cast(image, tf.float32)[None] - border
    transforms = tf.concat(
        [tf.reshape(affines, (-1, 6)), tf.zeros((tf.shape(affines)[0], 2), tf.float32)], axis=1
    )
    output_shape = tf.constant(list(input_size), tf.int32)

    def one_crop(transform: tf.Tensor) -> tf.Tensor:
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=shifted,
            transforms=transform[None],
            output_shape=output_shape,
            fill_value=0.0,
            interpolation="BILINEAR",
            fill_mode="CONSTANT",
        )[0]

    crops = tf.map_fn(
        one_crop,
        transforms,
        fn_output_signature=tf.TensorSpec((*input_size, 3), tf.float32),
    )
    return crops + border


def crop_points_to_image(points: tf.Tensor, affines: tf.Tensor) -> tf.Tensor:
    """``(N, K, 2)`` crop-pixel points -> image pixels through ``(N, 2, 3)`` affines."""
    linear = affines[:, :, :2]
    return tf.einsum("nkj,nij->nki", points, linear) + affines[:, None, :, 2]
