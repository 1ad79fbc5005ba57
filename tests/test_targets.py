"""Per-output targets and keypoint weights from a spec (Megvii/MSRA codecs, visibility rules)."""

import numpy as np
import pytest

from keras_pose.data.targets import make_batch_targets, make_targets, output_codecs
from keras_pose.spec import MSRA, CodecSpec, OutputSpec, PoseSpec, megvii_outputs

# tf-cpn 256x192 and 384x288 label kernels, MSPN/RSN kernels
KERNELS = sorted({15, 11, 9, 7} | {23, 17, 13, 9} | {15, 11, 9, 7, 5})


def spec_with(outputs, input_size=(256, 192), num_keypoints=4):
    return PoseSpec("mspn", input_size, num_keypoints, "BGR", tuple(outputs))


def keypoints_at(points, visibility):
    return np.concatenate([np.asarray(points, np.float32),
                           np.asarray(visibility, np.float32)[:, None]], axis=1)


@pytest.mark.parametrize("input_size", [(256, 192), (384, 288)])
def test_megvii_peak_is_255_at_the_floored_cell_for_every_kernel(input_size):
    names = [f"k{k}" for k in KERNELS[:-1]] + ["heatmaps"]
    spec = spec_with(megvii_outputs(names, KERNELS, ["ohkm"] * len(KERNELS),
                                    [1.0] * len(KERNELS)), input_size)
    height, width = input_size
    # at least 12 cells from the edges: wide kernels near an edge get a mirrored lobe
    # (cv2's BORDER_REFLECT_101, as in the originals) that moves the maximum
    points = [[48.0, 48.0], [width - 48.1, height - 48.6], [67.3, 130.9], [101.99, 77.5]]
    keypoints = keypoints_at(points, [2, 2, 2, 1])
    targets, _ = make_targets(spec, keypoints)
    for name, kernel in zip(names, KERNELS):
        maps = targets[name]
        assert maps.shape == (height // 4, width // 4, 4) and maps.dtype == np.float32
        for k, (x, y) in enumerate(points):
            cell = np.unravel_index(np.argmax(maps[..., k]), maps.shape[:2])
            assert cell == (int(y // 4), int(x // 4)), (kernel, k)
            assert maps[..., k].max() == pytest.approx(255.0), (kernel, k)


def test_visibility_masks_targets_and_weights_as_the_spec_says():
    # plain L2 output: target for visible (v=2) only, every keypoint counts;
    # OHKM output: target for labelled (v>=1), only labelled keypoints count.
    outputs = megvii_outputs(["global", "heatmaps"], [9, 7], ["mse", "ohkm"], [1.0, 1.0])
    outputs += (OutputSpec("strict", 4, CodecSpec("megvii", kernel_size=7),
                           target_min_visibility=2, weight_min_visibility=2),)
    spec = spec_with(outputs)
    keypoints = keypoints_at([[40, 40], [80, 120], [120, 200], [0, 0]], [2, 1, 1, 0])
    keypoints[2, :2] = [150, 250]  # labelled and inside
    targets, weights = make_targets(spec, keypoints)
    drawn = {name: (t.max(axis=(0, 1)) > 0).tolist() for name, t in targets.items()}
    assert drawn == {
        "global": [True, False, False, False],
        "heatmaps": [True, True, True, False],
        "strict": [True, False, False, False],
    }
    assert weights["global"].tolist() == [1, 1, 1, 1]
    assert weights["heatmaps"].tolist() == [1, 1, 1, 0]
    assert weights["strict"].tolist() == [1, 0, 0, 0]
    assert all(w.dtype == np.float32 and w.shape == (4,) for w in weights.values())
    # the masked-out channels are zero, not just lower
    assert not targets["global"][..., 1:].any() and not targets["heatmaps"][..., 3].any()


def test_msra_target_peaks_at_one():
    codec = CodecSpec(MSRA, sigma=2.0, peak=1.0, flip_shift=True)
    spec = spec_with([OutputSpec("heatmaps", 4, codec)], (256, 256), num_keypoints=2)
    targets, weights = make_targets(spec, keypoints_at([[100.0, 60.0], [30.0, 30.0]], [2, 0]))
    maps = targets["heatmaps"]
    assert maps.shape == (64, 64, 2) and maps[..., 0].max() == pytest.approx(1.0)
    assert np.unravel_index(np.argmax(maps[..., 0]), (64, 64)) == (15, 25)
    assert not maps[..., 1].any() and weights["heatmaps"].tolist() == [1, 0]


def test_codecs_are_cached_and_shared():
    spec = spec_with(megvii_outputs(["a", "b", "heatmaps"], [7, 7, 5], ["mse", "ohkm", "ohkm"],
                                    [1.0, 1.0, 1.0]))
    first, second = output_codecs(spec), output_codecs(spec)
    assert first["a"] is second["a"] and first["a"] is first["b"]
    assert first["heatmaps"] is not first["a"]


def test_keypoint_shape_mismatch_is_an_error():
    spec = spec_with(megvii_outputs(["heatmaps"], [7], ["ohkm"], [1.0]))
    with pytest.raises(ValueError, match=r"must be \(4, 3\).*got \(17, 3\)"):
        make_targets(spec, np.zeros((17, 3)))


def test_batch_targets_equal_per_crop_targets_and_share_only_within_a_group():
    # two MSE outputs (target for v = 2) and one OHKM output (v >= 1) on the same kernel
    outputs = megvii_outputs(["a", "b", "heatmaps"], [7, 7, 7], ["mse", "mse", "ohkm"],
                             [1.0, 1.0, 1.0])
    spec = spec_with(outputs, num_keypoints=5)
    rng = np.random.default_rng(2)
    keypoints = np.concatenate([rng.uniform(0, 190, (4, 5, 2)),
                                rng.choice([0, 1, 2], (4, 5, 1))], -1).astype(np.float32)
    keypoints[0, :, 2] = [1, 1, 2, 2, 0]
    targets, weights = make_batch_targets(spec, keypoints)
    assert targets["a"] is targets["b"] and targets["a"] is not targets["heatmaps"]
    assert targets["a"][0, ..., :2].max() == 0 and targets["heatmaps"][0, ..., :2].max() > 0
    for i in range(4):
        single_targets, single_weights = make_targets(spec, keypoints[i])
        for name in spec.output_names:
            np.testing.assert_array_equal(targets[name][i], single_targets[name])
            np.testing.assert_array_equal(weights[name][i], single_weights[name])
    with pytest.raises(ValueError, match=r"must be \(N, 5, 3\).*got \(5, 3\)"):
        make_batch_targets(spec, keypoints[0])
