"""The PoseSpec contract, the model registry and PoseModel's self-compiling behaviour."""

import numpy as np
import pytest

from keras_pose.losses import KeypointMSE, OHKMLoss
from keras_pose.models import MODELS, build_model, load_model
from keras_pose.models.rsn import RSNModel
from keras_pose.spec import CodecSpec, OutputSpec, PoseSpec, megvii_outputs


def _spec(**overrides):
    outputs = megvii_outputs(["a", "heatmaps"], [9, 7], ["mse", "ohkm"], [0.5, 1.0])
    fields = dict(
        family="cpn", input_size=(64, 48), num_keypoints=5, channel_order="BGR", outputs=outputs
    )
    return PoseSpec(**{**fields, **overrides})


def test_spec_round_trips_through_a_dict():
    spec = _spec()
    assert PoseSpec.from_dict(spec.to_dict()) == spec
    assert spec.heatmap_size() == (16, 12) and spec.final.loss == "ohkm"


def test_megvii_outputs_follow_the_originals_masks():
    mse, ohkm = megvii_outputs(["a", "heatmaps"], [9, 7], ["mse", "ohkm"], [0.5, 1.0])
    assert (mse.target_min_visibility, mse.weight_min_visibility) == (2, 0)
    assert (ohkm.target_min_visibility, ohkm.weight_min_visibility) == (1, 1)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(final_output="nope"), "final_output"),
        (dict(channel_order="RGBA"), "channel_order"),
        (dict(outputs=megvii_outputs(["x", "x"], [7, 7], ["mse", "mse"], [1, 1])), "duplicate"),
    ],
)
def test_spec_rejects_inconsistent_fields(overrides, message):
    with pytest.raises(ValueError, match=message):
        _spec(**overrides)


def test_codec_and_output_specs_validate():
    with pytest.raises(ValueError, match="odd kernel_size"):
        CodecSpec("megvii", kernel_size=8)
    with pytest.raises(ValueError, match="sigma"):
        CodecSpec("msra")
    with pytest.raises(ValueError, match="loss"):
        OutputSpec("a", 4, CodecSpec("megvii", kernel_size=7), loss="l1")


def test_registry_names_every_variant_and_rejects_unknown_ones():
    variants = {
        "cpn50", "cpn101", "mspn50", "4xmspn50", "rsn18", "rsn50", "4xrsn50", "cpm", "hourglass"
    }
    assert variants <= set(MODELS)
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        build_model("resnet")


def test_former_names_still_work_with_a_deprecation_warning(tmp_path):
    import json
    import zipfile

    import keras

    import keras_pose
    from keras_pose.models import TinyPoseModel

    with pytest.warns(DeprecationWarning, match="TinyPoseNet"):
        from keras_pose.models import TinyPoseNet
    assert TinyPoseNet is TinyPoseModel
    with pytest.warns(DeprecationWarning, match="CPN is deprecated"):
        assert keras_pose.CPN is keras_pose.CPNModel
    with pytest.warns(DeprecationWarning, match="pass input_shape, num_keypoints by keyword"):
        model = keras_pose.RSN18((64, 64, 3), 9, compile=False)
    assert model.spec.input_size == (64, 64) and model.spec.num_keypoints == 9
    with pytest.warns(DeprecationWarning, match="num_stages, input_shape"):
        cpm = keras_pose.CPM(2, (32, 32, 3), compile=False)
    assert len(cpm.spec.outputs) == 2
    with pytest.raises(TypeError, match="multiple values"), pytest.warns(DeprecationWarning):
        keras_pose.RSN18((64, 64, 3), input_shape=(64, 64, 3))

    # a .keras file written when the class was TinyPoseNet still loads
    path = tmp_path / "old.keras"
    TinyPoseModel(input_shape=(16, 12, 3), num_keypoints=3, width=2).save(path)
    old = tmp_path / "renamed.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(old, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                assert config["registered_name"] == "keras_pose>TinyPoseModel"
                config["registered_name"] = "keras_pose>TinyPoseNet"
                config["class_name"] = "TinyPoseNet"
                data = json.dumps(config).encode()
            target.writestr(item, data)
    assert type(keras.saving.load_model(old)) is TinyPoseModel


def test_load_model_takes_a_name_or_a_keras_file(tmp_path):
    model = load_model("tiny", input_shape=(32, 24, 3))
    assert model.spec.input_size == (32, 24) and not model.compiled
    path = str(tmp_path / "tiny.keras")
    model.save(path)
    model.save_weights(str(tmp_path / "tiny.weights.h5"))
    x = np.random.default_rng(1).uniform(0, 255, (1, 32, 24, 3)).astype(np.float32)
    expected = model.predict_on_batch(x)["heatmaps"]
    np.testing.assert_array_equal(load_model(path).predict_on_batch(x)["heatmaps"], expected)
    fresh = load_model("tiny", weights=tmp_path / "tiny.weights.h5", input_shape=(32, 24, 3))
    np.testing.assert_array_equal(fresh.predict_on_batch(x)["heatmaps"], expected)
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        load_model(str(tmp_path / "missing.keras"))
    with pytest.raises(ValueError, match="keeps its input shape"):
        load_model(path, input_shape=(64, 48, 3))


def test_a_models_decode_refinement_travels_with_it(tmp_path):
    from keras_pose.inference.predictor import Predictor

    model = load_model("tiny", input_shape=(32, 24, 3))
    assert model.decode_refine == "quarter" == Predictor(model).codec.refine  # the originals'
    model.decode_refine = "dark"
    assert {o.codec.refine for o in model.spec.outputs} == {"dark"}
    assert model.get_config()["decode_refine"] == "dark"
    assert Predictor(model).codec.refine == "dark"
    assert Predictor(model, refine="quarter").codec.refine == "quarter"  # a call's choice wins
    path = str(tmp_path / "dark.keras")
    model.save(path)
    loaded = load_model(path)
    assert loaded.decode_refine == "dark" and loaded.spec == model.spec
    with pytest.raises(ValueError, match="refine"):
        model.decode_refine = "bilinear"
    assert model.decode_refine == "dark"  # a refused value leaves the spec as it was


def test_builder_compiles_with_the_family_losses():
    model = build_model("rsn18", input_shape=(64, 64, 3), num_keypoints=9)
    assert model.compiled
    losses, weights = model.default_losses()
    assert isinstance(losses["heatmaps"], OHKMLoss)
    assert isinstance(losses["stage1_unit1"], KeypointMSE)
    assert weights == {
        "stage1_unit1": 0.25, "stage1_unit2": 0.25, "stage1_unit3": 0.25, "heatmaps": 1.0
    }


def test_a_model_built_from_its_class_compiles_itself_on_first_training_step():
    model = RSNModel(depth=18, input_shape=(64, 64, 3), num_keypoints=9)
    assert not model.compiled
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    y = {name: np.zeros((2, 16, 16, 9), np.float32) for name in model.spec.output_names}
    losses = model.train_on_batch(x, y)
    assert model.compiled and np.all(np.isfinite(losses))
