"""Person detectors of every format, each built here as a tiny file of that format whose
outputs are fixed, parsed end to end: person class only, score threshold, NMS, back to image
pixels."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from keras_pose.inference.detectors import (
    CallableDetector,
    CocoDetections,
    OnnxDetector,
    SavedModelDetector,
    box_iou,
    load_detector,
    nms,
)
from keras_pose.inference.sources import Frame

IMAGE = np.zeros((320, 480, 3), np.uint8)  # h 320, w 480: letterboxed into 640x640 at 4/3


def constant_outputs_model(path, outputs: dict[str, np.ndarray], input_name="input"):
    """An ONNX graph of input (1, 3, 640, 640) whose outputs are fixed tensors (each added to
    0 x the input's mean, so the input is used)."""
    nodes = [helper.make_node("ReduceMean", [input_name], ["mean"], keepdims=0, axes=[0, 1, 2, 3]),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"])]
    initializers = [numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    graph_outputs = []
    for name, value in outputs.items():
        initializers.append(numpy_helper.from_array(value, f"{name}_value"))
        if value.dtype == np.float32:
            nodes.append(helper.make_node("Add", [f"{name}_value", "nothing"], [name]))
        else:
            nodes.append(helper.make_node("Identity", [f"{name}_value"], [name]))
        kind = TensorProto.FLOAT if value.dtype == np.float32 else TensorProto.INT64
        graph_outputs.append(helper.make_tensor_value_info(name, kind, value.shape))
    graph = helper.make_graph(
        nodes, "detector",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 3, 640, 640])],
        graph_outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return str(path)


def test_box_helpers():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], float)
    np.testing.assert_allclose(box_iou(boxes[:1], boxes)[0], [1.0, 81 / 119, 0.0])
    assert nms(boxes, np.array([0.5, 0.9, 0.8]), 0.5).tolist() == [1, 2]


def test_callable_detector_checks_and_thresholds():
    detector = load_detector(lambda image: ([[10, 10, 50, 90], [0, 0, 5, 5], [100, 20, 600, 400]],
                                            [0.9, 0.1, 0.8]), score_threshold=0.3)
    assert isinstance(detector, CallableDetector)
    boxes, scores = detector(IMAGE)
    np.testing.assert_allclose(boxes, [[10, 10, 50, 90], [100, 20, 480, 320]])  # clipped
    np.testing.assert_allclose(scores, [0.9, 0.8])
    with pytest.raises(ValueError, match="3 boxes and 2 scores"):
        load_detector(lambda image: (np.zeros((3, 4)), np.zeros(2)))(IMAGE)
    with pytest.raises(ValueError, match="must return"):
        load_detector(lambda image: np.zeros((3, 4)))(IMAGE)


def test_coco_detection_results(tmp_path):
    records = [
        {"image_id": 397133, "category_id": 1, "bbox": [10, 20, 30, 40], "score": 0.9},
        {"image_id": 397133, "category_id": 1, "bbox": [100, 20, 30, 40], "score": 0.2},
        {"image_id": 397133, "category_id": 3, "bbox": [5, 5, 30, 40], "score": 0.99},
        {"image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5},
    ]
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(records))
    detector = load_detector(path, score_threshold=0.3)
    assert isinstance(detector, CocoDetections)
    frame = Frame(0, "/data/000000397133.jpg", "image", IMAGE)
    boxes, scores = detector(IMAGE, frame)
    np.testing.assert_allclose(boxes, [[10, 20, 40, 60]])
    np.testing.assert_allclose(scores, [0.9])
    video_frame = Frame(7, "walk.mp4#7", "video", IMAGE)  # videos: image id = frame index
    np.testing.assert_allclose(detector(IMAGE, video_frame)[0], [[1, 2, 4, 6]])
    assert len(detector(IMAGE, Frame(8, "walk.mp4#8", "video", IMAGE))[0]) == 0
    path.write_text(json.dumps([{"image_id": 1, "bbox": [1, 2]}]))
    with pytest.raises(ValueError, match="detection 0 is malformed"):
        load_detector(path)


def test_onnx_mmdeploy_dets_and_labels(tmp_path):
    dets = np.array([[[40, 40, 200, 300, 0.9],  # person
                      [44, 44, 204, 304, 0.8],  # the same person again: NMS
                      [300, 100, 500, 500, 0.7],  # person (bottom clipped to the image)
                      [10, 10, 100, 100, 0.95],  # a car
                      [400, 40, 440, 100, 0.1]]], np.float32)  # person below the threshold
    labels = np.array([[0, 0, 0, 2, 0]], np.int64)
    path = constant_outputs_model(tmp_path / "rtmdet.onnx", {"dets": dets, "labels": labels})
    detector = load_detector(path, score_threshold=0.3)
    assert isinstance(detector, OnnxDetector) and detector.layout == "mmdeploy"
    assert detector.input_size == (640, 640)
    boxes, scores = detector(IMAGE)
    scale = 640 / 480
    np.testing.assert_allclose(boxes, [[30, 30, 150, 225], [225, 75, 375, 320]], atol=1e-4)
    assert boxes[1, 3] == 320 and 500 / scale > 320
    np.testing.assert_allclose(scores, [0.9, 0.7], atol=1e-6)
    blob, used_scale, offset = detector.preprocess(np.full((320, 480, 3), 7, np.uint8))
    assert blob.shape == (1, 3, 640, 640) and used_scale == scale and offset == (0.0, 0.0)
    # RTMDet's BGR mean/std; the padding (below the 427 resized rows) is 114 before it
    np.testing.assert_allclose(blob[0, :, 0, 0], (7 - np.array([103.53, 116.28, 123.675]))
                               / np.array([57.375, 57.12, 58.395]), rtol=1e-5)
    np.testing.assert_allclose(blob[0, 0, 639, 0], (114 - 103.53) / 57.375, rtol=1e-5)


def test_onnx_ultralytics_layout(tmp_path):
    anchors = 6
    table = np.zeros((1, 4 + 80, anchors), np.float32)
    # cx, cy, w, h in the 640x640 letterbox (image 320x480 -> 640x427, 106 rows above)
    table[0, :4, 0] = [320, 106 + 200, 120, 240]  # person 0.9
    table[0, :4, 1] = [322, 106 + 202, 120, 240]  # duplicate person 0.6 -> NMS
    table[0, :4, 2] = [100, 106 + 100, 40, 80]  # person 0.5
    table[0, :4, 3] = [500, 300, 60, 60]  # a dog 0.99
    table[0, :4, 4] = [200, 300, 60, 60]  # person 0.2 (below the threshold)
    table[0, 4 + 0, :5] = [0.9, 0.6, 0.5, 0.01, 0.2]
    table[0, 4 + 16, 3] = 0.99
    path = constant_outputs_model(tmp_path / "yolo.onnx", {"output0": table}, input_name="images")
    detector = load_detector(path, score_threshold=0.3)
    assert detector.layout == "ultralytics" and detector.preset == "ultralytics"
    boxes, scores = detector(IMAGE)
    scale = 640 / 480
    expected = np.array([[260, 186, 380, 426], [80, 166, 120, 246]], float)
    expected[:, [1, 3]] -= 106
    np.testing.assert_allclose(boxes, expected / scale, atol=1e-4)
    np.testing.assert_allclose(scores, [0.9, 0.5], atol=1e-6)
    blob, _, offset = detector.preprocess(np.full((320, 480, 3), (0, 0, 255), np.uint8))
    assert offset == (0.0, 106.0)
    np.testing.assert_allclose(blob[0, :, 320, 320], [1.0, 0.0, 0.0])  # red: RGB / 255


def test_onnx_unknown_layout_is_named(tmp_path):
    two = {"boxes": np.zeros((1, 2, 4), np.float32), "scores": np.zeros((1, 2), np.float32)}
    path = constant_outputs_model(tmp_path / "other.onnx", two)
    with pytest.raises(ValueError, match="unknown detector outputs"):
        load_detector(path)


def test_tf_object_detection_api_saved_model(tmp_path):
    import tensorflow as tf

    class Detector(tf.Module):
        @tf.function(
            input_signature=[tf.TensorSpec((1, None, None, 3), tf.uint8, name="input_tensor")]
        )
        def __call__(self, images):
            shape = tf.cast(tf.shape(images), tf.float32)
            boxes = tf.constant([[[0.1, 0.2, 0.5, 0.4],  # person: ymin, xmin, ymax, xmax
                                  [0.0, 0.0, 0.9, 0.9],  # class 3
                                  [0.5, 0.5, 1.0, 0.75],  # person, low score
                                  [0.2, 0.2, 0.3, 0.3]]])  # person past num_detections
            return {
                "detection_boxes": boxes + 0.0 * shape[0],
                "detection_classes": tf.constant([[1.0, 3.0, 1.0, 1.0]]),
                "detection_scores": tf.constant([[0.8, 0.9, 0.1, 0.9]]),
                "num_detections": tf.constant([3.0]),
            }

    module = Detector()
    tf.saved_model.save(
        module, str(tmp_path / "ssd"), signatures={"serving_default": module.__call__}
    )
    detector = load_detector(tmp_path / "ssd", score_threshold=0.3)
    assert isinstance(detector, SavedModelDetector)
    boxes, scores = detector(IMAGE)
    np.testing.assert_allclose(boxes, [[0.2 * 480, 0.1 * 320, 0.4 * 480, 0.5 * 320]], atol=1e-3)
    np.testing.assert_allclose(scores, [0.8], atol=1e-6)


def test_unknown_detector_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        load_detector(tmp_path / "missing.onnx")
    (tmp_path / "boxes.txt").write_text("1 2 3 4")
    with pytest.raises(ValueError, match="boxes.txt"):
        load_detector(tmp_path / "boxes.txt")
