"""Heatmap codecs: targets as the originals draw them, decoding, the graph decode, DARK."""

import cv2
import numpy as np
import pytest

from keras_pose.codecs import MegviiCodec, MSRACodec, _common, codec_from_spec, graph, opencv_sigma
from keras_pose.spec import MEGVII, MSRA, CodecSpec

MEGVII_KERNELS = (5, 7, 9, 11, 15, 23)
# (decode_blur, decode_normalize) of MSPN/RSN and of CPN
MEGVII_DECODES = {"mspn": (5, False), "cpn": (21, True)}
# (sigma, input size, stride) of Hourglass and CPM
MSRA_SETTINGS = {"hourglass": (1.75, (256, 256), 4), "cpm": (0.875, (368, 368), 8)}


def megvii(kernel=7, family="mspn", input_size=(256, 192), stride=4, refine="quarter"):
    blur, normalize = MEGVII_DECODES[family]
    spec = CodecSpec(MEGVII, kernel_size=kernel, decode_blur=blur, decode_normalize=normalize,
                     refine=refine)
    return codec_from_spec(spec, input_size, stride)


def msra(family="hourglass", refine="quarter"):
    sigma, size, stride = MSRA_SETTINGS[family]
    return codec_from_spec(CodecSpec(MSRA, sigma=sigma, peak=1.0), size, stride, refine=refine)


def random_keypoints(rng, n, k, input_size, margin):
    """``(n, k, 2)`` crop keypoints at least ``margin`` px from every border."""
    h, w = input_size
    return np.stack(
        [rng.uniform(margin, w - margin, (n, k)), rng.uniform(margin, h - margin, (n, k))], -1
    )


def encode_all(codec, keypoints):
    visible = np.ones(keypoints.shape[1], bool)
    return np.stack([codec.encode(p, visible) for p in keypoints])


def smooth_maps(rng, n, size, k, peak):
    """Network-like maps: two Gaussian blobs of random sub-cell centres and widths plus noise
    (no exact ties, so float32 and float64 pick the same maxima)."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    maps = np.zeros((n, h, w, k), np.float32)
    for i in range(n):
        for j in range(k):
            for _ in range(2):
                cx, cy, s = rng.uniform(-2, w + 1), rng.uniform(-2, h + 1), rng.uniform(1, 3)
                blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
                maps[i, :, :, j] += rng.uniform(0.2, 1.0) * peak * blob
    return maps + rng.normal(0, 0.02 * peak, maps.shape).astype(np.float32)


# ------------------------------------------------------------------------------------------
# Megvii targets


def opencv4_blur(image, kernel):
    """``cv2.GaussianBlur(image, (k, k), 0)`` as OpenCV 3/4 (the originals' versions) ran it:
    the fixed table for k <= 7, the formula's sigma above (OpenCV 5 also tabulates k = 9)."""
    sigma = 0 if kernel <= 7 else 0.3 * ((kernel - 1) / 2 - 1) + 0.8
    return cv2.GaussianBlur(image, (kernel, kernel), sigma)


def test_opencv_sigma_is_the_sigma_cv2_derives_from_the_kernel_size():
    published = {5: 1.1, 7: 1.4, 9: 1.7, 11: 2.0, 13: 2.3, 15: 2.6, 17: 2.9, 21: 3.5, 23: 3.8}
    for k, sigma in published.items():
        assert opencv_sigma(k) == pytest.approx(sigma)
        assert MegviiCodec(k, (256, 192)).sigma == pytest.approx(sigma)
        if k >= 11:  # cv2 evaluates the formula itself
            np.testing.assert_allclose(
                cv2.getGaussianKernel(k, 0), cv2.getGaussianKernel(k, sigma), rtol=1e-12
            )


def test_codec_blur_kernels_are_opencv4s():
    x = np.arange(9) - 4.0
    gaussian = np.exp(-(x**2) / (2 * 1.7**2))
    np.testing.assert_allclose(_common.gaussian_kernel_1d(9), gaussian / gaussian.sum())
    np.testing.assert_array_equal(_common.gaussian_kernel_1d(5), np.array([1, 4, 6, 4, 1]) / 16)
    table7 = [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125]
    np.testing.assert_array_equal(_common.gaussian_kernel_1d(7), table7)


@pytest.mark.parametrize("kernel", MEGVII_KERNELS)
def test_megvii_target_is_tfcpn_blurred_delta_with_peak_255(kernel):
    codec = megvii(kernel)
    keypoints = np.array([[50.3, 100.7], [3.9, 250.0], [191.0, 0.2]])
    target = codec.encode(keypoints, np.ones(3, bool))
    assert target.shape == (64, 48, 3) and target.dtype == np.float32
    for j, (x, y) in enumerate(keypoints):
        delta = np.zeros((64, 48), np.float32)
        delta[int(y * 64 / 256), int(x * 48 / 192)] = 1  # tf-cpn joints_heatmap_gen
        expected = opencv4_blur(delta, kernel)
        expected /= np.amax(expected) / 255
        np.testing.assert_array_equal(target[..., j], expected)
        assert target[..., j].max() == pytest.approx(255.0, abs=1e-3)
    # away from the border the maximum is the floor cell (at the border the reflected lobe
    # can move it onto the edge cell, as in the originals)
    assert np.unravel_index(np.argmax(target[..., 0]), (64, 48)) == (25, 12)


# (input size, kernels, cell step): MSPN/RSN's and tf-cpn's 256x192 kernels in every cell,
# tf-cpn's 384x288 kernels in every second row and column (a quarter of the cells)
CELL_GRIDS = [((256, 192), (5, 7, 9, 11, 15), 1), ((384, 288), (9, 13, 17, 23), 2)]


@pytest.mark.parametrize("input_size, kernels, step", CELL_GRIDS, ids=["256x192", "384x288"])
def test_megvii_target_is_one_cv2_blur_per_keypoint_in_every_cell(input_size, kernels, step):
    """Bit for bit: the encoder pastes a precomputed block for keypoints clear of the borders
    and blurs the others; the reference blurs every delta with cv2 (tf-cpn's recipe)."""
    h, w = input_size[0] // 4, input_size[1] // 4
    rows, cols = (a.ravel() for a in np.mgrid[0:h:step, 0:w:step])
    keypoints = np.stack([cols * 4 + 1.3, rows * 4 + 2.6], axis=-1)[:, None, :]  # (n, 1, 2)
    for kernel in kernels:
        codec = megvii(kernel, input_size=input_size)
        clear = codec._clear_of_borders(rows, cols)
        assert 0 < clear.sum() < len(rows)  # both paths are exercised
        for chunk in np.array_split(np.arange(len(rows)), 4):
            target = codec.encode(keypoints[chunk], np.ones((len(chunk), 1), bool))[..., 0]
            deltas = np.zeros((len(chunk), h, w), np.float32)
            deltas[np.arange(len(chunk)), rows[chunk], cols[chunk]] = 1
            expected = np.stack([opencv4_blur(delta, kernel) for delta in deltas])
            expected /= expected.max(axis=(1, 2), keepdims=True) / 255
            np.testing.assert_array_equal(target, expected, err_msg=f"kernel {kernel}")


@pytest.mark.parametrize("codec", [megvii(15), megvii(5), msra("hourglass"), msra("cpm")],
                         ids=["megvii15", "megvii5", "hourglass", "cpm"])
def test_encoding_a_batch_equals_encoding_each_sample(codec):
    rng = np.random.default_rng(7)
    h, w = codec.input_size
    keypoints = np.stack([rng.uniform(-4, w + 4, (6, 17)), rng.uniform(-4, h + 4, (6, 17))], -1)
    visible = rng.random((6, 17)) < 0.8
    batch = codec.encode(keypoints, visible)
    assert batch.shape == (6, *codec.heatmap_size, 17) and batch.dtype == np.float32
    for i in range(6):
        np.testing.assert_array_equal(batch[i], codec.encode(keypoints[i], visible[i]))
    assert batch[visible.any(-1)].max() > 0


def test_megvii_target_reflects_at_the_border_like_cv2():
    """BORDER_REFLECT_101: a delta in column 1 also lands, mirrored, in column -1 -> 1, so
    column 0 gets 2 g(1) where column 2 gets g(1) + g(3); a zero border would be symmetric."""
    target = megvii(15).encode(np.array([[5.0, 100.0]]), np.ones(1, bool))[..., 0]
    taps = _common.gaussian_kernel_1d(15)  # centre tap at index 7
    ratio = (2 * taps[8]) / (taps[8] + taps[10])
    assert target[25, 0] / target[25, 2] == pytest.approx(ratio, rel=1e-5)
    assert ratio > 1.05


def test_invisible_and_outside_keypoints_give_zero_channels():
    visible = np.array([True, False, True, True, True, True])
    for codec in (megvii(7), msra("cpm")):
        h, w = codec.input_size
        keypoints = np.array([[50, 50], [50, 50], [-0.5, 50], [w, 50], [50, h], [np.nan, 3]])
        target = codec.encode(keypoints, visible)
        assert target[..., 0].max() > 0
        assert np.all(target[..., 1:] == 0)


def test_keypoint_on_the_last_pixel_is_drawn_in_the_last_cell():
    target = megvii(7).encode(np.array([[191.99, 255.99]]), np.ones(1, bool))[..., 0]
    assert np.unravel_index(np.argmax(target), target.shape) == (63, 47)


def test_encode_checks_shapes():
    codec = megvii(7)
    with pytest.raises(ValueError, match="visible must be"):
        codec.encode(np.zeros((17, 2)), np.ones(16, bool))
    with pytest.raises(ValueError, match="keypoints must be"):
        codec.encode(np.zeros(17), np.ones(17, bool))


# ------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("family", sorted(MEGVII_DECODES))
@pytest.mark.parametrize("kernel", MEGVII_KERNELS)
def test_megvii_round_trip_recovers_the_cell_within_a_quarter(kernel, family):
    """A clean target decodes to its cell's centre ``4c + 2``, moved 0.25 cell towards the
    second maximum: within 1 px of the centre per axis, so within 3 px of the keypoint."""
    codec = megvii(kernel, family)
    rng = np.random.default_rng(kernel)
    margin = 4 * (3 * codec.sigma + 1)  # away from the reflected lobe of wide kernels
    keypoints = random_keypoints(rng, 8, 17, (256, 192), margin)
    decoded, scores = codec.decode(encode_all(codec, keypoints))
    cell_centres = np.floor(keypoints / 4) * 4 + 2
    assert np.abs(decoded - cell_centres).max() <= 1.0 + 1e-6
    assert np.abs(decoded - keypoints).max() < 3.0
    np.testing.assert_allclose(scores, 1.5, atol=1e-5)  # 255 / 255 + 0.5 at the peak


@pytest.mark.parametrize("family", sorted(MSRA_SETTINGS))
def test_msra_round_trip_recovers_the_cell_centre(family):
    codec = msra(family)
    sigma, size, stride = MSRA_SETTINGS[family]
    rng = np.random.default_rng(1)
    keypoints = random_keypoints(rng, 8, 17, size, 0.1 * size[0])
    decoded, scores = codec.decode(encode_all(codec, keypoints))
    # a symmetric peak has equal neighbours: no quarter step, the cell centre s*c + s/2
    np.testing.assert_allclose(decoded, np.floor(keypoints / stride) * stride + stride / 2)
    assert np.abs(decoded - keypoints).max() <= stride / 2
    np.testing.assert_allclose(scores, 1.0)


def test_msra_target_is_a_unit_gaussian_cut_at_three_sigma():
    codec = msra("hourglass")
    target = codec.encode(np.array([[101.0, 61.0]]), np.ones(1, bool))[..., 0]  # cell (15, 25)
    assert target[15, 25] == 1.0
    assert target[15, 26] == pytest.approx(np.exp(-1 / (2 * 1.75**2)))
    assert target[17, 27] == pytest.approx(np.exp(-8 / (2 * 1.75**2)))
    assert target[15, 25 + 5] > 0 and target[15, 25 + 6] == 0  # floor(3 * 1.75) = 5 cells


def test_quarter_offset_moves_towards_the_higher_neighbour_except_on_borders():
    codec = MSRACodec(1.0, (32, 32), 4)
    maps = np.zeros((1, 8, 8, 3), np.float32)
    maps[0, 4, 3, 0], maps[0, 4, 4, 0], maps[0, 3, 3, 0] = 1.0, 0.5, 0.2  # right and up
    maps[0, 0, 5, 1], maps[0, 0, 6, 1] = 1.0, 0.5  # peak on the top row: no offset
    maps[0, :, :, 2] = -3.0  # negative map, flat around its maximum: no offset
    maps[0, 2, 2, 2] = -1.0
    keypoints, scores = codec.decode(maps)
    np.testing.assert_allclose(keypoints[0, 0], [(3 + 0.25) * 4 + 2, (4 - 0.25) * 4 + 2])
    np.testing.assert_allclose(keypoints[0, 1], [5 * 4 + 2, 0 * 4 + 2])
    np.testing.assert_allclose(keypoints[0, 2], [2 * 4 + 2, 2 * 4 + 2])
    np.testing.assert_allclose(scores[0], [1.0, 1.0, -1.0])


def test_megvii_decode_moves_a_quarter_cell_towards_the_second_maximum():
    codec = MegviiCodec(7, (64, 48), 4, decode_blur=0)
    maps = np.zeros((1, 16, 12, 2), np.float32)
    maps[0, 8, 5, 0], maps[0, 5, 9, 0] = 200.0, 100.0  # p2 - p1 = (4, -3) cells
    maps[0, 0, 0, 1] = -5.0
    maps[0, :, :, 1] -= 10.0  # all negative: the zero border wins, clamped to cell (0, 0)
    keypoints, scores = codec.decode(maps)
    expected = [(5 + 0.25 * 0.8) * 4 + 2, (8 - 0.25 * 0.6) * 4 + 2]  # unit vector (0.8, -0.6)
    np.testing.assert_allclose(keypoints[0, 0], expected)
    np.testing.assert_allclose(scores[0, 0], 200 / 255 + 0.5, rtol=1e-6)
    np.testing.assert_allclose(keypoints[0, 1], [2.0, 2.0])
    np.testing.assert_allclose(scores[0, 1], -15 / 255 + 0.5, rtol=1e-6)


def test_cpn_normalisation_changes_nothing_for_positive_maps_and_is_safe_for_others():
    rng = np.random.default_rng(3)
    maps = smooth_maps(rng, 4, (64, 48), 5, 255.0)
    plain = MegviiCodec(7, (256, 192), decode_blur=21)
    normalised = MegviiCodec(7, (256, 192), decode_blur=21, decode_normalize=True)
    np.testing.assert_allclose(normalised.decode(maps)[0], plain.decode(maps)[0])
    zero = np.zeros((1, 64, 48, 2), np.float32)
    assert np.all(np.isfinite(normalised.decode(zero)[0]))


def test_decode_takes_a_single_map_and_rejects_wrong_shapes():
    codec = megvii(7)
    single = codec.encode(np.array([[40.0, 80.0]]), np.ones(1, bool))
    keypoints, scores = codec.decode(single)
    assert keypoints.shape == (1, 1, 2) and scores.shape == (1, 1)
    with pytest.raises(ValueError, match=r"\(N, 64, 48, K\)"):
        codec.decode(np.zeros((2, 32, 24, 17)))
    broken = np.zeros((1, 64, 48, 2), np.float32)
    broken[0, 3, 3, 1] = np.nan
    for codec in (megvii(7), MSRACodec(1.0, (256, 192))):
        with pytest.raises(ValueError, match="NaN"):
            codec.decode(broken)


def test_codec_from_spec_reads_every_field():
    codec = codec_from_spec(
        CodecSpec(MEGVII, kernel_size=9, peak=100.0, decode_blur=21, decode_normalize=True),
        (384, 288), 4,
    )
    assert isinstance(codec, MegviiCodec)
    assert (codec.kernel_size, codec.peak, codec.decode_blur, codec.decode_normalize) == (
        9, 100.0, 21, True)
    assert codec.heatmap_size == (96, 72)
    codec = codec_from_spec(CodecSpec(MSRA, sigma=0.875, peak=1.0), (368, 368), 8, refine="dark")
    assert isinstance(codec, MSRACodec)
    assert (codec.sigma, codec.peak, codec.refine) == (0.875, 1.0, "dark")
    assert codec.heatmap_size == (46, 46)
    with pytest.raises(ValueError, match="refine"):
        MSRACodec(1.0, (64, 64), refine="bilinear")


# ------------------------------------------------------------------------------------------
# DARK


def test_dark_finds_sub_cell_centres_the_quarter_offset_cannot():
    codec = MSRACodec(2.0, (256, 192), 4)
    rng = np.random.default_rng(5)
    centres = rng.uniform(10, 38, (6, 17, 2))  # cells
    yy, xx = np.mgrid[0:64, 0:48]
    maps = np.exp(
        -((xx[None, :, :, None] - centres[:, None, None, :, 0]) ** 2
          + (yy[None, :, :, None] - centres[:, None, None, :, 1]) ** 2) / (2 * 2.0**2)
    ).astype(np.float32)
    truth = centres * 4 + 2  # the codec's convention: cell c is at 4c + 2
    dark_error = np.abs(codec.decode(maps, refine="dark")[0] - truth)
    quarter_error = np.abs(codec.decode(maps, refine="quarter")[0] - truth)
    assert dark_error.max() < 0.2  # px; a Gaussian's log is exactly quadratic (blur aside)
    assert quarter_error.mean() > 3 * dark_error.mean()


def test_megvii_dark_finds_sub_cell_centres_the_quarter_step_cannot():
    """A model's map of a keypoint between cells: a Gaussian of the target's own width around
    the sub-cell position. The quarter step lands on a quarter cell; DARK's step on the centre."""
    codec = megvii(5, "mspn", input_size=(128, 96), refine="dark")
    sigma = opencv_sigma(5)
    rng = np.random.default_rng(11)
    centres = rng.uniform(4, 19, (6, 17, 2))  # cells, away from the 32x24 map's borders
    yy, xx = np.mgrid[0:32, 0:24]
    maps = 255 * np.exp(
        -((xx[None, :, :, None] - centres[:, None, None, :, 0]) ** 2
          + (yy[None, :, :, None] - centres[:, None, None, :, 1]) ** 2) / (2 * sigma**2)
    ).astype(np.float32)
    truth = centres * 4 + 2  # cell c is at 4c + 2 crop pixels
    dark_keypoints, dark_scores = codec.decode(maps)
    quarter_keypoints, quarter_scores = codec.decode(maps, refine="quarter")
    dark_error = np.abs(dark_keypoints - truth)
    quarter_error = np.abs(quarter_keypoints - truth)
    assert dark_error.max() < 0.3  # px, of a cell of 4 px
    assert quarter_error.mean() > 3 * dark_error.mean()
    np.testing.assert_array_equal(dark_scores, quarter_scores)  # both read at the arg-max cell
    plain, _ = codec.decode(maps, refine=None)
    np.testing.assert_array_equal((plain - 2) % 4, 0)  # the arg-max cells' centres
    assert codec.dark_blur == 5  # DARK's modulation: the target's own kernel


def test_megvii_refine_is_checked_and_mmpose_keeps_its_quarter_step():
    with pytest.raises(ValueError, match="refine must be one of"):
        MegviiCodec(5, (128, 96), refine="bilinear")
    with pytest.raises(ValueError, match="only refine='quarter'"):
        MegviiCodec(5, (128, 96), convention="mmpose", refine="dark")
    with pytest.raises(ValueError, match="CodecSpec.refine"):
        CodecSpec(MEGVII, kernel_size=5, refine="soft")
    with pytest.raises(ValueError, match="convention 'mmpose'"):
        CodecSpec(MEGVII, kernel_size=5, convention="mmpose", refine="dark")
    codec = MegviiCodec(5, (128, 96), convention="mmpose")
    with pytest.raises(ValueError, match="only refine='quarter'"):
        codec.decode(np.zeros((1, 32, 24, 17), np.float32), refine="dark")
    assert codec_from_spec(CodecSpec(MEGVII, kernel_size=5, refine="dark"), (128, 96), 4,
                           refine=None).refine is None  # an explicit refine wins over the spec's


# ------------------------------------------------------------------------------------------
# Graph decode


GRAPH_CASES = [
    ("megvii", "mspn", "quarter"), ("megvii", "cpn", "quarter"), ("megvii", "mspn", "dark"),
    ("megvii", "cpn", "dark"), ("megvii", "mspn", None), ("msra", "hourglass", "quarter"),
    ("msra", "cpm", "quarter"), ("msra", "hourglass", None), ("msra", "hourglass", "dark"),
]


@pytest.mark.parametrize("kind, family, refine", GRAPH_CASES)
def test_graph_decode_matches_numpy(kind, family, refine):
    codec = megvii(7, family, refine=refine) if kind == "megvii" else msra(family, refine)
    rng = np.random.default_rng(7)
    maps = smooth_maps(rng, 6, codec.heatmap_size, 17, codec.peak)
    expected_keypoints, expected_scores = codec.decode(maps)
    keypoints, scores = graph.decode_graph(maps, codec)
    keypoints, scores = np.asarray(keypoints), np.asarray(scores)
    assert keypoints.shape == (6, 17, 2) and scores.shape == (6, 17)
    tolerance = 1e-3 if refine == "dark" else 1e-4  # DARK: float32 log vs float64
    np.testing.assert_allclose(keypoints, expected_keypoints, atol=tolerance)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-6)


def test_graph_blur_is_cv2_blur_of_the_zero_padded_map():
    rng = np.random.default_rng(8)
    maps = rng.random((2, 9, 7, 3)).astype(np.float32)
    for kernel, border in ((21, 10), (5, 10), (7, 0), (9, 2), (23, 3)):
        padded = np.pad(maps, ((0, 0), (border, border), (border, border), (0, 0)))
        expected = np.stack([
            np.stack([opencv4_blur(m[..., c], kernel) for c in range(3)], -1) for m in padded
        ])
        blurred = np.asarray(graph.gaussian_blur(maps, kernel, border=border))
        np.testing.assert_allclose(blurred, expected, atol=1e-6)


def test_graph_argmax_breaks_ties_like_numpy():
    maps = np.zeros((1, 4, 5, 3), np.float32)
    maps[0, 2, 3, 0] = maps[0, 1, 4, 0] = maps[0, 2, 1, 0] = 7.0  # first in row-major: (1, 4)
    maps[0, :, :, 2] = -1.0  # all equal: (0, 0)
    maps[0, 3, 4, 1] = 1.0
    row, col, peak = (np.asarray(t).reshape(3) for t in graph.argmax_cells(maps))
    np.testing.assert_array_equal(row, [1, 3, 0])
    np.testing.assert_array_equal(col, [4, 4, 0])
    np.testing.assert_array_equal(peak, [7, 1, -1])
    root = np.asarray(graph.inverse_sqrt(np.arange(1, 200, dtype=np.float32), 199.0))
    np.testing.assert_allclose(root, 1 / np.sqrt(np.arange(1, 200)), rtol=1e-6)


def test_graph_decode_converts_to_gpu_delegate_ops():
    tf = pytest.importorskip("tensorflow")
    from ai_edge_litert.interpreter import Interpreter

    from keras_pose.export.gpu_ops import gpu_delegate_problems

    for codec in (megvii(7, "cpn"), msra("hourglass")):
        h, w = codec.heatmap_size

        @tf.function(input_signature=[tf.TensorSpec((None, h, w, 17), tf.float32)])
        def decode(x, codec=codec):
            return graph.decode_graph(x, codec)

        content = tf.lite.TFLiteConverter.from_concrete_functions(
            [decode.get_concrete_function()], decode
        ).convert()
        assert gpu_delegate_problems(content) == []
        maps = smooth_maps(np.random.default_rng(9), 2, (h, w), 17, codec.peak)
        interpreter = Interpreter(model_content=content)
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, maps.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, maps)
        interpreter.invoke()
        outputs = {len(d["shape"]): interpreter.get_tensor(d["index"])
                   for d in interpreter.get_output_details()}
        expected_keypoints, expected_scores = codec.decode(maps)
        np.testing.assert_allclose(outputs[3], expected_keypoints, atol=1e-4)
        np.testing.assert_allclose(outputs[2], expected_scores, rtol=1e-5)
