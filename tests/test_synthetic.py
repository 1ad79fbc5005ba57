"""The synthetic COCO-format keypoint dataset: files, annotation semantics, pixels, metric."""

import contextlib
import io
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from keras_pose.data import synthetic
from keras_pose.data.dataset_info import COCO17
from keras_pose.data.synthetic import make_coco_dataset, make_coco_layout, render_example

NUM_TRAIN, NUM_VAL, SEED = 60, 40, 0
LIMBS = ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16))


def quiet_coco(path: str) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(path)


def keypoint_ap(gt: COCO, results: list[dict]) -> float:
    """COCO keypoint AP (OKS 0.50:0.95) with COCO-17 sigmas."""
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.kpt_oks_sigmas = np.array(COCO17.sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def keypoints_of(ann: dict) -> np.ndarray:
    return np.array(ann["keypoints"], np.float64).reshape(17, 3)


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != synthetic.MANIFEST_NAME}


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return make_coco_layout(tmp_path_factory.mktemp("coco"), NUM_TRAIN, NUM_VAL, seed=SEED)


@pytest.fixture(scope="module")
def train(layout):
    return quiet_coco(layout["train2017"]["annotation_file"])


@pytest.fixture(scope="module")
def val(layout):
    return quiet_coco(layout["val2017"]["annotation_file"])


def test_layout_is_coco_shaped_and_loads(layout, train, val):
    root = Path(layout["root"])
    assert (root / "annotations" / "person_keypoints_train2017.json").is_file()
    assert (root / "annotations" / "person_keypoints_val2017.json").is_file()
    for split, coco, count in (("train2017", train, NUM_TRAIN), ("val2017", val, NUM_VAL)):
        assert Path(layout[split]["image_dir"]) == root / split
        assert len(coco.getImgIds()) == count
        assert coco.dataset["categories"] == [COCO17.to_coco_category()]
        for info in coco.loadImgs(coco.getImgIds()[:5]):
            image = cv2.imread(os.path.join(layout[split]["image_dir"], info["file_name"]))
            assert image.shape == (info["height"], info["width"], 3) == (240, 320, 3)
    assert not set(train.getImgIds()) & set(val.getImgIds())
    assert not set(train.getAnnIds()) & set(val.getAnnIds())
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temp leftovers


@pytest.mark.parametrize("split", ["train2017", "val2017"])
def test_every_annotation_is_valid_coco(split, train, val):
    coco = train if split == "train2017" else val
    assert len(coco.getAnnIds()) >= len(coco.getImgIds())  # several people per image on average
    for ann in coco.loadAnns(coco.getAnnIds()):
        info = coco.imgs[ann["image_id"]]
        w, h = info["width"], info["height"]
        kpts = keypoints_of(ann)
        v = kpts[:, 2]
        assert ann["category_id"] == 1 and ann["iscrowd"] == 0
        assert set(np.unique(v)) <= {0, 1, 2}
        assert ann["num_keypoints"] == int((v > 0).sum()) >= 3
        assert np.all(kpts[v == 0, :2] == 0)
        x, y, bw, bh = ann["bbox"]
        assert bw > 0 and bh > 0 and x >= 0 and y >= 0 and x + bw <= w and y + bh <= h
        labelled = kpts[v > 0, :2]
        assert np.all((labelled >= 0) & (labelled <= [w - 1, h - 1]))
        assert np.all((labelled >= [x, y]) & (labelled <= [x + bw, y + bh]))
        assert ann["area"] == float(mask_utils.area(ann["segmentation"])) > 0


def test_keypoints_sit_on_the_drawn_bodies(layout, val):
    """Visible keypoints and limb midpoints differ from the same scene rendered without people;
    pixels far from every person and object do not."""
    keypoint_diffs, limb_diffs, background_diffs = [], [], []
    for index, image_id in enumerate(sorted(val.getImgIds())[:25]):
        info = val.imgs[image_id]
        photo = cv2.imread(os.path.join(layout["val2017"]["image_dir"], info["file_name"]))
        empty = render_example(SEED, index, "val2017", draw_foreground=False)
        smooth = [cv2.blur(im.astype(np.float32), (5, 5)) for im in (photo, empty.image)]
        diff = np.abs(smooth[0] - smooth[1]).max(axis=2)

        def at(point, diff=diff):
            return diff[int(round(point[1])), int(round(point[0]))]

        for ann in val.imgToAnns[image_id]:
            kpts = keypoints_of(ann)
            keypoint_diffs += [at(p) for p in kpts[kpts[:, 2] == 2, :2]]
            limb_diffs += [at((kpts[a, :2] + kpts[b, :2]) / 2) for a, b in LIMBS
                           if kpts[a, 2] == 2 and kpts[b, 2] == 2]
        foreground = render_example(SEED, index, "val2017").foreground
        far = cv2.dilate(foreground.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
        background_diffs.append(diff[far])
    keypoint_diffs, limb_diffs = np.array(keypoint_diffs), np.array(limb_diffs)
    background_diffs = np.concatenate(background_diffs)
    assert len(keypoint_diffs) > 200 and len(limb_diffs) > 50
    assert np.mean(keypoint_diffs > 20) > 0.97
    assert np.mean(limb_diffs > 20) > 0.97
    assert np.mean(background_diffs < 20) > 0.99


def test_visibility_follows_the_rendering(train):
    """v=2 keypoints lie on their own visible mask; some v=1 lie under another person."""
    covered_by_other = 0
    for image_id in train.getImgIds():
        anns = train.imgToAnns[image_id]
        masks = [train.annToMask(a).astype(bool) for a in anns]
        for i, ann in enumerate(anns):
            kpts = keypoints_of(ann)
            for x, y, v in kpts[5:]:  # body keypoints
                if v == 0:
                    continue
                r, c = int(round(y)), int(round(x))
                under_other = any(m[r, c] for j, m in enumerate(masks) if j != i)
                if v == 2:
                    assert masks[i][r, c] and not under_other
                else:
                    covered_by_other += under_other
    assert covered_by_other >= 5


def test_truncated_people_touch_the_border(train):
    truncated = 0
    for ann in train.loadAnns(train.getAnnIds()):
        if np.any(keypoints_of(ann)[5:, 2] == 0):  # body keypoints are only unlabelled outside
            truncated += 1
            info = train.imgs[ann["image_id"]]
            x, y, w, h = ann["bbox"]
            assert x == 0 or y == 0 or x + w == info["width"] or y + h == info["height"]
    assert truncated >= 5


def test_face_keypoints_follow_head_orientation(train):
    anns = train.loadAnns(train.getAnnIds())
    face = np.array([keypoints_of(a)[:5, 2] for a in anns])
    frontal = np.all(face[:, :3] == 2, axis=1)
    behind = (face[:, 0] == 0) & (face[:, 1] == 0) & (face[:, 2] == 0) & np.any(face[:, 3:] > 0, 1)
    profile = (face[:, 1] == 2) != (face[:, 2] == 2)
    assert frontal.sum() >= 3 and behind.sum() >= 3 and profile.sum() >= 3
    # Seen from the front, the person's left shoulder is on the image's right.
    shoulders = np.array([keypoints_of(a)[5:7] for a in anns])[frontal]
    both = (shoulders[:, 0, 2] > 0) & (shoulders[:, 1, 2] > 0)
    assert np.mean(shoulders[both, 0, 0] > shoulders[both, 1, 0]) > 0.8


def test_ground_truth_scores_ap_1_and_a_constant_pose_scores_near_0(train, val):
    def results(coco, pose_of):
        return [{"image_id": a["image_id"], "category_id": 1, "score": 1.0,
                 "keypoints": pose_of(a).reshape(-1).tolist()}
                for a in coco.loadAnns(coco.getAnnIds())]

    assert keypoint_ap(val, results(val, keypoints_of)) == pytest.approx(1.0)

    # Mean pose, normalised by the box, learnt on train and placed in every true val box.
    norm, labelled = [], []
    for ann in train.loadAnns(train.getAnnIds()):
        x, y, w, h = ann["bbox"]
        kpts = keypoints_of(ann)
        norm.append((kpts[:, :2] - [x, y]) / [w, h])
        labelled.append(kpts[:, 2] > 0)
    norm, labelled = np.array(norm), np.array(labelled)
    mean_pose = np.array([norm[labelled[:, k], k].mean(0) for k in range(17)])

    def constant(ann):
        x, y, w, h = ann["bbox"]
        return np.concatenate([mean_pose * [w, h] + [x, y], np.ones((17, 1))], axis=1)

    assert keypoint_ap(val, results(val, constant)) < 0.1


def test_detections_are_coco_results_overlapping_the_ground_truth(layout, val):
    path = layout["val2017"]["detection_file"]
    with open(path) as f:
        detections = json.load(f)
    with contextlib.redirect_stdout(io.StringIO()):
        val.loadRes(path)  # valid COCO results for this ground truth
    best_gt_iou, best_det_iou = [], []
    for image_id in val.getImgIds():
        info = val.imgs[image_id]
        dets = [d for d in detections if d["image_id"] == image_id]
        for d in dets:
            x, y, w, h = d["bbox"]
            assert d["category_id"] == 1 and 0 < d["score"] <= 1
            assert w > 0 and h > 0 and x >= 0 and y >= 0
            assert x + w <= info["width"] + 1e-6 and y + h <= info["height"] + 1e-6
        gt = np.array([a["bbox"] for a in val.imgToAnns[image_id]]).reshape(-1, 4)
        det = np.array([d["bbox"] for d in dets]).reshape(-1, 4)
        iou = mask_utils.iou(gt, det, [0] * len(det)) if len(gt) and len(det) else np.zeros(
            (len(gt), len(det)))
        best_gt_iou += list(iou.max(1)) if len(det) else [0.0] * len(gt)
        best_det_iou += list(iou.max(0)) if len(gt) else [0.0] * len(det)
    best_gt_iou, best_det_iou = np.array(best_gt_iou), np.array(best_det_iou)
    assert 0.85 <= np.mean(best_gt_iou >= 0.5) < 1.0  # most people found, a few missed
    assert np.median(best_gt_iou) > 0.7
    assert np.sum(best_det_iou < 0.1) >= 3  # false positives
    assert np.std([d["score"] for d in detections]) > 0.1


def test_same_seed_same_files_other_seed_different(tmp_path):
    first = make_coco_dataset(tmp_path / "a", 4, seed=3, split="val2017")
    again = make_coco_dataset(tmp_path / "b", 4, seed=3, split="val2017")
    other = make_coco_dataset(tmp_path / "c", 4, seed=4, split="val2017")
    prefix = make_coco_dataset(tmp_path / "d", 2, seed=3, split="val2017")
    files = all_files(Path(first["root"]))
    assert len(files) == 6
    assert files == all_files(Path(again["root"]))
    others = all_files(Path(other["root"]))
    assert all(files[name] != others[name] for name in files)
    # An image does not depend on how many are generated.
    for name, data in all_files(Path(prefix["root"])).items():
        if name.endswith(".jpg"):
            assert files[name] == data


def test_existing_dataset_is_reused_and_foreign_data_is_never_overwritten(tmp_path, monkeypatch):
    paths = make_coco_layout(tmp_path, 3, 2, seed=1)
    stamp = os.stat(paths["val2017"]["annotation_file"]).st_mtime_ns

    def must_not_render(*args, **kwargs):
        raise AssertionError("a complete dataset was rendered again")

    with monkeypatch.context() as patch:
        patch.setattr(synthetic.dataset, "_write_split", must_not_render)
        assert make_coco_layout(tmp_path, 3, 2, seed=1) == paths
    assert os.stat(paths["val2017"]["annotation_file"]).st_mtime_ns == stamp

    # Other parameters: the split is rewritten in place.
    make_coco_dataset(tmp_path, 5, seed=1, split="train2017")
    assert len(quiet_coco(paths["train2017"]["annotation_file"]).getImgIds()) == 5
    assert len(list(Path(paths["train2017"]["image_dir"]).glob("*.jpg"))) == 5

    foreign = tmp_path / "real_coco"
    (foreign / "val2017").mkdir(parents=True)
    (foreign / "val2017" / "000000000139.jpg").write_bytes(b"not ours")
    with pytest.raises(FileExistsError, match="val2017"):
        make_coco_dataset(foreign, 2, split="val2017")
    assert (foreign / "val2017" / "000000000139.jpg").read_bytes() == b"not ours"


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="image_size"):
        render_example(image_size=(16, 320))
    with pytest.raises(ValueError, match="max_people"):
        make_coco_dataset("unused", 1, max_people=0)
