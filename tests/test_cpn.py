"""CPN: parameter counts against the original graph, outputs, BN constants, losses, saving."""

import functools

import keras
import numpy as np
import pytest

from keras_pose.layers import BilinearUpsample, ConvBN
from keras_pose.losses import KeypointMSE, OHKMLoss
from keras_pose.models.cpn import CPN50, CPN101, CPNModel, cpn_spec, tfcpn_variable_name
from tests.model_checks import (
    all_params,
    check_outputs,
    random_crops,
    trainable_params,
)

SMALL = (128, 96, 3)
GLOBAL_NAMES = ["global_c2", "global_c3", "global_c4", "global_c5"]


@functools.cache
def small_cpn50() -> CPNModel:
    """CPN-50 at 128x96 (every layer of the full model, a quarter of its pixels)."""
    return CPN50(input_shape=SMALL)


@functools.cache
def full_cpn50() -> CPNModel:
    return CPN50(compile=False)


@functools.cache
def tiny_cpn18() -> CPNModel:
    """The smallest CPN (ResNet-18 trunk, 64x48, 5 keypoints) with non-default BN constants."""
    return CPNModel(
        backbone="resnet18",
        input_shape=(64, 48, 3),
        num_keypoints=5,
        bn_epsilon=1e-3,
        bn_momentum=0.9,
        name="tiny_cpn",
    )


def batch_norms(model):
    bn = keras.layers.BatchNormalization
    return [layer for layer in model._flatten_layers() if isinstance(layer, bn)]


def test_cpn50_parameters_equal_the_tf_cpn_graph():
    # docs/provenance.md#tfcpn-graph: the tf-cpn res50 256x192 graph has 27,009,770 trainable
    # parameters; its 446 variables (tfcpn_res50_variables.tsv) hold 27,074,836 values with BN
    # statistics.
    model = full_cpn50()
    assert trainable_params(model) == 27_009_770
    assert all_params(model) == 27_074_836


def test_cpn101_parameters():
    # ResNet-101 adds 17 bottleneck units of width 1024 to block3
    # (docs/provenance.md#counts: 46.0M).
    model = CPN101(compile=False)
    unit = 2 * (1024 * 256) + 9 * 256 * 256 + 2 * (2 * 256) + 2 * 1024
    assert trainable_params(model) == 27_009_770 + 17 * unit
    assert abs(trainable_params(model) / 46.0e6 - 1) < 0.005


def test_every_variable_has_its_tf_cpn_name():
    model = full_cpn50()
    names = {tfcpn_variable_name(v.path): tuple(v.shape) for v in model.weights}
    assert len(names) == len(model.weights) == 446
    # one entry of every kind in tfcpn_res50_variables.tsv, with its shape
    expected = {
        "resnet_v1_50/conv1/weights": (7, 7, 3, 64),
        "resnet_v1_50/conv1/BatchNorm/moving_variance": (64,),
        "resnet_v1_50/block2/unit_1/bottleneck_v1/shortcut/weights": (1, 1, 256, 512),
        "resnet_v1_50/block3/unit_6/bottleneck_v1/conv2/weights": (3, 3, 256, 256),
        "resnet_v1_50/block4/unit_3/bottleneck_v1/conv3/BatchNorm/gamma": (2048,),
        "lateral/res5/weights": (1, 1, 2048, 256),
        "merge/res2/weights": (1, 1, 256, 256),
        "merge/res4/biases": (256,),
        "tmp/res3/BatchNorm/beta": (256,),
        "pyramid/res2/weights": (3, 3, 256, 17),
        "res5/refine_conv2/conv3/weights": (1, 1, 128, 256),
        "final_bottleneck/shortcut/weights": (1, 1, 1024, 256),
        "refine_out/weights": (3, 3, 256, 17),
        "refine_out/BatchNorm/moving_mean": (17,),
    }
    assert {name: names.get(name) for name in expected} == expected
    assert not any(name.startswith("res2/") for name in names)  # C2 gets no refine bottleneck
    assert sum(name.startswith("merge/") for name in names) == 6  # res2..res4, weights + biases


def test_outputs_names_and_shapes():
    model = small_cpn50()
    check_outputs(model, {name: (32, 24) for name in model.spec.output_names})
    assert model.spec.heatmap_size() == (32, 24)
    assert model.output_names == GLOBAL_NAMES + ["heatmaps"]


def test_heads_follow_the_tf_cpn_graph():
    model = small_cpn50()
    for level in (2, 3, 4, 5):
        assert type(model.get_layer(f"global_c{level}")) is BilinearUpsample
        assert model.get_layer(f"global_c{level}").mode == "tf_legacy"
        for name, kernel, relu in [("lateral", 1, True), ("tmp", 1, True), ("pyramid", 3, False)]:
            layer = model.get_layer(f"{name}_res{level}")
            assert isinstance(layer, ConvBN) and layer.use_bn and not layer.use_bias
            assert (layer.kernel_size, layer.activation == "relu") == (kernel, relu), layer.name
    for level in (2, 3, 4):  # merge: 1x1 conv with bias, no BN, no activation
        merge = model.get_layer(f"merge_res{level}")
        assert type(merge) is keras.layers.Conv2D and merge.use_bias
        assert merge.activation is keras.activations.linear
    refine_out = model.get_layer("heatmaps")  # 3x3 conv + BN, no ReLU
    assert (refine_out.kernel_size, refine_out.use_bn, refine_out.activation) == (3, True, None)
    assert model.get_layer("final_bottleneck").shortcut is not None
    assert all(model.get_layer(f"res5_refine_conv{j}").shortcut is None for j in range(3))


def test_bn_constants_of_every_batch_norm():
    model = small_cpn50()
    layers = batch_norms(model)
    # backbone 53 (1 + 16 units x 3 + 4 shortcuts) + GlobalNet 12 + RefineNet 6x3 + 4 + 1
    assert len(layers) == 88
    assert {(layer.epsilon, layer.momentum) for layer in layers} == {(1.001e-5, 0.99)}
    assert {(layer.epsilon, layer.momentum) for layer in batch_norms(tiny_cpn18())} == {(1e-3, 0.9)}


def test_weight_decay_is_slim_l2_on_every_conv_but_merge():
    model = small_cpn50()
    kernels = [v for v in model.trainable_weights if v.path.endswith("kernel")]
    decayed = [v for v in kernels if not v.path.startswith("merge_")]
    expected = 1e-5 * sum(float(np.sum(np.square(v.numpy()))) for v in decayed) / 2
    got = float(sum(float(loss) for loss in model.losses))
    assert len(model.losses) == len(decayed) == len(kernels) - 3
    assert got == pytest.approx(expected, rel=1e-4)


def test_spec_follows_tf_cpn_configs():
    spec = small_cpn50().spec
    assert [o.codec.kernel_size for o in spec.outputs] == [15, 11, 9, 7, 7]
    assert [o.codec.kernel_size for o in cpn_spec((384, 288)).outputs] == [23, 17, 13, 9, 9]
    assert spec.channel_order == "BGR" and spec.box_extension == (1.2, 1.3)
    assert all(o.stride == 4 for o in spec.outputs)
    assert all(o.codec.decode_blur == 21 and o.codec.decode_normalize for o in spec.outputs)
    losses = [
        (o.loss, o.loss_weight, o.target_min_visibility, o.weight_min_visibility)
        for o in spec.outputs
    ]
    assert losses == [("mse", 0.125, 2, 0)] * 4 + [("ohkm", 1.0, 1, 1)]


def _tf_cpn_loss(y_true, y_pred, valid):
    """network.py's loss: mean L2 of the four global maps /4 /2 + OHKM top-8 on the refine map."""
    global_loss = sum(np.mean((y_pred[n] - y_true[n]) ** 2) for n in GLOBAL_NAMES) / 4 / 2
    per_joint = np.mean((y_pred["heatmaps"] - y_true["heatmaps"]) ** 2, axis=(1, 2)) * (valid > 0.1)
    refine_loss = np.mean(np.sort(per_joint, axis=1)[:, -8:].sum(axis=1) / 8)
    return global_loss + refine_loss


def _random_targets(model, batch, seed):
    rng = np.random.default_rng(seed)
    h, w = model.spec.heatmap_size()
    k = model.spec.num_keypoints
    y = {
        name: rng.uniform(0, 1, (batch, h, w, k)).astype("float32")
        for name in model.spec.output_names
    }
    valid = rng.integers(0, 3, (batch, k)).astype("float32")
    weights = {name: np.ones((batch, k), "float32") for name in GLOBAL_NAMES}
    weights["heatmaps"] = (valid >= 1).astype("float32")
    return y, valid, weights


def test_compile_defaults_give_the_tf_cpn_loss():
    model = small_cpn50()
    assert all(type(model.loss[n]) is KeypointMSE for n in GLOBAL_NAMES)
    assert type(model.loss["heatmaps"]) is OHKMLoss and model.loss["heatmaps"].top_k == 8
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(5e-4)

    x = random_crops(model, batch=2)
    y, valid, weights = _random_targets(model, 2, seed=5)
    y_pred = {k: np.asarray(v) for k, v in model(x, training=False).items()}
    total = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=weights, training=False)
    regularization = float(sum(float(loss) for loss in model.losses))
    assert float(total) - regularization == pytest.approx(_tf_cpn_loss(y, y_pred, valid), rel=1e-4)


def test_one_training_step_gives_a_finite_loss():
    # Eager: tracing CPN's train step into a graph costs ~35-60 s of CPU, the step itself <1 s.
    model = small_cpn50()
    model.compile(run_eagerly=True)
    x = random_crops(model, batch=2)
    y, _, weights = _random_targets(model, 2, seed=6)
    before = model.get_layer("heatmaps").conv.kernel.numpy().copy()
    history = model.fit(x, y, sample_weight=weights, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.array_equal(model.get_layer("heatmaps").conv.kernel.numpy(), before)


def test_backbone_name_and_input_checks():
    model = tiny_cpn18()
    assert model.depth == 18 and model.get_config()["depth"] == 18
    assert model.get_layer("block1_unit_1").__class__.__name__ == "BasicBlock"
    assert small_cpn50().name == "cpn50"
    with pytest.raises(ValueError, match="backbone"):
        CPNModel(backbone="vgg16")
    with pytest.raises(ValueError, match="static"):
        CPNModel(input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="multiples of 4"):
        CPNModel(input_shape=(130, 96, 3))


def test_builder_loads_weights_saved_at_another_size(tmp_path):
    source = small_cpn50()
    path = str(tmp_path / "cpn50.weights.h5")
    source.save_weights(path)
    loaded = CPN50(input_shape=(64, 48, 3), weights=path, compile=False)
    assert loaded.spec.input_size == (64, 48)
    for a, b in zip(source.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
