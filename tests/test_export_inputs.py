"""The SavedModel checks its inputs in the graph (TF Serving feeds tensors without checking the
signature's shape), with errors naming the input; predict_image and Predictor reject the same
boxes; models.config is merged, not rewritten."""

import numpy as np
import pytest
import tensorflow as tf
from export_checks import tiny_model

from keras_pose.export import saved_model
from keras_pose.export.saved_model import ServingGraph
from keras_pose.inference.predictor import check_boxes

BAD_BOXES = {
    "nan x": [np.nan, 5, 40, 70],
    "infinite w": [10, 5, np.inf, 70],
    "zero width": [10, 5, 0, 70],
    "negative height": [10, 5, 40, -3],
}


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def loaded(model, tmp_path_factory):
    path = saved_model(model, tmp_path_factory.mktemp("sm") / "tiny", version=1, flip=False)
    return tf.saved_model.load(path)


@pytest.fixture(scope="module")
def graph(model):
    return ServingGraph(model, ["heatmaps"], False, None, "RGB")


def image():
    return tf.constant(np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8))


@pytest.mark.parametrize("case", sorted(BAD_BOXES))
def test_predict_image_and_predictor_reject_the_same_boxes(loaded, case):
    boxes = np.array([[10, 5, 40, 70], BAD_BOXES[case]], np.float32)
    with pytest.raises(ValueError, match="box 1"):
        check_boxes(boxes)
    with pytest.raises(tf.errors.InvalidArgumentError, match="boxes.*finite x, y, w, h"):
        loaded.signatures["predict_image"](image=image(), boxes=tf.constant(boxes))


def test_good_requests_still_pass(loaded):
    boxes = tf.constant([[10, 5, 40, 70], [-10, 60, 50, 50]], tf.float32)
    result = loaded.signatures["predict_image"](image=image(), boxes=boxes)
    assert result["keypoints"].shape == (2, 5, 2)
    empty = loaded.signatures["predict_image"](image=image(), boxes=tf.zeros((0, 4)))
    assert empty["keypoints"].shape == (0, 5, 2)


def test_wrong_crops_are_named_in_the_graph(graph, model):
    h, w = model.spec.input_size
    for crops in (tf.zeros((2, h, w, 1)), tf.zeros((2, h + 4, w, 3)), tf.zeros((h, w, 3))):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match="serving_default input .?.image.?.? "
                                 f"must be \\(N, {h}, {w}, 3\\)"):
            graph.check_crops(crops)
    assert graph.check_crops(tf.zeros((2, h, w, 3))).shape == (2, h, w, 3)


def test_batched_or_grey_image_and_bad_box_shapes_are_named(graph):
    boxes = tf.constant([[10, 5, 40, 70]], tf.float32)
    for bad in (tf.zeros((2, 90, 120, 3), tf.uint8), tf.zeros((90, 120, 1), tf.uint8),
                tf.zeros((0, 120, 3), tf.uint8)):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match="predict_image input .?.image.?.? "
                                 "must be one \\(height, width, 3\\)"):
            graph.check_image_and_boxes(bad, boxes)
    for bad in (tf.zeros((1, 5)), tf.zeros((4,))):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match="input .?.boxes.?.? must be \\(N, 4\\)"):
            graph.check_image_and_boxes(image(), bad)


def test_predictor_with_no_boxes_returns_an_empty_array(model):
    from keras_pose.data.dataset_info import COCO17, DatasetInfo
    from keras_pose.inference import Predictor

    info = DatasetInfo("tiny", COCO17.keypoint_names[:5], ((1, 2), (3, 4)), (), COCO17.sigmas[:5])
    predictor = Predictor(model, info)
    for boxes in ([], np.zeros((0, 4))):
        assert predictor(image().numpy(), boxes).shape == (0, 5, 3)


# -- models.config ---------------------------------------------------------------------------

OTHER_MODELS = """# served by the team's TF Serving
model_config_list {
  config {
    name: 'detector'
    base_path: "/models/detector"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 3 versions: 4 } }
    version_labels { key: "stable" value: 3 }
    version_labels { key: "canary" value: 4 }
  }
  config: {
    name: "rsn18"   # ours, with a pinned version
    base_path: "/mnt/other/rsn18"
    model_platform: "tensorflow"
    model_version_policy { latest { num_versions: 2 } }
  }
}
"""


def parsed(text):
    """The config parsed with TF Serving's own protobuf, or ``None`` where
    ``tensorflow-serving-api`` is not installed (it requires the full ``tensorflow`` package;
    ``pip install --no-deps tensorflow-serving-api`` adds it beside ``tensorflow-cpu``)."""
    try:
        from google.protobuf import text_format
        from tensorflow_serving.config import model_server_config_pb2 as serving
    except ImportError:
        return None
    return text_format.Parse(text, serving.ModelServerConfig())


def test_export_adds_its_entry_and_keeps_the_others_byte_for_byte(tmp_path):
    from keras_pose.export import add_to_models_config
    from keras_pose.export.serving_config import config_names

    path = tmp_path / "models.config"
    path.write_text(OTHER_MODELS)
    add_to_models_config(tmp_path, "cpn50")
    merged = path.read_text()
    assert merged.startswith(OTHER_MODELS[:OTHER_MODELS.rindex("}")])  # all before: unchanged
    assert config_names(merged) == ["detector", "rsn18", "cpn50"]
    assert merged.endswith('  config {\n    name: "cpn50"\n    base_path: "/models/cpn50"\n'
                           '    model_platform: "tensorflow"\n  }\n}\n')
    served = parsed(merged)
    if served is not None:
        config = served.model_config_list.config
        assert [c.name for c in config] == ["detector", "rsn18", "cpn50"]
        assert list(config[0].model_version_policy.specific.versions) == [3, 4]
        assert dict(config[0].version_labels) == {"stable": 3, "canary": 4}
        assert config[1].base_path == "/mnt/other/rsn18"
        assert config[1].model_version_policy.latest.num_versions == 2

    add_to_models_config(tmp_path, "rsn18")  # already served: the entry is kept as it is
    add_to_models_config(tmp_path, "cpn50")
    assert path.read_text() == merged


def test_a_new_config_and_a_broken_one(tmp_path):
    from keras_pose.export import add_to_models_config, models_config
    from keras_pose.export.serving_config import ModelsConfigError

    add_to_models_config(tmp_path, "rsn18")
    assert (tmp_path / "models.config").read_text() == models_config(["rsn18"])
    broken = "model_config_list {\n  config { name: \"a\"\n"
    (tmp_path / "models.config").write_text(broken)
    with pytest.raises(ModelsConfigError, match=r"models.config: line 3.*missing '}'"):
        add_to_models_config(tmp_path, "b")
    assert (tmp_path / "models.config").read_text() == broken  # not rewritten
