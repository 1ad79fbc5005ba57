"""MMPose's codec convention (``CodecSpec.convention == "mmpose"``): pinned per variant, numpy
encode/decode against loop-by-loop transcriptions of MMPose 1.3.2's ``generate_gaussian_heatmaps``,
``get_heatmap_maximum``, ``refine_keypoints`` and ``MegviiHeatmap.decode``, the graph decode
against numpy, and the Predictor reading an MMPose-variant model with them."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from keras_pose.codecs import MegviiCodec, MSRACodec, codec_from_spec
from keras_pose.codecs.graph import decode_graph
from keras_pose.data.transforms import augment_config_for, border_value_for
from keras_pose.models.cpm import cpm_spec
from keras_pose.models.hourglass52 import hourglass52_spec
from keras_pose.models.mspn import multi_stage_spec
from keras_pose.spec import CodecSpec

# ----- references: MMPose's loops, transcribed (K, H, W maps of one instance)


def ref_maximum(maps):
    k, h, w = maps.shape
    flat = maps.reshape(k, -1)
    index = np.argmax(flat, axis=1)
    locs = np.stack([index % w, index // w], -1).astype(np.float32)
    vals = np.amax(flat, axis=1)
    locs[vals <= 0.0] = -1
    return locs, vals


def ref_msra_decode(maps, stride):
    locs, vals = ref_maximum(maps)
    _, h, w = maps.shape
    for k in range(len(locs)):
        x, y = locs[k].astype(int)
        dx = maps[k, y, x + 1] - maps[k, y, x - 1] if 1 < x < w - 1 and 0 < y < h else 0.0
        dy = maps[k, y + 1, x] - maps[k, y - 1, x] if 1 < y < h - 1 and 0 < x < w else 0.0
        locs[k] += np.sign([dx, dy], dtype=np.float32) * 0.25
    return locs * stride, vals


def ref_megvii_decode(maps, stride, kernel=5):
    maps = maps.copy()
    border = (kernel - 1) // 2
    k, h, w = maps.shape
    for i in range(k):
        origin_max = np.max(maps[i])
        padded = np.zeros((h + 2 * border, w + 2 * border), np.float32)
        padded[border:-border, border:-border] = maps[i]
        padded = cv2.GaussianBlur(padded, (kernel, kernel), 0)
        maps[i] = padded[border:-border, border:-border]
        maps[i] *= origin_max / np.max(maps[i])
    locs, vals = ref_maximum(maps)
    for i in range(k):
        px, py = int(locs[i, 0]), int(locs[i, 1])
        if 1 < px < w - 1 and 1 < py < h - 1:
            diff = np.array([maps[i][py][px + 1] - maps[i][py][px - 1],
                             maps[i][py + 1][px] - maps[i][py - 1][px]])
            locs[i] += np.sign(diff) * 0.25 + 0.5
    return locs * stride, vals / 255.0 + 0.5


def ref_msra_encode(keypoints, visible, size, sigma):
    """``generate_gaussian_heatmaps`` of one instance, keypoints in heatmap cells."""
    w, h = size
    heatmaps = np.zeros((len(keypoints), h, w), np.float32)
    radius = sigma * 3
    gaussian_size = 2 * radius + 1
    x = np.arange(0, gaussian_size, 1, dtype=np.float32)
    y = x[:, None]
    x0 = y0 = gaussian_size // 2
    for k, point in enumerate(keypoints):
        if not visible[k]:
            continue
        mu = (point + 0.5).astype(np.int64)
        left, top = (mu - radius).astype(np.int64)
        right, bottom = (mu + radius + 1).astype(np.int64)
        if left >= w or top >= h or right < 0 or bottom < 0:
            continue
        gaussian = np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma**2))
        gx1, gx2 = max(0, -left), min(w, right) - left
        gy1, gy2 = max(0, -top), min(h, bottom) - top
        region = heatmaps[k, max(0, top):min(h, bottom), max(0, left):min(w, right)]
        np.maximum(region, gaussian[gy1:gy2, gx1:gx2], out=region)
    return heatmaps


def random_maps(seed, n=3, h=16, w=12, k=17, scale=1.0):
    """Random maps with peaks planted on borders, corners and next to them, and a few maps whose
    maximum is not positive."""
    rng = np.random.default_rng(seed)
    maps = rng.normal(0.0, 0.1, (n, h, w, k)).astype(np.float32)
    spots = [(0, 0), (h - 1, w - 1), (0, 5), (7, 0), (1, 1), (h - 2, w - 2), (1, 6), (6, 1),
             (h - 2, 3), (3, w - 2), (5, 5), (2, 2), (h - 1, 4), (4, w - 1)]
    for i in range(n):
        for j, (r, c) in enumerate(spots):
            maps[i, r, c, j] = 3.0
    maps[0, :, :, 15] = -np.abs(maps[0, :, :, 15])
    maps[-1, :, :, 16] = 0.0
    return maps * scale


# ----- the spec of each variant


def test_variants_pin_their_codec_conventions():
    cpm = cpm_spec((256, 192), 17, 6, "mmpose")
    assert cpm.final.codec.convention == "mmpose"
    assert cpm.final.codec.flip_shift  # shift_heatmap=True in MMPose's CPM config
    assert cpm.box_extension == (1.25, 1.25) and cpm.channel_order == "RGB" and cpm.flip_test
    assert all(o.codec.convention == "mmpose" for o in cpm.outputs)
    hourglass = hourglass52_spec((256, 256), 17)
    assert hourglass.final.codec.convention == "mmpose" and hourglass.final.codec.flip_shift
    assert hourglass.box_extension == (1.25, 1.25)
    for family in ("mspn", "rsn"):
        spec = multi_stage_spec(family, (256, 192), 17, 2, "RGB", variant="mmpose")
        assert all(o.codec.convention == "mmpose" for o in spec.outputs)
        assert not spec.final.codec.flip_shift  # shift_heatmap=False for MSPN/RSN
        assert spec.box_extension == (1.25, 1.25)
        assert border_value_for(spec) == (0.0, 0.0, 0.0)
        original = multi_stage_spec(family, (256, 192), 17, 2)
        assert {o.codec.convention for o in original.outputs} == {"original"}
        assert original.box_extension != (1.25, 1.25)
    original_cpm = cpm_spec((256, 192), 17, 6)
    assert original_cpm.final.codec.convention == "original"
    assert border_value_for(original_cpm) == (128.0, 128.0, 128.0)
    assert border_value_for(cpm) == (0.0, 0.0, 0.0)
    # training crops too: the profile's recipe, with MMPose's zero fill for the mmpose variant
    assert augment_config_for(original_cpm).border_value == (128.0, 128.0, 128.0)
    mmpose_cpm = augment_config_for(cpm)
    assert mmpose_cpm.border_value == (0.0, 0.0, 0.0)
    assert mmpose_cpm.rotation == augment_config_for(original_cpm).rotation
    assert augment_config_for(cpm, border_value=(1.0, 2.0, 3.0)).border_value == (1.0, 2.0, 3.0)


def test_convention_round_trips_through_the_spec_dict_and_is_checked():
    spec = cpm_spec((64, 48), 17, 2, "mmpose")
    assert type(spec).from_dict(spec.to_dict()) == spec
    legacy = spec.to_dict()
    for output in legacy["outputs"]:
        del output["codec"]["convention"]  # files written before the field existed
    assert type(spec).from_dict(legacy).final.codec.convention == "original"
    with pytest.raises(ValueError, match="convention"):
        CodecSpec("msra", sigma=2.0, convention="hrnet")


# ----- numpy decode and encode against MMPose


@pytest.mark.parametrize("seed", [0, 1])
def test_msra_decode_matches_mmpose(seed):
    maps = random_maps(seed)
    codec = MSRACodec(2.0, (64, 48), stride=4, convention="mmpose")
    keypoints, scores = codec.decode(maps)
    for i, sample in enumerate(maps):
        expected, values = ref_msra_decode(sample.transpose(2, 0, 1).copy(), 4)
        np.testing.assert_array_equal(keypoints[i], expected)
        np.testing.assert_array_equal(scores[i], values)
    assert np.all(keypoints[0, 15] == -4) and np.all(keypoints[-1, 16] == -4)
    original = MSRACodec(2.0, (64, 48), stride=4).decode(maps)[0]
    interior = keypoints[2, 10]  # a peak at (5, 5): the conventions differ by the half cell
    np.testing.assert_allclose(original[2, 10] - interior, [2.0, 2.0])


@pytest.mark.parametrize("seed", [0, 1])
def test_megvii_decode_matches_mmpose(seed):
    maps = random_maps(seed, scale=255.0)
    codec = MegviiCodec(5, (64, 48), stride=4, decode_blur=5, convention="mmpose")
    keypoints, scores = codec.decode(maps)
    for i, sample in enumerate(maps):
        with np.errstate(invalid="ignore"):  # MMPose divides 0 by 0 on an all-zero map
            expected, values = ref_megvii_decode(sample.transpose(2, 0, 1).copy(), 4)
        usable = np.isfinite(values)
        np.testing.assert_allclose(keypoints[i][usable], expected[usable], atol=1e-5)
        np.testing.assert_allclose(scores[i][usable], values[usable], rtol=1e-6)


def test_msra_encode_matches_mmpose_near_and_outside_the_map():
    rng = np.random.default_rng(3)
    h, w, stride = 16, 12, 4
    points = rng.uniform(-30, 80, (64, 17, 2))
    points[:, 0] = [-3.0, 1.9]  # rounds to cell 0 (MMPose draws it, partly)
    points[:, 1] = [47.99, 63.99]  # rounds past the last cell
    visible = rng.uniform(size=(64, 17)) > 0.2
    codec = MSRACodec(2.0, (h * stride, w * stride), stride=stride, convention="mmpose")
    encoded = codec.encode(points, visible)
    for i in range(len(points)):
        expected = ref_msra_encode(points[i] / stride, visible[i], (w, h), 2.0)
        np.testing.assert_allclose(encoded[i], expected.transpose(1, 2, 0), atol=1e-6)
    assert encoded[:, :, :, 0].max() > 0.1 and encoded[:, :, :, 1].max() > 0.1


def test_msra_encode_then_decode_lands_on_the_rounded_cell():
    codec = MSRACodec(2.0, (64, 48), stride=4, convention="mmpose")
    points = np.array([[[21.9, 30.1], [22.1, 29.9]]])
    heatmaps = codec.encode(points, np.ones((1, 2), bool))
    keypoints, scores = codec.decode(heatmaps)
    np.testing.assert_array_equal(keypoints[0], [[20.0, 32.0], [24.0, 28.0]])
    np.testing.assert_allclose(scores, 1.0)


# ----- graph decode


@pytest.mark.parametrize("kind", ["msra", "megvii"])
def test_graph_decode_equals_numpy_for_mmpose(kind):
    maps = random_maps(5, scale=255.0 if kind == "megvii" else 1.0)
    maps[0, :, :, 15] = np.abs(maps[0, :, :, 15])  # graph decode: maps with a positive maximum
    maps[-1, 3, 3, 16] = 1.0
    if kind == "msra":
        codec = MSRACodec(2.0, (64, 48), stride=4, convention="mmpose")
    else:
        codec = MegviiCodec(5, (64, 48), stride=4, decode_blur=5, convention="mmpose")
    expected_keypoints, expected_scores = codec.decode(maps)
    keypoints, scores = decode_graph(maps, codec)
    np.testing.assert_allclose(np.asarray(keypoints), expected_keypoints, atol=1e-4)
    np.testing.assert_allclose(np.asarray(scores), expected_scores, rtol=1e-5, atol=1e-6)


def test_graph_msra_mmpose_gives_minus_one_stride_for_non_positive_maps():
    maps = -np.abs(random_maps(2, n=1))
    codec = MSRACodec(2.0, (64, 48), stride=4, convention="mmpose")
    keypoints, _ = decode_graph(maps, codec)
    np.testing.assert_array_equal(np.asarray(keypoints), codec.decode(maps)[0])


# ----- Predictor on an MMPose-variant spec


class FixedHeatmaps:
    """A stand-in model whose heatmaps hold one Gaussian per keypoint at a chosen cell."""

    def __init__(self, spec, cell):
        self.spec = spec
        self.cell = cell

    def predict_on_batch(self, crops):
        h, w = self.spec.heatmap_size()
        maps = np.zeros((len(crops), h, w, self.spec.num_keypoints), np.float32)
        rows, cols = np.mgrid[:h, :w]
        blob = np.exp(-((cols - self.cell[0]) ** 2 + (rows - self.cell[1]) ** 2) / 8.0)
        maps[:] = blob[None, :, :, None]
        return {"heatmaps": maps}


def test_predictor_reads_an_mmpose_variant_without_the_half_cell():
    spec = cpm_spec((64, 48), 17, 1, "mmpose")
    original = dataclasses.replace(spec, outputs=cpm_spec((64, 48), 17, 1).outputs)
    from keras_pose.inference import Predictor

    image = np.zeros((64, 48, 3), np.uint8)
    box = [48 * 0.1, 64 * 0.1, 48 * 0.8, 64 * 0.8]  # extended by 1.25: the whole 48x64 image
    mmpose = Predictor(FixedHeatmaps(spec, (3, 4)), flip_test=False)(image, box)
    plain = Predictor(FixedHeatmaps(original, (3, 4)), flip_test=False)(image, box)
    np.testing.assert_allclose(mmpose[0, :, :2], np.tile([24.0, 32.0], (17, 1)), atol=1e-6)
    np.testing.assert_allclose(plain[0, :, :2] - mmpose[0, :, :2], 4.0, atol=1e-6)
    assert codec_from_spec(spec.final.codec, spec.input_size, 8).convention == "mmpose"


def test_training_targets_of_an_mmpose_variant_use_mmpose_encode():
    from keras_pose.data.targets import make_targets

    spec = cpm_spec((64, 48), 17, 2, "mmpose")
    keypoints = np.zeros((17, 3), np.float32)
    keypoints[:, :2] = [21.9, 30.1]  # stride 8: cell (2.74, 3.76) -> MMPose's (3, 4)
    keypoints[:, 2] = 2
    targets, _ = make_targets(spec, keypoints)
    for name in spec.output_names:
        row, col = np.unravel_index(targets[name][:, :, 0].argmax(), targets[name].shape[:2])
        assert (row, col) == (4, 3)
    original, _ = make_targets(cpm_spec((64, 48), 17, 2), keypoints)
    assert np.unravel_index(original["heatmaps"][:, :, 0].argmax(), (8, 6)) == (3, 2)


def test_megvii_map_whose_blur_has_no_positive_maximum_flips_as_in_mmpose():
    """A positive peak whose blur is negative everywhere: MMPose rescales by a negative factor,
    so the blur's minimum becomes the peak; numpy and graph decodes do the same."""
    maps = np.full((1, 16, 12, 1), -1.0, np.float32)
    maps[0, 6, 5, 0] = 0.1
    maps[0, 9, 7, 0] = -3.0  # the blur's minimum is around here
    codec = MegviiCodec(5, (64, 48), stride=4, decode_blur=5, convention="mmpose")
    keypoints, scores = codec.decode(maps)
    expected, values = ref_megvii_decode(maps[0].transpose(2, 0, 1).copy(), 4)
    np.testing.assert_allclose(keypoints[0], expected, atol=1e-5)
    np.testing.assert_allclose(scores[0], values, rtol=1e-6)
    assert np.all(np.abs(keypoints[0, 0] - [7 * 4 + 2, 9 * 4 + 2]) <= 1.0)
    graph_keypoints, graph_scores = decode_graph(maps, codec)
    np.testing.assert_allclose(np.asarray(graph_keypoints), keypoints, atol=1e-4)
    np.testing.assert_allclose(np.asarray(graph_scores), scores, rtol=1e-5)
