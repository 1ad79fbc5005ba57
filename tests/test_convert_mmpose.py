"""MMPose checkpoint import.

CI (no MMPose): state dicts synthesised with MMPose's exact keys and shapes
(``tests/data/mmpose_keys/*.json``, written from the real MMPose 1.3.2 models by
``tools/mmpose_reference.py --keys-only``) load into the ``variant="mmpose"`` models, every key on
both sides used once and every value where its key says.

Parity (when ``KERAS_POSE_MMPOSE_REF`` names the directory ``tools/mmpose_reference.py`` wrote,
and PyTorch can read its files): MMPose's random-weight models' heatmaps and decoded keypoints
are reproduced::

    KERAS_POSE_MMPOSE_REF=/work/mmpose_ref \\
        python -m pytest -s tests/test_convert_mmpose.py -k parity
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os

import keras
import numpy as np
import pytest

from keras_pose.codecs import codec_from_spec
from keras_pose.codecs.graph import decode_graph
from keras_pose.convert import WeightMappingError, read_torch_state_dict
from keras_pose.convert.mmpose import load_mmpose_checkpoint, load_mmpose_weights
from keras_pose.models import build_model
from keras_pose.models.mspn import MSPNModel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS_DIR = os.path.join(REPO, "tests", "data", "mmpose_keys")
# Full-size parity runs take minutes, so they run only when asked for (never in CI).
REFERENCE_DIR = os.environ.get("KERAS_POSE_MMPOSE_REF", "")

# weights do not depend on the input size, so CI builds small inputs and the parity tests
# build MMPose's
def mmpose_graph(name: str, shape):
    """The registry's ``name`` built as MMPose's graph (every builder takes ``variant``)."""
    return build_model(name, input_shape=shape, variant="mmpose", compile=False)


SMALL_SHAPES = {"cpm": (32, 32, 3), "hourglass52": (128, 128, 3)}
# Every fixture (all of MMPose's key files) is parsed; these are mapped in CI (the others
# repeat their patterns with more blocks or stages, and the parity tests map them all).
MAPPED_IN_CI = ["rsn18", "2xrsn50", "2xmspn50", "cpm", "hourglass52"]


@functools.cache
def small_model(name: str):
    return mmpose_graph(name, SMALL_SHAPES.get(name, (64, 32, 3)))


def fixture_keys(name: str) -> dict[str, tuple[int, ...]]:
    with open(os.path.join(KEYS_DIR, f"{name}.json")) as handle:
        return {k: tuple(v) for k, v in json.load(handle)["keys"].items()}


@functools.cache
def synthetic_state_dict(name: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Random values under every key of MMPose's state dict (treat as read-only)."""
    rng = np.random.default_rng(seed)
    return {
        key: (rng.integers(0, 10, shape) if key.endswith("num_batches_tracked")
              else rng.standard_normal(shape, dtype=np.float32))
        for key, shape in fixture_keys(name).items()
    }


def test_fixtures_cover_every_parity_model():
    fixtures = {f[:-5] for f in os.listdir(KEYS_DIR) if f.endswith(".json")}
    assert set(PARITY) <= fixtures
    for name in fixtures:
        keys = fixture_keys(name)
        assert all(k.startswith(("backbone.", "head.")) for k in keys), name


@functools.cache
def loaded_model(name: str):
    """The small model with the synthetic state dict loaded: ``(model, count)``."""
    model = mmpose_graph(name, SMALL_SHAPES.get(name, (64, 32, 3)))
    return model, load_mmpose_weights(model, synthetic_state_dict(name), description=name)


@pytest.mark.parametrize("name", MAPPED_IN_CI)
def test_every_mmpose_key_lands_in_one_variable(name):
    model, count = loaded_model(name)
    state_dict = synthetic_state_dict(name)
    used = {k for k in state_dict if not k.endswith("num_batches_tracked")}
    if name == "hourglass52":  # MMPose builds one `inters` block it never runs (one stack)
        used = {k for k in used if not k.startswith("backbone.inters.")}
    assert count == len(model.weights) == len(used)
    parameters = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert parameters == sum(
        state_dict[k].size for k in used if not k.endswith(("running_mean", "running_var"))
    )


def _variable(model, path):
    return {v.path: v for v in model.weights}[path]


@pytest.mark.parametrize(
    "name, keras_path, key",
    [
        ("2xrsn50", "stem_conv/conv/kernel", "backbone.top.top.0.conv.weight"),
        ("2xrsn50", "stage1_layer2_block1/expand/bn/moving_variance",
         "backbone.multi_stage_rsn.0.downsample.layer2.0.conv_bn_relu1.bn.running_var"),
        ("2xrsn50", "stage2_layer3_block2/step4_3/conv/kernel",
         "backbone.multi_stage_rsn.1.downsample.layer3.1.conv_bn_relu2_4_3.conv.weight"),
        ("2xrsn50", "stage1_layer3_block2/step2_1/conv/kernel",
         "backbone.multi_stage_rsn.0.downsample.layer3.1.conv_bn_relu2_2_1.conv.weight"),
        ("2xrsn50", "stage1_layer4_block1/shortcut/bn/gamma",
         "backbone.multi_stage_rsn.0.downsample.layer4.0.downsample.bn.weight"),
        ("2xrsn50", "stage1_layer1_block2/project/conv/kernel",
         "backbone.multi_stage_rsn.0.downsample.layer1.1.conv_bn3.conv.weight"),
        ("2xrsn50", "stage2_unit4_head_conv2/conv/kernel",
         "head.predict_layers.7.conv_layers.1.conv.weight"),
        ("2xmspn50", "stage1_unit4_skip1/conv/kernel",
         "backbone.multi_stage_mspn.0.upsample.up4.out_skip1.conv.weight"),
        ("2xmspn50", "stage1_unit4_skip2/bn/beta",
         "backbone.multi_stage_mspn.0.upsample.up4.out_skip2.bn.bias"),
        ("2xmspn50", "stage1_unit3_lateral/conv/kernel",
         "backbone.multi_stage_mspn.0.upsample.up3.in_skip.conv.weight"),
        ("2xmspn50", "stage1_unit3_up_conv/conv/kernel",
         "backbone.multi_stage_mspn.0.upsample.up3.up_conv.conv.weight"),
        ("2xmspn50", "stage1_cross_conv/conv/kernel",
         "backbone.multi_stage_mspn.0.upsample.up4.cross_conv.conv.weight"),
        ("2xmspn50", "stage2_layer1_block2/conv1/bn/moving_mean",
         "backbone.multi_stage_mspn.1.downsample.layer1.1.bn1.running_mean"),
        ("2xmspn50", "stage2_layer1_block2/conv2/bn/moving_mean",
         "backbone.multi_stage_mspn.1.downsample.layer1.1.bn2.running_mean"),
        ("2xmspn50", "stage2_unit1_head_conv1/conv/kernel",
         "head.predict_layers.4.conv_layers.0.conv.weight"),
        ("cpm", "conv5_stage1/conv/kernel", "backbone.stem.7.conv.weight"),
        ("cpm", "conv2_stage2/conv/kernel", "backbone.middle.2.conv.weight"),
        ("cpm", "conv4_stage3/bn/gamma", "backbone.middle_conv.1.0.bn.weight"),
        ("cpm", "Mconv2_stage4/bn/gamma", "backbone.cpm_stages.2.model.1.bn.weight"),
        ("cpm", "Mconv4_stage4/bn/gamma", "backbone.out_convs.2.0.bn.weight"),
        ("cpm", "heatmaps/bias", "backbone.out_convs.4.1.conv.bias"),
        ("cpm", "stage1/kernel", "backbone.stem.9.conv.weight"),
        ("hourglass52", "hourglass_modules__0__low2__low2__low1__0/shortcut/conv/kernel",
         "backbone.hourglass_modules.0.low2.low2.low1.0.downsample.0.weight"),
        ("hourglass52", "hourglass_modules__0__up1__1/conv2/bn/gamma",
         "backbone.hourglass_modules.0.up1.1.bn2.weight"),
        ("hourglass52", "hourglass_modules__0__low3__1/conv1/conv/kernel",
         "backbone.hourglass_modules.0.low3.1.conv1.weight"),
        ("hourglass52", "heatmaps/kernel", "head.multi_final_layers.0.weight"),
    ],
)
def test_named_keys_land_in_named_variables(name, keras_path, key):
    model, _ = loaded_model(name)
    state_dict = synthetic_state_dict(name)
    got = np.asarray(_variable(model, keras_path))
    source = state_dict[key]
    if source.ndim == 4:  # OIHW -> HWIO, spelled out
        expected = np.einsum("oihw->hwio", source)
    else:
        expected = source
    np.testing.assert_array_equal(got, expected)


def test_mismatches_are_all_listed_and_nothing_is_written():
    model = small_model("rsn18")
    load_mmpose_weights(model, synthetic_state_dict("rsn18"))
    before = np.asarray(_variable(model, "stem_conv/conv/kernel")).copy()
    broken = dict(synthetic_state_dict("rsn18", seed=3))
    del broken["head.predict_layers.0.conv_layers.0.bn.running_mean"]
    broken["head.extra.weight"] = np.zeros((4, 4), np.float32)
    broken["backbone.top.top.0.conv.weight"] = np.zeros((64, 3, 3, 3), np.float32)
    with pytest.raises(WeightMappingError) as error:
        load_mmpose_weights(model, broken, description="broken.pth")
    message = str(error.value)
    assert message.startswith("broken.pth: 3 problem(s)")
    assert "'head.predict_layers.0.conv_layers.0.bn.running_mean'" in message
    assert "'head.extra.weight' (4, 4) matches no model variable" in message
    assert "'backbone.top.top.0.conv.weight' (64, 3, 3, 3)" in message
    assert "(7, 7, 3, 64)" in message
    np.testing.assert_array_equal(np.asarray(_variable(model, "stem_conv/conv/kernel")), before)


@functools.cache
def original_mspn():
    return MSPNModel(num_stages=1, input_shape=(64, 32, 3))  # variant="original": convs with biases


def test_mmpose_0x_checkpoint_keys_load():
    """MMPose 0.x files (the zoo's MSPN and Hourglass-52) say ``keypoint_head``; 1.x files may
    carry the preprocessor's constants."""
    state_dict = {
        k.replace("head.", "keypoint_head.", 1) if k.startswith("head.") else k: v
        for k, v in synthetic_state_dict("hourglass52").items()
    }
    state_dict["data_preprocessor.mean"] = np.zeros((3, 1, 1), np.float32)
    hourglass, count = loaded_model("hourglass52")
    assert load_mmpose_weights(hourglass, state_dict) == count


def test_original_graph_is_refused():
    with pytest.raises(ValueError, match="variant='mmpose'"):
        load_mmpose_weights(original_mspn(), synthetic_state_dict("rsn18"))


def test_mmpose_variant_spec_takes_rgb():
    model = small_model("rsn18")
    assert model.spec.channel_order == "RGB"
    assert model.get_config()["variant"] == "mmpose"
    assert original_mspn().spec.channel_order == "BGR"
    assert original_mspn().get_config()["variant"] == "original"


def load_recipe(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "recipes", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_converts_a_state_dict_file(tmp_path):
    state_dict = synthetic_state_dict("rsn18", seed=4)
    source = tmp_path / "rsn18_state_dict.npz"
    np.savez(source, **state_dict)
    out = tmp_path / "rsn18.weights.h5"
    whole = tmp_path / "rsn18.keras"
    recipe = load_recipe("convert_mmpose")
    code = recipe.main([str(source), "--model", "rsn18", "--input-size", "64", "32",
                        "--out", str(out), "--keras-out", str(whole)])
    assert code == 0
    expected = np.einsum("oihw->hwio", state_dict["backbone.top.top.0.conv.weight"])
    model = small_model("rsn18")
    model.load_weights(str(out))
    np.testing.assert_array_equal(np.asarray(_variable(model, "stem_conv/conv/kernel")), expected)
    restored = keras.saving.load_model(str(whole), compile=False)
    assert restored.spec == model.spec and restored.spec.channel_order == "RGB"
    np.testing.assert_array_equal(
        np.asarray(_variable(restored, "stem_conv/conv/kernel")), expected
    )


def test_recipe_reports_unmatched_keys(tmp_path, capsys):
    state_dict = synthetic_state_dict("rsn18")
    source = tmp_path / "wrong.npz"
    np.savez(source, **state_dict)
    out = tmp_path / "x.weights.h5"
    code = load_recipe("convert_mmpose").main(
        [str(source), "--model", "mspn50", "--input-size", "64", "32", "--out", str(out)]
    )
    assert code == 1
    assert "matches no model variable" in capsys.readouterr().err
    assert not out.exists()


def test_state_dict_under_state_dict_key(tmp_path):
    torch = pytest.importorskip("torch", reason="reading .pth needs PyTorch (keras-pose[torch])")
    tensors = {"a.weight": torch.ones(2, 3), "a.num_batches_tracked": torch.tensor(3)}
    path = tmp_path / "checkpoint.pth"
    torch.save({"meta": {"epoch": 210}, "state_dict": tensors}, path)
    arrays = read_torch_state_dict(path)
    assert set(arrays) == set(tensors)
    np.testing.assert_array_equal(arrays["a.weight"], np.ones((2, 3), np.float32))


# ----- parity with real MMPose (files from tools/mmpose_reference.py)

PARITY = ["cpm", "hourglass52", "mspn50", "2xmspn50", "4xmspn50", "rsn18", "rsn50", "2xrsn50"]
FULL_SHAPES = {"hourglass52": (256, 256, 3)}


def reference_files(name: str) -> tuple[str, str]:
    """The state dict (``{name}_state.npz``, or ``{name}.pth`` read with PyTorch) and outputs."""
    if not REFERENCE_DIR:
        pytest.skip("MMPose parity needs KERAS_POSE_MMPOSE_REF (files of "
                    "tools/mmpose_reference.py, run where mmpose 1.3.2 is installed; "
                    "CI has no mmpose)")
    npz = os.path.join(REFERENCE_DIR, f"{name}.npz")
    state = os.path.join(REFERENCE_DIR, f"{name}_state.npz")
    pth = os.path.join(REFERENCE_DIR, f"{name}.pth")
    if not os.path.exists(npz) or not (os.path.exists(state) or os.path.exists(pth)):
        pytest.skip(f"no MMPose reference for {name} in {REFERENCE_DIR}")
    if os.path.exists(state):
        return state, npz
    pytest.importorskip("torch", reason="reading MMPose's .pth needs PyTorch")
    return pth, npz


@pytest.mark.parametrize("name", PARITY)
def test_parity_with_mmpose(name):
    pth, npz = reference_files(name)
    model = mmpose_graph(name, FULL_SHAPES.get(name, (256, 192, 3)))
    load_mmpose_checkpoint(model, pth)
    reference = np.load(npz)
    outputs = model(reference["image"], training=False)
    worst = 0.0
    for index, output in enumerate(model.spec.output_names):
        expected = reference[f"heatmaps_{index}"]
        got = np.asarray(outputs[output])
        spread = float(expected.max() - expected.min())
        assert np.abs(got - expected).max() <= 1e-4 * spread, output
        worst = max(worst, float(np.abs(got - expected).max()) / spread)
    final = np.abs(np.asarray(outputs["heatmaps"]) - reference[f"heatmaps_{index}"]).max()
    print(f"\nPARITY {name}: {len(model.spec.output_names)} outputs, max |diff| / range "
          f"{worst:.2e}, final heatmaps max |diff| {final:.2e}")
    head = model.spec.final
    codec = codec_from_spec(head.codec, model.spec.input_size, head.stride)
    keypoints, scores = codec.decode(np.asarray(outputs["heatmaps"]))
    # the spec's codec (convention "mmpose") decodes as MMPose's own decoder; a quarter step may
    # only flip where two neighbours of a random map tie within float noise
    assert head.codec.convention == "mmpose"
    own, _ = codec.decode(reference[f"heatmaps_{index}"])
    np.testing.assert_allclose(own, reference["keypoints"], atol=1e-3)
    in_graph, _ = decode_graph(reference[f"heatmaps_{index}"], codec)  # the exports' decode
    np.testing.assert_allclose(np.asarray(in_graph), reference["keypoints"], atol=1e-3)
    quarter = 0.25 * model.spec.final.stride
    difference = np.abs(keypoints - reference["keypoints"])
    assert difference.max() <= quarter + 1e-3
    assert (difference > 1e-3).mean() <= 0.01
    np.testing.assert_allclose(scores, reference["scores"], atol=1e-4)
