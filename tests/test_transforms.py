"""Crop geometry (the pixel convention shared with evaluation and export) and augmentation."""

import math

import cv2
import numpy as np
import pytest

from keras_pose.data import COCO17
from keras_pose.data.transforms import (
    AugmentConfig,
    apply_crop,
    augment_config_for,
    box_to_center_size,
    compose,
    crop_keypoints,
    crop_matrix,
    draw_crops,
    eval_crop,
    flip_keypoints,
    flip_matrix,
    invert_matrix,
    jitter_colors,
    resolve_augment,
    transform_points,
    warp_image,
)
from keras_pose.spec import PoseSpec, megvii_outputs

INPUT = (64, 48)


def make_spec(family="mspn", input_size=INPUT, box_extension=(1.25, 1.25)):
    outputs = megvii_outputs(["heatmaps"], [5], ["ohkm"], [1.0])
    return PoseSpec(family, input_size, 17, "BGR", outputs, box_extension=box_extension)


def random_matrix(rng, center=None, output=INPUT):
    if center is None:
        center = rng.uniform([40, 30], [120, 90])
    width = rng.uniform(20, 40)  # crop upsamples about 1.2-2.4x
    return crop_matrix(center, (width, width * output[0] / output[1]), output, rng.uniform(-60, 60))


# ---------------------------------------------------------------------------------------------
# Shared geometry


def test_box_to_center_size_extends_then_fixes_the_aspect_ratio():
    center, size = box_to_center_size([10, 20, 30, 80], aspect_ratio=0.75, extension=(1.0, 1.0))
    np.testing.assert_allclose(center, [25.0, 60.0])
    np.testing.assert_allclose(size, [60.0, 80.0])  # the narrow side grows to 0.75 * 80
    center, size = box_to_center_size([0, 0, 90, 40], 0.75, extension=(1.2, 1.5))
    np.testing.assert_allclose(center, [45.0, 20.0])
    np.testing.assert_allclose(size, [108.0, 144.0])  # 90*1.2 = 108 wide -> 144 high


@pytest.mark.parametrize("size", [(30.0, 40.0), (50.0, 20.0)])
def test_crop_matrix_maps_box_corners_to_crop_corners(size):
    center = np.array([100.0, 70.0])
    matrix = crop_matrix(center, size, INPUT)
    half = np.asarray(size) / 2
    corners = np.array([center - half, center + half, [center[0] + half[0], center[1] - half[1]]])
    np.testing.assert_allclose(
        transform_points(corners, matrix), [[0, 0], [48, 64], [48, 0]], atol=1e-9
    )
    np.testing.assert_allclose(transform_points(center, matrix), [24, 32], atol=1e-9)


def test_crop_matrix_rotation_matches_opencv_sign():
    center = (80.0, 60.0)
    matrix = crop_matrix(center, (48.0, 64.0), INPUT, rotation=30.0)  # scale 1
    reference = cv2.getRotationMatrix2D(center, 30.0, 1.0)
    np.testing.assert_allclose(matrix[:, :2], reference[:, :2], atol=1e-12)


def test_invert_matrix_round_trip():
    rng = np.random.default_rng(1)
    points = rng.uniform(0, 200, (10, 2))
    for _ in range(5):
        matrix = random_matrix(rng)
        inverse = invert_matrix(matrix)
        np.testing.assert_allclose(compose(inverse, matrix), np.eye(3)[:2], atol=1e-12)
        back = transform_points(transform_points(points, matrix), inverse)
        np.testing.assert_allclose(back, points, atol=1e-9)


def test_warped_keypoint_lands_on_the_warped_pixel():
    """A bright dot at an integer pixel lands where transform_points puts it (sub-pixel)."""
    rng = np.random.default_rng(2)
    for _ in range(8):
        image = np.zeros((120, 160), np.float32)
        x, y = int(rng.integers(50, 110)), int(rng.integers(40, 80))
        image[y, x] = 1000.0
        matrix = random_matrix(rng, center=rng.uniform([x - 5, y - 5], [x + 5, y + 5]))
        crop = warp_image(image, matrix, INPUT)
        rows, cols = np.mgrid[: INPUT[0], : INPUT[1]]
        centroid = np.array([(crop * cols).sum(), (crop * rows).sum()]) / crop.sum()
        expected = transform_points(np.array([x, y], float), matrix)
        np.testing.assert_allclose(centroid, expected, atol=0.15)


def test_warp_image_border_value():
    image = np.full((20, 20, 3), 50, np.uint8)
    matrix = crop_matrix((10, 10), (60, 80), INPUT)  # window much larger than the image
    crop = warp_image(image, matrix, INPUT)
    assert crop.shape == (*INPUT, 3) and crop.dtype == np.uint8
    assert (crop[0, 0] == 0).all() and (crop[32, 24] == 50).all()
    filled = warp_image(image, matrix, INPUT, border_value=(1, 2, 3))
    assert filled[0, 0].tolist() == [1, 2, 3]


def test_crop_keypoints_outside_the_crop_become_invisible():
    keypoints = np.array([[0, 0, 2], [47, 63, 2], [-0.01, 5, 2], [10, 63.5, 1], [5, 5, 0]], float)
    cropped = crop_keypoints(keypoints, np.eye(3)[:2], INPUT)
    assert cropped[:, 2].tolist() == [2, 2, 0, 0, 0]
    np.testing.assert_allclose(cropped[:, :2], keypoints[:, :2])


# ---------------------------------------------------------------------------------------------
# Flips


def test_flip_keypoints_mirror_x_and_swap_pairs():
    rng = np.random.default_rng(3)
    keypoints = np.concatenate([rng.uniform(0, 100, (17, 2)), rng.integers(0, 3, (17, 1))], 1)
    flipped = flip_keypoints(keypoints, 100, COCO17.flip_indices)
    names = COCO17.keypoint_names
    for k, name in enumerate(names):
        mirror = name.replace("left", "RIGHT").replace("right", "left").replace("RIGHT", "right")
        source = names.index(mirror)
        assert flipped[k, 0] == 99 - keypoints[source, 0]
        assert flipped[k, 1] == keypoints[source, 1] and flipped[k, 2] == keypoints[source, 2]
    assert names[COCO17.flip_indices[5]] == "right_shoulder" and COCO17.flip_indices[0] == 0


def test_flip_matrix_mirrors_pixels_exactly():
    image = np.random.default_rng(4).integers(0, 255, (30, 41, 3)).astype(np.uint8)
    np.testing.assert_array_equal(warp_image(image, flip_matrix(41), (30, 41)), image[:, ::-1])
    np.testing.assert_allclose(transform_points([[0.0, 3.0], [40.0, 7.0]], flip_matrix(41)),
                               [[40, 3], [0, 7]])


def _dots_image(keypoints, shape=(120, 160)):
    """Each keypoint a 3x3 dot of its own intensity."""
    image = np.zeros((*shape, 3), np.uint8)
    for k, (x, y, _) in enumerate(keypoints):
        image[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] = 40 + 12 * k
    return image


def _person(rng):
    """A box and 17 labelled keypoints on distinct cells of a grid inside it."""
    cells = rng.permutation(20)[:17]
    keypoints = np.zeros((17, 3), np.float32)
    keypoints[:, 0] = 60 + 9 * (cells % 5)
    keypoints[:, 1] = 32 + 15 * (cells // 5)
    keypoints[:, 2] = 2
    return np.array([55.0, 25.0, 50.0, 70.0]), keypoints


@pytest.mark.parametrize("flip_space", ["image", "crop"])
def test_flipped_crop_swaps_channels_and_keeps_pixels_and_keypoints_together(flip_space):
    """After a flip, channel k sits on the pixel of the dot of its mirror keypoint."""
    rng = np.random.default_rng(5)
    box, keypoints = _person(rng)
    spec = make_spec()
    config = AugmentConfig(box_extension=(1.3, 1.3), flip_prob=1.0, flip_space=flip_space)
    (draw,) = draw_crops(box, keypoints, 160, spec, config, rng)
    assert draw.flipped and np.linalg.det(draw.matrix[:, :2]) < 0
    image = _dots_image(keypoints)
    crop = cv2.warpAffine(image, draw.matrix, (48, 64), flags=cv2.INTER_NEAREST)
    _, cropped = apply_crop(image, keypoints, draw, spec, COCO17.flip_indices)
    assert cropped[:, 2].min() == 2
    for k in range(17):
        source = COCO17.flip_indices[k]
        x, y = np.rint(cropped[k, :2]).astype(int)
        assert crop[y, x, 0] == 40 + 12 * source, (k, source)


def test_image_flip_equals_cropping_the_mirrored_image():
    """MSPN's flip: mirror the image (x -> W-1-x), move the centre likewise, then crop."""
    rng = np.random.default_rng(6)
    box, keypoints = _person(rng)
    spec = make_spec()
    config = AugmentConfig(box_extension=(1.3, 1.3), flip_prob=1.0, flip_space="image")
    (draw,) = draw_crops(box, keypoints, 160, spec, config, rng)
    image = rng.integers(0, 255, (120, 160, 3)).astype(np.uint8)
    center, size = box_to_center_size(box, 0.75, (1.3, 1.3))
    mirrored = crop_matrix([159 - center[0], center[1]], size, INPUT)
    np.testing.assert_allclose(draw.matrix, compose(mirrored, flip_matrix(160)), atol=1e-9)
    np.testing.assert_array_equal(
        warp_image(image, draw.matrix, INPUT), warp_image(image[:, ::-1].copy(), mirrored, INPUT)
    )


# ---------------------------------------------------------------------------------------------
# Family recipes


def test_cpn_recipe_draws_zoom_flip_and_two_rotations():
    rng = np.random.default_rng(7)
    box, keypoints = _person(rng)
    spec = make_spec("cpn", box_extension=(1.2, 1.3))
    config = augment_config_for(spec)
    assert config.copies == 4 and config.box_extension == pytest.approx((1.5, 1.625))
    image = rng.integers(0, 255, (120, 160, 3)).astype(np.uint8)
    _, base_size = box_to_center_size(box, 0.75, config.box_extension)
    for _ in range(20):
        zoom, flip, rot1, rot2 = draw_crops(box, keypoints, 160, spec, config, rng)
        assert [d.flipped for d in (zoom, flip, rot1, rot2)] == [False, True, False, False]
        crops = [warp_image(image, d.matrix, INPUT) for d in (zoom, flip)]
        # the crop's own mirror (up to cv2's fixed-point rounding of uint8 pixels)
        difference = crops[1].astype(int) - crops[0][:, ::-1]
        assert np.abs(difference).max() <= 1 and (difference != 0).mean() < 0.01
        zoom_factor = (INPUT[1] / zoom.matrix[0, 0]) / base_size[0]
        assert 0.7 / 1.25 - 1e-9 <= zoom_factor <= 1.0 + 1e-9
        for rot in (rot1, rot2):  # same window, rotated about the crop centre
            assert np.hypot(*rot.matrix[0, :2]) == pytest.approx(zoom.matrix[0, 0])
            angle = math.degrees(math.atan2(rot.matrix[0, 1], rot.matrix[0, 0]))
            assert abs(angle) <= 45
            np.testing.assert_allclose(
                transform_points(invert_matrix(zoom.matrix) @ [24, 32, 1], rot.matrix), [24, 32]
            )


def test_mspn_recipe_frequencies():
    rng = np.random.default_rng(8)
    box, keypoints = _person(rng)
    spec = make_spec("mspn")
    config = augment_config_for(spec, half_body_prob=0.0)
    draws = [draw_crops(box, keypoints, 160, spec, config, rng)[0] for _ in range(2000)]
    flipped = np.array([d.flipped for d in draws])
    linear = np.array([d.matrix[:, :2] for d in draws])
    linear[flipped, :, 0] *= -1  # undo the mirror to read the angle
    angles = np.degrees(np.arctan2(linear[:, 0, 1], linear[:, 0, 0]))
    assert 0.45 < flipped.mean() < 0.55
    assert 0.45 < (np.abs(angles) > 1e-6).mean() < 0.55
    assert np.abs(angles).max() <= 45 and np.abs(angles).max() > 40
    # window width / box width = 1.05 (1 + U 0.6) (aspect fix can only grow it) x U(0.6, 1.0)
    ratio = INPUT[1] / np.hypot(linear[:, 0, 0], linear[:, 0, 1]) / box[2]
    assert ratio.min() >= 1.05 * 0.6 - 1e-9


def test_half_body_picks_upper_body_about_69_percent():
    rng = np.random.default_rng(9)
    box, keypoints = _person(rng)
    spec = make_spec("mspn")
    config = AugmentConfig(random_extension=(0.6, 0.8), half_body_prob=1.0)
    upper_center = keypoints[:13, :2].mean(0)
    lower_center = keypoints[13:, :2].mean(0)
    picks = []
    for _ in range(1000):
        (draw,) = draw_crops(box, keypoints, 160, spec, config, rng)
        center = transform_points([24.0, 32.0], invert_matrix(draw.matrix))
        is_upper = np.allclose(center, upper_center)
        assert is_upper or np.allclose(center, lower_center)
        picks.append(is_upper)
    assert 0.64 < np.mean(picks) < 0.74  # P(N(0,1) < 0.5) = 0.69


def test_resolve_augment_choices():
    spec = make_spec("rsn")
    assert resolve_augment(spec, None) == augment_config_for(spec)
    assert resolve_augment(spec, False) is None
    assert resolve_augment(spec, {"rotation": 10.0}).rotation == 10.0
    custom = AugmentConfig(flip_prob=1.0)
    assert resolve_augment(spec, custom) is custom
    assert augment_config_for(make_spec("cpm")).border_value == (128.0, 128.0, 128.0)
    assert augment_config_for(make_spec("hourglass")).color_jitter == 0.4
    with pytest.raises(ValueError, match="family 'vitpose'"):
        augment_config_for(make_spec("vitpose"))
    with pytest.raises(ValueError, match="scale_mode"):
        AugmentConfig(scale_mode="gamma")


def test_eval_crop_uses_the_spec_box_extension():
    spec = make_spec(box_extension=(1.09, 1.135))
    draw = eval_crop([10, 20, 30, 80], spec)
    center, size = box_to_center_size([10, 20, 30, 80], 0.75, (1.09, 1.135))
    np.testing.assert_allclose(draw.matrix, crop_matrix(center, size, INPUT))


def test_jitter_colors_scales_channels_and_clips():
    crop = np.full((4, 4, 3), 200, np.uint8)
    out = jitter_colors(crop, 0.4, np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.max() <= 255
    assert len({int(v) for v in out[0, 0]}) > 1


def test_jitter_colors_is_the_per_pixel_float32_product_for_every_value():
    crop = np.stack([np.arange(256, dtype=np.uint8).reshape(16, 16)] * 3, axis=-1)
    for seed in range(5):
        factors = np.random.default_rng(seed).uniform(0.6, 1.4, 3).astype(np.float32)
        expected = np.clip(crop.astype(np.float32) * factors, 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(jitter_colors(crop, 0.4, np.random.default_rng(seed)),
                                      expected)
