"""MSPN: parameter counts against MMPose and the originals, outputs, wiring, spec, round trips,
a training step."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from model_checks import check_outputs, random_crops

from keras_pose.layers import BilinearUpsample
from keras_pose.models.mspn import MSPNModel, multi_stage_spec, output_names

# MMPose 1.3.2, measured (td-hm_mspn50 / 2x / 3x / 4x, 256x192): MMPose's convs before BN have
# no bias; the original's (nn.Conv2d default) do. docs/provenance.md#counts: analytic counts of the
# original code, conv biases included.
MSPN_PARAMS = {  # stages: (MMPose, originals' analytic)
    1: (25_112_264, 25.1e6),
    2: (56_800_464, 56.9e6),
    3: (88_488_664, 88.6e6),
    4: (120_176_864, 120.3e6),
}
SMALL_INPUT = (128, 96, 3)


COUNT_SCRIPT = """
import json, sys
import numpy as np
from keras_pose.models.mspn import MSPNModel
from keras_pose.models.rsn import RSNModel

def size(weights):
    return int(sum(np.prod(w.shape) for w in weights))

counts = {}
for key, (family, kwargs) in json.loads(sys.argv[1]).items():
    model = {"MSPN": MSPNModel, "RSN": RSNModel}[family](**kwargs)
    trainable = model.trainable_weights
    counts[key] = dict(
        trainable=size(trainable),
        total=size(model.weights),
        conv_bias=size(w for w in trainable if w.path.endswith("conv/bias")),
        bn_affine=size(w for w in trainable if w.path.endswith(("gamma", "beta"))),
    )
print(json.dumps(counts))
"""


def count_parameters(models: dict[str, tuple[str, dict]]) -> dict[str, dict[str, int]]:
    """Parameter counts of full-size models, ``{key: (class name, kwargs)}``.

    Counted in one ``KERAS_BACKEND=numpy`` subprocess: the counts do not depend on the backend,
    and creating ~10^4 TensorFlow variables for eight full-size models costs twice the time.
    """
    env = dict(os.environ, KERAS_BACKEND="numpy")
    result = subprocess.run(
        [sys.executable, "-c", COUNT_SCRIPT, json.dumps(models)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_parameter_counts(counts: dict[str, int], mmpose: int, original: float) -> None:
    """Without conv biases the count is MMPose's exactly; with them it is the original's."""
    trainable = counts["trainable"]
    assert trainable - counts["conv_bias"] == mmpose
    assert abs(trainable - original) / original < 0.005, (trainable, original)
    # non-trainable = BN moving mean + variance, as many as BN gamma + beta
    assert counts["total"] - trainable == counts["bn_affine"]


def check_bn_and_bias(model: keras.Model, epsilon: float, momentum: float) -> None:
    layers = list(model._flatten_layers(include_self=False, recursive=True))
    bns = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    conv_types = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
    convs = [layer for layer in layers if isinstance(layer, conv_types)]
    assert bns and convs and len(bns) == len(convs)  # every conv is followed by a BN
    assert {(bn.epsilon, bn.momentum) for bn in bns} == {(epsilon, momentum)}
    assert all(conv.use_bias for conv in convs)


def check_weight_decay(model: keras.Model, weight_decay: float) -> None:
    """Coupled decay ``wd`` on the kernels = L2 penalty ``wd / 2 * sum(k^2)``."""
    kernels = [w for w in model.trainable_weights if w.path.endswith("kernel")]
    expected = weight_decay / 2 * sum(float(np.sum(np.square(np.asarray(k)))) for k in kernels)
    got = float(sum(float(loss) for loss in model.losses))
    assert len(model.losses) == len(kernels)
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def one_training_step(model) -> float:
    """One ``fit`` step with the default losses and optimizer, targets on the 0..255 scale.

    Eager: tracing the ~80k-op TF train step of even RSN-18 takes minutes on 2 shared cores;
    the graph (and XLA, under jax) forward pass is covered by the round-trip checks."""
    rng = np.random.default_rng(0)
    x = random_crops(model, batch=2)
    h, w = model.spec.heatmap_size()
    k = model.spec.num_keypoints
    names = model.spec.output_names
    y = {name: rng.uniform(0, 255, (2, h, w, k)).astype("float32") for name in names}
    weights = {name: np.ones((2, k), "float32") for name in names}
    kernel = model.get_layer("stem_conv").conv.kernel
    before = np.asarray(kernel).copy()
    model.compile(run_eagerly=True)
    history = model.fit(x, y, sample_weight=weights, batch_size=2, epochs=1, verbose=0)
    assert not np.allclose(np.asarray(kernel), before), "the step did not update the weights"
    return float(history.history["loss"][-1])


@pytest.fixture(scope="module")
def mspn_counts():
    return count_parameters({str(s): ("MSPN", {"num_stages": s}) for s in MSPN_PARAMS})


@pytest.mark.parametrize("stages", sorted(MSPN_PARAMS))
def test_parameter_counts_match_mmpose_and_original(mspn_counts, stages):
    check_parameter_counts(mspn_counts[str(stages)], *MSPN_PARAMS[stages])


@pytest.fixture(scope="module")
def small_mspn():
    return MSPNModel(num_stages=2, input_shape=SMALL_INPUT)


def test_outputs_named_coarse_to_fine_with_heatmaps_last(small_mspn):
    names = output_names(2)
    assert names == [
        *(f"stage1_unit{u}" for u in range(1, 5)),
        *(f"stage2_unit{u}" for u in range(1, 4)),
        "heatmaps",
    ]
    check_outputs(small_mspn, {name: (32, 24) for name in names})
    for name in names:
        layer = small_mspn.get_layer(name)
        assert isinstance(layer, BilinearUpsample) and layer.mode == "align_corners"


def test_architecture_follows_the_original(small_mspn):
    model = small_mspn
    check_bn_and_bias(model, 1e-5, 0.9)
    # stem: 7x7/s2 conv 64 then a 3x3/s2 pool: stride 4, 64 channels
    assert model.get_layer("stem_conv").kernel_size == 7
    assert tuple(model.get_layer("stem_pool").output.shape[1:]) == (32, 24, 64)
    # the units read x4..x1 = 2048/1024/512/256 channels at strides 32/16/8/4
    levels = [(2048, 4, 3), (1024, 8, 6), (512, 16, 12), (256, 32, 24)]
    for unit, (channels, h, w) in enumerate(levels, 1):
        lateral = model.get_layer(f"stage1_unit{unit}_lateral")
        assert tuple(lateral.input.shape[1:]) == (h, w, channels)
        assert lateral.filters == 256 and lateral.activation is None
        if unit > 1:
            assert model.get_layer(f"stage1_unit{unit}_upsample").size == (h, w)
        assert model.get_layer(f"stage1_unit{unit}_head_conv2").activation is None
    # ResNet-50 layers [3, 4, 6, 3] of torchvision bottlenecks with the stride on the 3x3
    for layer, count in enumerate([3, 4, 6, 3], 1):
        model.get_layer(f"stage1_layer{layer}_block{count}")
        with pytest.raises(ValueError):
            model.get_layer(f"stage1_layer{layer}_block{count + 1}")
    block = model.get_layer("stage1_layer2_block1")
    assert block.conv2.strides == 2 and block.conv1.strides == 1 and block.use_bias
    # cross-stage aggregation only into stage 2; the last stage generates nothing
    for layer in range(1, 5):
        assert len(model.get_layer(f"stage2_layer{layer}_aggregate").input) == 3
        with pytest.raises(ValueError):
            model.get_layer(f"stage1_layer{layer}_aggregate")
    assert model.get_layer("stage1_cross_conv").filters == 64
    for name in ("stage2_cross_conv", "stage2_unit1_skip1", "stage2_unit4_skip2"):
        with pytest.raises(ValueError):
            model.get_layer(name)
    check_weight_decay(model, 1e-5)


def test_cross_stage_paths_feed_only_the_next_stage(small_mspn):
    """Perturbing a skip1, a skip2 or the cross conv of stage 1 changes stage 2 only."""
    model = small_mspn
    x = random_crops(model, batch=1)
    before = model(x, training=False)
    for layer_name in ("stage1_unit2_skip1", "stage1_unit3_skip2", "stage1_cross_conv"):
        kernel = model.get_layer(layer_name).conv.kernel
        original = np.asarray(kernel)
        try:
            kernel.assign(original + np.random.default_rng(1).normal(0, 0.5, original.shape))
            after = model(x, training=False)
        finally:
            kernel.assign(original)
        for name in model.spec.output_names:
            changed = not np.allclose(after[name], before[name], atol=1e-6)
            assert changed == name.startswith(("stage2", "heatmaps")), (layer_name, name)


def test_spec_coarse_to_fine_targets_and_test_box(small_mspn):
    spec = small_mspn.spec
    assert spec.family == "mspn" and spec.channel_order == "BGR" and spec.final_output == "heatmaps"
    assert [o.codec.kernel_size for o in spec.outputs] == [15, 11, 9, 7, 11, 9, 7, 5]
    assert [o.loss for o in spec.outputs] == ["mse", "mse", "mse", "ohkm"] * 2
    assert [o.loss_weight for o in spec.outputs] == [0.25, 0.25, 0.25, 1.0] * 2
    assert all(o.codec.decode_blur == 5 and not o.codec.decode_normalize for o in spec.outputs)
    assert all(o.stride == 4 for o in spec.outputs)
    # MSPN's COCO test box: x * (1 + 0.09), y * (1 + 0.135), then the aspect-ratio fix
    assert spec.box_extension == (1.09, 1.135) and spec.flip_test
    one_stage = multi_stage_spec("mspn", (64, 64), 17, num_stages=1)
    assert [o.codec.kernel_size for o in one_stage.outputs] == [11, 9, 7, 5]


def test_normalization_is_bgr_imagenet(small_mspn):
    layer = small_mspn.get_layer("normalize")
    np.testing.assert_allclose(layer.mean, np.array([0.406, 0.456, 0.485]) * 255)
    np.testing.assert_allclose(layer.std, np.array([0.225, 0.224, 0.229]) * 255)


def test_one_training_step_gives_a_finite_loss():
    model = MSPNModel(num_stages=1, input_shape=(64, 64, 3))
    loss = one_training_step(model)
    assert np.isfinite(loss) and loss > 0


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="multiples of 32"):
        MSPNModel(input_shape=(250, 192, 3))
    with pytest.raises(ValueError, match="num_stages"):
        MSPNModel(num_stages=0, input_shape=(64, 64, 3))
