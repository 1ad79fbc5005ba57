"""Flip test: heatmaps of a mirrored input brought back, in numpy and in keras.ops."""

import numpy as np
import pytest

from keras_pose.codecs import codec_from_spec, flip_heatmaps, flip_images
from keras_pose.codecs.flip import flip_heatmaps_graph, flip_images_graph
from keras_pose.data.dataset_info import COCO17
from keras_pose.data.transforms import flip_keypoints
from keras_pose.spec import MEGVII, MSRA, CodecSpec

CODECS = {
    "hourglass": (CodecSpec(MSRA, sigma=1.75, peak=1.0), (256, 192), 4),
    "cpm": (CodecSpec(MSRA, sigma=0.875, peak=1.0), (368, 368), 8),
    "rsn": (CodecSpec(MEGVII, kernel_size=7, decode_blur=5), (256, 192), 4),
}


def test_flip_heatmaps_mirrors_width_and_swaps_left_right():
    maps = np.zeros((2, 6, 5, 17), np.float32)
    maps[0, 4, 1, 5] = 1.0  # left shoulder at column 1
    maps[1, 2, 0, 0] = 2.0  # nose at column 0
    back = flip_heatmaps(maps, COCO17.flip_indices)
    assert back.shape == maps.shape
    assert back[0, 4, 3, 6] == 1.0 and back[0].sum() == 1.0  # right shoulder, column 5-1-1
    assert back[1, 2, 4, 0] == 2.0 and back[1].sum() == 2.0
    np.testing.assert_array_equal(flip_heatmaps(back, COCO17.flip_indices), maps)  # involution
    np.testing.assert_array_equal(flip_heatmaps(maps[0], COCO17.flip_indices), back[0])


def test_shift_moves_one_cell_right_and_repeats_the_first_column():
    maps = np.arange(2 * 3 * 4 * 1, dtype=np.float32).reshape(2, 3, 4, 1)
    plain = flip_heatmaps(maps, [0])
    shifted = flip_heatmaps(maps, [0], shift=True)
    np.testing.assert_array_equal(shifted[:, :, 1:], plain[:, :, :-1])
    np.testing.assert_array_equal(shifted[:, :, 0], plain[:, :, 0])


def test_flip_checks_its_arguments():
    with pytest.raises(ValueError, match="permutation"):
        flip_heatmaps(np.zeros((1, 4, 4, 3)), [0, 1, 1])
    with pytest.raises(ValueError, match="heatmaps must be"):
        flip_heatmaps(np.zeros((4, 4)), [0])
    with pytest.raises(ValueError, match="crops must be"):
        flip_images(np.zeros((4, 4)))


def test_flip_images_mirrors_columns():
    crops = np.arange(2 * 3 * 4 * 3).reshape(2, 3, 4, 3)
    flipped = flip_images(crops)
    np.testing.assert_array_equal(flipped[:, :, 0], crops[:, :, 3])
    np.testing.assert_array_equal(flip_images(flipped), crops)


@pytest.mark.parametrize("family", sorted(CODECS))
def test_mirrored_input_gives_mirrored_keypoints(family):
    """Targets of the mirrored crop (x -> W-1-x, pairs swapped), flipped back and decoded,
    land on the original keypoints: the same cell as the direct targets up to one input pixel.

    The crop mirrors about pixel centres ((W-1)/2), a heatmap about cell edges (W/2), so the
    flipped path reads every keypoint 1 px to the right on average -- the originals' (tf-cpn,
    MSPN, Hourglass: no shift) behaviour. MMPose's one-cell ``shift_heatmap`` compensates its
    round-to-nearest centre; with keras-pose's floor cells it adds a whole cell more.
    """
    codec_spec, size, stride = CODECS[family]
    codec = codec_from_spec(codec_spec, size, stride)
    height, width = size
    rng = np.random.default_rng(0)
    keypoints = np.stack(
        [rng.uniform(30, width - 30, (40, 17)), rng.uniform(30, height - 30, (40, 17))], -1
    )
    visible = np.ones(17, bool)
    with_flags = np.concatenate([keypoints, np.ones((40, 17, 1))], -1)
    mirrored = np.stack(
        [codec.encode(flip_keypoints(p, width, COCO17.flip_indices)[:, :2], visible)
         for p in with_flags]
    )
    direct, _ = codec.decode(np.stack([codec.encode(p, visible) for p in keypoints]))
    unshifted, _ = codec.decode(flip_heatmaps(mirrored, COCO17.flip_indices))
    shifted, _ = codec.decode(flip_heatmaps(mirrored, COCO17.flip_indices, shift=True))
    # y is untouched by a horizontal flip; x moves by at most one cell, only for the
    # keypoints in the last input pixel of a cell
    np.testing.assert_allclose(unshifted[..., 1], direct[..., 1])
    moved = np.abs(unshifted[..., 0] - direct[..., 0])
    assert set(np.round(np.unique(moved), 6)) <= {0.0, float(stride)}
    assert np.mean(moved > 0) == pytest.approx(1 / stride, abs=0.1)
    bias = np.mean(unshifted[..., 0] - direct[..., 0])
    assert bias == pytest.approx(1.0, abs=0.35)
    np.testing.assert_allclose(shifted[..., 0] - unshifted[..., 0], stride)


@pytest.mark.parametrize("shift", [False, True])
def test_graph_flip_matches_numpy(shift):
    rng = np.random.default_rng(1)
    maps = rng.random((2, 8, 6, 17)).astype(np.float32)
    expected = flip_heatmaps(maps, COCO17.flip_indices, shift=shift)
    np.testing.assert_array_equal(
        np.asarray(flip_heatmaps_graph(maps, COCO17.flip_indices, shift=shift)), expected
    )
    crops = rng.random((2, 5, 4, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(flip_images_graph(crops)), flip_images(crops))
