"""RSN: parameter counts, RSB widths in the network, PRM at the output end, builders, round
trips, a training step."""

import os

import keras
import numpy as np
import pytest
from model_checks import check_outputs, random_crops
from test_mspn import (
    check_bn_and_bias,
    check_parameter_counts,
    check_weight_decay,
    count_parameters,
    one_training_step,
)

from keras_pose.layers.prm import PoseRefineMachine
from keras_pose.layers.rsb import ResidualStepsBlock
from keras_pose.models.mspn import output_names
from keras_pose.models.rsn import RSN18, RSN50, RSNModel

# (depth, stages): (MMPose 1.3.2 measured, PRM off, 256x192 — no conv biases;
#                   the original's count with conv biases: docs/provenance.md#counts)
RSN_PARAMS = {
    (18, 1): (9_144_936, 9.16e6),
    (50, 1): (19_328_584, 19.4e6),
    (50, 2): (39_261_904, 39.3e6),  # MMPose table (§6.5): 39.3M
}
# 4xRSN-50: no MMPose config; the originals' analytic figure only
FOUR_X_RSN50 = 79.2e6
SMALL_INPUT = (128, 96, 3)


@pytest.fixture(scope="module")
def rsn_counts():
    models = {f"{d}x{s}": ("RSN", {"depth": d, "num_stages": s}) for d, s in RSN_PARAMS}
    models["50x4"] = ("RSN", {"depth": 50, "num_stages": 4})
    models["18x1_prm"] = ("RSN", {"depth": 18, "use_prm": True})
    return count_parameters(models)


@pytest.mark.parametrize("depth, stages", sorted(RSN_PARAMS))
def test_parameter_counts_match_mmpose_and_original(rsn_counts, depth, stages):
    check_parameter_counts(rsn_counts[f"{depth}x{stages}"], *RSN_PARAMS[(depth, stages)])


def test_four_stage_rsn50_parameter_count(rsn_counts):
    trainable = rsn_counts["50x4"]["trainable"]
    assert abs(trainable - FOUR_X_RSN50) / FOUR_X_RSN50 < 0.005, trainable


def test_prm_adds_its_own_parameters_only(rsn_counts):
    k = 17  # 3x3 KxK, three 1x1 KxK, a 9x9 depthwise, all with bias; five BNs
    prm = (9 * k * k + k) + 3 * (k * k + k) + (81 * k + k) + 5 * 2 * k
    assert rsn_counts["18x1_prm"]["trainable"] - rsn_counts["18x1"]["trainable"] == prm


@pytest.fixture(scope="module")
def small_rsn():
    return RSNModel(
        depth=18, use_prm=True, input_shape=SMALL_INPUT, bn_epsilon=1e-3, bn_momentum=0.99
    )


def test_outputs_and_prm_at_the_output_end(small_rsn):
    names = output_names(1)
    assert names == ["stage1_unit1", "stage1_unit2", "stage1_unit3", "heatmaps"]
    outputs = check_outputs(small_rsn, {name: (32, 24) for name in names})
    prm = small_rsn.get_layer("heatmaps")
    assert isinstance(prm, PoseRefineMachine)
    resized = small_rsn.get_layer("stage1_unit4_resize").output
    assert prm.input is resized
    # only the final output is refined: the PRM's own maths on the unrefined map
    unrefined = keras.Model(small_rsn.input, resized)(random_crops(small_rsn), training=False)
    np.testing.assert_allclose(
        np.asarray(outputs["heatmaps"]), np.asarray(prm(unrefined, training=False)), atol=1e-4
    )
    assert sum(isinstance(layer, PoseRefineMachine) for layer in small_rsn.layers) == 1


def test_rsb_widths_strides_and_bn_constants(small_rsn):
    blocks = [
        small_rsn.get_layer(f"stage1_layer{layer}_block{b}")
        for layer in range(1, 5)
        for b in (1, 2)
    ]
    assert all(isinstance(block, ResidualStepsBlock) for block in blocks)
    assert [block.branch_filters for block in blocks] == [26, 26, 26, 52, 52, 104, 104, 208]
    assert [block.filters for block in blocks] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [block.strides for block in blocks] == [1, 1, 2, 1, 2, 1, 2, 1]
    assert [block.shortcut is not None for block in blocks] == [False] * 2 + [True, False] * 3
    # the up units read 512/256/128/64 channels (expansion 1)
    laterals = [small_rsn.get_layer(f"stage1_unit{u}_lateral") for u in range(1, 5)]
    assert [lateral.input.shape[-1] for lateral in laterals] == [512, 256, 128, 64]
    check_bn_and_bias(small_rsn, 1e-3, 0.99)  # the PRM's BNs included
    check_weight_decay(small_rsn, 1e-5)


def test_spec_and_config(small_rsn):
    spec = small_rsn.spec
    assert spec.family == "rsn" and spec.channel_order == "BGR"
    assert [o.codec.kernel_size for o in spec.outputs] == [11, 9, 7, 5]
    assert [o.loss for o in spec.outputs] == ["mse", "mse", "mse", "ohkm"]
    assert spec.box_extension == (1.09, 1.135)
    config = small_rsn.get_config()
    assert {k: config[k] for k in ("depth", "num_stages", "use_prm", "input_shape")} == {
        "depth": 18,
        "num_stages": 1,
        "use_prm": True,
        "input_shape": [128, 96, 3],
    }


def test_label_kernels_are_a_constructor_option():
    """The main job's 32x24 heatmaps use narrower label kernels; the option travels with the
    model's config, and the targets follow the spec."""
    from keras_pose.data.targets import make_targets
    from keras_pose.models import MSPN50

    model = RSN18(input_shape=(64, 64, 3), compile=False, target_kernels=(7, 5, 5, 3, 3))
    assert [o.codec.kernel_size for o in model.spec.outputs] == [5, 5, 3, 3]
    twin = RSNModel.from_config(model.get_config())
    assert twin.spec == model.spec and twin.get_config()["target_kernels"] == [7, 5, 5, 3, 3]
    two_stage = MSPN50(input_shape=(64, 64, 3), num_stages=2, compile=False,
                       target_kernels=[7, 5, 5, 3, 3])
    assert [o.codec.kernel_size for o in two_stage.spec.outputs] == [7, 5, 5, 3, 5, 5, 3, 3]
    keypoints = np.zeros((17, 3), np.float32)
    keypoints[0] = (30.0, 30.0, 2.0)
    original = RSN18(input_shape=(64, 64, 3), compile=False).spec
    wide, narrow = (make_targets(spec, keypoints)[0]["heatmaps"][..., 0]
                    for spec in (original, model.spec))
    assert wide.max() == narrow.max() and (narrow > 1).sum() < (wide > 1).sum()
    for bad in ((7, 5, 5, 3), (7, 5, 5, 3, 2), (7, 5, 5, 3, 0)):
        with pytest.raises(ValueError, match="target_kernels"):
            RSN18(input_shape=(64, 64, 3), compile=False, target_kernels=bad)


def test_builders_train_one_step_and_load_weights(tmp_path):
    model = RSN18(input_shape=(64, 64, 3), num_keypoints=5)
    assert isinstance(model, RSNModel) and model.get_config()["depth"] == 18
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    np.testing.assert_allclose(float(model.optimizer.learning_rate), 5e-4)
    loss = one_training_step(model)
    assert np.isfinite(loss) and loss > 0
    path = os.path.join(tmp_path, "rsn18.weights.h5")
    model.save_weights(path)
    loaded = RSN18(input_shape=(64, 64, 3), num_keypoints=5, weights=path, compile=False)
    x = random_crops(model, batch=1)
    np.testing.assert_array_equal(
        np.asarray(loaded(x, training=False)["heatmaps"]),
        np.asarray(model(x, training=False)["heatmaps"]),
    )
    with pytest.raises(FileNotFoundError):
        RSN18(input_shape=(64, 64, 3), weights=os.path.join(tmp_path, "missing.weights.h5"))


def test_rsn50_builder_options():
    model = RSN50(input_shape=(64, 64, 3), weight_decay=0, compile=False, name="r50")
    config = model.get_config()
    assert (config["depth"], config["num_stages"], config["weight_decay"]) == (50, 1, 0)
    assert model.name == "r50" and not model.compiled and not model.losses
    assert model.get_layer("stage1_layer3_block6")
    with pytest.raises(ValueError):
        model.get_layer("stage1_layer3_block7")


def test_rejects_unknown_depth():
    with pytest.raises(ValueError, match="depth"):
        RSNModel(depth=34, input_shape=(64, 64, 3))
