"""tf-cpn checkpoint import: a TF1-style checkpoint written here (tf.compat.v1 Saver, the exact
variable names and shapes of the original graph, random values) loads into CPN50, every value
where its name says, and the Keras model matches an independent raw-TF re-implementation of
tf-cpn's graph run on the checkpoint's tensors.

The original graph itself (tf-cpn's network.py on tf_slim) is not available here; the reference
below is written from tf-cpn's source structure (``docs/provenance.md#cpn``, ``#tfcpn-graph``),
not from our model."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_pose.convert import (
    WeightMappingError,
    load_tfcpn_checkpoint,
    load_tfcpn_weights,
    read_tf_checkpoint,
)
from keras_pose.models.cpn import CPNModel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIABLES_TSV = "/work/shared/reference/tfcpn_res50_variables.tsv"
INPUT_SHAPE = (64, 48, 3)
EPS = 1.001e-5
MEAN_BGR = np.array([102.9801, 115.9465, 122.7717], np.float32)
UNITS_R50 = (3, 4, 6, 3)


def tfcpn_r50_variables() -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every variable of tf-cpn's COCO.res50 graph."""
    if os.path.exists(VARIABLES_TSV):
        rows = []
        with open(VARIABLES_TSV) as handle:
            for line in handle:
                if line.startswith("#") or not line.strip():
                    continue
                name, shape = line.split("\t")[:2]
                rows.append((name, tuple(int(s) for s in shape.strip("[]").split(","))))
        return rows
    return _variables_from_scheme()


def _conv_bn_vars(scope, k, cin, cout):
    rows = [(f"{scope}/weights", (k, k, cin, cout))]
    rows += [
        (f"{scope}/BatchNorm/{p}", (cout,))
        for p in ("gamma", "beta", "moving_mean", "moving_variance")
    ]
    return rows


def _variables_from_scheme(depth_units=UNITS_R50, depth=50, k=17):
    """The same list written out from tf-cpn's scheme (used when the reference TSV is absent)."""
    rows = _conv_bn_vars(f"resnet_v1_{depth}/conv1", 7, 3, 64)
    cin = 64
    for b, (units, mid) in enumerate(zip(depth_units, (64, 128, 256, 512)), 1):
        for u in range(1, units + 1):
            scope = f"resnet_v1_{depth}/block{b}/unit_{u}/bottleneck_v1"
            if u == 1:
                rows += _conv_bn_vars(f"{scope}/shortcut", 1, cin, mid * 4)
            rows += _conv_bn_vars(f"{scope}/conv1", 1, cin, mid)
            rows += _conv_bn_vars(f"{scope}/conv2", 3, mid, mid)
            rows += _conv_bn_vars(f"{scope}/conv3", 1, mid, mid * 4)
            cin = mid * 4
    for level, c in ((5, 2048), (4, 1024), (3, 512), (2, 256)):
        rows += _conv_bn_vars(f"lateral/res{level}", 1, c, 256)
        if level != 5:
            rows += [
                (f"merge/res{level}/weights", (1, 1, 256, 256)),
                (f"merge/res{level}/biases", (256,)),
            ]
        rows += _conv_bn_vars(f"tmp/res{level}", 1, 256, 256)
        rows += _conv_bn_vars(f"pyramid/res{level}", 3, 256, k)
    for level in (3, 4, 5):
        for j in range(level - 2):
            scope = f"res{level}/refine_conv{j}"
            rows += _conv_bn_vars(f"{scope}/conv1", 1, 256, 128)
            rows += _conv_bn_vars(f"{scope}/conv2", 3, 128, 128)
            rows += _conv_bn_vars(f"{scope}/conv3", 1, 128, 256)
    rows += _conv_bn_vars("final_bottleneck/shortcut", 1, 1024, 256)
    rows += _conv_bn_vars("final_bottleneck/conv1", 1, 1024, 128)
    rows += _conv_bn_vars("final_bottleneck/conv2", 3, 128, 128)
    rows += _conv_bn_vars("final_bottleneck/conv3", 1, 128, 256)
    rows += _conv_bn_vars("refine_out", 3, 256, k)
    return rows


def random_value(name: str, shape, rng) -> np.ndarray:
    """Values that keep a 50-layer forward pass well scaled; BN statistics matter."""
    if name.endswith("weights"):
        fan_in = int(np.prod(shape[:-1]))
        return rng.normal(0, np.sqrt(1.0 / fan_in), shape).astype(np.float32)
    if name.endswith("moving_variance"):
        return rng.uniform(0.5, 2.0, shape).astype(np.float32)
    if name.endswith("gamma"):
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    return rng.normal(0, 0.2, shape).astype(np.float32)


def write_tf1_checkpoint(prefix: str, variables, seed=0, extra=()) -> dict[str, np.ndarray]:
    """A TF1 Saver checkpoint (graph mode) with exactly ``variables`` plus ``extra`` entries."""
    rng = np.random.default_rng(seed)
    values = {name: random_value(name, shape, rng) for name, shape in list(variables) + list(extra)}
    with tf.Graph().as_default():
        var_list = {
            name: tf.compat.v1.get_variable(name.replace(":", "_"), initializer=value)
            for name, value in values.items()
        }
        saver = tf.compat.v1.train.Saver(var_list=var_list)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, prefix, write_meta_graph=False)
    return values


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("tfcpn") / "snapshot_350.ckpt")
    extra = [
        ("global_step", ()),
        ("beta1_power", ()),
        ("resnet_v1_50/conv1/weights/Adam", (7, 7, 3, 64)),
        ("refine_out/BatchNorm/gamma/Adam_1", (17,)),
    ]
    values = write_tf1_checkpoint(prefix, tfcpn_r50_variables(), extra=extra)
    return prefix, values


@pytest.fixture(scope="module")
def loaded(checkpoint):
    prefix, _ = checkpoint
    model = CPNModel(depth=50, input_shape=INPUT_SHAPE)
    count = load_tfcpn_checkpoint(model, prefix)
    return model, count


def test_checkpoint_has_tf1_keys(checkpoint):
    prefix, values = checkpoint
    stored = read_tf_checkpoint(prefix)
    assert set(stored) == set(values)
    assert "resnet_v1_50/block2/unit_1/bottleneck_v1/conv2/BatchNorm/moving_variance" in stored


def test_every_variable_used_once(loaded, checkpoint):
    model, count = loaded
    names = [n for n, _ in tfcpn_r50_variables()]
    assert count == len(model.weights) == len(names) == 446


@pytest.mark.parametrize(
    "keras_path, tf_name",
    [
        ("conv1/conv/kernel", "resnet_v1_50/conv1/weights"),
        ("block2_unit_1/conv2/bn/gamma",
         "resnet_v1_50/block2/unit_1/bottleneck_v1/conv2/BatchNorm/gamma"),
        ("block3_unit_6/conv3/bn/moving_variance",
         "resnet_v1_50/block3/unit_6/bottleneck_v1/conv3/BatchNorm/moving_variance"),
        ("block4_unit_1/shortcut/conv/kernel",
         "resnet_v1_50/block4/unit_1/bottleneck_v1/shortcut/weights"),
        ("lateral_res5/bn/beta", "lateral/res5/BatchNorm/beta"),
        ("merge_res3/kernel", "merge/res3/weights"),
        ("merge_res2/bias", "merge/res2/biases"),
        ("pyramid_res4/conv/kernel", "pyramid/res4/weights"),
        ("tmp_res2/bn/moving_mean", "tmp/res2/BatchNorm/moving_mean"),
        ("res5_refine_conv2/conv2/conv/kernel", "res5/refine_conv2/conv2/weights"),
        ("final_bottleneck/shortcut/bn/gamma", "final_bottleneck/shortcut/BatchNorm/gamma"),
        ("heatmaps/conv/kernel", "refine_out/weights"),
        ("heatmaps/bn/moving_variance", "refine_out/BatchNorm/moving_variance"),
    ],
)
def test_values_land_where_their_names_say(loaded, checkpoint, keras_path, tf_name):
    model, _ = loaded
    _, values = checkpoint
    variable = {v.path: v for v in model.weights}[keras_path]
    np.testing.assert_array_equal(np.asarray(variable), values[tf_name])


def test_every_value_is_distinct_and_placed(loaded, checkpoint):
    """Each checkpoint tensor appears in exactly one model variable (random values are unique)."""
    model, _ = loaded
    _, values = checkpoint
    fingerprints = {}
    for name, value in values.items():
        if value.size > 1:
            fingerprint = (value.shape, float(value.ravel()[0]), float(value.ravel()[-1]))
            fingerprints.setdefault(fingerprint, []).append(name)
    placed = 0
    for variable in model.weights:
        array = np.asarray(variable)
        if array.size > 1:
            key = (array.shape, float(array.ravel()[0]), float(array.ravel()[-1]))
            assert len(fingerprints.get(key, [])) == 1, variable.path
            placed += 1
    assert placed == len(model.weights)


# ----- independent reference: tf-cpn's graph in raw TF ops, reading tensors by their TF names


def _conv(x, t, scope, stride=1, bn=True, relu=True):
    kernel = t[f"{scope}/weights"]
    k = kernel.shape[0]
    if stride == 1:
        y = tf.nn.conv2d(x, kernel, 1, "SAME")
    else:  # slim conv2d_same: explicit symmetric pad, then VALID
        pad = k - 1
        x = tf.pad(x, [[0, 0], [pad // 2, pad - pad // 2], [pad // 2, pad - pad // 2], [0, 0]])
        y = tf.nn.conv2d(x, kernel, stride, "VALID")
    if f"{scope}/biases" in t:
        y = y + t[f"{scope}/biases"]
    if bn:
        b = f"{scope}/BatchNorm"
        y = tf.nn.batch_normalization(
            y,
            t[f"{b}/moving_mean"],
            t[f"{b}/moving_variance"],
            t[f"{b}/beta"],
            t[f"{b}/gamma"],
            EPS,
        )
    return tf.nn.relu(y) if relu else y


def _bottleneck(x, t, scope, stride=1):
    if f"{scope}/shortcut/weights" in t:
        shortcut = _conv(x, t, f"{scope}/shortcut", stride, relu=False)
    else:
        shortcut = x
    y = _conv(x, t, f"{scope}/conv1")
    y = _conv(y, t, f"{scope}/conv2", stride)
    y = _conv(y, t, f"{scope}/conv3", relu=False)
    return tf.nn.relu(y + shortcut)


def _resize(x, size):
    return tf.compat.v1.image.resize_bilinear(x, size, align_corners=False)


def tfcpn_reference(t, image_bgr, units=UNITS_R50, depth=50):
    """tf-cpn's network.py + basemodel.py forward pass (test mode) on raw checkpoint tensors."""
    x = (tf.constant(image_bgr) - MEAN_BGR) / 255.0
    x = _conv(x, t, f"resnet_v1_{depth}/conv1", 2)
    x = tf.nn.max_pool2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), 3, 2, "VALID")
    features = []
    for block, count in enumerate(units, 1):
        for unit in range(1, count + 1):
            stride = 2 if block > 1 and unit == 1 else 1
            scope = f"resnet_v1_{depth}/block{block}/unit_{unit}/bottleneck_v1"
            x = _bottleneck(x, t, scope, stride)
        features.append(x)
    out_size = (image_bgr.shape[1] // 4, image_bgr.shape[2] // 4)
    global_fms, global_outs, last = [], [], None
    for i, level in enumerate((5, 4, 3, 2)):
        lateral = _conv(features[3 - i], t, f"lateral/res{level}")
        if last is not None:
            up = _resize(last, tf.shape(lateral)[1:3])
            up = _conv(up, t, f"merge/res{level}", bn=False, relu=False)
            lateral = up + lateral
        last = lateral
        tmp = _conv(lateral, t, f"tmp/res{level}")
        out = _conv(tmp, t, f"pyramid/res{level}", relu=False)
        global_fms.append(lateral)
        global_outs.append(_resize(out, out_size))
    global_fms.reverse()
    global_outs.reverse()
    refined = []
    for i, fm in enumerate(global_fms):
        for j in range(i):
            fm = _bottleneck(fm, t, f"res{i + 2}/refine_conv{j}")
        refined.append(_resize(fm, out_size))
    x = _bottleneck(tf.concat(refined, axis=3), t, "final_bottleneck")
    refine_out = _conv(x, t, "refine_out", relu=False)
    return [o.numpy() for o in global_outs], refine_out.numpy()


def test_outputs_match_independent_tf_reference(loaded, checkpoint):
    model, _ = loaded
    _, values = checkpoint
    image = np.random.default_rng(1).uniform(0, 255, (2, *INPUT_SHAPE)).astype(np.float32)
    global_outs, refine_out = tfcpn_reference(values, image)
    outputs = model(image, training=False)
    pairs = [(f"global_c{level}", g) for level, g in zip((2, 3, 4, 5), global_outs)]
    pairs.append(("heatmaps", refine_out))
    for name, reference in pairs:
        got = np.asarray(outputs[name])
        spread = float(reference.max() - reference.min())
        assert spread > 0
        assert np.abs(got - reference).max() <= 1e-4 * spread, name


def test_unmatched_names_and_shapes_are_listed(loaded, checkpoint):
    model, _ = loaded
    _, values = checkpoint
    tensors = {n: v for n, v in values.items() if n != "merge/res3/biases"}  # one missing
    tensors["stranger/weights"] = np.zeros((3, 3), np.float32)  # one stranger
    tensors["refine_out/weights"] = np.zeros((1, 1, 256, 17), np.float32)  # one wrong shape
    before = np.asarray(model.get_layer("conv1").conv.kernel).copy()
    with pytest.raises(WeightMappingError) as error:
        load_tfcpn_weights(model, tensors, description="broken.ckpt")
    message = str(error.value)
    assert message.startswith("broken.ckpt: 3 problem(s)")
    assert "'merge/res3/biases'" in message
    assert "'stranger/weights' (3, 3)" in message
    assert "'refine_out/weights' (1, 1, 256, 17)" in message and "(3, 3, 256, 17)" in message
    # nothing is written when the mapping is wrong
    np.testing.assert_array_equal(np.asarray(model.get_layer("conv1").conv.kernel), before)


def test_cpn101_takes_the_resnet101_scheme():
    """ResNet-101 (block3 has 23 units) follows the same names; the R50 set is refused."""
    model = CPNModel(depth=101, input_shape=INPUT_SHAPE)
    rng = np.random.default_rng(2)
    r101 = {n: random_value(n, s, rng) for n, s in _variables_from_scheme((3, 4, 23, 3), 101)}
    assert load_tfcpn_weights(model, r101) == len(model.weights) == len(r101)
    kernel = model.get_layer("block3_unit_23").conv2.conv.kernel
    np.testing.assert_array_equal(
        np.asarray(kernel), r101["resnet_v1_101/block3/unit_23/bottleneck_v1/conv2/weights"]
    )
    r50 = {n: random_value(n, s, rng) for n, s in _variables_from_scheme()}
    with pytest.raises(WeightMappingError, match="resnet_v1_50/block1/unit_1"):
        load_tfcpn_weights(model, r50)


def load_recipe(name: str):
    """Import ``recipes/{name}.py`` as a module (recipes are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "recipes", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_writes_weights_that_load(checkpoint, loaded, tmp_path):
    prefix, values = checkpoint
    out = tmp_path / "cpn50.weights.h5"
    recipe = load_recipe("convert_tfcpn")
    argv = [prefix, "--model", "cpn50", "--input-size", "64", "48", "--out", str(out)]
    assert recipe.main(argv) == 0
    model, _ = loaded
    model.load_weights(str(out))  # same graph: loading back changes nothing
    kernel = np.asarray(model.get_layer("heatmaps").conv.kernel)
    np.testing.assert_array_equal(kernel, values["refine_out/weights"])
    assert not [p for p in os.listdir(tmp_path) if p != out.name]  # no temporary left behind


def test_recipe_fails_clearly_on_a_bad_checkpoint(tmp_path, capsys):
    recipe = load_recipe("convert_tfcpn")
    code = recipe.main([str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "x.weights.h5")])
    assert code == 1
    assert "missing.ckpt" in capsys.readouterr().err
    assert not (tmp_path / "x.weights.h5").exists()
