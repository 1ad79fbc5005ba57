"""`build_dataset`: structure, determinism, evaluation metadata, bad images, and `model.fit`."""

import json
import logging
import os

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf
from test_coco_reader import person, random_keypoints, standard_people, write_coco_folder

from keras_pose.data import build_dataset, evaluation_dataset, training_dataset
from keras_pose.data.coco import load_coco_records, read_dataset_info
from keras_pose.data.pipeline import SKIPPED_IMAGES
from keras_pose.data.targets import make_targets
from keras_pose.data.transforms import crop_keypoints, eval_crop, invert_matrix, transform_points
from keras_pose.models.base import PoseModel
from keras_pose.spec import PoseSpec, megvii_outputs

INPUT = (64, 48)


def mspn_spec(num_keypoints=17, channel_order="BGR"):
    outputs = megvii_outputs(
        ["stage1_unit4", "heatmaps"], [7, 5], ["ohkm", "ohkm"], [1.0, 1.0]
    ) + megvii_outputs(["stage2_unit1"], [9], ["mse"], [0.25])
    return PoseSpec("mspn", INPUT, num_keypoints, channel_order, outputs,
                    box_extension=(1.09, 1.135))


def cpn_spec():
    names = ["global_c2", "global_c3", "heatmaps"]
    outputs = megvii_outputs(names, [9, 7, 7], ["mse", "mse", "ohkm"], [0.5, 0.5, 1.0])
    return PoseSpec("cpn", INPUT, 17, "BGR", outputs, box_extension=(1.2, 1.3))


@pytest.fixture(scope="module")
def coco_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    return write_coco_folder(root, standard_people(np.random.default_rng(0), 3), 3)


def collect(dataset):
    batches = list(dataset.as_numpy_iterator())
    return [np.concatenate([b[i] for b in batches]) if not isinstance(batches[0][i], dict)
            else {k: np.concatenate([b[i][k] for b in batches]) for k in batches[0][i]}
            for i in range(len(batches[0]))]


# ---------------------------------------------------------------------------------------------


def test_training_batches_have_the_model_structure(coco_folder):
    spec = mspn_spec()
    dataset = build_dataset(spec, *coco_folder, batch_size=4, seed=0)
    images, targets, weights = dataset.element_spec
    assert images.shape == (4, 64, 48, 3) and images.dtype == tf.float32
    assert list(targets) == list(weights) == spec.output_names
    for name in spec.output_names:
        assert targets[name].shape == (4, 16, 12, 17) and targets[name].dtype == tf.float32
        assert weights[name].shape == (4, 17) and weights[name].dtype == tf.float32
    batches = list(dataset.as_numpy_iterator())
    assert len(batches) == 1  # 6 people, batch 4, remainder dropped
    x, t, w = batches[0]
    assert 0 <= x.min() and x.max() <= 255 and x.std() > 10
    assert t["heatmaps"].max() == pytest.approx(255.0)
    np.testing.assert_array_equal(w["stage2_unit1"], 1.0)  # plain L2 counts every keypoint
    # OHKM counts labelled keypoints; none without weight has a target
    assert ((t["heatmaps"].max(axis=(1, 2)) > 0) <= (w["heatmaps"] > 0)).all()


def test_batch_targets_belong_to_their_crops(coco_folder):
    """Targets are encoded per batch, after the crops are batched: each must still be
    ``make_targets`` of its own crop's keypoints, in every output, with the right weights."""
    spec = mspn_spec()
    ann_file, image_dir = coco_folder
    records = load_coco_records(ann_file, image_dir, read_dataset_info(ann_file))
    dataset = build_dataset(spec, ann_file, image_dir, batch_size=4, augment=False,
                            shuffle=False, deterministic=True, drop_remainder=False)
    images, targets, weights = collect(dataset)
    assert images.shape[0] == len(records) == 6
    for i, record in enumerate(records):
        keypoints = crop_keypoints(record.keypoints, eval_crop(record.box, spec).matrix,
                                   spec.input_size)
        expected_targets, expected_weights = make_targets(spec, keypoints)
        assert expected_targets["heatmaps"].max() > 0
        for name in spec.output_names:
            np.testing.assert_array_equal(targets[name][i], expected_targets[name])
            np.testing.assert_array_equal(weights[name][i], expected_weights[name])


def test_cpn_draws_four_adjacent_copies(coco_folder):
    dataset = build_dataset(cpn_spec(), *coco_folder, batch_size=8, seed=1)
    images, targets, weights = next(dataset.as_numpy_iterator())
    for start in (0, 4):  # zoom then its crop flip, exactly mirrored up to uint8 rounding
        difference = images[start + 1] - images[start][:, ::-1]
        assert np.abs(difference).max() <= 1 and (difference != 0).mean() < 0.01


def test_deterministic_with_a_seed(coco_folder):
    spec = mspn_spec()

    def run(seed):
        dataset = build_dataset(spec, *coco_folder, batch_size=2, seed=seed, deterministic=True)
        return collect(dataset)

    first, second, other = run(3), run(3), run(4)
    np.testing.assert_array_equal(first[0], second[0])
    for name in spec.output_names:
        np.testing.assert_array_equal(first[1][name], second[1][name])
    assert not np.array_equal(first[0], other[0])


def test_epochs_draw_new_augmentations(coco_folder):
    dataset = build_dataset(mspn_spec(), *coco_folder, batch_size=6, seed=5, shuffle=False)
    first, second = collect(dataset)[0], collect(dataset)[0]
    assert not np.array_equal(first, second)


def test_evaluation_meta_maps_crops_back(coco_folder):
    spec = mspn_spec(channel_order="RGB")
    dataset = build_dataset(spec, *coco_folder, batch_size=4, training=False, return_meta=True)
    images, meta = collect(dataset)
    assert images.shape == (6, 64, 48, 3)
    assert meta["record_index"].tolist() == list(range(6))  # eval keeps the record order
    annotations = json.load(open(coco_folder[0]))["annotations"]
    assert meta["annotation_id"].tolist() == [a["id"] for a in annotations]
    assert meta["image_id"].tolist() == [a["image_id"] for a in annotations]
    np.testing.assert_allclose(meta["score"], 1.0)
    assert not meta["flipped"].any() and meta["matrix"].dtype == np.float64
    for i, ann in enumerate(annotations):
        keypoints = np.asarray(ann["keypoints"], float).reshape(17, 3)[:, :2]
        in_crop = transform_points(keypoints, meta["matrix"][i])
        back = transform_points(in_crop, invert_matrix(meta["matrix"][i]))
        np.testing.assert_allclose(back, keypoints, atol=1e-6)
        np.testing.assert_allclose(meta["box"][i], ann["bbox"])
        np.testing.assert_allclose(transform_points(meta["center"][i], meta["matrix"][i]),
                                   [24, 32], atol=1e-9)
    # RGB models get the crop with channels reversed
    bgr = collect(build_dataset(mspn_spec(), *coco_folder, batch_size=4, training=False,
                                return_meta=True))[0]
    np.testing.assert_array_equal(images, bgr[..., ::-1])


def test_detections_for_evaluation(coco_folder, tmp_path):
    det_file = tmp_path / "dets.json"
    det_file.write_text(json.dumps([
        {"image_id": 2, "category_id": 1, "bbox": [10, 12, 40, 80], "score": 0.7},
        {"image_id": 3, "category_id": 1, "bbox": [70, 12, 40, 80], "score": 0.05},
    ]))
    dataset = build_dataset(mspn_spec(), *coco_folder, batch_size=8, training=False,
                            det_file=det_file, score_threshold=0.1)
    images, meta = collect(dataset)
    assert images.shape[0] == 1 and meta["image_id"].tolist() == [2]
    assert meta["annotation_id"].tolist() == [-1] and meta["score"][0] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="return_meta=True"):
        build_dataset(mspn_spec(), *coco_folder, det_file=det_file, return_meta=False)


def test_training_and_evaluation_inputs_have_one_structure_each(coco_folder, tmp_path):
    """The two entry points fix build_dataset's settings: the same batches, one shape each."""
    spec = mspn_spec()
    train = training_dataset(spec, *coco_folder, batch_size=4, seed=3)
    images, targets, weights = train.element_spec
    assert set(targets) == set(weights) == set(spec.output_names)
    expected = collect(build_dataset(spec, *coco_folder, batch_size=4, seed=3, training=True))
    for got, want in zip(collect(train), expected):
        if isinstance(want, dict):
            for name in want:
                np.testing.assert_array_equal(got[name], want[name])
        else:
            np.testing.assert_array_equal(got, want)
    evaluation = evaluation_dataset(spec, *coco_folder, batch_size=4)
    images, meta = collect(evaluation)
    assert images.shape[0] == 6 and meta["record_index"].tolist() == list(range(6))
    det_file = tmp_path / "dets.json"
    det_file.write_text(json.dumps([
        {"image_id": 2, "category_id": 1, "bbox": [10, 12, 40, 80], "score": 0.7}]))
    images, meta = collect(evaluation_dataset(spec, *coco_folder, det_file=det_file))
    assert meta["annotation_id"].tolist() == [-1]


def test_shards_partition_the_records(coco_folder):
    def indices(shard):
        dataset = build_dataset(mspn_spec(), *coco_folder, batch_size=8, training=False,
                                return_meta=True, shard=shard)
        return collect(dataset)[1]["record_index"].tolist()

    assert indices((2, 0)) == [0, 2, 4] and indices((2, 1)) == [1, 3, 5]


def test_missing_image_fails_at_build_time(tmp_path):
    people = standard_people(np.random.default_rng(1), 2)
    ann_file, image_dir = write_coco_folder(tmp_path, people, 2)
    os.remove(os.path.join(image_dir, "0001.jpg"))
    with pytest.raises(FileNotFoundError, match="0001.jpg"):
        build_dataset(mspn_spec(), ann_file, image_dir)


def test_corrupt_image_is_a_counted_skip_not_a_crash(tmp_path, caplog):
    people = standard_people(np.random.default_rng(2), 3)
    ann_file, image_dir = write_coco_folder(tmp_path, people, 3)
    path = os.path.join(image_dir, "0002.jpg")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 3])
    with caplog.at_level(logging.WARNING, logger="keras_pose.data.pipeline"):
        dataset = build_dataset(mspn_spec(), ann_file, image_dir, batch_size=1, seed=0)
        images, targets, weights = collect(dataset)
    assert images.shape[0] == 4  # 6 people, the 2 of image 2 skipped
    assert path in SKIPPED_IMAGES.paths
    messages = [r.getMessage() for r in caplog.records if "0002.jpg" in r.getMessage()]
    assert len(messages) == 1 and "truncated JPEG" in messages[0]  # once per file
    with pytest.raises(ValueError, match="0002.jpg"):
        build_dataset(mspn_spec(), ann_file, image_dir, verify_images=True)


# ---------------------------------------------------------------------------------------------
# End to end with a real PoseModel


HAND = {"id": 1, "name": "hand", "keypoints": ["left_tip", "right_tip", "wrist"]}
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]  # BGR: one colour per keypoint


class TinyPose(PoseModel):
    """Three convs to a stride-4 map and two named heatmap outputs."""

    def __init__(self, spec, **kwargs):
        image = keras.Input((*spec.input_size, 3), name="image")
        x = keras.layers.Rescaling(1.0 / 255.0)(image)
        x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(32, 5, padding="same", activation="relu")(x)
        coarse = keras.layers.Conv2D(spec.num_keypoints, 3, padding="same",
                                     name=spec.outputs[0].name)(x)
        fine = keras.layers.Conv2D(spec.num_keypoints, 3, padding="same", name="heatmaps")(x)
        super().__init__(inputs=image, outputs={spec.outputs[0].name: coarse, "heatmaps": fine},
                         spec=spec, **kwargs)


def write_dot_people(root, num_images=8):
    """One person per image whose three keypoints are coloured discs."""
    rng = np.random.default_rng(3)
    ann_file, image_dir = write_coco_folder(root, [], num_images, category=HAND, hw=(96, 72))
    annotations = []
    for image_id in range(1, num_images + 1):
        box = [8, 8, 56, 80]
        keypoints = random_keypoints(rng, box, 3)
        image = np.full((96, 72, 3), 30, np.uint8)
        for (x, y, _), colour in zip(keypoints, COLOURS):
            cv2.circle(image, (int(round(x)), int(round(y))), 3, colour, -1)
        cv2.imwrite(os.path.join(image_dir, f"{image_id:04d}.jpg"), image)
        annotations.append(person(image_id, image_id, box, keypoints))
    dataset = json.load(open(ann_file))
    dataset["annotations"] = annotations
    open(ann_file, "w").write(json.dumps(dataset))
    return ann_file, image_dir


def test_model_fit_on_the_dataset_drives_the_loss_down(tmp_path):
    ann_file, image_dir = write_dot_people(tmp_path)
    outputs = megvii_outputs(["coarse", "heatmaps"], [7, 5], ["mse", "ohkm"], [0.5, 1.0])
    model = TinyPose(PoseSpec("mspn", INPUT, 3, "BGR", outputs))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    dataset = build_dataset(model, ann_file, image_dir, batch_size=8, augment=False, seed=0)
    assert isinstance(build_dataset(model, ann_file, image_dir).element_spec[0], tf.TensorSpec)
    initial = model.evaluate(dataset, verbose=0, return_dict=True)["loss"]
    model.fit(dataset.repeat(), steps_per_epoch=20, epochs=5, verbose=0)
    final = model.evaluate(dataset, verbose=0, return_dict=True)["loss"]
    assert final < initial / 10, (initial, final)
    # the weights reach the losses: all-zero keypoint weights give a zero loss
    unweighted = dataset.map(lambda x, t, w: (x, t, {k: 0.0 * v for k, v in w.items()}))
    assert model.evaluate(unweighted, verbose=0, return_dict=True)["loss"] == 0.0


def test_training_batches_have_no_autotuning_thread(coco_folder):
    """Deleting an iterator waited for tf.data's autotuning thread: 20-57 s at the end of the
    main job's ``fit`` calls. The training pipeline keeps TensorFlow's fixed defaults."""
    dataset = build_dataset(mspn_spec(), *coco_folder, batch_size=2, seed=0)
    assert dataset.options().autotune.enabled is False
    assert len(list(dataset.take(2))) == 2
