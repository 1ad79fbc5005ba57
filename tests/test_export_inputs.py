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
                           match=f"serving_default input .?.image.?.? must be \\(N, {h}, {w}, 3\\)"):
            graph.check_crops(crops)
    assert graph.check_crops(tf.zeros((2, h, w, 3))).shape == (2, h, w, 3)


def test_batched_or_grey_image_and_bad_box_shapes_are_named(graph):
    boxes = tf.constant([[10, 5, 40, 70]], tf.float32)
    for bad in (tf.zeros((2, 90, 120, 3), tf.uint8), tf.zeros((90, 120, 1), tf.uint8),
                tf.zeros((0, 120, 3), tf.uint8)):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match="predict_image input .?.image.?.? must be one \\(height, width, 3\\)"):
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
