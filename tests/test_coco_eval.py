"""COCO keypoint AP through results json -> pycocotools, on hand-made and synthetic data."""

import json

import keras
import numpy as np
import pytest

from keras_pose.data.coco import load_coco
from keras_pose.data.dataset_info import COCO17, DatasetInfo
from keras_pose.evaluation.coco_eval import METRIC_NAMES, coco_keypoint_ap, format_metrics
from keras_pose.evaluation.results import ResultsError, make_results, write_results
from keras_pose.models.base import PoseModel
from keras_pose.spec import PoseSpec, megvii_outputs

# (image id, box x, y, w, h, area): areas span COCO's medium (32^2..96^2) and large ranges.
PEOPLE = [
    (1, 40, 30, 120, 300, 20000.0),
    (1, 300, 60, 50, 140, 4000.0),
    (2, 100, 100, 90, 220, 12000.0),
    (2, 400, 200, 30, 80, 1500.0),
    (3, 20, 20, 200, 400, 50000.0),
    (3, 250, 50, 60, 150, 5000.0),
]


def write_coco(path, people=PEOPLE, info=COCO17, seed=0, unlabelled=(2, 0)):
    """A COCO keypoints json: random keypoints inside each box, some occluded (v=1), a few
    unlabelled (v=0 at 0,0), plus the person ``unlabelled`` (image, index) with no keypoints,
    which COCOeval ignores. Returns the annotation dicts of the labelled people."""
    rng = np.random.default_rng(seed)
    k = info.num_keypoints
    annotations = []
    for ann_id, (image_id, x, y, w, h, area) in enumerate(people, start=1):
        xy = rng.uniform([x, y], [x + w, y + h], (k, 2)).round(2)
        v = rng.choice([1, 2, 2, 2, 0], k)
        xy[v == 0] = 0
        annotations.append({
            "id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
            "bbox": [x, y, w, h], "area": area, "num_keypoints": int((v > 0).sum()),
            "keypoints": np.column_stack([xy, v]).reshape(-1).tolist(),
        })
    image_ids = sorted({p[0] for p in people})
    image_id, index = unlabelled
    annotations.append({
        "id": 1000, "image_id": image_id, "category_id": 1, "iscrowd": 0,
        "bbox": [500, 10, 40, 90], "area": 2000.0, "num_keypoints": 0, "keypoints": [0] * 3 * k,
    })
    coco = {
        "images": [{"id": i, "file_name": f"{i:06d}.jpg", "height": 480, "width": 640}
                   for i in image_ids],
        "annotations": annotations,
        "categories": [info.to_coco_category()],
    }
    path.write_text(json.dumps(coco))
    return [a for a in annotations if a["num_keypoints"] > 0]


def results_from_ground_truth(annotations, offsets=None, scores=None):
    """GT fed back as predictions: keypoint score 1, optional (N, K, 2) pixel offsets."""
    poses = np.array([np.reshape(a["keypoints"], (-1, 3)) for a in annotations], np.float64)
    poses[..., 2] = 1.0
    if offsets is not None:
        poses[..., :2] += offsets
    scores = np.ones(len(poses)) if scores is None else scores
    return make_results([a["image_id"] for a in annotations], poses, scores)


@pytest.fixture
def coco_file(tmp_path):
    path = tmp_path / "person_keypoints.json"
    return path, write_coco(path)


def test_ground_truth_as_predictions_gives_perfect_ap(coco_file, tmp_path):
    path, annotations = coco_file
    results_file = write_results(results_from_ground_truth(annotations), tmp_path / "r.json", 17)
    metrics = coco_keypoint_ap(path, results_file)
    assert {name: metrics[name] for name in METRIC_NAMES} == {name: 1.0 for name in METRIC_NAMES}
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets= 20 ] = 1.000" \
        in metrics["table"]
    assert "AP50" in format_metrics(metrics) and "1.000" in format_metrics(metrics)


def test_accepts_a_coco_object_and_a_list(coco_file):
    path, annotations = coco_file
    results = results_from_ground_truth(annotations)
    before = json.dumps(results)
    metrics = coco_keypoint_ap(load_coco(path), results)
    assert metrics["AP"] == 1.0
    assert json.dumps(results) == before  # pycocotools' loadRes did not touch the caller's list


def test_perturbed_ground_truth_lowers_ap_monotonically(coco_file):
    path, annotations = coco_file
    # offsets in units of each keypoint's OKS scale: a factor f gives OKS ~ exp(-f^2 |u|^2 / 2)
    unit = np.random.default_rng(3).normal(size=(len(annotations), 17, 2))
    scale = np.array([np.sqrt(a["area"]) for a in annotations])[:, None, None]
    scale = scale * 2 * np.asarray(COCO17.sigmas)[None, :, None]
    aps = [coco_keypoint_ap(path, results_from_ground_truth(annotations, f * unit * scale))["AP"]
           for f in (0.0, 0.25, 0.4, 0.55, 0.7, 0.85, 1.0)]
    assert aps[0] == 1.0
    assert all(later < earlier for earlier, later in zip(aps, aps[1:])), aps
    assert aps[-1] < 0.1, aps


def test_false_positives_ranked_above_true_poses_lower_ap(coco_file):
    path, annotations = coco_file
    truth = results_from_ground_truth(annotations, scores=np.full(len(annotations), 0.5))
    far = results_from_ground_truth(annotations, offsets=300.0)  # wrong poses, score 1
    assert coco_keypoint_ap(path, truth + far)["AP"] < 1.0
    for entry in far:
        entry["score"] = 0.1  # ranked below every true pose: AP is perfect again
    assert coco_keypoint_ap(path, truth + far)["AP"] == 1.0


def test_no_results_give_zero_ap(coco_file):
    path, _ = coco_file
    metrics = coco_keypoint_ap(path, [])
    assert metrics["AP"] == 0.0 and metrics["AR"] == 0.0


def test_image_ids_restrict_the_evaluation(coco_file):
    path, annotations = coco_file
    only_image_1 = [r for r in results_from_ground_truth(annotations) if r["image_id"] == 1]
    assert coco_keypoint_ap(path, only_image_1)["AR"] < 1.0  # people of images 2, 3 missed
    assert coco_keypoint_ap(path, only_image_1, image_ids=[1])["AR"] == 1.0
    with pytest.raises(ValueError, match=r"not in the annotation file: \[42\]"):
        coco_keypoint_ap(path, only_image_1, image_ids=[1, 42])


def test_oks_sigmas_are_the_ones_given(tmp_path):
    """One person, every keypoint shifted by d: AP = (# thresholds 0.50..0.95 <= OKS) / 10."""
    info = DatasetInfo("five", tuple(f"k{i}" for i in range(5)), (), (), (0.05,) * 5)
    path = tmp_path / "five.json"
    annotation = write_coco(path, [(1, 100, 100, 40, 50, 2000.0)], info, unlabelled=(1, 0))[0]
    annotation["keypoints"] = [150.0, 120.0, 2] * 5
    shift = np.zeros((1, 5, 2))
    shift[..., 0] = np.sqrt(-2 * 2000.0 * (2 * 0.05) ** 2 * np.log(0.77))  # OKS 0.77 at 0.05
    results = results_from_ground_truth([annotation], offsets=shift)
    data = json.loads(path.read_text())
    data["annotations"][0]["keypoints"] = annotation["keypoints"]
    path.write_text(json.dumps(data))
    assert coco_keypoint_ap(path, results)["AP"] == pytest.approx(0.6)  # default: file's 0.05
    assert coco_keypoint_ap(path, results, sigmas=[0.05] * 5)["AP"] == pytest.approx(0.6)
    # sigma 0.1: OKS = 0.77 ** (1/4) = 0.937 -> thresholds 0.50..0.90 pass
    assert coco_keypoint_ap(path, results, sigmas=[0.1] * 5)["AP"] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="17 OKS sigmas for the annotation file's 5 keypoints"):
        coco_keypoint_ap(path, results, sigmas=COCO17.sigmas)


def test_malformed_results_are_rejected_before_pycocotools(coco_file):
    path, annotations = coco_file
    results = results_from_ground_truth(annotations)
    results[3]["keypoints"] = results[3]["keypoints"][:-3]
    with pytest.raises(ResultsError, match="results entry 3: keypoints: 48 values, expected 51"):
        coco_keypoint_ap(path, results)
    results = results_from_ground_truth(annotations)
    results[0]["image_id"] = 77
    with pytest.raises(ResultsError, match="results entry 0: image_id: 77 is not an image"):
        coco_keypoint_ap(path, results)


# ------------------------------------------------------------------------------------------
# evaluate_coco on the synthetic COCO layout


def pycocotools_stats(ann_file, results_file, sigmas, image_ids=None):
    """The ten numbers straight from pycocotools, on the written results file."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        evaluator = COCOeval(gt, gt.loadRes(str(results_file)), "keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(sigmas)
        if image_ids is not None:
            evaluator.params.imgIds = list(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return dict(zip(METRIC_NAMES, evaluator.stats.tolist()))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from keras_pose.data.synthetic import make_coco_layout

    root = tmp_path_factory.mktemp("synthetic")
    return make_coco_layout(root, num_train=1, num_val=6, seed=0, image_size=(128, 160))["val2017"]


def tiny_spec(family="cpn"):
    outputs = megvii_outputs(["heatmaps"], [7], ["mse"], [1.0])
    return PoseSpec(family, (64, 48), 17, "BGR", outputs)


class GroundTruthPredictor:
    """Returns each box's ground-truth pose (keypoint score 1): a perfect model."""

    def __init__(self, ann_file, image_dir, spec):
        from keras_pose.data.coco import load_coco_records

        self.spec = spec
        self.poses = {self.key(r.box): r.keypoints for r in load_coco_records(ann_file, image_dir)}
        self.calls = 0

    @staticmethod
    def key(box):
        return tuple(np.round(np.asarray(box, np.float64), 2))

    def predict_many(self, items):
        for image, boxes in items:
            assert image.ndim == 3 and image.dtype == np.uint8
            self.calls += 1
            poses = np.stack([self.poses[self.key(b)] for b in boxes]).astype(np.float64)
            poses[..., 2] = 1.0
            yield poses


def test_ground_truth_through_evaluate_coco_gives_perfect_ap(synthetic, tmp_path):
    from keras_pose.evaluation import evaluate_coco

    oracle = GroundTruthPredictor(synthetic["annotation_file"], synthetic["image_dir"], tiny_spec())
    out = evaluate_coco(oracle, synthetic["annotation_file"], synthetic["image_dir"],
                        results_file=tmp_path / "results.json", progress=False)
    assert out["AP"] == 1.0 and out["AR"] == 1.0, out["table"]
    assert out["nms"] == "none" and out["keypoint_threshold"] is None  # CPN: the originals'
    assert out["num_images"] == 6 and oracle.calls == 6
    assert out["num_results"] == out["num_boxes"] == len(oracle.poses)
    direct = pycocotools_stats(synthetic["annotation_file"], out["results_file"], COCO17.sigmas)
    assert direct == {name: out[name] for name in METRIC_NAMES}


def write_duplicated_detections(ann_file, path, seed=0):
    """Every ground-truth box with a random score, and a copy scored 1% lower."""
    data = json.loads(open(ann_file).read())
    rng = np.random.default_rng(seed)
    detections = []
    for ann in data["annotations"]:
        if ann["num_keypoints"] == 0:
            continue
        score = float(rng.uniform(0.5, 1.0))
        for s in (score, 0.99 * score):
            detections.append({"image_id": ann["image_id"], "category_id": 1,
                               "bbox": ann["bbox"], "score": s})
    path.write_text(json.dumps(detections))
    return len(detections) // 2


@pytest.mark.parametrize("nms, perfect, kept", [("none", False, 2), ("oks", True, 1),
                                                ("soft_oks", True, 2)])
def test_nms_modes_on_duplicated_detections(synthetic, tmp_path, nms, perfect, kept):
    from keras_pose.evaluation import evaluate_coco

    ann_file, image_dir = synthetic["annotation_file"], synthetic["image_dir"]
    people = write_duplicated_detections(ann_file, tmp_path / "dets.json")
    oracle = GroundTruthPredictor(ann_file, image_dir, tiny_spec())
    out = evaluate_coco(oracle, ann_file, image_dir, det_file=tmp_path / "dets.json", nms=nms,
                        progress=False, results_file=tmp_path / "r.json")
    assert out["num_boxes"] == 2 * people
    assert out["num_results"] == kept * people
    assert (out["AP"] == 1.0) == perfect, out["AP"]
    results = json.loads((tmp_path / "r.json").read_text())
    assert all(r["score"] <= 1.0 for r in results)


def test_family_defaults_and_max_images(synthetic, tmp_path):
    from keras_pose.evaluation import default_keypoint_threshold, default_nms, evaluate_coco

    assert [default_nms(f) for f in ("cpn", "mspn", "rsn", "cpm", "hourglass")] == \
        ["none", "none", "none", "oks", "oks"]
    assert default_keypoint_threshold("rsn") is None and default_keypoint_threshold("cpm") == 0.2
    ann_file, image_dir = synthetic["annotation_file"], synthetic["image_dir"]
    oracle = GroundTruthPredictor(ann_file, image_dir, tiny_spec("hourglass"))
    out = evaluate_coco(oracle, ann_file, image_dir, max_images=2, progress=False,
                        results_file=tmp_path / "r.json")
    assert out["nms"] == "oks" and out["keypoint_threshold"] == 0.2
    assert out["num_images"] == 2 and oracle.calls <= 2 and out["AP"] == 1.0
    first_two = sorted(load_coco(ann_file).getImgIds())[:2]
    assert {r["image_id"] for r in json.loads((tmp_path / "r.json").read_text())} <= set(first_two)
    with pytest.raises(ValueError, match="nms must be 'auto' or one of"):
        evaluate_coco(oracle, ann_file, image_dir, nms="greedy", progress=False)


# ------------------------------------------------------------------------------------------
# A tiny real model through Predictor, evaluate_coco and the recipe



LEVELS = (0.0, 128.0, 255.0)
# 17 distinct (B, G, R) codes over LEVELS, none black: keypoint k is a dot of colour CODES[k].
CODES = [c for c in np.ndindex(3, 3, 3) if max(c) == 2][:17]
# a standing person in box coordinates (COCO-17 order)
TEMPLATE = np.array([
    (0.50, 0.08), (0.57, 0.05), (0.43, 0.05), (0.62, 0.09), (0.38, 0.09), (0.72, 0.23),
    (0.28, 0.23), (0.82, 0.39), (0.18, 0.39), (0.88, 0.53), (0.12, 0.53), (0.62, 0.55),
    (0.38, 0.55), (0.64, 0.75), (0.36, 0.75), (0.65, 0.95), (0.35, 0.95),
])


def write_dot_dataset(root, num_images=4, seed=0):
    """A COCO layout whose people are 17 colour-coded dots (PNG, black background)."""
    import cv2

    rng = np.random.default_rng(seed)
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        canvas = np.zeros((240, 320, 3), np.uint8)
        for slot in range(2):
            w, h = rng.uniform(80, 120), rng.uniform(170, 220)
            x, y = 160 * slot + rng.uniform(5, 155 - w), rng.uniform(5, 235 - h)
            xy = (TEMPLATE + rng.normal(0, 0.015, TEMPLATE.shape)) * [w, h] + [x, y]
            for k, (px, py) in enumerate(xy):
                colour = [LEVELS[level] for level in CODES[k]]
                cv2.circle(canvas, (int(round(px)), int(round(py))), 3, colour, -1)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                "iscrowd": 0, "bbox": [x, y, w, h], "area": 0.5 * w * h, "num_keypoints": 17,
                "keypoints": np.column_stack([np.round(xy), np.full(17, 2)]).reshape(-1).tolist(),
            })
        name = f"{image_id:06d}.png"
        cv2.imwrite(str(root / "val2017" / name), canvas)
        images.append({"id": image_id, "file_name": name, "height": 240, "width": 320})
    ann_file = root / "annotations" / "person_keypoints_val2017.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations,
                                    "categories": [COCO17.to_coco_category()]}))
    return {"root": str(root), "annotation_file": str(ann_file),
            "image_dir": str(root / "val2017")}


@keras.saving.register_keras_serializable(package="keras_pose_tests")
class DotDetector(PoseModel):
    """A real (tiny) Keras pose model with hand-set weights that finds colour-coded dots.

    Three 1x1 convs: ``|p_c - level|`` per channel and level, a bump
    ``u = relu(1 - |p_c - level| / 64)``, and ``relu(sum_c u_c(code_k) - 2)`` = 1 exactly on
    pixels of keypoint k's colour; a 4x4 average pool and x255 give Megvii-scale heatmaps.
    It is not mirror-aware (a colour stays a colour), so it is evaluated without flip test.
    """

    def __init__(self, input_shape=(128, 96, 3), num_keypoints=17, name="dot_detector"):
        image = keras.Input(tuple(input_shape), name="image")
        x = keras.layers.Conv2D(18, 1, activation="relu", name="signed_distance")(image)
        x = keras.layers.Conv2D(9, 1, activation="relu", name="level_bump")(x)
        x = keras.layers.Conv2D(num_keypoints, 1, activation="relu", name="colour_match")(x)
        x = keras.layers.AveragePooling2D(4)(x)
        heatmaps = keras.layers.Rescaling(255.0, name="heatmaps")(x)
        spec = PoseSpec("mspn", tuple(input_shape[:2]), num_keypoints, "BGR",
                        megvii_outputs(["heatmaps"], [7], ["mse"], [1.0]))
        super().__init__(inputs=image, outputs={"heatmaps": heatmaps}, spec=spec, name=name)
        self._arguments = {"input_shape": list(input_shape), "num_keypoints": num_keypoints}
        self._set_detector_weights()

    def _set_detector_weights(self):
        signed = np.zeros((1, 1, 3, 18)), np.zeros(18)
        bump = np.zeros((1, 1, 18, 9)), np.ones(9)
        for c in range(3):
            for level_index, level in enumerate(LEVELS):
                unit = 3 * c + level_index
                signed[0][0, 0, c, 2 * unit], signed[1][2 * unit] = 1.0, -level
                signed[0][0, 0, c, 2 * unit + 1], signed[1][2 * unit + 1] = -1.0, level
                bump[0][0, 0, [2 * unit, 2 * unit + 1], unit] = -1 / 64
        match = np.zeros((1, 1, 9, len(CODES))), np.full(len(CODES), -2.0)
        for k, code in enumerate(CODES):
            for c, level_index in enumerate(code):
                match[0][0, 0, 3 * c + level_index, k] = 1.0
        for name, weights in (("signed_distance", signed), ("level_bump", bump),
                              ("colour_match", match)):
            self.get_layer(name).set_weights(list(weights))

    def get_config(self):
        return {**super().get_config(), **self._arguments}


@pytest.fixture(scope="module")
def dots(tmp_path_factory):
    data = write_dot_dataset(tmp_path_factory.mktemp("dots"))
    path = tmp_path_factory.mktemp("model") / "dot_detector.keras"
    DotDetector().save(path)
    return {**data, "keras": str(path)}


def test_evaluate_coco_with_a_tiny_model_matches_pycocotools(dots, tmp_path):
    from keras_pose.evaluation import evaluate_coco

    model = keras.saving.load_model(dots["keras"])
    out = evaluate_coco(model, dots["annotation_file"], dots["image_dir"], flip_test=False,
                        batch_size=3, progress=False, results_file=tmp_path / "r.json")
    direct = pycocotools_stats(dots["annotation_file"], out["results_file"], COCO17.sigmas)
    assert direct == {name: out[name] for name in METRIC_NAMES}
    assert out["num_results"] == out["num_boxes"] == 8 and out["nms"] == "none"
    assert out["AP50"] == 1.0 and out["AP"] >= 0.9, out["table"]  # every dot found, ~1 px off
    # the same model with the colour codes of left and right keypoints swapped is worse
    swapped = DotDetector()
    kernel, bias = swapped.get_layer("colour_match").get_weights()
    order = COCO17.flip_indices
    swapped.get_layer("colour_match").set_weights([kernel[..., order], bias[order]])
    worse = evaluate_coco(swapped, dots["annotation_file"], dots["image_dir"], flip_test=False,
                          progress=False)
    assert worse["AP"] < out["AP"]


def test_recipe_prints_the_table_of_the_written_results(dots, tmp_path, capsys):
    import importlib.util
    import pathlib

    recipe_path = pathlib.Path(__file__).parents[1] / "recipes" / "eval_coco.py"
    spec = importlib.util.spec_from_file_location("eval_coco_recipe", recipe_path)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    out_file = tmp_path / "results.json"
    metrics = recipe.main(["--keras", dots["keras"], "--data-dir", dots["root"], "--no-flip",
                           "--batch-size", "8", "--out", str(out_file), "--no-progress",
                           "--metrics-json", str(tmp_path / "m.json")])
    printed = capsys.readouterr().out
    direct = pycocotools_stats(dots["annotation_file"], out_file, COCO17.sigmas)
    assert direct["AP"] > 0.5
    assert f"maxDets= 20 ] = {direct['AP']:.3f}" in printed
    assert format_metrics(direct) in printed
    assert metrics["results_file"] == str(out_file)
    assert json.loads((tmp_path / "m.json").read_text())["AP"] == direct["AP"]


def test_keypoint_noise_tool_ap_falls_with_the_noise(coco_file):
    import importlib.util
    from pathlib import Path

    tool = Path(__file__).parents[1] / "tools" / "keypoint_noise_ap.py"
    spec = importlib.util.spec_from_file_location("keypoint_noise_ap", tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path, _ = coco_file
    aps = module.ap_under_noise(str(path), [0.0, 2.0, 8.0, 30.0])
    assert aps[0] == 1.0
    assert all(later < earlier for earlier, later in zip(aps, aps[1:])), aps
    assert aps[-1] < 0.1, aps


@pytest.mark.parametrize("family", ["cpm", "rsn"])
def test_evaluate_coco_follows_the_specs_flip_test_by_default(family):
    from keras_pose.data.dataset_info import COCO17
    from keras_pose.evaluation.evaluate import _predictor_and_spec
    from keras_pose.models import TinyPose

    model = TinyPose(family=family, input_shape=(16, 12, 3), width=2, compile=False)
    assert model.spec.flip_test == (family != "cpm")  # CPM's original tests without flip
    predictor, spec = _predictor_and_spec(model, COCO17, None, None)
    assert predictor.flip_test == spec.flip_test == model.spec.flip_test
    assert predictor.batch_size == 32
    forced, _ = _predictor_and_spec(model, COCO17, True, 4)
    assert forced.flip_test is True and forced.batch_size == 4


def test_evaluate_coco_refuses_flip_test_for_a_ready_predictor(synthetic):
    from keras_pose.evaluation import evaluate_coco

    oracle = GroundTruthPredictor(synthetic["annotation_file"], synthetic["image_dir"], tiny_spec())
    with pytest.raises(ValueError, match="flip_test.*Predictor"):
        evaluate_coco(oracle, synthetic["annotation_file"], synthetic["image_dir"],
                      flip_test=True, progress=False)
